"""Run queues and timers.

Ready processes sit in one bucket per priority level (higher runs first). Within a level,
processes with a deadline run first, earliest deadline first (a heap); the rest are FIFO
(a deque), so the common case (no deadlines) is O(1). Entries are removed lazily: `pop`
skips any process that is no longer READY (stopped, exited).

A process queues at its `level`: its base priority, raised by the agent-graph scheduler
(agentos.sched) to its effective priority; without it, level == priority. Strict levels
can starve a low level forever, so with the scheduler on, every `bypass`-th dispatch is a
bypass dispatch (`pop_aged`): it serves the levels round-robin (FIFO head first), whatever
the top level holds. A FIFO process that is ready therefore runs within
`bypass * LEVELS * (processes queued at its level)` dispatches.
"""
from __future__ import annotations

import heapq
from collections import deque
from itertools import count
from typing import Any, Callable

from .process import READY, Process

LEVELS = 16
MAX_BASE_PRIORITY = 9


class RunQueue:
    __slots__ = ("levels", "edf", "top", "_seq", "cursor", "age")

    def __init__(self) -> None:
        self.levels: list[deque[Process]] = [deque() for _ in range(LEVELS)]
        self.edf: list[list[tuple[float, int, Process]]] = [[] for _ in range(LEVELS)]
        self.top = -1
        self._seq = count()
        self.cursor = 0     # the level the next bypass dispatch looks at first
        self.age = 0        # dispatches until the next bypass dispatch (the dispatch loop's)

    def push(self, proc: Process) -> None:
        if proc.in_queue:
            return
        proc.in_queue = True
        lvl = proc.level
        if proc.deadline is None:
            self.levels[lvl].append(proc)
        else:
            heapq.heappush(self.edf[lvl], (proc.deadline, next(self._seq), proc))
        if lvl > self.top:
            self.top = lvl

    def pop(self) -> Process | None:
        top = self.top
        levels = self.levels
        edf = self.edf
        while top >= 0:
            h = edf[top]
            if h:
                proc = heapq.heappop(h)[2]
            else:
                q = levels[top]
                if not q:
                    top -= 1
                    continue
                proc = q.popleft()
            proc.in_queue = False
            if proc.state is READY:
                self.top = top
                return proc
        self.top = -1
        return None

    def pop_aged(self) -> Process | None:
        """The bypass dispatch: the head of the next non-empty level from `cursor` on,
        round-robin over the levels up to `top` (none above it holds anything), the FIFO
        head before the deadline heap, so a stream of deadline processes cannot hold a FIFO
        one back. Deterministic: it depends only on the queue's contents and the cursor."""
        top = self.top
        if top < 0:
            return None
        levels = self.levels
        edf = self.edf
        span = top + 1
        start = self.cursor if self.cursor < span else 0
        for i in range(span):
            lvl = start + i
            if lvl >= span:
                lvl -= span
            q = levels[lvl]
            h = edf[lvl]
            while q or h:
                proc = q.popleft() if q else heapq.heappop(h)[2]
                proc.in_queue = False
                if proc.state is READY:
                    self.cursor = lvl + 1
                    return proc
        self.top = -1
        return None

    def __len__(self) -> int:
        return sum(len(q) for q in self.levels) + sum(len(h) for h in self.edf)


class Timers:
    """A heap of `[when, seq, fn, arg]`; cancel by setting fn to None."""

    __slots__ = ("heap", "_seq")

    def __init__(self) -> None:
        self.heap: list[list[Any]] = []
        self._seq = count()

    def add(self, when: float, fn: Callable[[Any], None], arg: Any) -> list[Any]:
        entry = [when, next(self._seq), fn, arg]
        heapq.heappush(self.heap, entry)
        return entry

    @staticmethod
    def cancel(entry: list[Any] | None) -> None:
        if entry is not None:
            entry[2] = None
            entry[3] = None

    def next_due(self) -> float | None:
        heap = self.heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_due(self, now: float) -> int:
        heap = self.heap
        fired = 0
        while heap and heap[0][0] <= now:
            when, _, fn, arg = heapq.heappop(heap)
            if fn is not None:
                fn(arg)
                fired += 1
        return fired
