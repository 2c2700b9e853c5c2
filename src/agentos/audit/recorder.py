"""The flight recorder: every policy decision, approval and signal, as a keyed chain.

Records are MACed and chained the moment they are appended (so the chain order is the
kernel's order), then written in groups: a commit writes everything pending in one
transaction, then moves the anchor (in its own file) in a second one, before any action
the group holds back is released: every action that ran has its record vouched for. With
`anchor_every=N` > 1 the anchor may trail instead, by fewer than N records (fewer
commits; a crash leaves up to N-1 newest records a cut would not be caught for): it
moves once N records have become durable past it, at every signed checkpoint, when a
live kernel's recorder falls idle, on an explicit `commit()` (a kernel's shutdown) and
at close. It is only ever moved to records already durable, so it never vouches for a record a crash could lose. The record of an action on the world is written
ahead: no action runs before its record (and everything chained before it) is durable.
Two ways to wait for that:
  * synchronous (deterministic kernels, or `group_commit=False`): the commit runs inline;
  * group commit (live kernels): the process parks like a device read, one writer thread
    commits everything pending in one transaction (one fsync for every process that
    asked meanwhile), and the parked processes rerun their syscall, which finds a one-shot
    clearance for exactly that (action, arguments) and skips deciding and recording again.
    The kernel loop never waits on the disk.
Records that precede no action (denials, signals, approval requests) ride along with the
next commit, or with the event-sink batch that delivers them; `note` (refusals and kills
of sandboxed code) starts a commit of its own soon after.

Nothing can poison, heal or crash it:
  * encoding is total (encode.py): any value becomes storable ASCII JSON; a record is
    chained only once it is encoded, so a record that cannot be made refuses only its own
    action (AuditUnavailable) and never blocks the queue behind it;
  * a recorder that finds records without their anchor (deleted, forged, or behind a cut
    log) refuses to start (AuditAnchorLost) and says why; only `reanchor(accept_loss=True)`
    (`agentctl audit reanchor --accept-loss`) starts a new epoch, and it does so on the
    record: an "anchor lost after record N" record that every later verify reports;
  * every `checkpoint_every` records, and at close, it signs a checkpoint (Ed25519 over
    the RFC 9162 Merkle root of the durable records, checkpoint.py) when it has a signing
    key, and hands it to `on_checkpoint` (to ship it off the host).

The backend is anything with `append_audit`/`audit_records`/`read_anchor`/`write_anchor`
(see backend.py), so the recorder can be pointed at the kernel store unchanged.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import os
import threading
import time as _time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..abi.errors import AgentOSError, SyscallError
from ..abi.types import WaitKind
from .backend import AuditBackend, MemoryAuditBackend, SqliteAuditBackend, check_durability, shown
from .chain import (
    ANCHOR_LOST, GENESIS, AuditRecord, VerifyReport, _safe_iter, anchor_problem, leaf_data, make_anchor,
    make_record, make_record_leaf, record_mac, record_problem, verify,
)
from .encode import encode
from .keys import AuditKeyError, check_key, load_key
from .merkle import Frontier, leaf_hash

if TYPE_CHECKING:
    from ..kernel.events import Event
    from ..kernel.kernel import Kernel

# event kinds the recorder copies from the kernel's event stream
AUDITED_EVENTS = frozenset({"signal"})


class AuditUnavailable(SyscallError):
    """The record of an action could not be made durable, so the action was refused."""


class AuditLogError(AgentOSError):
    """The audit log is not in a state a recorder may continue (or re-anchor) from."""


class AuditAnchorLost(AuditLogError):
    """Records were found without the anchor that vouches for them: the recorder refuses to
    start; `agentctl audit reanchor --accept-loss` starts a new epoch, on the record."""


def _json(obj: Any) -> str:
    return encode(obj)


def _decision_data(action: str, args: Any, decision: Any, before_action: bool) -> dict[str, Any]:
    data = {"action": action, "args": args, "allowed": decision.allowed, "rule": decision.rule,
            "effect": decision.effect, "reason": decision.reason}
    if decision.extra:
        data["extra"] = decision.extra
    if before_action and not decision.allowed:
        data["approved"] = True  # an approval-gated action that the channel approved
    return data


def _give_back(release: Callable[[], None] | None) -> None:
    """Run a parked caller's release; it is idempotent (a consumed hold gives back nothing)."""
    if release is not None:
        release()


