"""Durable bus topics in a `Store`'s key-value space, read and written as journaled ops.

Layout: `bus/t/<topic>` marks a durable topic (`{"keep": n}`), `bus/m/<topic>/<seq>` holds
its messages (`[lane, body]`, the body in the journal's typed encoding, so tuples, bytes
and non-finite floats come back as they went in), sequence numbers zero-padded so the
store's key order is publish order. A topic keeps its last `keep` messages.

Each store access is one op of the calling process (its op index, device "bus"), as the
VFS does: live, the result or the failure is journaled; in replay, the journal answers and
the store is never touched, so a replayed run sees what the recorded one saw even if the
store changed since. One kernel writes a given store's bus keys at a time.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from ..abi.errors import BadArgument, DriverError
from ..kernel.args import shown
from ..kernel.events import dumps_canonical
from ..kernel.journal import JournalEntry
from ..kernel.process import Process
from ..kernel.recording import decode_value, encode_value
from . import topics as T
from .bus_body import body
from .lanes import LANES

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel

DEVICE = "bus"
PREFIX = "bus/"


class NoStore(Exception):
    """A durable operation on a bus with no store (the message is the caller's error)."""


class DurableLog:
    """One bus's durable topics."""

    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self.store: Any = None

    # -- the three operations, each a journaled op of `proc` ----------------------------------
    def declare(self, proc: Process, name: str, keep: int) -> int:
        """Mark `name` durable; returns its last stored sequence number."""
        return int(self._io(proc, "read", {"declare": name, "keep": keep}, lambda: self._declare(name, keep)))

    def append(self, proc: Process, name: str, seq: int, keep: int, lane: int, body: Any) -> None:
        self._io(proc, "write", {"topic": name, "seq": seq}, lambda: self._append(name, seq, keep, lane, body))

    def history(self, proc: Process, pat: str, limit: int | None = None,
                last: dict[str, int] | None = None) -> list[list[Any]]:
        """`[topic, seq, lane, body]` of every stored message of a durable topic `pat` matches
        (at most the newest `limit` of each topic when given; `last` holds the last sequence
        of topics this bus knows, so those are read by key, not all loaded), and for each row
        that is not a message (corrupted or forged) `[topic, key, None, why]`: the bus reports
        those and delivers nothing of them. Journaled even with no store, so a replay asks the
        journal either way."""
        req: dict[str, Any] = {"history": pat}
        if limit is not None:
            req["limit"] = limit
        rows = self._io(proc, "read", req,
                        lambda: self._history(pat, limit, last or {}) if self.store is not None else [])
        return rows

    # -- journaling --------------------------------------------------------------------------
    def _io(self, proc: Process, op: str, req: dict[str, Any], fn: Callable[[], Any]) -> Any:
        k = self.k
        idx = proc.op_index
        proc.op_index = idx + 1
        if k.replaying:
            assert k.journal is not None
            e = k.journal.replay(proc.pid, idx, op, DEVICE, req)
            if not e.ok:
                raise DriverError(e.value)
            return e.value
        try:
            value = fn()
        except Exception as exc:  # a store failure is the call's error, recorded for replay
            text = (str(exc) if type(exc) is NoStore
                    else f"bus: the store failed: {type(exc).__name__}: {exc}"[:500])
            self._record(JournalEntry(proc.pid, idx, op, DEVICE, f"bus.{op}", req, False, text, "DriverError"))
            raise DriverError(text) from None
        self._record(JournalEntry(proc.pid, idx, op, DEVICE, f"bus.{op}", req, True, value))
        return value

    def _record(self, e: JournalEntry) -> None:
        if self.k.journal is not None:
            self.k.journal.record(e)

    # -- the store ------------------------------------------------------------------------------
    def _declare(self, name: str, keep: int) -> int:
        s = self.store
        if s is None:
            raise NoStore(f"bus_declare: topic {name!r} cannot be durable: the bus has no store")
        s.kv_put([(f"{PREFIX}t/{name}", _enc({"keep": keep}))])
        for key, _ in reversed(s.kv_items(f"{PREFIX}m/{name}/")):
            tail = key.rsplit("/", 1)[1]
            if tail.isascii() and tail.isdigit() and len(tail) <= 20:  # a forged key is passed over
                return int(tail)
        return 0

    def _append(self, name: str, seq: int, keep: int, lane: int, body: Any) -> None:
        s = self.store
        s.kv_put([(f"{PREFIX}m/{name}/{seq:016d}", _enc([lane, encode_value(body)]))])
        if seq > keep:
            s.kv_delete([f"{PREFIX}m/{name}/{seq - keep:016d}"])

    def _history(self, pat: str, limit: int | None, last: dict[str, int]) -> list[list[Any]]:
        s = self.store
        out: list[list[Any]] = []
        for key, _ in s.kv_items(f"{PREFIX}t/"):
            name = key[len(PREFIX) + 2:]
            why = topic_error(name)
            if why is not None:
                out.append([_shown(name), _shown(key), None, why])
                continue
            if not T.matches(pat, name):
                continue
            top = last.get(name)
            if limit is not None and top is not None:  # newest first by key, then in order
                got = []
                for seq in range(top, max(top - limit, 0), -1):
                    raw = s.kv_get(f"{PREFIX}m/{name}/{seq:016d}")
                    if raw is None:
                        break
                    got.append((f"{PREFIX}m/{name}/{seq:016d}", raw))
                items = got[::-1]
            else:
                items = s.kv_items(f"{PREFIX}m/{name}/")
                if limit is not None:
                    items = items[-limit:] if limit else []
            for mkey, raw in items:
                out.append(row_of(name, mkey, raw))
        return out


def topic_error(name: Any) -> str | None:
    """Why `name` (read from the store) is not a topic, or None."""
    try:
        T.topic("a stored topic", name)
    except BadArgument as e:
        return str(e)
    return None


def _shown(v: Any) -> str:
    return v if type(v) is str and len(v) <= 300 and v.isascii() else shown(v, 300)


def row_of(name: str, mkey: str, raw: Any) -> list[Any]:
    """A stored message row checked like a publish: `[topic, seq, lane, body]`, or
    `[topic, key, None, why]` when it is not one (what it holds is never delivered)."""
    try:
        seq_text = mkey.rsplit("/", 1)[1]
        if not (seq_text.isascii() and seq_text.isdigit() and len(seq_text) <= 20):
            raise ValueError(f"the key's sequence {shown(seq_text)} is not a number")
        lane, enc = json.loads(raw)
        if type(lane) is not int or not 0 <= lane < LANES:
            raise ValueError(f"lane {shown(lane)} is not 0..{LANES - 1}")
        return [name, int(seq_text), lane, body("the stored body", decode_value(enc))]
    except Exception as e:  # garbage, a forged shape, a body the bus would refuse: reported, skipped
        return [name, _shown(mkey), None, f"{type(e).__name__}: {e}"[:300]]


def row_error(row: Any) -> str | None:
    """Why a history row (from the store, or from the journal in a replay) is not a message
    to deliver, or None: the same checks as a publish."""
    if type(row) is not list or len(row) != 4:
        return "a history row is not [topic, seq, lane, body]"
    name, seq, lane, value = row
    if lane is None:
        return value if type(value) is str else "a bad row"
    why = topic_error(name)
    if why is not None:
        return why
    if type(seq) is not int or seq < 1:
        return f"sequence {shown(seq)} is not a positive integer"
    if type(lane) is not int or not 0 <= lane < LANES:
        return f"lane {shown(lane)} is not 0..{LANES - 1}"
    try:
        body("the stored body", value)
    except BadArgument as e:
        return str(e)
    return None


def _enc(value: Any) -> bytes:
    return dumps_canonical(value).encode("utf-8")


__all__ = ["DurableLog", "NoStore", "row_error", "row_of", "topic_error"]
