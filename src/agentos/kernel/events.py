"""The event log: the one stamped stream that audit, metrics, ps, replay and provenance read.

The hot path only appends a `(time, pid, kind, data)` tuple to a buffer. Sequence numbers,
encoding and fan-out to sinks (metrics, the bounded in-memory ring, stores) happen in
batches at `flush()`, off the syscall path. An event's `data` is the syscall request or a
small tuple; `encode_event` turns it into canonical JSON bytes, so two runs of the same
program under a `VirtualClock` compare byte for byte.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections import deque
from typing import Any, Callable, Iterable, Iterator, NamedTuple


class Event(NamedTuple):
    seq: int
    time: float
    pid: int
    kind: str
    data: Any


Sink = Callable[[list[Event]], None]


_FIELDS: dict[type, tuple[str, ...]] = {}   # dataclass type -> field names (fields() is slow)


def canonical(obj: Any) -> Any:
    """A JSON-ready, deterministic rendering of anything that rides in an event."""
    t = type(obj)  # exact-type fast paths first: this runs for every recorded event
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is dict:
        return {k if type(k) is str else str(k): canonical(v) for k, v in obj.items()}
    if t is list or t is tuple:
        return [canonical(x) for x in obj]
    names = _FIELDS.get(t)
    if names is not None:
        out: dict[str, Any] = {"@": t.__name__}
        for n in names:
            out[n] = canonical(getattr(obj, n))
        return out
    return _canonical_slow(obj)


def _canonical_slow(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return obj.name if isinstance(obj, enum.IntEnum) else obj.value
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else repr(obj)
    if isinstance(obj, (list, tuple)):
        return [canonical(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted((canonical(x) for x in obj), key=repr)
    if isinstance(obj, bytes):
        return {"bytes": obj.hex()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = tuple(f.name for f in dataclasses.fields(obj))
        _FIELDS[type(obj)] = names
        out: dict[str, Any] = {"@": type(obj).__name__}
        for n in names:
            out[n] = canonical(getattr(obj, n))
        return out
    if callable(obj):
        return {"callable": getattr(obj, "__qualname__", type(obj).__name__)}
    if hasattr(obj, "_asdict"):
        return canonical(obj._asdict())
    s = str(obj)
    if " at 0x" in s:  # default object repr carries an address: not reproducible
        return {"object": type(obj).__qualname__}
    return {"object": type(obj).__qualname__, "str": s}


def _make_dumps() -> Callable[[Any], str]:
    """json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False), with the C
    encoder built once instead of per call (canonical output is acyclic: no marker checks)."""
    from json import encoder as _enc

    make = getattr(_enc, "c_make_encoder", None)
    if make is None:
        return lambda obj: json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    c = make(None, None, _enc.encode_basestring, None, ":", ",", True, False, True)
    join = "".join
    return lambda obj: join(c(obj, 0))


dumps_canonical = _make_dumps()


def encode_event(ev: Event) -> bytes:
    """Canonical JSON bytes of an event. Never raises: values are checked when they enter
    through a syscall (kernel/values.py), but a process may still change a list it sent
    (making it contain itself, say) before the batch is flushed; such data is written as a
    tag naming what went wrong, and the run goes on."""
    try:
        return dumps_canonical([ev.seq, round(ev.time, 6), ev.pid, ev.kind, canonical(ev.data)]).encode()
    except BaseException as e:
        data = total(ev.data, e)
    return dumps_canonical([ev.seq, round(ev.time, 6), ev.pid, ev.kind, data]).encode()


STACK_NEEDED = 2 * 1000 + 400
"""Frames a canonical rendering of 1,000 nested containers may need."""


def deep(fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` with room for 1,000 nested containers above the caller's own stack."""
    import sys

    old = sys.getrecursionlimit()
    if old >= STACK_NEEDED + 200:
        return fn(*args)
    sys.setrecursionlimit(old + STACK_NEEDED)
    try:
        return fn(*args)
    finally:
        sys.setrecursionlimit(old)


def total(value: Any, first: BaseException | None = None) -> Any:
    """A canonical, encodable rendering of `value` that never raises: the canonical form
    itself when it can be built (with room for deep nesting), else a tag naming the type of
    the value and of the error."""
    if first is None or isinstance(first, RecursionError):
        try:
            out = deep(canonical, value)
            dumps_canonical(out).encode()
            return out
        except BaseException as e:
            first = e
    try:
        name = type(value).__qualname__
    except BaseException:
        name = "?"
    return {"unencodable": name if isinstance(name, str) and name.isascii() else "?",
            "error": type(first).__name__}


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
