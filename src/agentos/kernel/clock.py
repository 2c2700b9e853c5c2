"""Kernel time. Both clocks count milliseconds from boot.

`VirtualClock` is discrete-event: it only moves when the kernel advances it to the next
timer, so sleeps cost no real time and a run is reproducible.
"""
from __future__ import annotations

import time


class Clock:
    virtual: bool = False

    def now(self) -> float:
        raise NotImplementedError

    def advance_to(self, t: float) -> None:
        """Only a virtual clock can be moved; a real one ignores this."""


class RealClock(Clock):
    __slots__ = ("_t0",)

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * 1000.0


class VirtualClock(Clock):
    virtual = True
    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        if t > self._now:
            self._now = float(t)

    def advance(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += ms
