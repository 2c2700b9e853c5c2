"""The flight recorder: every policy decision, approval and signal, as a keyed chain.

Records are MACed and chained the moment they are appended (so the chain order is the
kernel's order), then written in groups: a commit writes everything pending in one
transaction and then moves the anchor. The record of an action on the world is written
ahead: no action runs before its record (and everything chained before it) is durable.
Two ways to wait for that:
  * synchronous (deterministic kernels, or `group_commit=False`): the commit runs inline;
  * group commit (live kernels): the process parks like a device read, one writer thread
    commits everything pending in one transaction (one fsync for every process that
    asked meanwhile), and the parked processes rerun their syscall, which finds a one-shot
    clearance for exactly that (action, arguments) and skips deciding and recording again.
    The kernel loop never waits on the disk.
Records that precede no action (denials, signals, approval requests) ride along with the
next commit, or with the event-sink batch that delivers them.

The backend is anything with `append_audit`/`audit_records`/`read_anchor`/`write_anchor`
(see backend.py), so the recorder can be pointed at the kernel store unchanged.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time as _time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..abi.errors import SyscallError
from ..abi.types import WaitKind
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
                 wall: Callable[[], float] = _time.time,
                 group_commit: bool | None = None) -> None:
        self.backend = backend
        self._key = key
        self._now = now or (lambda: _time.monotonic() * 1000.0)
        self._wall = wall
        self.pending: list[AuditRecord] = []
        self.commits = 0
        self.seq, self.last = self._resume()
        self.durable = self.seq
        self.group_commit = group_commit     # None: group when the kernel is live (not deterministic)
        self.passes: dict[int, list[str]] = {}      # pid → cleared action keys (one-shot)
        self._waiters: list[tuple[int, Any, Any, str]] = []  # (seq, proc, req, key)
        self._lock = threading.Lock()        # one backend writer at a time
        self._flushing = False
        self._executor: ThreadPoolExecutor | None = None
        self._kernel: Kernel | None = None

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
        self._kernel = kernel
        if self.group_commit is None:
            self.group_commit = not kernel.config.deterministic
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
        """Write every pending record in one transaction, then move the anchor. Returns the count.
        Waits for a group commit in flight (whose records come first in the chain)."""
        with self._lock:
            pending = self.pending
            if not pending:
                return 0
            self.pending = []
            self._write(pending)
        if self._waiters:
            self._schedule_wake()
        return len(pending)

    def _write(self, batch: list[AuditRecord]) -> None:
        """Under the lock: records, then the anchor. On failure the batch goes back in front."""
        try:
            self.backend.append_audit(batch)
            self.backend.write_anchor(make_anchor(self._key, batch[-1].seq, batch[-1].mac))
        except BaseException:
            self.pending = batch + self.pending
            raise
        self.durable = batch[-1].seq
        self.commits += 1

    def write_ahead(self, pid: int, kind: str, data: Any) -> AuditRecord:
        rec = self.append(pid, kind, data)
        self.commit()
        return rec

    def decision(self, pid: int, action: str, args: Any, decision: Any, *, before_action: bool,
                 proc: Any = None, req: Any = None) -> bool:
        """Record a policy decision. With `before_action`: True once the record is durable;
        False when the process has been parked for the group commit (its syscall reruns)."""
        data = {"action": action, "args": args, "allowed": decision.allowed, "rule": decision.rule,
                "effect": decision.effect, "reason": decision.reason}
        if decision.extra:
            data["extra"] = decision.extra
        if before_action and not decision.allowed:
            data["approved"] = True  # an approval-gated action that the channel approved
        rec = self.append(pid, "action" if before_action else "decision", data)
        if not before_action:
            return True
        k = self._kernel
        if self.group_commit and k is not None and proc is not None and req is not None:
            return self._park(rec.seq, proc, req, action, args)
        try:
            self.commit()
        except Exception as e:  # fail closed: no durable record, no action
            raise AuditUnavailable(f"{action} refused: the flight recorder cannot make its record "
                                   f"durable ({type(e).__name__}: {e})") from e
        return True

    # -- group commit ---------------------------------------------------------------------
    def cleared(self, pid: int, action: str, args: Any) -> bool:
        """Consume the clearance a parked call earned when its record became durable."""
        keys = self.passes.get(pid)
        if not keys:
            return False
        key = action + "\x00" + _json(args)
        if key not in keys:
            return False
        keys.remove(key)
        if not keys:
            del self.passes[pid]
        return True

    def _park(self, seq: int, proc: Any, req: Any, action: str, args: Any) -> bool:
        k = self._kernel
        assert k is not None
        self._waiters.append((seq, proc, req, action + "\x00" + _json(args)))
        k.park(proc, WaitKind.AUDIT, self._withdraw, held=True)
        if not self._flushing:
            self._start_flush()
        return False

    def _withdraw(self, proc: Any) -> bool:
        """The abort of an audit wait: the caller ended or was interrupted before its record
        became durable. The record stays (it was written ahead); the action never runs."""
        self._waiters = [w for w in self._waiters if w[1] is not proc]
        return True

    def _start_flush(self) -> None:
        if not self.pending:
            return
        batch = self.pending
        self.pending = []
        self._flushing = True
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="agentos-audit")
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self._write_locked, batch)
        fut.add_done_callback(self._flush_done)

    def _write_locked(self, batch: list[AuditRecord]) -> None:
        with self._lock:
            self._write(batch)

    def _flush_done(self, fut: "asyncio.Future[None]") -> None:
        self._flushing = False
        err = None if fut.cancelled() else fut.exception()
        if err is not None:
            self._fail_waiters(err)
            return
        self._wake_durable()
        if self._waiters and self.pending:
            self._start_flush()    # records that queued up during this write: the next group

    def _schedule_wake(self) -> None:
        try:
            asyncio.get_running_loop().call_soon(self._wake_durable)
        except RuntimeError:
            pass  # no loop: nothing is parked

    def _wake_durable(self) -> None:
        k = self._kernel
        if k is None or not self._waiters:
            return
        from ..kernel.process import EXITED

        durable = self.durable
        ready = [w for w in self._waiters if w[0] <= durable]
        self._waiters = [w for w in self._waiters if w[0] > durable]
        for _seq, proc, req, key in ready:
            if proc.state is not EXITED and proc.wait_kind is WaitKind.AUDIT:
                self.passes.setdefault(proc.pid, []).append(key)
                k.retry_syscall(proc, req)
                keys = self.passes.get(proc.pid)
                if keys and key in keys:  # the rerun did not use it (revoked cap, ...): drop it
                    keys.remove(key)
                    if not keys:
                        del self.passes[proc.pid]

    def _fail_waiters(self, err: BaseException) -> None:
        k = self._kernel
        from ..kernel.process import EXITED

        waiters, self._waiters = self._waiters, []
        for _seq, proc, _req, key in waiters:
            if k is not None and proc.state is not EXITED and proc.wait_kind is WaitKind.AUDIT:
                action = key.split("\x00", 1)[0]
                k.wake(proc, None, AuditUnavailable(
                    f"{action} refused: the flight recorder cannot make its record durable "
                    f"({type(err).__name__}: {err})"))

    def close(self) -> None:
        self.commit()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
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
