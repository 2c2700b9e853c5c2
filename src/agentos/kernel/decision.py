"""What a policy answers, and the two policies the kernel knows without a policy engine.

A policy is any object with `check(pid, action, args, *, dry_run=False) -> Decision`;
the engine in `agentos.policy` is the real one. These live apart from the kernel so that
policies, drivers and tests can import them without the dispatch loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Decision:
    """A policy answer. `rule` names what decided it; `reason` says why, for humans."""

    allowed: bool
    rule: str = "default"
    reason: str = ""
    effect: str = "allow"
    extra: dict[str, Any] = field(default_factory=dict)


# Kernel actions (spawn, send, signal.<SIG>, vfs.<op>) are governed by capabilities; a
# policy lists in `governs_kernel` which of them ("spawn", "send", "signal", "vfs") it has
# rules for, and the kernel asks it about those only. A policy without the attribute is
# asked about all of them.
BY_CAPS = Decision(True, "capabilities", "no rule names this action: capabilities govern it")


def is_kernel_action(action: str) -> bool:
    return action in ("spawn", "send") or action.startswith(("signal.", "vfs."))


class AllowAll:
    """Explicitly allow every action (tests, trusted scripts). Never the default."""

    _YES = Decision(True, "allow-all", "AllowAll policy installed")
    governs_kernel: frozenset[str] = frozenset()

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        return self._YES


class NoPolicy:
    """Strict default deny: with no policy loaded, no action on the world runs (kernel
    actions are left to capabilities)."""

    governs_kernel: frozenset[str] = frozenset()

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        if is_kernel_action(action):
            return BY_CAPS
        return Decision(False, "no-policy",
                        f"strict kernel with no policy loaded refuses {action}: load a policy "
                        f"(.agents/security.md) or pass policy=AllowAll() deliberately",
                        effect="raise")
