"""The event log: the one stamped stream that audit, metrics, ps, replay and provenance read.

The hot path only appends a `(time, pid, kind, data)` tuple to a buffer. Sequence numbers,
encoding and fan-out to sinks (metrics, the bounded in-memory ring, stores) happen in
batches at `flush()`, off the syscall path. An event's `data` is the syscall request or a
small tuple; `encode_event` turns it into canonical JSON bytes, so two runs of the same
program under a `VirtualClock` compare byte for byte.
"""
from __future__ import annotations

import hashlib
from collections import deque
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from .canon import _FIELDS, canonical, deep, dumps_canonical, total, trust  # noqa: F401 - the one encoder


class Event(NamedTuple):
    seq: int
    time: float
    pid: int
    kind: str
    data: Any


trust(Event)  # a process may be handed events and send them on

Sink = Callable[[list[Event]], None]


def encode_event(ev: Event) -> bytes:
    """Canonical JSON bytes of an event. Never raises: values are checked when they enter
    through a syscall (canon.checked), but a process may still change a list it sent
    (making it contain itself, say) before the batch is flushed; such data is written as a
    tag naming what went wrong, and the run goes on."""
    return encode_fields(ev.seq, round(ev.time, 6), ev.pid, ev.kind, ev.data)


def encode_fields(seq: int, time6: float, pid: int, kind: str, data: Any) -> bytes:
    """`encode_event` of an event's fields, its time already rounded to the microsecond (a
    recorder that stores the rounded time as well rounds it once)."""
    try:
        return dumps_canonical([seq, time6, pid, kind, canonical(data)]).encode()
    except BaseException as e:
        data = total(data, e)
    return dumps_canonical([seq, time6, pid, kind, data]).encode()


class EventLog:
    """Buffered, batched event stream with a bounded ring for `events()` and sinks.

    `buf` holds raw `(time, pid, kind, data)` tuples; the kernel's dispatch loop appends to
    it directly (the list object never changes, so a cached `buf.append` stays valid).
    `raw_sinks` get `(batch, first_seq)` with the raw tuples; `sinks` get `Event` lists,
    built only when some sink wants them.
    """

    __slots__ = ("buf", "seq", "ring", "sinks", "raw_sinks", "batch", "_now", "dropped_from_ring")

    def __init__(self, now: Callable[[], float], ring_size: int = 65536, batch: int = 4096) -> None:
        self.buf: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.ring: deque[tuple[float, int, str, Any]] = deque(maxlen=ring_size)
        self.sinks: list[Sink] = []
        self.raw_sinks: list[Callable[[list[tuple[float, int, str, Any]], int], None]] = []
        self.batch = batch
        self._now = now
        self.dropped_from_ring = 0

    def emit(self, pid: int, kind: str, data: Any = None) -> None:
        buf = self.buf
        buf.append((self._now(), pid, kind, data))
        if len(buf) >= self.batch:
            self.flush()

    def flush(self) -> None:
        buf = self.buf
        if not buf:
            return
        batch = buf.copy()
        buf.clear()
        first = self.seq + 1
        self.seq += len(batch)
        ring = self.ring
        if ring.maxlen is not None:
            overflow = len(ring) + len(batch) - ring.maxlen
            if overflow > 0:
                self.dropped_from_ring += overflow
        ring.extend(batch)
        for raw in self.raw_sinks:
            raw(batch, first)
        if self.sinks:
            events = [Event(first + i, t, pid, kind, data) for i, (t, pid, kind, data) in enumerate(batch)]
            for sink in self.sinks:
                sink(events)

    def bound_ring(self, size: int) -> None:
        """Keep at most the last `size` events in the ring (a store holds the full log)."""
        if self.ring.maxlen is None or size < self.ring.maxlen:
            self.flush()
            kept = len(self.ring)
            self.ring = deque(self.ring, maxlen=size)
            self.dropped_from_ring += kept - len(self.ring)

    def add_sink(self, sink: Sink) -> None:
        self.flush()
        self.sinks.append(sink)

    def add_raw_sink(self, sink: Callable[[list[tuple[float, int, str, Any]], int], None]) -> None:
        self.flush()
        self.raw_sinks.append(sink)

    def events(self, *, pid: int | None = None, kind: str | None = None) -> list[Event]:
        """The events still in the ring (the most recent `ring_size`), oldest first."""
        self.flush()
        first = self.seq - len(self.ring) + 1
        return [Event(first + i, t, p, k, d) for i, (t, p, k, d) in enumerate(self.ring)
                if (pid is None or p == pid) and (kind is None or k == kind)]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())


def digest(events: Iterable[Event]) -> str:
    """SHA-256 over the canonical encoding of a stream: equal digests, identical logs."""
    h = hashlib.sha256()
    for ev in events:
        h.update(encode_event(ev))
        h.update(b"\n")
    return h.hexdigest()
