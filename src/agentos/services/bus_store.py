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

from ..abi.errors import DriverError
from ..kernel.events import dumps_canonical
from ..kernel.journal import JournalEntry
from ..kernel.process import Process
from ..kernel.recording import decode_value, encode_value
from . import topics as T

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

    def history(self, proc: Process, pat: str) -> list[list[Any]]:
        """`[topic, seq, lane, body]` of every stored message of a durable topic `pat` matches
        (journaled even with no store, so a replay asks the journal either way)."""
        rows = self._io(proc, "read", {"history": pat},
                        lambda: self._history(pat) if self.store is not None else [])
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
        rows = s.kv_items(f"{PREFIX}m/{name}/")
        return int(rows[-1][0].rsplit("/", 1)[1]) if rows else 0

    def _append(self, name: str, seq: int, keep: int, lane: int, body: Any) -> None:
        s = self.store
        s.kv_put([(f"{PREFIX}m/{name}/{seq:016d}", _enc([lane, encode_value(body)]))])
        if seq > keep:
            s.kv_delete([f"{PREFIX}m/{name}/{seq - keep:016d}"])

    def _history(self, pat: str) -> list[list[Any]]:
        s = self.store
        out: list[list[Any]] = []
        for key, _ in s.kv_items(f"{PREFIX}t/"):
            name = key[len(PREFIX) + 2:]
            if not T.matches(pat, name):
                continue
            for mkey, raw in s.kv_items(f"{PREFIX}m/{name}/"):
                lane, body = json.loads(raw)
                out.append([name, int(mkey.rsplit("/", 1)[1]), int(lane), decode_value(body)])
        return out


def _enc(value: Any) -> bytes:
    return dumps_canonical(value).encode("utf-8")


__all__ = ["DurableLog", "NoStore"]
