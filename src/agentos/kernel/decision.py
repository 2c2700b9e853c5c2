"""The two policies the kernel knows without a policy engine.

A policy is any object with `check(pid, action, args, *, dry_run=False) -> Decision`
(`agentos.abi.Policy`); the engine in `agentos.policy` is the real one. These live apart
from the dispatch loop so that policies, drivers and tests can import them without it.
"""
from __future__ import annotations

from typing import Any

from ..abi.policy import Decision


# A policy whose every answer is the same allow may say so with a `constant_decision`
# attribute (that Decision): device operations under it are then recorded without a
# decision entry each, the run's journal names the policy, and replay answers from it.
#
# Kernel actions (spawn, send, signal.<SIG>, vfs.<op>) are governed by capabilities; a
# policy lists in `governs_kernel` which of them ("spawn", "send", "signal", "vfs") it has
# rules for, and the kernel asks it about those only. A policy without the attribute is
# asked about all of them.
BY_CAPS = Decision(True, "capabilities", "no rule names this action: capabilities govern it")


def is_kernel_action(action: str) -> bool:
    return action in ("spawn", "send") or action.startswith(("signal.", "vfs.", "bus."))


class AllowAll:
    """Explicitly allow every action (tests, trusted scripts). Never the default."""

    _YES = Decision(True, "allow-all", "AllowAll policy installed")
    governs_kernel: frozenset[str] = frozenset()
    # the answer to every question: a recording kernel journals no decision for a device
    # operation under it (the operation's own entry names the action; replay.py)
    constant_decision: Decision = _YES

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


__all__ = ["AllowAll", "NoPolicy"]
