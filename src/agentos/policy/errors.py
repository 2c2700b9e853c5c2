"""The one error a policy file can produce: `PolicyLoadError`, naming the line and the cause.

A file with several problems raises one `PolicyLoadError` whose `errors` lists each of
them (sorted by line), so `agentctl policy validate` can print them all; its own message
is the first, with a count of the rest.
"""
from __future__ import annotations

from typing import Sequence

from ..abi.errors import AgentOSError


class PolicyLoadError(AgentOSError):
    """A policy file that does not load; `line` is 1-based in the file (0: not tied to a line)."""

    def __init__(self, message: str, line: int = 0, path: str = "",
                 errors: "Sequence[PolicyLoadError] | None" = None) -> None:
        self.cause = message
        self.line = line
        self.path = path
        self.errors: list[PolicyLoadError] = list(errors) if errors else [self]
        more = len(self.errors) - 1
        super().__init__(self.where() + message + (f" (and {more} more error{'s' * (more > 1)})" if more else ""))

    def where(self) -> str:
        if self.line:
            return f"{self.path or 'policy'}:{self.line}: "
        return f"{self.path}: " if self.path else ""

    def one_line(self) -> str:
        """This error alone (without the count of others), for listing."""
        return self.where() + self.cause

    @classmethod
    def collect(cls, errors: "Sequence[PolicyLoadError]", path: str = "") -> "PolicyLoadError":
        """One error standing for several (ordered by line, duplicates dropped)."""
        seen: set[tuple[int, str]] = set()
        flat: list[PolicyLoadError] = []
        for e in sorted((x for err in errors for x in err.errors), key=lambda x: x.line):
            k = (e.line, e.cause)
            if k not in seen:
                seen.add(k)
                flat.append(e)
        first = flat[0]
        return cls(first.cause, first.line, first.path or path, flat)
