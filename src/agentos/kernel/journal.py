"""The journal: every driver result, keyed by (pid, op index), so a run can be replayed.

In record mode the kernel appends one entry per device operation, in the order the
results were applied. In replay mode the kernel answers each operation from the journal
and never calls a driver; asking for an operation the journal does not hold, or a
different one, raises `NondeterminismError` naming where the runs diverged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..abi.errors import NondeterminismError
from ..abi.types import Cost
from .events import canonical


@dataclass(slots=True)
class JournalEntry:
    pid: int
    index: int
    op: str          # "read" | "write" | "open"
    device: str
    action: str | None
    request: Any     # as issued; compared in canonical form on replay
    ok: bool
    value: Any       # the result, or the error message when not ok
    error_type: str | None = None
    tokens: int = 0
    tool_calls: int = 0
    usd: float = 0.0
    reductions: int = 0

    def row(self) -> tuple[Any, ...]:
        return (self.pid, self.index, self.op, self.device, self.action, self.request, self.ok,
                self.value, self.error_type, self.tokens, self.tool_calls, self.usd, self.reductions)

    @property
    def cost(self) -> Cost:
        return Cost(self.tokens, self.tool_calls, self.usd, self.reductions)

    def to_json(self) -> str:
        return json.dumps({
            "pid": self.pid, "index": self.index, "op": self.op, "device": self.device,
            "action": self.action, "request": canonical(self.request), "ok": self.ok,
            "value": canonical(self.value), "error_type": self.error_type, "tokens": self.tokens,
            "tool_calls": self.tool_calls, "usd": self.usd, "reductions": self.reductions,
        }, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> "JournalEntry":
        return JournalEntry(**json.loads(text))


Row = tuple  # (pid, index, op, device, action, request, ok, value, error_type, tokens, tool_calls, usd, reductions)


class Journal:
    """In-memory journal. Rows are plain tuples on the hot path; `entries` builds
    `JournalEntry` objects on demand. Store-backed journals attach to `sinks`
    (called with each `JournalEntry`) and load with `extend`."""

    def __init__(self, entries: Iterable[JournalEntry] = ()) -> None:
        self._rows: list[tuple[Any, ...]] = []
        self._by_key: dict[tuple[int, int], tuple[Any, ...]] = {}
        self.sinks: list[Callable[[JournalEntry], None]] = []
        self.extend(entries)

    @property
    def entries(self) -> list[JournalEntry]:
        return [JournalEntry(*r) for r in self._rows]

    def extend(self, entries: Iterable[JournalEntry]) -> None:
        for e in entries:
            self._rows.append(e.row())

    def record(self, entry: JournalEntry) -> None:
        self.record_row(entry.row())

    def record_row(self, row: tuple[Any, ...]) -> None:
        self._rows.append(row)  # the replay index is built on first lookup, off the hot path
        if self.sinks:
            entry = JournalEntry(*row)
            for sink in self.sinks:
                sink(entry)

    def replay(self, pid: int, index: int, op: str, device: str, request: Any) -> JournalEntry:
        if len(self._by_key) != len(self._rows):
            self._by_key = {(r[0], r[1]): r for r in self._rows}
        r = self._by_key.get((pid, index))
        if r is None:
            raise NondeterminismError(
                f"replay diverged at pid {pid} op #{index}: the program asked for {op} on "
                f"{device!r} with {_short(request)}, but the recorded run has no such operation")
        e = JournalEntry(*r)
        if e.op != op or e.device != device or canonical(e.request) != canonical(request):
            raise NondeterminismError(
                f"replay diverged at pid {pid} op #{index}: recorded {e.op} on {e.device!r} with "
                f"{_short(e.request)}, replay asked for {op} on {device!r} with {_short(request)}")
        return e

    def __len__(self) -> int:
        return len(self._rows)


def _short(obj: Any, limit: int = 120) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
