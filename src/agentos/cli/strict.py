"""The strict default for CLI runs: no policy, no actions on the world, and a refusal that
tells the person at the terminal which flag changes that."""
from __future__ import annotations

from typing import Any

from .. import Decision, NoPolicy


class CliNoPolicy(NoPolicy):
    """`NoPolicy`, with the refusal naming the command's own options."""

    def __init__(self, command: str, options: str = "--policy FILE (a .agents/security.md) or --allow-all") -> None:
        self.command = command
        self.options = options

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        return Decision(False, "no-policy",
                        f"strict kernel with no policy loaded refuses {action}: pass {self.options} "
                        f"to `agentctl {self.command}`", effect="raise")
