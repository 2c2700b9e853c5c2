"""The journal: every driver result, keyed by (pid, op index), so a run can be replayed.

In record mode the kernel appends one entry per device operation, in the order the
results were applied. In replay mode the kernel answers each operation from the journal
and never calls a driver; asking for an operation the journal does not hold, or a
different one, raises `NondeterminismError` naming where the runs diverged.

Besides driver results the journal holds the run's other inputs from outside the
program: policy decisions (op "policy", per-pid sequence in `index`; approvals and rate
limits depend on people and wall time), the kernel I/O tick at which an asynchronous
completion was applied (`at`), and "io_cancel" marks for operations that were started
but never completed (the process died or was interrupted while they were in flight),
and "clock_jump" entries: under a virtual clock, the I/O tick (`at`) at which virtual
time jumped to the next timer (`value`, in ms) while driver I/O hung with nothing else
to run; how long a driver took in real time decided it, so it is an input.

What an entry holds and how it is encoded is part of the recording format
(`recording.RECORDING_FORMAT`); a journal read back from a store knows the version it was
recorded in (`Journal.format`), so replay can keep that version's semantics.
"""
from __future__ import annotations

import gc
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..abi.errors import NondeterminismError, RecordingFormatError
from ..abi.types import COST_MAX, USD_SCALE, Cost
from json.encoder import encode_basestring as _enc_str

from .events import canonical, dumps_canonical, total
from .recording import RECORDING_FORMAT, decode_value, encode_value, upgrade_entry


@dataclass(slots=True)
class JournalEntry:
    pid: int
    index: int
    op: str          # "read" | "write" | "open" | "policy" | "io_cancel" | "clock_jump" | "run_policy" | "net.*"
    device: str
    action: str | None
    request: Any     # as issued; compared in canonical form on replay
    ok: bool
    value: Any       # the result, or the error message when not ok (stored by `encode_value`)
    error_type: str | None = None
    tokens: int = 0
    tool_calls: int = 0
    usd: float = 0.0
    reductions: int = 0
    at: int | None = None   # kernel I/O tick of an asynchronous completion; None: inline
    reserve: tuple[int, int, int] | None = None  # (tokens, tool_calls, usd_nano) set aside before
                                                 # the driver ran; replay reserves from this
    raw: str | None = field(default=None, compare=False, repr=False)  # to_json, when built already

    @property
    def cost(self) -> Cost:
        return Cost(self.tokens, self.tool_calls, self.usd, self.reductions)

    def to_json(self) -> str:
        if self.raw is not None:
            return self.raw
        try:  # the fixed layout: the bytes the generic encoding below writes, without sorting keys
            return _fixed(self)
        except BaseException:
            pass
        return self._to_json_generic()

    def _to_json_generic(self) -> str:
        try:
            request, value = canonical(self.request), encode_value(self.value)
            dumps_canonical([request, value]).encode()
        except BaseException as e:  # never raises: see events.total
            request, value = total(self.request, e), total(self.value, e)
        return dumps_canonical({
            "pid": self.pid, "index": self.index, "op": self.op, "device": self.device,
            "action": self.action, "request": request, "ok": self.ok,
            "value": value, "error_type": self.error_type, "tokens": self.tokens,
            "tool_calls": self.tool_calls, "usd": self.usd, "reductions": self.reductions,
            "at": self.at, **({"reserve": list(self.reserve)} if self.reserve is not None else {}),
        })

    @staticmethod
    def from_json(text: str, version: int = RECORDING_FORMAT) -> "JournalEntry":
        """An entry as stored by a run of recording format `version`, in today's shape."""
        return JournalEntry.from_json_many([text], version)[0]

    @staticmethod
    def from_json_many(texts: list[str], version: int = RECORDING_FORMAT) -> "list[JournalEntry]":
        """Stored entries, decoded in one `json.loads` per batch. Each keeps its stored text
        (`raw`), which also marks its request as already canonical: replay compares it as is."""
        out: list[JournalEntry] = []
        # decoding builds no cycles, only many small objects: the collector is paused
        # meanwhile rather than walking the whole heap again and again as they pile up
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            _decode_into(out, texts, version)
        finally:
            if paused:
                gc.enable()
        return out


