"""The daemon's view of the event stream: a bounded ring of recent events as JSON-ready
dicts, and followers woken when a batch arrives.

`EventHub` is a kernel `Observer` (its `flushed` hook) and runs on the kernel's thread,
which is also the daemon's asyncio thread: no locks. Followers never block the kernel:
each keeps the sequence number it has seen and reads the ring from there; a follower
that falls more than the ring behind is told how many events it missed (`gap`).

Documented event fields (the `--json` format of `agentctl events`): `seq` (1-based
position in the kernel's log), `time` (ms on the kernel's clock), `pid` (0: the kernel),
`kind` (spawn, log, charge, policy, signal, exit, ...), `data` (the kind's payload,
JSON-ready).
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Iterable

from ..kernel.events import Event, canonical
from ..kernel.observer import Observer

EVENT_FIELDS = ("seq", "time", "pid", "kind", "data")


def event_dict(e: Event) -> dict[str, Any]:
    """One event with its documented field names."""
    return {"seq": e.seq, "time": round(e.time, 3), "pid": e.pid, "kind": e.kind, "data": canonical(e.data)}


class EventHub(Observer):
    """Recent events and their followers."""

    def __init__(self, ring: int = 20000) -> None:
        self.ring: deque[dict[str, Any]] = deque(maxlen=ring)
        self.last_seq = 0
        self._changed: asyncio.Event | None = None
        self.listeners: list[Any] = []      # callables(batch of dicts): metrics, dashboard
        self.on_boot: Any = None            # callable(kernel, init) once the kernel booted

    def booted(self, kernel: Any, init: Any, boot: Any) -> None:
        if self.on_boot is not None:
            self.on_boot(kernel, init)

    def flushed(self, batch: list[Event]) -> None:
        rows = [event_dict(e) for e in batch]
        self.ring.extend(rows)
        if rows:
            self.last_seq = rows[-1]["seq"]
        for fn in list(self.listeners):
            fn(rows)
        ev, self._changed = self._changed, None
        if ev is not None:
            ev.set()

    def since(self, seq: int, *, pid: int | None = None, kind: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Events after `seq` still in the ring, filtered; and how many were lost to the ring."""
        first = self.ring[0]["seq"] if self.ring else self.last_seq + 1
        gap = max(0, first - seq - 1) if seq < self.last_seq else 0
        out = [r for r in self._after(seq) if (pid is None or r["pid"] == pid) and (kind is None or r["kind"] == kind)]
        return out, gap

    def _after(self, seq: int) -> Iterable[dict[str, Any]]:
        if seq >= self.last_seq:
            return ()
        n = self.last_seq - seq
        if n >= len(self.ring):
            return list(self.ring)
        return list(self.ring)[-n:]

    async def wait(self, timeout: float) -> None:
        """Until the next batch arrives or `timeout` seconds pass."""
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass


__all__ = ["EVENT_FIELDS", "EventHub", "event_dict"]
