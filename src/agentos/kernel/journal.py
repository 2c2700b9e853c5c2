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

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..abi.errors import NondeterminismError, RecordingFormatError
from ..abi.types import Cost
from .events import canonical, dumps_canonical, total
from .recording import RECORDING_FORMAT, decode_value, encode_value, upgrade_entry


@dataclass(slots=True)
class JournalEntry:
    pid: int
    index: int
    op: str          # "read" | "write" | "open" | "policy" | "io_cancel" | "clock_jump" | "net.*"
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
        try:
            fields = upgrade_entry(json.loads(text), version)
            fields["value"] = decode_value(fields.get("value"))
            if fields.get("reserve") is not None:
                fields["reserve"] = tuple(fields["reserve"])
            return JournalEntry(**fields)
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as e:
            raise RecordingFormatError(f"a journal entry is not one of recording format {version}: "
                                       f"{type(e).__name__}: {_short(str(e))}", recorded=version,
                                       current=RECORDING_FORMAT) from None


TURN_OPS = frozenset({"net.in", "net.drop", "net.sources"})
"""Ops applied at a turn of the kernel's loop (`at`), not answers to a process's op index:
network input (format 6, see kernel/recording.py and kernel/remote.py)."""


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
        elif e.op == "io_cancel":
            for i in range(e.index, e.index + int(e.value or 1)):
                self._cancelled[(e.pid, i)] = e
        else:
            self._by_key[(e.pid, e.index)] = e

    def extend(self, entries: Iterable[JournalEntry]) -> None:
        self.entries.extend(entries)
        self._ensure_index()

    def record(self, entry: JournalEntry) -> None:
        self.entries.append(entry)
        for sink in self.sinks:
            sink(entry)

    def lookup(self, pid: int, index: int) -> JournalEntry | None:
        if self._indexed != len(self.entries):
            self._ensure_index()
        return self._by_key.get((pid, index))

    def matches(self, e: JournalEntry | None, op: str, device: str, request: Any) -> bool:
        return (e is not None and e.op == op and e.device == device
                and canonical(e.request) == canonical(request))

    def replay(self, pid: int, index: int, op: str, device: str, request: Any) -> JournalEntry:
        if self._indexed != len(self.entries):
            self._ensure_index()
        e = self._by_key.get((pid, index))
        if e is None:
            raise NondeterminismError(
                f"replay diverged at pid {pid} op #{index}: the program asked for {op} on "
                f"{device!r} with {_short(request)}, but the recorded run has no such operation")
        if e.op != op or e.device != device or canonical(e.request) != canonical(request):
            raise NondeterminismError(
                f"replay diverged at pid {pid} op #{index}: recorded {e.op} on {e.device!r} with "
                f"{_short(e.request)}, replay asked for {op} on {device!r} with {_short(request)}")
        return e

    def __len__(self) -> int:
        return len(self.entries)


def _short(obj: Any, limit: int = 120) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
