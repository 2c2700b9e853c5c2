"""LLM scheduling per device: a bound on concurrent requests, waiters by priority.

An endpoint serves only so many requests at once (a provider's concurrency limit, a
server's batch slots, one local model). Past that, letting every process call at once
buys 429s, backoff storms and thrashing, and the urgent request waits behind the idle one.
`PriorityGate` admits at most `limit` holders; the rest wait in a heap ordered by process
priority (higher first), then arrival (FIFO). A released slot passes straight to the next
waiter, so a late arrival can never overtake the queue.

Invariants: `in_use <= limit`; a waiter whose task is cancelled (its process was killed)
leaves the queue and never holds a slot; a slot handed to a waiter that was cancelled in
the same instant is passed on, not lost. All of this runs on the event loop's thread, so
no lock is needed; futures are created on the loop that waits on them, so one gate serves
successive kernel runs.
"""
from __future__ import annotations

import asyncio
import heapq
import math
import time
from dataclasses import dataclass
from itertools import count
from typing import Any, Callable

WAIT_SAMPLES = 4096  # recent waits kept for percentiles


@dataclass(frozen=True, slots=True)
class GateStats:
    """A snapshot of a gate: what it admitted and how long callers queued (seconds)."""

    limit: int | None
    in_use: int
    waiting: int
    admitted: int
    queued: int          # admissions that had to wait
    max_waiting: int
    wait_p50: float
    wait_p90: float
    wait_max: float


class PriorityGate:
    """At most `limit` concurrent holders (None: unbounded, but still counted)."""

    __slots__ = ("limit", "in_use", "_heap", "_seq", "_clock", "_waits", "admitted", "queued",
                 "max_waiting", "_waiting")

    def __init__(self, limit: int | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ValueError(f"a concurrency limit is a positive int or None, got {limit!r}")
        self.limit = limit
        self.in_use = 0
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = count()
        self._clock = clock
        self._waits: list[float] = []
        self.admitted = 0
        self.queued = 0
        self.max_waiting = 0
        self._waiting = 0

    async def acquire(self, priority: float = 0) -> float:
        """Take a slot, waiting behind higher-priority and earlier callers. Returns the wait."""
        if self.limit is None or (self.in_use < self.limit and not self._waiting):
            self.in_use += 1
            self.admitted += 1
            self._record(0.0)
            return 0.0
        t0 = self._clock()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (-priority, next(self._seq), fut))
        self._waiting += 1
        if self._waiting > self.max_waiting:
            self.max_waiting = self._waiting
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release_slot()  # the slot arrived as we were cancelled: pass it on
            else:
                self._waiting -= 1    # lazily dropped from the heap by _release_slot
                fut.cancel()
            raise
        waited = self._clock() - t0
        self.admitted += 1
        self.queued += 1
        self._record(waited)
        return waited

    def release(self) -> None:
        if self.in_use <= 0:
            raise RuntimeError("PriorityGate.release without a matching acquire")
        self._release_slot()

    def _release_slot(self) -> None:
        heap = self._heap
        while heap:
            fut = heapq.heappop(heap)[2]
            if not fut.done():
                self._waiting -= 1
                fut.set_result(None)  # the slot moves to this waiter; in_use is unchanged
                return
        self.in_use -= 1

    def _record(self, waited: float) -> None:
        w = self._waits
        if len(w) >= WAIT_SAMPLES:
            del w[: WAIT_SAMPLES // 2]
        w.append(waited)

    def slot(self, priority: float = 0) -> "_Slot":
        """`async with gate.slot(prio):` holds a slot for the block."""
        return _Slot(self, priority)

    def statistics(self) -> GateStats:
        w = sorted(self._waits)

        def pct(q: float) -> float:
            return w[min(len(w) - 1, int(q * len(w)))] if w else 0.0

        return GateStats(self.limit, self.in_use, self._waiting, self.admitted, self.queued,
                         self.max_waiting, pct(0.5), pct(0.9), w[-1] if w else 0.0)


class _Slot:
    __slots__ = ("gate", "priority", "waited")

    def __init__(self, gate: PriorityGate, priority: float) -> None:
        self.gate = gate
        self.priority = priority
        self.waited = 0.0

    async def __aenter__(self) -> "_Slot":
        self.waited = await self.gate.acquire(self.priority)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.gate.release()


def caller_priority(lookup: Callable[[int], float] | None, pid: int) -> float:
    """The priority a waiting request ranks at: `lookup(pid)` (a `DriverHost.priority`: the
    caller's effective priority, base × (1 + α × centrality) when the agent-graph scheduler
    runs, so a central orchestrator's calls go first), or a lookup given explicitly; 0 with
    no lookup; -1 (last) if the lookup fails or gives no finite number."""
    if lookup is None:
        return 0.0
    try:
        v = lookup(pid)
        p = float(v) if not isinstance(v, bool) else float("nan")
    except Exception:  # a lookup failure must not fail the call; rank it last
        return -1.0
    return p if math.isfinite(p) else -1.0


__all__ = ["GateStats", "PriorityGate", "caller_priority"]
