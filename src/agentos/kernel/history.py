"""Per-process history folded from the event stream: who ran, what ended them, what they
cost. An optional sink (the CLI attaches it for `run` and `demo`), so a kernel holding a
million short-lived processes does not keep a row for each unless asked to."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..abi.types import USD_SCALE


@dataclass(slots=True)
class ProcessRecord:
    pid: int
    name: str
    parent: int
    started: float
    ended: float | None = None
    exit: str | None = None
    syscalls: int = 0
    tokens: int = 0
    tool_calls: int = 0
    usd_nano: int = 0
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usd(self) -> float:
        return self.usd_nano / USD_SCALE


class ProcessHistory:
    """One row per process (name, parent, lifetime, exit, syscalls, cost), folded from the
    event stream. `ProcessHistory.attach(kernel)` before the run; `rows()` after it.

    With `limit`, a long-lived kernel's history stays bounded: past `limit` records the
    oldest *ended* processes are forgotten (counted in `dropped`); live ones never are."""

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        self.records: dict[int, ProcessRecord] = {}
        self.limit = limit
        self.dropped = 0
        self._ended: deque[int] = deque()

    @classmethod
    def attach(cls, kernel: Any, limit: int | None = None) -> "ProcessHistory":
        """A history fed by `kernel`'s event log from now on."""
        h = cls(limit)
        kernel.events.add_raw_sink(h.observe)
        return h

    def observe(self, batch: list[tuple[float, int, str, Any]], first_seq: int = 0) -> None:
        recs = self.records
        for t, pid, kind, data in batch:
            if kind == "sys":
                r = recs.get(pid)
                if r is not None:
                    r.syscalls += 1
            elif kind == "spawn":
                recs[pid] = ProcessRecord(pid, data[1], data[0], t)
            elif kind == "charge":
                r = recs.get(pid)
                if r is not None:
                    r.tokens += data[1]
                    r.tool_calls += data[2]
                    r.usd_nano += data[3]
            elif kind == "exit":
                r = recs.get(pid)
                if r is not None:
                    r.ended = t
                    r.exit = str(data)
                    if self.limit is not None:
                        self._ended.append(pid)
                        while len(recs) > self.limit and self._ended:
                            if recs.pop(self._ended.popleft(), None) is not None:
                                self.dropped += 1
            elif kind == "error":
                r = recs.get(pid)
                if r is not None:
                    r.errors += 1

    def rows(self) -> list[ProcessRecord]:
        return [self.records[p] for p in sorted(self.records)]


def attach_history(kernel: Any) -> ProcessHistory:
    return ProcessHistory.attach(kernel)