def _abort_held(release: Callable[[], None] | None, proc: Any) -> bool:
    """The abort of a durable record's action held for a stopped caller: it never runs."""
    _give_back(release)
    return True


CHECKPOINT_EVERY = 1024
ANCHOR_EVERY = 1        # the anchor moves with every group: no executed action's record is left unvouched
ANCHOR_IDLE_S = 0.05    # a live recorder idle this long moves a trailing anchor (off every caller's wait)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1   # what an SQL INTEGER holds
_BACKEND_CALLS = ("append_audit", "audit_records", "read_anchor", "write_anchor")
# the constructor's keyword options, which `open` passes on (and checks before it creates a file)
_OPTIONS = ("now", "wall", "group_commit", "signing_key", "checkpoint_every", "on_checkpoint", "anchor_every")


def _check_options(opts: dict[str, Any]) -> None:
    """Refuse a constructor option the recorder cannot run with, naming it, before anything
    is read or written: a value taken here and used only later would refuse every record
    (or the close) instead. `opts` holds the options given (a missing one has its default)."""
    for name in ("checkpoint_every", "anchor_every"):
        if name in opts:
            v = opts[name]
            if type(v) is not int or v < 1:
                raise ValueError(f"{name} must be a positive int, got {shown(v)}")
    for name, optional in (("now", True), ("wall", False), ("on_checkpoint", True)):
        if name in opts:
            v = opts[name]
            if not (callable(v) or (optional and v is None)):
                raise TypeError(f"{name} must be a callable{' or None' if optional else ''}, got {shown(v)}")
    v = opts.get("group_commit")
    if v is not None and v is not True and v is not False:
        raise TypeError(f"group_commit must be True, False or None, got {shown(v)}")
    v = opts.get("signing_key")
    if v is not None:
        from .checkpoint import _crypto

        ed, _ser = _crypto()
        if not isinstance(v, ed.Ed25519PrivateKey):
            raise AuditKeyError(f"signing_key must be an Ed25519 private key (checkpoint.load_signing_key) "
                                f"or None, got {type(v).__name__}")


