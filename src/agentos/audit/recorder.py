"""The flight recorder: every policy decision, approval and signal, as a keyed chain.

Records are MACed and chained the moment they are appended (so the chain order is the
kernel's order), then written in groups: `commit()` writes everything pending in one
transaction and then moves the anchor. The record of an action on the world is written
ahead: `decision(..., before_action=True)` returns only once it (and everything queued
before it) is durable, so no action runs unrecorded. Records that precede no action
(denials, signals, approval requests) ride along with the next commit, or with the
event-sink batch that delivers them.

The backend is anything with `append_audit`/`audit_records`/`read_anchor`/`write_anchor`
(see backend.py), so the recorder can be pointed at the kernel store unchanged.
"""
from __future__ import annotations

import json
import os
import time as _time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..abi.errors import SyscallError
from ..kernel.events import canonical
from .backend import AuditBackend, MemoryAuditBackend, SqliteAuditBackend
from .chain import GENESIS, AuditRecord, VerifyReport, make_anchor, make_record, verify
from .keys import load_key

if TYPE_CHECKING:
    from ..kernel.events import Event
    from ..kernel.kernel import Kernel

# event kinds the recorder copies from the kernel's event stream
AUDITED_EVENTS = frozenset({"signal"})


class AuditUnavailable(SyscallError):
    """The record of an action could not be made durable, so the action was refused."""


def _json(obj: Any) -> str:
    return json.dumps(canonical(obj), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class FlightRecorder:
    def __init__(self, backend: AuditBackend, key: bytes, *,
                 now: Callable[[], float] | None = None,
                 wall: Callable[[], float] = _time.time) -> None:
        self.backend = backend
        self._key = key
        self._now = now or (lambda: _time.monotonic() * 1000.0)
        self._wall = wall
        self.pending: list[AuditRecord] = []
        self.commits = 0
        self.seq, self.last = self._resume()

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, durability: str = "fsync",
             key: bytes | None = None) -> "FlightRecorder":
        """A recorder on the embedded SQLite backend in `directory` (key: env or key file)."""
        k = key if key is not None else load_key(directory)
        return cls(SqliteAuditBackend(directory, durability), k)

    @classmethod
    def in_memory(cls, key: bytes) -> "FlightRecorder":
        return cls(MemoryAuditBackend(), key)

    def _resume(self) -> tuple[int, str]:
        """Continue an existing chain: from the anchor, then any valid records past it."""
        anchor = self.backend.read_anchor()
        seq, last = (anchor.count, anchor.last_mac) if anchor is not None and anchor.count > 0 else (0, GENESIS)
        for rec in self.backend.audit_records(seq):
            seq, last = rec.seq, rec.mac
        return seq, last

    def attach(self, kernel: "Kernel") -> None:
        """Stamp records with the kernel clock and copy signals from its event stream."""
        self._now = kernel.clock.now
        kernel.events.add_sink(self._sink)

    def _sink(self, batch: list["Event"]) -> None:
        n = 0
        for ev in batch:
            if ev.kind in AUDITED_EVENTS:
                self.append(ev.pid, ev.kind, ev.data)
                n += 1
        if n:
            self.commit()

    # -- writing ----------------------------------------------------------------------
    def append(self, pid: int, kind: str, data: Any) -> AuditRecord:
        """Chain a record now; it becomes durable at the next commit."""
        seq = self.seq + 1
        rec = make_record(self._key, seq, self._now(), self._wall(), pid, kind, _json(data), self.last)
        self.seq = seq
        self.last = rec.mac
        self.pending.append(rec)
        return rec

    def commit(self) -> int:
        """Write every pending record in one transaction, then move the anchor. Returns the count."""
        pending = self.pending
        if not pending:
            return 0
        self.pending = []
        try:
            self.backend.append_audit(pending)
        except BaseException:
            self.pending = pending + self.pending
            raise
        self.backend.write_anchor(make_anchor(self._key, pending[-1].seq, pending[-1].mac))
        self.commits += 1
        return len(pending)

    def write_ahead(self, pid: int, kind: str, data: Any) -> AuditRecord:
        rec = self.append(pid, kind, data)
        self.commit()
        return rec

    def decision(self, pid: int, action: str, args: Any, decision: Any, *, before_action: bool) -> None:
        """Record a policy decision; durable before returning when an action follows it."""
        data = {"action": action, "args": args, "allowed": decision.allowed, "rule": decision.rule,
                "effect": decision.effect, "reason": decision.reason}
        if decision.extra:
            data["extra"] = decision.extra
        if before_action and not decision.allowed:
            data["approved"] = True  # an approval-gated action that the channel approved
        self.append(pid, "action" if before_action else "decision", data)
        if before_action:
            try:
                self.commit()
            except Exception as e:  # fail closed: no durable record, no action
                raise AuditUnavailable(f"{action} refused: the flight recorder cannot make its record "
                                       f"durable ({type(e).__name__}: {e})") from e

    def close(self) -> None:
        self.commit()
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    # -- reading ----------------------------------------------------------------------
    def records(self) -> Iterable[AuditRecord]:
        return self.backend.audit_records(0)

    def verify(self) -> VerifyReport:
        return verify(self.backend.audit_records(0), self.backend.read_anchor(), self._key)


def verify_dir(directory: str | os.PathLike[str], key: bytes | None = None) -> VerifyReport:
    """Verify the log in `directory` (what `agentctl audit verify` runs)."""
    d = Path(directory)
    if not (d / "audit.db").exists():
        raise FileNotFoundError(f"no audit log at {d / 'audit.db'}")
    k = key if key is not None else load_key(d, create=False)
    backend = SqliteAuditBackend(d, "os")
    try:
        return verify(backend.audit_records(0), backend.read_anchor(), k)
    finally:
        backend.close()
