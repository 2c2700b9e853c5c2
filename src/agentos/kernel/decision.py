"""The two policies the kernel knows without a policy engine.

A policy is any object with `check(pid, action, args, *, dry_run=False) -> Decision`
(`agentos.abi.Policy`); the engine in `agentos.policy` is the real one. These live apart
from the dispatch loop so that policies, drivers and tests can import them without it.
"""
from __future__ import annotations

from typing import Any

from ..abi.policy import Decision


class AllowAll:
    """Explicitly allow every action (tests, trusted scripts). Never the default."""

    _YES = Decision(True, "allow-all", "AllowAll policy installed")

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        return self._YES


class NoPolicy:
    """Strict default deny: with no policy loaded, no action on the world runs."""

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        return Decision(False, "no-policy",
                        f"strict kernel with no policy loaded refuses {action}: load a policy "
                        f"(.agents/security.md) or pass policy=AllowAll() deliberately",
                        effect="raise")


__all__ = ["AllowAll", "NoPolicy"]