def _check_directory(directory: Any) -> str:
    """The recorder's directory as a path string: refused when it is not a path, is empty
    (it would put the log and its key in whatever the current directory is), or names
    something that is not a directory."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path (str or os.PathLike), got {shown(directory)}")
    try:
        d = os.fspath(directory)
    except Exception as e:  # a PathLike whose __fspath__ fails
        raise TypeError(f"directory: its __fspath__ failed ({type(e).__name__})") from None
    if type(d) is not str:
        raise TypeError(f"directory must be a text path, got {shown(d)}")
    if not d:
        raise ValueError(f"directory must name a directory, got {shown(d)}: an empty path would put the "
                         f"audit log and its key in the current directory")
    if "\x00" in d:
        raise ValueError(f"directory must not contain a NUL character, got {shown(d)}")
    if os.path.lexists(d) and not os.path.isdir(d):
        raise AuditLogError(f"cannot open the audit log in {d}: it exists and is not a directory")
    return d


class FlightRecorder:
    def __init__(self, backend: AuditBackend, key: bytes | bytearray | memoryview, *,
                 now: Callable[[], float] | None = None,
                 wall: Callable[[], float] = _time.time,
                 group_commit: bool | None = None,
                 signing_key: Any = None,
                 checkpoint_every: int = CHECKPOINT_EVERY,
                 on_checkpoint: Callable[[Any], None] | None = None,
                 anchor_every: int = ANCHOR_EVERY) -> None:
        """`signing_key`: an Ed25519 private key (checkpoint.load_signing_key); without one
        no checkpoints are signed. `on_checkpoint(cp)` runs on the writer thread after each
        checkpoint is stored: keep it quick (queue the shipping elsewhere). `anchor_every`:
        the most durable records the anchor may trail by before a commit moves it (1: every
        commit moves it, as a second commit per group)."""
        missing = [name for name in _BACKEND_CALLS if not callable(getattr(backend, name, None))]
        if missing:
            raise TypeError(f"backend must be an AuditBackend (with {', '.join(_BACKEND_CALLS)}), "
                            f"got {type(backend).__name__} without {', '.join(missing)}")
        key = check_key(key)
        _check_options({"now": now, "wall": wall, "group_commit": group_commit, "signing_key": signing_key,
                        "checkpoint_every": checkpoint_every, "on_checkpoint": on_checkpoint,
                        "anchor_every": anchor_every})
        self.anchor_every = anchor_every
        self.anchor_writes = 0               # anchor commits (each is a commit of its own file)
        self.anchor_errors = 0               # anchor moves that failed (retried; past 2x the bound, fatal)
        self._anchored = 0                   # the count the stored anchor vouches for (set by _resume)
        self.backend = backend
        self._key = key
        self._now = now or (lambda: _time.monotonic() * 1000.0)
        self._wall = wall
        self.pending: list[AuditRecord] = []
        self._leaves: dict[int, bytes] = {}     # seq -> Merkle leaf hash, made with the MAC's text
        self.commits = 0
        self.seq, self.last = self._resume()
        self.durable = self.seq
        self._durable_last = self.last
        self._signing_key = signing_key
        self.checkpoint_every = checkpoint_every
        self.on_checkpoint = on_checkpoint
        self.checkpoint_errors = 0
        self._frontier, self._checkpointed, self.latest = self._restore_tree()
        self._again = False                  # a `note` arrived while a group commit was writing
        self.group_commit = group_commit     # None: group when the kernel is live (not deterministic)
        self.passes: dict[int, list[str]] = {}      # pid → cleared action keys (one-shot)
        # (seq, proc, req, keys, release): a parked caller, the clearances its records earn,
        # and what to give back (its held reservation) if it never uses them
        self._waiters: list[tuple[int, Any, Any, list[str], Callable[[], None] | None]] = []
        self._lock = threading.Lock()        # one backend writer at a time
        self._turn = threading.Condition(self._lock)
        self._tickets = 0                    # batches taken from `pending`, in chain order
        self._written = 0                    # of those, written (or failed)
        self._flushing = False
        self._kick_due = False               # a group commit is scheduled to start (call_soon)
        self._idle_due = False               # an idle move of the anchor is scheduled (call_later)
        self._executor: ThreadPoolExecutor | None = None
        self._kernel: Kernel | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, durability: str = "fsync",
             key: bytes | bytearray | memoryview | None = None, sign: bool = True, **kw: Any) -> "FlightRecorder":
        """A recorder on the embedded SQLite backend in `directory` (key: env or key file;
        with `sign`, the checkpoint signing key too, created on first use). Every option is
        checked before a file is created: a bad one is refused here, naming it, rather than
        leaving a log (and keys) behind or refusing every record later."""
        directory = _check_directory(directory)
        check_durability(durability)
        if sign is not True and sign is not False:
            raise TypeError(f"sign must be True or False, got {shown(sign)}")
        k = check_key(key) if key is not None else None
        if "backend" in kw:
            raise TypeError("open() makes its own backend: use FlightRecorder(backend, key, ...) for another")
        unknown = [n for n in kw if n not in _OPTIONS]
        if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD
                               for p in inspect.signature(cls.__init__).parameters.values()):
            raise TypeError(f"open() got an unexpected option {shown(unknown[0])}")
        _check_options(kw)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise AuditLogError(f"cannot open the audit log in {directory}: {type(e).__name__}: "
                                f"{e.strerror or e}") from None
        if k is None:
            k = load_key(directory)
        if sign and "signing_key" not in kw:
            from .checkpoint import load_signing_key

            kw["signing_key"] = load_signing_key(directory)
        import sqlite3

        try:
            backend = SqliteAuditBackend(directory, durability)
        except (sqlite3.Error, OSError) as e:
            raise AuditLogError(f"cannot open the audit log in {directory}: {type(e).__name__}: {e}") from None
        try:
            return cls(backend, k, **kw)
        except sqlite3.Error as e:
            backend.close()
            raise AuditLogError(f"cannot read the audit log in {directory}: {type(e).__name__}: {e}") from None
        except BaseException:
            backend.close()
            raise

    @classmethod
    def in_memory(cls, key: bytes, **kw: Any) -> "FlightRecorder":
        return cls(MemoryAuditBackend(), key, **kw)

    def _resume(self) -> tuple[int, str]:
        """Continue an existing chain from its anchor and the valid records past it; refuse
        (AuditAnchorLost) when records are there without an anchor that vouches for them."""
        backend = self.backend
        anchor = backend.read_anchor()
        fix = "; `agentctl audit reanchor --accept-loss` starts a new epoch, on the record"
        if anchor is None:
            for rec in _safe_iter(backend.audit_records(0)):
                n = rec.seq if isinstance(rec, AuditRecord) else "?"
                raise AuditAnchorLost(f"the audit log holds records (the first is {n}) but no anchor: the "
                                      f"anchor was deleted, so a cut tail could not be told{fix}")
            signed = max((size for size, _, _ in getattr(backend, "checkpoints", lambda: ())()
                          if type(size) is int), default=0)
            if signed > 0:  # emptied, anchor and all: the checkpoints beside it remember
                raise AuditAnchorLost(f"the audit log is empty and has no anchor, but a checkpoint signed "
                                      f"beside it covers {signed} record(s): the log was deleted{fix}")
            self._anchored = 0
            return 0, GENESIS
        why = anchor_problem(anchor, self._key)
        if why is not None:
            raise AuditAnchorLost(f"refusing to continue the audit log: {why}{fix}")
        seq, last = anchor.count, anchor.last_mac if anchor.count else GENESIS
        self._anchored = anchor.count  # valid records past it count toward the bound at once
        reached = anchor.count == 0
        for rec in _safe_iter(backend.audit_records(max(anchor.count - 1, 0))):
            if isinstance(rec, BaseException):
                raise AuditLogError(f"the audit log cannot be read past record {seq}: {rec}")
            if not reached:
                if getattr(rec, "seq", None) == anchor.count and getattr(rec, "mac", None) == anchor.last_mac:
                    reached = True
                    continue
                raise AuditAnchorLost(f"refusing to continue the audit log: record {anchor.count} is not the "
                                      f"one the anchor vouches for (the log was rewritten){fix}")
            problem = record_problem(rec)
            if problem is None and (rec.seq != seq + 1 or rec.prev != last or rec.mac != record_mac(
                    self._key, rec.seq, rec.time, rec.wall, rec.pid, rec.kind, rec.data, rec.prev)):
                problem = "it does not continue the chain"
            if problem is not None:
                raise AuditLogError(f"refusing to continue the audit log: record {seq + 1} past the anchor "
                                    f"does not verify ({problem})")
            seq, last = rec.seq, rec.mac
        if not reached:
            n = sum(1 for _ in backend.audit_records(0))
            raise AuditAnchorLost(f"refusing to continue the audit log: it ends at record {n} but the "
                                  f"anchor vouches for {anchor.count} (the tail was cut){fix}")
        return seq, last

    def _restore_tree(self) -> tuple[Frontier, int, Any]:
        """The Merkle frontier of the records so far: from the newest stored checkpoint that
        still matches the log, then the records after it."""
        frontier, signed, latest = Frontier(), 0, None
        stored = getattr(self.backend, "checkpoints", None)
        if stored is not None and self.seq:
            from .checkpoint import Checkpoint

            for size, body, front in stored():
                try:
                    if not isinstance(size, int) or not 0 < size <= self.seq:
                        continue
                    cp = Checkpoint.loads(body)
                    f = Frontier.load(size, json.loads(front))
                    at = next(iter(self.backend.audit_records(size - 1)), None)
                    if cp.size != size or f.root().hex() != cp.root or at is None or at.mac != cp.last_mac:
                        continue
                except (ValueError, TypeError, RecursionError):
                    continue
                frontier, signed, latest = f, size, cp
                break
        if frontier.size < self.seq:
            for rec in _safe_iter(self.backend.audit_records(frontier.size)):
                problem = (f"it cannot be read ({type(rec).__name__})" if isinstance(rec, BaseException)
                           else record_problem(rec))
                if problem is not None:
                    raise AuditLogError(f"refusing to continue the audit log: record {frontier.size + 1} is "
                                        f"malformed ({problem}); `agentctl audit verify` says more")
                assert isinstance(rec, AuditRecord)
                if rec.seq > self.seq:
                    break
                frontier.append(leaf_hash(leaf_data(rec)))
        return frontier, signed, latest

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
            try:
                self._commit(anchor=False)
            except Exception as e:  # the records stay pending and go with the next commit
                k = self._kernel
                if k is not None:
                    k.events.emit(0, "audit_error", f"{type(e).__name__}: {e}")

    # -- writing ----------------------------------------------------------------------
    def append(self, pid: int, kind: str, data: Any) -> AuditRecord:
        """Chain a record now; it becomes durable at the next commit. Encoding is total, and
        nothing is chained unless the record was made whole (else AuditUnavailable)."""
        seq = self.seq + 1
        try:
            rec, leaf = make_record_leaf(self._key, seq, float(self._now()), float(self._wall()), int(pid),
                                         str(kind), encode(data), self.last)
            # a record the verifier would call malformed, or a backend could not store, is
            # refused before it is chained: it must never break the chain behind it
            if not (_INT64_MIN <= rec.pid <= _INT64_MAX and rec.kind and rec.kind.isascii()
                    and math.isfinite(rec.time) and math.isfinite(rec.wall)):
                raise ValueError(f"pid {rec.pid!r:.30}, kind {rec.kind!r:.40}, times {rec.time!r}, "
                                 f"{rec.wall!r}: not a record the log can hold")
        except Exception as e:  # nothing was chained: only this record's action is refused
            raise AuditUnavailable(f"the flight recorder cannot make a {str(kind)[:40]!r} record "
                                   f"({type(e).__name__}: {e})") from e
        self.seq = seq
        self.last = rec.mac
        self.pending.append(rec)
        if leaf is not None:
            self._leaves[seq] = leaf
        return rec

    def commit(self) -> int:
        """Write every pending record in one transaction, then move the anchor to the last
        durable record (even with nothing pending). Returns the count written. Waits for a
        group commit in flight (whose records come first in the chain)."""
        return self._commit(anchor=True)

    def _commit(self, anchor: bool) -> int:
        """`commit`; without `anchor`, the anchor moves only when it trails by `anchor_every`
        records (the per-action path: one commit per group, not two)."""
        pending = self.pending
        if not pending and not (anchor and self._anchored != self.durable):
            return 0
        self.pending = []
        ticket = self._take_ticket()
        try:
            self._write_in_turn(pending, ticket, anchor)
        except BaseException:
            # what did not reach the disk goes back; records already durable (the anchor's
            # move failed after them) do not, or the next commit would write them twice
            unwritten = [r for r in pending if r.seq > self.durable]
            if unwritten:
                self._requeue(unwritten)
            raise
        if self._waiters:
            self._schedule_wake()
        return len(pending)

    def _take_ticket(self) -> int:
        """Batches are written in the order they were taken from `pending` (any thread)."""
        t = self._tickets
        self._tickets = t + 1
        return t

    def _write_in_turn(self, batch: list[AuditRecord], ticket: int, anchor: bool = False) -> None:
        with self._turn:
            while self._written < ticket:
                self._turn.wait()
            try:
                if batch:
                    self._write(batch)
                if anchor:
                    self._anchor_locked()
            finally:
                self._written += 1
                self._turn.notify_all()

    def _requeue(self, batch: list[AuditRecord]) -> None:
        """A batch that failed goes back, in chain order (on the thread that appends)."""
        self.pending = sorted(batch + self.pending, key=lambda r: r.seq)

    def _write(self, batch: list[AuditRecord]) -> None:
        """Under the lock: the records in one commit; then the anchor if it trails by
        `anchor_every` or more. Only ever the records right after the durable ones, so a
        failed batch never leaves a gap for a later one to jump over."""
        if batch[0].seq != self.durable + 1:
            raise AuditLogError(f"records {self.durable + 1}..{batch[0].seq - 1} are not durable yet "
                                f"(an earlier write failed); they are written first")
        if self.durable - self._anchored >= 2 * self.anchor_every:
            # the anchor has failed to move for a whole bound: no more records until it does
            # (raises before anything is written, so the batch goes back whole)
            self._anchor_locked()
        self.backend.append_audit(batch)
        self.durable = batch[-1].seq
        self._durable_last = batch[-1].mac
        self.commits += 1
        leaves = self._leaves
        for rec in batch:
            leaf = leaves.pop(rec.seq, None)
            self._frontier.append(leaf if leaf is not None else leaf_hash(leaf_data(rec)))
        if self.durable - self._anchored >= self.anchor_every:
            try:
                self._anchor_locked()
            except Exception:  # the records are durable; the anchor is retried by the next commit
                self.anchor_errors += 1
        if self._signing_key is not None and self.durable - self._checkpointed >= self.checkpoint_every:
            self._sign_locked()

    def _anchor_locked(self) -> None:
        """Move the anchor to the last durable record (caller holds the lock). Never past
        it: the anchor vouches only for records a crash cannot take back."""
        if self._anchored == self.durable:
            return
        self.backend.write_anchor(make_anchor(self._key, self.durable, self._durable_last))
        self._anchored = self.durable
        self.anchor_writes += 1

    @property
    def anchor_lag(self) -> int:
        """Durable records the stored anchor does not vouch for yet (at most `anchor_every`
        minus one after a commit, unless moving the anchor failed)."""
        return self.durable - self._anchored

    # -- signed checkpoints ---------------------------------------------------------------
    def _sign_locked(self) -> Any:
        """Sign the durable records (caller holds the lock); store and hand out the result."""
        from .checkpoint import sign

        try:
            self._anchor_locked()  # a checkpoint is a point the anchor vouches for too
        except Exception:  # the next commit retries it; the checkpoint does not depend on it
            self.anchor_errors += 1
        f = self._frontier
        if f.size != self.durable:  # pragma: no cover - the frontier follows every write
            raise AuditLogError(f"Merkle frontier at {f.size}, durable records at {self.durable}")
        cp = sign(self._signing_key, f.size, f.root(), self._durable_last, int(self._wall() * 1000))
        writer = getattr(self.backend, "write_checkpoint", None)
        if writer is not None:
            writer(f.size, json.dumps(cp.to_json(), sort_keys=True), json.dumps(f.dump()))
        self._checkpointed = f.size
        self.latest = cp   # the newest checkpoint of this log (None before the first)
        if self.on_checkpoint is not None:
            try:
                self.on_checkpoint(cp)
            except Exception:  # shipping is best effort; the checkpoint is stored
                self.checkpoint_errors += 1
        return cp

    def checkpoint(self) -> Any:
        """Commit what is pending and sign a checkpoint of every durable record now."""
        if self._signing_key is None:
            raise AuditLogError("this recorder has no signing key: no checkpoints")
        self.commit()
        with self._lock:
            if self.latest is not None and self._checkpointed == self.durable:
                return self.latest
            return self._sign_locked()

    # -- records that precede no action ---------------------------------------------------
    def note(self, pid: int, kind: str, data: Any) -> AuditRecord:
        """Chain a record that precedes no action (a refusal, a kill) and get it written
        soon: by a group commit of its own in a live kernel, at once otherwise."""
        rec = self.append(pid, kind, data)
        if self.group_commit and self._kernel is not None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self._commit(anchor=False)
                return rec
            if self._flushing:
                self._again = True
            else:
                self._start_flush()
            return rec
        self._commit(anchor=False)
        return rec

    def write_ahead(self, pid: int, kind: str, data: Any) -> AuditRecord:
        rec = self.append(pid, kind, data)
        self._commit(anchor=False)
        return rec

    def decision(self, pid: int, action: str, args: Any, decision: Any, *, before_action: bool,
                 proc: Any = None, req: Any = None) -> bool:
        """Record a policy decision. With `before_action`: True once the record is durable;
        False when the process has been parked for the group commit (its syscall reruns)."""
        if before_action:
            return self.actions(pid, [(action, args, decision)], proc=proc, req=req)
        self.append(pid, "decision", _decision_data(action, args, decision, False))
        return True

    def actions(self, pid: int, items: list[tuple[str, Any, Any]], *, proc: Any = None, req: Any = None,
                release: Callable[[], None] | None = None) -> bool:
        """Write ahead the records of actions about to run together ((action, args, decision)
        each): True once they are durable; False when the process has been parked, once, for
        the group commit that makes them all durable (its syscall reruns and finds a clearance
        for each). `release(...)` gives back what the caller holds for them (its reservation)
        if it never gets to use them: killed, interrupted, or the commit failed."""
        seq = 0
        for action, args, decision in items:
            seq = self.append(pid, "action", _decision_data(action, args, decision, True)).seq
        k = self._kernel
        if self.group_commit and k is not None and proc is not None and req is not None:
            return self._park(seq, proc, req, [a + "\x00" + _json(b) for a, b, _d in items], release)
        try:
            self._commit(anchor=False)
        except Exception as e:  # fail closed: no durable record, no action
            raise AuditUnavailable(f"{items[0][0]} refused: the flight recorder cannot make its record "
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

    def _park(self, seq: int, proc: Any, req: Any, keys: list[str], release: Callable[[], None] | None) -> bool:
        k = self._kernel
        assert k is not None
        self._waiters.append((seq, proc, req, keys, release))
        k.park(proc, WaitKind.AUDIT, self._withdraw, held=True)
        if not self._flushing and not self._kick_due:
            # not at once: the processes the kernel runs before it next looks at asyncio park
            # here too, and the group that commits holds all of them (one fsync for all)
            self._kick_due = True
            asyncio.get_running_loop().call_soon(self._kick)
        return False

    def _kick(self) -> None:
        self._kick_due = False
        if not self._flushing:
            self._start_flush()

    def _withdraw(self, proc: Any) -> bool:
        """The abort of an audit wait: the caller ended or was interrupted before its record
        became durable. The record stays (it was written ahead); the action never runs, and
        what the caller held for it (its reservation) is given back."""
        mine = [w for w in self._waiters if w[1] is proc]
        self._waiters = [w for w in self._waiters if w[1] is not proc]
        for w in mine:
            _give_back(w[4])
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
        fut = loop.run_in_executor(self._executor, self._write_in_turn, batch, self._take_ticket())
        fut.add_done_callback(lambda f: self._flush_done(f, batch))

    def _flush_done(self, fut: "asyncio.Future[None]", batch: list[AuditRecord]) -> None:
        self._flushing = False
        err = None if fut.cancelled() else fut.exception()
        if err is not None:
            self._requeue(batch)
            self._fail_waiters(err)
            return
        self._wake_durable()
        again, self._again = self._again, False
        loop = asyncio.get_running_loop()
        if (self._waiters or again) and self.pending and not self._kick_due:
            # records that queued up during this write are the next group, joined by those of
            # the processes just woken, which run before asyncio calls `_kick`
            self._kick_due = True
            loop.call_soon(self._kick)
        if self._anchored != self.durable and not self._idle_due:
            self._idle_due = True
            loop.call_later(ANCHOR_IDLE_S, self._idle_anchor)

    def _idle_anchor(self) -> None:
        """A live recorder with nothing to write moves a trailing anchor, on the writer
        thread: no caller waits for it. A busy one is left to `anchor_every` (and to the
        next group commit, which schedules this again)."""
        self._idle_due = False
        if self._flushing or self._kick_due or self.pending or self._anchored == self.durable:
            return
        if self._executor is None:  # pragma: no cover - a group commit ran before this was scheduled
            return
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self._write_in_turn, [],
                                                         self._take_ticket(), True)
        fut.add_done_callback(self._idle_anchor_done)

    def _idle_anchor_done(self, fut: "asyncio.Future[None]") -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.anchor_errors += 1  # retried at the next commit (or idle spell)

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
        for _seq, proc, req, mine, release in ready:
            if proc.state is not EXITED and proc.wait_kind is WaitKind.AUDIT:
                if proc.stopped:  # SIGSTOP: the action runs at SIGCONT, not now
                    k.hold_until_continued(
                        proc, WaitKind.AUDIT, functools.partial(self._rerun, proc, req, mine, release),
                        functools.partial(_abort_held, release))
                    continue
                self._rerun(proc, req, mine, release)
                continue
            _give_back(release)

    def _rerun(self, proc: Any, req: Any, mine: list[str], release: Callable[[], None] | None) -> None:
        """Run a caller's action now that its record is durable, with a pass for each record."""
        k = self._kernel
        assert k is not None
        self.passes.setdefault(proc.pid, []).extend(mine)
        try:
            k.retry_syscall(proc, req)
        finally:
            keys = self.passes.get(proc.pid)
            for key in mine:
                if keys and key in keys:  # the rerun did not use it (revoked cap, ...): drop it
                    keys.remove(key)
            if keys is not None and not keys:
                del self.passes[proc.pid]
            _give_back(release)  # a rerun that consumed what it held left nothing to give back

    def _fail_waiters(self, err: BaseException) -> None:
        k = self._kernel
        from ..kernel.process import EXITED

        waiters, self._waiters = self._waiters, []
        for _seq, proc, _req, keys, release in waiters:
            _give_back(release)
            if k is not None and proc.state is not EXITED and proc.wait_kind is WaitKind.AUDIT:
                action = keys[0].split("\x00", 1)[0] if keys else "the action"
                k.wake(proc, None, AuditUnavailable(
                    f"{action} refused: the flight recorder cannot make its record durable "
                    f"({type(err).__name__}: {err})"))

    def close(self) -> None:
        """Commit what is pending and close the backend. The backend is closed (its thread
        stopped, its files let go) even when the last commit fails; the first error is raised."""
        err: BaseException | None = None
        try:
            self.commit()
            if self._signing_key is not None and self.durable > self._checkpointed:
                with self._lock:
                    self._sign_locked()
        except BaseException as e:
            err = e
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        close = getattr(self.backend, "close", None)
        if close is not None:
            try:
                close()
            except BaseException as e:
                if err is None:
                    err = e
        if err is not None:
            raise err

    # -- reading ----------------------------------------------------------------------
    def records(self) -> Iterable[AuditRecord]:
        return self.backend.audit_records(0)

    def verify(self) -> VerifyReport:
        return verify(self.backend.audit_records(0), self.backend.read_anchor(), self._key)