def _decode_into(out: list[JournalEntry], texts: list[str], version: int) -> None:
    """Decode `texts` into `out`, one `json.loads` per batch."""
    for i in range(0, len(texts), _BATCH):
        chunk = texts[i:i + _BATCH]
        try:
            rows = json.loads("[" + ",".join(chunk) + "]")
            if len(rows) != len(chunk):  # a row that was not one JSON value
                raise ValueError(f"{len(chunk)} rows decoded as {len(rows)} values")
        except (ValueError, RecursionError):
            rows = None  # find the bad row (and say what is wrong with it) one by one
        for j, text in enumerate(chunk):
            out.append(_entry(rows[j] if rows is not None else None, text, version))


TURN_OPS = frozenset({"net.in", "net.drop", "net.sources"})
"""Ops applied at a turn of the kernel's loop (`at`), not answers to a process's op index:
network input (format 6, see kernel/recording.py and kernel/remote.py)."""


def _check_amounts(fields: dict[str, Any]) -> None:
    """A stored entry's costs and reservation are what the kernel wrote: whole numbers (usd
    a finite number) from 0 to COST_MAX. Replay charges and reserves from them, so a forged
    or damaged one (NaN, negative, 2.5 tokens) must not reach the accounts."""
    get = fields.get
    tokens, calls, red, usd = get("tokens", 0), get("tool_calls", 0), get("reductions", 0), get("usd", 0.0)
    if (type(tokens) is int and type(calls) is int and type(red) is int and type(usd) is float
            and 0 <= tokens <= COST_MAX and 0 <= calls <= COST_MAX and 0 <= red <= COST_MAX
            and 0.0 <= usd <= COST_MAX and get("reserve") is None):
        return  # the common case in one test (NaN and infinity fail the comparison)
    for key in ("tokens", "tool_calls", "reductions"):
        v = fields.get(key, 0)
        if type(v) is not int or not 0 <= v <= COST_MAX:
            raise ValueError(f"{key} = {_short(repr(v))} is not a whole number in 0..{COST_MAX}")
    usd = fields.get("usd", 0.0)
    if type(usd) not in (int, float) or not math.isfinite(usd) or not 0 <= usd <= COST_MAX:
        raise ValueError(f"usd = {_short(repr(usd))} is not a finite amount in 0..{COST_MAX}")
    r = fields.get("reserve")
    if r is not None and (len(r) != 3 or any(type(v) is not int or not 0 <= v <= COST_MAX * USD_SCALE for v in r)):
        raise ValueError(f"reserve = {_short(repr(r))} is not three whole amounts >= 0")


