"""Per-subscriber priority lanes: bounded queues served by weighted round robin.

Each subscription holds one bounded deque per lane. `pop` serves the lanes by deficit
round robin with a unit cost per message (so it is weighted round robin): lane `i` may
hand out up to `WEIGHTS[i]` messages per round while it has any, then the turn passes
to the next lane that has something. Lane 0 is the most urgent.

Invariants: a lane's backlog never takes another lane's slots (each lane has its own
bound), so a flood on one lane can only drop that lane's own oldest messages; while lane
`i` has a backlog it is served at least `WEIGHTS[i]` times in every
`sum(WEIGHTS)` deliveries, whatever the other lanes hold; service order is a function
of what was queued, so a replay serves the same order.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterator

LANES = 4
WEIGHTS = (8, 4, 2, 1)
"""Messages lane i may hand out per round (lane 0: the most urgent)."""


class LaneQueue:
    """The bounded lanes of one subscription."""

    __slots__ = ("lanes", "capacity", "size", "_cur", "_credit")

    def __init__(self, capacity: int) -> None:
        if type(capacity) is not int or capacity < 1:  # 0 or less: a push would pop an empty lane
            raise ValueError(f"a lane's capacity is a positive int, got {capacity!r:.40}")
        self.lanes: tuple[deque[Any], ...] = tuple(deque() for _ in range(LANES))
        self.capacity = capacity      # per lane
        self.size = 0
        self._cur = 0
        self._credit = WEIGHTS[0]

    def full(self, lane: int) -> bool:
        return len(self.lanes[lane]) >= self.capacity

    def push(self, lane: int, item: Any) -> Any:
        """Queue `item`; returns the oldest item of that lane if it had to be dropped
        to make room (drop-oldest), else None."""
        q = self.lanes[lane]
        dropped = None
        if len(q) >= self.capacity:
            dropped = q.popleft()
            self.size -= 1
        q.append(item)
        self.size += 1
        return dropped

    def pop(self) -> Any:
        """The next item by weighted round robin, or None when every lane is empty."""
        if not self.size:
            return None
        lanes = self.lanes
        cur, credit = self._cur, self._credit
        for _ in range(LANES + 1):
            q = lanes[cur]
            if q and credit > 0:
                item = q.popleft()
                self.size -= 1
                credit -= 1
                if credit == 0 or not q:
                    cur = (cur + 1) % LANES
                    credit = WEIGHTS[cur]
                self._cur, self._credit = cur, credit
                return item
            cur = (cur + 1) % LANES
            credit = WEIGHTS[cur]
        raise AssertionError("LaneQueue.size says non-empty but every lane is empty")  # pragma: no cover

    def drain(self) -> Iterator[Any]:
        """Every queued item, lane by lane (the queue is empty afterwards)."""
        for q in self.lanes:
            while q:
                yield q.popleft()
        self.size = 0

    def depth(self) -> list[int]:
        return [len(q) for q in self.lanes]


__all__ = ["LANES", "LaneQueue", "WEIGHTS"]