def reanchor(backend: AuditBackend, key: bytes, *, accept_loss: bool, reason: str = "",
             wall: Callable[[], float] = _time.time) -> AuditRecord:
    """Start a new epoch after a lost anchor, on the record: verify the chain, then append an
    `anchor_lost` record ("anchor lost after record N") and a fresh anchor. Refuses unless
    `accept_loss`, when the anchor is intact, and when the chain itself is broken (that is
    evidence, which re-anchoring must not paper over)."""
    key = check_key(key)
    if not accept_loss:
        raise AuditLogError("re-anchoring accepts that records after the last verifiable one may be "
                            "lost; say so with accept_loss=True (--accept-loss)")
    prev, n = GENESIS, 0
    for rec in _safe_iter(backend.audit_records(0)):
        bad = None
        if isinstance(rec, BaseException):
            bad = f"it cannot be read ({type(rec).__name__})"
        else:
            bad = record_problem(rec)
            if bad is None and (rec.seq != n + 1 or rec.prev != prev or rec.mac != record_mac(
                    key, rec.seq, rec.time, rec.wall, rec.pid, rec.kind, rec.data, rec.prev)):
                bad = "its sequence, link or MAC does not verify"
        if bad is not None:
            raise AuditLogError(f"record {n + 1} does not verify ({bad}): the chain itself is broken. "
                                f"Re-anchoring replaces a lost anchor; it does not rewrite evidence. "
                                f"Keep this log as it is and start a new one elsewhere")
        assert isinstance(rec, AuditRecord)
        n, prev = n + 1, rec.mac
    anchor = backend.read_anchor()
    if anchor is None:
        state = "missing"
    else:
        state = anchor_problem(anchor, key) or ""
        if not state and anchor.count > n:
            state = f"it vouched for {anchor.count} records; the log has {n}"
        elif not state and anchor.count and anchor.count <= n:
            at = next(iter(backend.audit_records(anchor.count - 1)), None)
            if at is None or at.mac != anchor.last_mac:
                state = "it points at a record with another MAC"
    if not state:
        raise AuditLogError(f"nothing to re-anchor: the anchor is intact and matches the log ({n} records)")
    data = encode({"after": n, "anchor": state, "reason": reason})
    rec = make_record(key, n + 1, 0.0, float(wall()), 0, ANCHOR_LOST, data, prev)
    backend.append_audit([rec])
    backend.write_anchor(make_anchor(key, rec.seq, rec.mac))
    return rec