class Journal:
    """In-memory journal; a store-backed one feeds `sinks` and loads with `extend`.

    `format` is the recording format the entries were recorded in: the current one for a
    live kernel's journal, the stored run's for a journal read back for replay. Replay
    code whose semantics changed in a format bump branches on it."""

    def __init__(self, entries: Iterable[JournalEntry] = (), *, format: int = RECORDING_FORMAT) -> None:
        self.format = format
        # the kernel actions (spawn, send, signal, vfs) the recorded run's policy was asked
        # about; None when not recorded (replay then infers them from the decisions)
        self.governs: frozenset[str] | None = None
        self.entries: list[JournalEntry] = []
        self._by_key: dict[tuple[int, int], JournalEntry] = {}
        self._decisions: dict[int, list[JournalEntry]] = {}   # pid -> policy decisions in order
        self._cancelled: dict[tuple[int, int], JournalEntry] = {}  # (pid, op) in flight, never completed
        self._jumps: dict[int, float] = {}                      # I/O tick -> virtual time jumped to
        self._indexed = 0   # entries[:_indexed] are in the lookup indexes (built lazily)
        self.sinks: list[Callable[[JournalEntry], None]] = []
        # False once a store holds every entry (a recorded run): entries go to the sinks only,
        # so a long run's journal does not grow in memory. A run with no store keeps them:
        # record-then-replay reads them back from here.
        self.retain = True
        # (format 6) {"policy": import path, "rule": ...} of a constant policy whose allows of
        # device operations were not journaled; None: every decision is in the journal
        self._run_policy: dict[str, Any] | None = None
        self.shed = 0       # entries recorded but not kept (`retain` was off)
        self.extend(entries)

    def _ensure_index(self) -> None:
        """Recording only appends; the indexes replay needs are built on first lookup."""
        entries = self.entries
        for i in range(self._indexed, len(entries)):
            self._index(entries[i])
        self._indexed = len(entries)

    @property
    def decisions(self) -> dict[int, list[JournalEntry]]:
        self._ensure_index()
        return self._decisions

    @property
    def cancelled(self) -> dict[tuple[int, int], JournalEntry]:
        """(pid, op index) → the io_cancel entry of an operation that never completed."""
        self._ensure_index()
        return self._cancelled

    @property
    def run_policy(self) -> dict[str, Any] | None:
        """(format 6) The constant policy whose device-operation allows were not journaled."""
        self._ensure_index()
        return self._run_policy

    @property
    def jumps(self) -> dict[int, float]:
        self._ensure_index()
        return self._jumps

    def _index(self, e: JournalEntry) -> None:
        if e.op == "policy":
            self._decisions.setdefault(e.pid, []).append(e)
        elif e.op == "clock_jump":
            # (format 5: see kernel/recording.py)
            assert e.at is not None
            self._jumps[e.at] = float(e.value)
        elif e.op in TURN_OPS:
            pass  # read in order by the replaying kernel (remote.py), never looked up by key
        elif e.op == "run_policy":  # (format 6) the constant policy the run was recorded under
            self._run_policy = e.value if isinstance(e.value, dict) else {"policy": "?"}
        elif e.op == "io_cancel":
            for i in range(e.index, e.index + int(e.value or 1)):
                self._cancelled[(e.pid, i)] = e
        else:
            self._by_key[(e.pid, e.index)] = e

    def extend(self, entries: Iterable[JournalEntry]) -> None:
        self.entries.extend(entries)
        self._ensure_index()

    def record(self, entry: JournalEntry) -> None:
        if self.retain:
            self.entries.append(entry)
        else:
            self.shed += 1
        for sink in self.sinks:
            sink(entry)

    def lookup(self, pid: int, index: int) -> JournalEntry | None:
        if self._indexed != len(self.entries):
            self._ensure_index()
        return self._by_key.get((pid, index))

    def matches(self, e: JournalEntry | None, op: str, device: str, request: Any) -> bool:
        return (e is not None and e.op == op and e.device == device
                and _recorded(e) == canonical(request))

    def replay(self, pid: int, index: int, op: str, device: str, request: Any) -> JournalEntry:
        if self._indexed != len(self.entries):
            self._ensure_index()
        e = self._by_key.get((pid, index))
        if e is None:
            raise NondeterminismError(
                f"replay diverged at pid {pid} op #{index}: the program asked for {op} on "
                f"{device!r} with {_short(request)}, but the recorded run has no such operation")
        if e.op != op or e.device != device or _recorded(e) != canonical(request):
            raise NondeterminismError(
                f"replay diverged at pid {pid} op #{index}: recorded {e.op} on {e.device!r} with "
                f"{_short(e.request)}, replay asked for {op} on {device!r} with {_short(request)}")
        return e

    def __len__(self) -> int:
        """Entries recorded, kept in memory or not."""
        return len(self.entries) + self.shed


