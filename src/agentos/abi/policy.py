"""What a policy answers, and what a policy is. Types only.

`Decision` is what `sys.check_policy` hands a process and what the kernel acts on before
an action on the world. A policy is anything with `check(pid, action, args, *,
dry_run=False) -> Decision`; the engine in `agentos.policy` is the real one, and
`AllowAll`/`NoPolicy` are the two the kernel knows without one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .types import Pid


@dataclass(frozen=True)
class Decision:
    """A policy answer. `rule` names what decided it; `reason` says why, for humans.

    `effect` says what the kernel does with a refusal: ``"allow"``, ``"log"`` (allowed,
    but a strict policy would not have), ``"kill"`` (SIGPOLICY), ``"raise"`` (the caller
    gets `PolicyDenied`) or ``"approve"`` (ask the approval channel)."""

    allowed: bool
    rule: str = "default"
    reason: str = ""
    effect: str = "allow"
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """What the kernel consults before an action on the world (`KernelConfig.policy`)."""

    def check(self, pid: Pid, action: str, args: Any, *, dry_run: bool = False) -> Decision: ...


__all__ = ["Decision", "Policy"]