_INF = math.inf
_BATCH = 4096
_FIELD_NAMES = frozenset(("pid", "index", "op", "device", "action", "request", "ok", "value", "error_type",
                          "tokens", "tool_calls", "usd", "reductions", "at", "reserve"))


def _entry(obj: Any, text: str, version: int) -> JournalEntry:
    try:
        if obj is None:
            obj = json.loads(text)
        fields = upgrade_entry(obj, version)
        if type(fields) is not dict or not fields.keys() <= _FIELD_NAMES:
            raise TypeError(f"unexpected fields {sorted(set(fields) - _FIELD_NAMES) if type(fields) is dict else fields!r}")
        value = fields.get("value")
        if type(value) is list or type(value) is dict:  # a scalar decodes as itself
            fields["value"] = decode_value(value)
        elif value is None:
            fields["value"] = None  # absent reads as null, as it always has
        if fields.get("reserve") is not None:
            fields["reserve"] = tuple(fields["reserve"])
        _check_amounts(fields)
        return JournalEntry(**fields, raw=text)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as e:
        raise RecordingFormatError(f"a journal entry is not one of recording format {version}: "
                                   f"{type(e).__name__}: {_short(str(e))}", recorded=version,
                                   current=RECORDING_FORMAT) from None


_json_str = _enc_str   # a str as JSON, non-ASCII kept (as dumps_canonical writes it)
_BOOL = {True: "true", False: "false"}
_LAYOUT = ('{"action":%s,"at":%s,"device":%s,"error_type":%s,"index":%d,"ok":%s,"op":%s,"pid":%d,'
           '"reductions":%d,"request":%s,%s"tokens":%d,"tool_calls":%d,"usd":%s,"value":%s}')


def _value_json(v: Any) -> str:
    """`dumps_canonical(encode_value(v))`, a plain scalar written without the encoder's call."""
    t = type(v)
    if v is None:
        return "null"
    if t is str:
        return _json_str(v)
    if t is bool:
        return _BOOL[v]
    if t is int:
        return "%d" % v
    return dumps_canonical(encode_value(v))


def _fixed(e: JournalEntry) -> str:
    """`to_json` of an entry whose fields have their usual types, laid out by hand: the same
    bytes `dumps_canonical` writes for the entry's dict (keys in sorted order), checked
    encodable the same way. Anything unusual raises, and `to_json` takes the generic path."""
    if not (type(e.pid) is int and type(e.index) is int and type(e.tokens) is int and type(e.tool_calls) is int
            and type(e.reductions) is int and type(e.usd) is float and type(e.ok) is bool
            and type(e.op) is str and type(e.device) is str):
        raise TypeError("not the usual field types")
    usd = e.usd
    if usd != usd or usd in (_INF, -_INF):
        raise ValueError("usd is not finite")
    a, et, at, r = e.action, e.error_type, e.at, e.reserve
    if r is None:
        reserve = ""
    elif type(r) is tuple and len(r) == 3 and all(type(x) is int for x in r):
        reserve = '"reserve":[%d,%d,%d],' % r
    else:
        raise TypeError("reserve")
    text = _LAYOUT % (
        "null" if a is None else _json_str(a) if type(a) is str else _raise(),
        "null" if at is None else "%d" % at if type(at) is int else _raise(),
        _json_str(e.device),
        "null" if et is None else _json_str(et) if type(et) is str else _raise(),
        e.index, _BOOL[e.ok], _json_str(e.op), e.pid, e.reductions,
        dumps_canonical(canonical(e.request)), reserve, e.tokens, e.tool_calls, repr(usd),
        _value_json(e.value))
    text.encode()  # a lone surrogate: the generic path writes the tag
    return text


def _raise() -> str:
    raise TypeError("unusual field")


def _recorded(e: JournalEntry) -> Any:
    """An entry's request in canonical form: as decoded, for an entry read back from its
    stored text (which is that form already); built, for one recorded in this process."""
    return e.request if e.raw is not None else canonical(e.request)


def _short(obj: Any, limit: int = 120) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
