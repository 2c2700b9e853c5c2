"""Hibernation: waiting processes leave memory for a store, and come back on any event.

Two depths. Any waiting process can have its *context* paged out: memory segments,
mailbox, account, registered names, device table and counters go to the store as one
record, and its coroutine stays (a Python coroutine frame cannot be serialized). A
message loop (`sched/loop.py`) waiting at the top of its loop hibernates *completely*:
its declared state goes too, the coroutine is closed, and the kernel keeps a stub (the
PCB shell, its pid and name: `stub_bytes`, at most 512 bytes) from which the coroutine is
built again on wake.

Invariants:
- Decisions are deterministic: watermarks count resident processes and kernel-accounted
  memory (segment tokens), never the OS's RSS; checks run at one point of the dispatch
  loop (`turn`, after each batch of switches) and on kernel-clock timers (idle timeout),
  and ties break by pid, so a replay hibernates the same processes at the same events.
- Nothing is lost: a record is written (durably, per the store) before anything is freed.
  A store that fails leaves the process resident, counts the error (`hibernate_errors`,
  a `hibernate_error` event). A wake whose record cannot be read leaves the process
  hibernated and queues what woke it (message, signal, timer, exit) in order; the next
  turn retries. Queued messages count against its `max_mailbox`.
- What comes back is what left: records hold values in the lossless codec of
  `sched/plain.py` (a queued `Down` is a `Down` again); a process holding a value that
  codec cannot hold stays resident. A record read back is checked field by field against
  the process before anything changes; a malformed one is a `HibernationRecordError`
  that fails that wake only.
- Budgets are conserved: a stored account is only a usage vector (an account with no
  limits of its own draws on its parent's bank and is no one's bank); an account with
  limits of its own, or of a process with live children, stays resident (others draw on
  it). Memory stays charged while hibernated, so a wake can never fail for budget.
- A hibernated process's capabilities are nodes of the revocation tree: a non-empty
  table stays resident (revoking an ancestor still reaches them); the record holds their
  descriptions for `export`.
"""
from __future__ import annotations

import heapq
import math
import sys as _sys
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable

from ..abi.errors import KernelError
from ..abi.types import KERNEL_PID, Message, ProcState, Segment, SegmentKind, WaitKind
from ..kernel.accounts import Account
from ..kernel.events import dumps_canonical
from ..kernel.memory import kernel_text
from ..kernel.process import EXITED, READY, WAITING, ZERO, Cold, Process
from ..kernel.trap import Sys
from . import loop as L
from . import plain
from .config import SchedConfigError, _shown, typed_init
from .hibstore import HibernationStore, MemoryHibernationStore
from .plain import NotPlain

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel

HIBERNATED = ProcState.HIBERNATED
RECORD_VERSION = 2   # 2: values in the lossless codec of sched/plain.py
STUB_LIMIT = 512
_NO_CAPS: Any = MappingProxyType({})   # a hibernated process with no caps holds this shared empty table
_WAITS = (WaitKind.RECV, WaitKind.SLEEP, WaitKind.WAITPID)


class HibernationConfigError(SchedConfigError):
    """A hibernation setting that cannot be used (names the field and the value)."""


MAX_WATERMARK = 1 << 40   # past any process or token count a kernel reaches: a larger one is a mistake


@dataclass(frozen=True)
class HibernationConfig:
    """Kernel settings for hibernation (`KernelConfig.hibernation`).

    Invariant: an instance that exists is valid. A watermark that is not an int in
    1..2**40 (None: off), a `low_water` outside (0, 1] or not finite, an `idle` that is
    not a bool, or a store without the `HibernationStore` methods is a
    `HibernationConfigError` (a `SchedConfigError`, so a `KernelError`) naming the field."""

    store: HibernationStore | None = None  # None: a MemoryHibernationStore
    max_resident: int | None = None        # hibernate past this many resident processes
    max_mem_tokens: int | None = None      # ... or past this many resident segment tokens
    low_water: float = 0.9                 # hibernate down to this fraction of a watermark
    idle: bool = True                      # honour images' idle_ms

    def __post_init__(self) -> None:
        for f in ("max_resident", "max_mem_tokens"):
            v = getattr(self, f)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise HibernationConfigError(f"hibernation.{f} must be an int >= 1 or None, got {_shown(v)}")
            v = int.__index__(v)
            if not 1 <= v <= MAX_WATERMARK:
                raise HibernationConfigError(f"hibernation.{f} must be in 1..{MAX_WATERMARK} or None, "
                                             f"got {_shown(v)}")
            object.__setattr__(self, f, v)
        lw = self.low_water
        if isinstance(lw, bool) or not isinstance(lw, (int, float)):
            raise HibernationConfigError(f"hibernation.low_water must be a number in (0, 1], got {_shown(lw)}")
        try:
            lwf = int.__float__(lw) if isinstance(lw, int) else float.__float__(lw)
        except OverflowError:
            lwf = math.inf
        if not (math.isfinite(lwf) and 0.0 < lwf <= 1.0):
            raise HibernationConfigError(f"hibernation.low_water must be a number in (0, 1], got {_shown(lw)}")
        object.__setattr__(self, "low_water", lwf)
        if self.idle is not True and self.idle is not False:
            raise HibernationConfigError(f"hibernation.idle must be true or false, got {_shown(self.idle)}")
        st = self.store
        if st is not None and not all(callable(getattr(st, m, None)) for m in ("put_many", "get", "delete_many")):
            raise HibernationConfigError(f"hibernation.store must have put_many, get and delete_many, "
                                         f"got a {type(st).__name__}")

    def describe(self) -> dict[str, Any]:
        """What a recorded run keeps (the store is not part of it)."""
        return {"max_resident": self.max_resident, "max_mem_tokens": self.max_mem_tokens,
                "low_water": self.low_water, "idle": self.idle}


typed_init(HibernationConfig, HibernationConfigError, "hibernation")


def stub_bytes(proc: Process) -> int:
    """What the kernel keeps of a completely hibernated process: the PCB shell, its pid and
    its name (unless shared with its image), and whatever lists it still holds, its `Cold`
    fields' object included. Shared objects (None, the empty cap table, `ZERO`, small ints)
    cost it nothing."""
    n = _sys.getsizeof(proc) + _sys.getsizeof(proc.pid)
    if proc.name is not proc.image.name:
        n += _sys.getsizeof(proc.name)
    for f in Process.__slots__:
        if f in ("pid", "name", "image", "parent", "state", "wait_kind"):
            continue
        v = getattr(proc, f)
        if type(v) is Cold:
            n += _sys.getsizeof(v) + sum(_own_bytes(getattr(v, g)) for g in Cold.__slots__)
        else:
            n += _own_bytes(v)
    return n


def _own_bytes(v: Any) -> int:
    if v is None or v is _NO_CAPS or v is ZERO or v == () or type(v) is bool or (type(v) is int and -5 <= v <= 256):
        return 0
    return _sys.getsizeof(v)


class Hibernator:
    """The kernel's hibernation machinery (`kernel.hibernation`)."""

    def __init__(self, kernel: "Kernel", config: HibernationConfig) -> None:
        if not isinstance(config, HibernationConfig):
            raise HibernationConfigError(f"hibernation must be a HibernationConfig or None, got {type(config).__name__}")
        self.k = kernel
        self.cfg = config
        self.store: HibernationStore = config.store if config.store is not None else MemoryHibernationStore()
        self.resident: dict[int, Process] = {}   # live processes not hibernated, in spawn/wake order
        self.kids: dict[int, int] = {}           # live children per parent pid
        self.count = 0                           # hibernated now
        self.full = 0                            # of those, completely (stub only)
        self.hibernations = 0
        self.wakes = 0
        self.errors = 0
        self.forfeits = 0                        # ended without their (malformed) record
        self._deferred: dict[int, list[tuple[Any, ...]]] = {}  # woken, record unreadable
        self._idle: dict[int, list[Any]] = {}    # pid -> idle timer entry
        self._stale: list[str] = []              # records of woken or ended processes, deleted in batches
        self._calls = 0                          # store calls made, numbering their journal entries
        self._unplain: dict[int, tuple[tuple[int, int], str]] = {}  # pid -> (its mark, why it stays)
        kernel._on_spawn.append(self._spawned)
        kernel._on_exit.append(self._exited)
        if config.idle:
            from ..abi.syscalls import Recv

            self._recv = kernel._table[Recv][0]
            kernel.install_syscall(Recv, self._sys_recv)

    # -- bookkeeping hooks ------------------------------------------------------------
    def _spawned(self, proc: Process) -> None:
        self.resident[proc.pid] = proc
        par = proc.parent
        if par is not None:
            self.kids[par.pid] = self.kids.get(par.pid, 0) + 1

    def _exited(self, proc: Process, reason: Any) -> None:
        self._stale.append(_key(proc.pid))  # it may have a stale record (woken once)
        self.resident.pop(proc.pid, None)
        self._unplain.pop(proc.pid, None)
        self.k.timers.cancel(self._idle.pop(proc.pid, None))
        par = proc.parent
        if par is not None:
            n = self.kids.get(par.pid, 0) - 1
            if n > 0:
                self.kids[par.pid] = n
            else:
                self.kids.pop(par.pid, None)

    def _sys_recv(self, proc: Process, req: Any) -> Any:
        """Recv, arming the image's idle timeout when a loop parks at its top."""
        out = self._recv(proc, req)
        if proc.state is WAITING:
            idle_ms = getattr(proc.image.main, "_agentos_idle_ms", None)
            # what `message_loop` sets is a finite float > 0; anything else on a hand-made
            # image (NaN, 10**400, a str) would corrupt the timer heap: no idle timeout
            if type(idle_ms) is float and 0.0 < idle_ms < math.inf:  # (NaN fails both)
                k = self.k
                k.timers.cancel(self._idle.get(proc.pid))
                self._idle[proc.pid] = k.timers.add(k.clock.now() + idle_ms, self._idle_fired, proc)
        return out

    def _idle_fired(self, proc: Process) -> None:
        if self._idle.get(proc.pid) is None or proc.state is not WAITING:
            return
        self._idle.pop(proc.pid, None)
        if self.why_not(proc) is None:
            self._hibernate([proc], "idle")

    # -- choosing ---------------------------------------------------------------------
    def why_not(self, proc: Process) -> str | None:
        """Why `proc` cannot hibernate now, or None if it can."""
        if proc.state is not WAITING:
            return f"it is {proc.state.value}, not waiting"
        if proc is self.k.init or proc.parent is None:
            return "it is the kernel's root process"
        if proc.wait_kind not in _WAITS:
            return f"it waits for {proc.wait_kind.value if proc.wait_kind else '?'} (only recv, sleep and waitpid waits hibernate)"
        if proc.stopped or proc.io is not None or proc.handles or proc.wait_held or proc.handlers is not None:
            return "it has I/O, a device handle, a stop or an interrupt pending"
        if (proc.cold is not None and proc.cold.pending_signals) or proc.blocked_senders \
                or proc.blocked_on is not None:
            return "it has masked signals pending or blocked senders"
        if self.k.sched_protected(proc):
            return "the scheduler protects it"
        np = self._unplain.get(proc.pid)
        if np is not None and np[0] == _mark(proc):
            return np[1]  # found before, and nothing it holds has changed since
        return None

    def turn(self) -> None:
        """At a deterministic point of the loop: retry deferred wakes, then hibernate the
        lowest-scored waiting processes while a watermark is passed."""
        if self._deferred:
            for pid in sorted(self._deferred):
                proc = self.k.procs.get(pid)
                if proc is not None and proc.state is HIBERNATED:
                    self.thaw(proc)
        if len(self._stale) >= 1024:
            self._drop_stale(())
        cfg = self.cfg
        need = 0
        if cfg.max_resident is not None and len(self.resident) > cfg.max_resident:
            need = len(self.resident) - int(cfg.max_resident * cfg.low_water)
        mem_over = False
        if cfg.max_mem_tokens is not None:
            mem_over = self.resident_tokens() > cfg.max_mem_tokens
        if need <= 0 and not mem_over:
            return
        score = self.k.sched_score
        cands = [p for p in self.resident.values() if self.why_not(p) is None]
        if not cands:
            return
        if mem_over:
            goal = int(cfg.max_mem_tokens * cfg.low_water)  # type: ignore[operator]
            order = heapq.nsmallest(len(cands), cands, key=lambda p: (score(p), p.pid))
            have = self.resident_tokens()
            victims: list[Process] = []
            for p in order:
                if have <= goal and len(victims) >= need:
                    break
                victims.append(p)
                have -= p.memory.resident_tokens if p.memory is not None else 0
        else:
            victims = heapq.nsmallest(need, cands, key=lambda p: (score(p), p.pid))
        self._hibernate(victims, "watermark")

    def resident_tokens(self) -> int:
        """Kernel-accounted memory of resident processes (segment tokens)."""
        return sum(p.memory.resident_tokens for p in self.resident.values() if p.memory is not None)

    # -- hibernate --------------------------------------------------------------------
    def hibernate(self, proc: Process) -> bool:
        """Hibernate one process now (operators, tests). KernelError says why it cannot."""
        why = self.why_not(proc)
        if why is None:
            done = self._hibernate([proc], "request")
            if done == 1 or proc.pid not in self._unplain:
                return done == 1
            why = self._unplain[proc.pid][1]
        raise KernelError(f"hibernate: pid {proc.pid} cannot hibernate now: {why}")

    def _hibernate(self, victims: list[Process], cause: str) -> int:
        recs = []
        for p in victims:
            try:
                recs.append((p, self._record(p)))
            except NotPlain as e:  # stored, it would come back as something else: it stays
                self._unplain[p.pid] = (_mark(p), str(e))
        if not recs:
            return 0
        items = [(_key(p.pid), blob) for p, (blob, _) in recs]
        if self._stale:
            self._drop_stale({k for k, _ in items})  # before the puts: never delete a fresh record
        failed = self._store_call("put", lambda: self.store.put_many(items))[1]
        if failed is not None:  # the store went away: nothing was freed, nothing is lost
            self.errors += 1
            self.k.events.emit(KERNEL_PID, "hibernate_error", (len(items), failed))
            return 0
        for p, (blob, full) in recs:
            self._unplain.pop(p.pid, None)
            self._free(p, full)
            self.k.events.emit(p.pid, "hibernate", (cause, "full" if full else "context", len(blob)))
        return len(recs)

    def _record(self, p: Process) -> tuple[bytes, bool]:
        """The process's record (canonical JSON) and whether it hibernates completely.
        `NotPlain` if its mailbox or context holds a value the record cannot hold exactly
        (it stays resident); a loop whose state or args are not plain pages out its
        context only (the state stays in its coroutine)."""
        acct = p.account
        own = acct is None or any(b is acct for b in acct.bank) or self.kids.get(p.pid, 0) > 0
        rec: dict[str, Any] = {
            "v": RECORD_VERSION, "pid": p.pid,
            "mailbox": [_msg(m) for m in p.mailbox or ()],
            "memory": _space(p.memory), "names": sorted(p.names) if p.names else None,
            "devices": [[d, r] for d, r in sorted(p.devices.items())] if p.devices else None,
            "counters": [p.started, p.reductions, p.syscalls, p.op_index],
            "account": None if own else list(acct.used),  # type: ignore[union-attr]
            "caps": [dict(c.describe(), ref=r) for r, c in sorted(p.caps.items())],
        }
        full = False
        coro = p.coro
        if (p.wait_kind is WaitKind.RECV and p.recv_match is True and p.timer is None
                and L.is_loop(coro)):
            idle, state = L.idle_state(coro)
            if idle:
                try:
                    enc = plain.encode(state, "the loop's state")
                    args = plain.encode(p.args, "the loop's args")
                except NotPlain:  # kept in the coroutine, which stays: only the context goes
                    pass
                else:
                    rec["loop"] = {"state": enc, "args": args, "seq": p.sys._seq,  # type: ignore[union-attr]
                                   "spawn_caps": list(p.spawn_caps)}
                    full = True
        try:
            return dumps_canonical(rec).encode(), full
        except (ValueError, UnicodeEncodeError, RecursionError) as e:  # a name, a device: not stored
            raise NotPlain(f"its record cannot be written ({type(e).__name__})") from None

    def _free(self, p: Process, full: bool) -> None:
        k = self.k
        self.resident.pop(p.pid, None)
        k.timers.cancel(self._idle.pop(p.pid, None))
        p.mailbox = None
        p.memory = None
        p.names = None
        p.devices = None
        p.last_msg = None
        p.started = ZERO
        if p.cold is not None and p.cold.empty():  # a mask set and cleared again, say
            p.cold = None
        p.reductions = p.syscalls = p.op_index = 0
        acct = p.account
        if acct is not None and not any(b is acct for b in acct.bank) and self.kids.get(p.pid, 0) == 0:
            p.account = None
        if not p.caps:
            p.caps = _NO_CAPS
        if full:
            coro = p.coro
            p.coro = None
            p.sys = None
            p.args = None
            p.spawn_caps = ()
            p.recv_match = None
            p.abort = None
            p.wait_kind = None
            coro.close()  # at the loop's top: no program code is active, nothing runs
            self.full += 1
        p.state = HIBERNATED
        self.count += 1
        self.hibernations += 1

    # -- wake -------------------------------------------------------------------------
    def thaw(self, p: Process, cause: str = "event", *, strict: bool = False) -> bool:
        """Bring `p` back; False (and the error counted) when its record cannot be read.
        With `strict`, a record that was read but is malformed is a `HibernationRecordError`
        instead (an operator's wake says why); `p` stays hibernated either way."""
        if p.state is not HIBERNATED:
            return True
        key = _key(p.pid)

        def read() -> Any:
            blob = self.store.get(key)
            if blob is None:
                raise KeyError(f"no record {key}")
            return _checked_record(p, blob)

        rec, failed = self._store_call("get", read)
        if failed is not None:
            self.errors += 1
            self.k.events.emit(p.pid, "hibernate_error", (0, f"wake: {failed}"))
            if strict and failed.startswith(HibernationRecordError.__name__):
                raise HibernationRecordError(f"wake: pid {p.pid}: {failed}")
            return False
        self._restore(p, rec)
        self._stale.append(key)  # deleted with others later: one store round trip for many
        self.wakes += 1
        self.k.events.emit(p.pid, "wake", cause)
        pending = self._deferred.pop(p.pid, None)
        if pending:
            self._redo(p, pending)
        return True

    def thaw_for_exit(self, p: Process, cause: str = "exit") -> bool:
        """Bring `p` back so it can end; False while its store cannot be read (the end is
        deferred and retried each turn, as a wake is).

        A record that was read but is malformed will not get better, and an operator's
        SIGKILL must not wait on it: `p` ends without it. What the record held is
        forfeit: its usage (attribution only: the parent's pool was charged when it was
        spent) and its memory charge, which stays charged to the parent's pool; nothing is
        returned, so nothing is minted. A `hibernate_forfeit` event says so."""
        try:
            return self.thaw(p, cause, strict=True)
        except HibernationRecordError as e:
            self._forfeit(p, str(e))
            return True

    def _forfeit(self, p: Process, why: str) -> None:
        if p.coro is None:
            self.full -= 1  # a stub: _restore counts a loop's return only from its record
        par = p.parent
        used = [0] * len(par.account.used) if par is not None and par.account is not None else None
        self._restore(p, _Record(used, (p.started, p.reductions, p.syscalls, p.op_index), None, None, None, [],
                                 None))
        self._stale.append(_key(p.pid))
        self._deferred.pop(p.pid, None)  # what waited for it dies with it (dead letters)
        self.forfeits += 1
        self.k.events.emit(p.pid, "hibernate_forfeit", why[:300])

    def _restore(self, p: Process, rec: "_Record") -> None:
        """Put a checked record back (nothing here can fail: `_checked_record` ran)."""
        k = self.k
        if p.caps is _NO_CAPS:
            p.caps = {}
        if rec.account is not None:
            a = Account.thin(p.pid, p.parent.account.bank)  # type: ignore[union-attr]
            a.used = rec.account
            p.account = a
        p.started, p.reductions, p.syscalls, p.op_index = rec.counters
        if rec.names:
            p.names = set(rec.names)
        if rec.devices:
            p.devices = dict(rec.devices)
        if rec.memory is not None:
            next_id, summaries, tokens, resident, swap = rec.memory
            sp = k.memory.space(p)
            sp.next_id, sp.summaries, sp.resident_tokens = next_id, summaries, tokens
            for rows, segs in ((sp.resident, resident), (sp.swap, swap)):
                for seg in segs:
                    rows[seg.id] = seg
            segs = resident + swap
            if segs:  # the index is rebuilt on first use, in id order: as it was built
                sp.recaller = _LazyIndex(sp, sorted(segs, key=lambda s: s.id))
        if rec.mailbox:
            from collections import deque

            p.mailbox = deque(rec.mailbox)
        self.count -= 1
        self.resident[p.pid] = p
        lp = rec.loop
        if lp is not None:
            self.full -= 1
            state, args, seq, spawn_caps = lp
            sys = Sys(spawn_caps)
            sys._seq = seq
            p.sys = sys
            p.args = args
            p.spawn_caps = sys.caps
            p.coro = L.resume(p.image, sys, args, state)
            p.resume_value = None
            p.resume_exc = None
            p.state = READY  # it runs from the top of its loop, and recv takes what woke it
            k.runq.push(p)
        else:
            p.state = WAITING

    def _drop_stale(self, keep: Any) -> None:
        stale = [k for k in dict.fromkeys(self._stale) if k not in keep]
        self._stale = []
        if not stale:
            return
        failed = self._store_call("delete", lambda: self.store.delete_many(stale))[1]
        if failed is not None:  # a stale record is harmless: the next hibernation overwrites it
            self.errors += 1
            self.k.events.emit(KERNEL_PID, "hibernate_error", (len(stale), f"delete: {failed}"))

    def _store_call(self, kind: str, call: Callable[[], Any]) -> tuple[Any, str | None]:
        """Run one store call: (its result, None), or (None, what went wrong).

        A store failure is an input from outside the program, so a live kernel journals it
        (pid 0, the n-th store call's index below `_STORE_INDEX`) and a replaying kernel,
        whose store is its own, fails the same call with the same text and succeeds the
        others: a run in which the store failed replays byte for byte."""
        from ..kernel.journal import JournalEntry

        n = self._calls
        self._calls += 1
        k = self.k
        journal = k.journal
        if k.replaying:
            e = journal.lookup(KERNEL_PID, _STORE_INDEX - n) if journal is not None else None
            if e is not None and e.op == _STORE_OP and e.action == kind:
                return None, str(e.value)
        try:
            return call(), None
        except Exception as e:
            text = f"{type(e).__name__}: {str(e)[:200]}"
            if not k.replaying and journal is not None:
                journal.record(JournalEntry(KERNEL_PID, _STORE_INDEX - n, _STORE_OP, "hibernate", kind, None,
                                            False, text, type(e).__name__))
            return None, text

    def defer(self, p: Process, action: tuple[Any, ...]) -> None:
        """Keep what woke `p` while its record cannot be read; replayed in order on wake."""
        self._deferred.setdefault(p.pid, []).append(action)

    def deferred_messages(self, p: Process) -> int:
        """Messages kept for `p` while its record cannot be read: they count against its
        `max_mailbox` (a send past it parks the sender, as a full mailbox does)."""
        acts = self._deferred.get(p.pid)
        return sum(1 for a in acts if a[0] == "msg") if acts else 0

    def _redo(self, p: Process, pending: list[tuple[Any, ...]]) -> None:
        k = self.k
        for act in pending:
            if p.state is EXITED:
                return
            kind = act[0]
            if kind == "msg":
                k.ipc.deliver(p, act[1])
            elif kind == "wake":
                k.wake(p, act[1], act[2])
            elif kind == "sig":
                k.signals.deliver(p, act[1], act[2], act[3])
            elif kind == "exit":
                k.terminate(p, act[1], act[2])

    def metrics(self) -> dict[str, int]:
        return {"hibernated": self.count, "hibernated_full": self.full, "hibernations": self.hibernations,
                "hibernate_wakes": self.wakes, "hibernate_errors": self.errors}


class _LazyIndex:
    """A woken process's recaller, rebuilt from its segments on first use (most wakes are
    for a message, not a recall): then it puts the real one in its place."""

    __slots__ = ("sp", "segs", "factory")

    def __init__(self, sp: Any, segs: list[Segment]) -> None:
        self.sp = sp
        self.segs = segs
        self.factory = sp.recaller  # the fresh, empty recaller `space()` made

    def _real(self) -> Any:
        rec = self.factory
        for seg in self.segs:
            b = seg.body
            rec.add(seg.id, b if type(b) is str else kernel_text("memory", b))
        self.sp.recaller = rec
        self.segs = []
        return rec

    def add(self, seg_id: int, body: Any) -> None:
        self._real().add(seg_id, body)

    def remove(self, seg_id: int) -> None:
        self._real().remove(seg_id)

    def search(self, query: str, k: int) -> list[int]:
        return self._real().search(query, k)

    def __getattr__(self, name: str) -> Any:  # a recaller's other methods (vector recallers)
        return getattr(self._real(), name)


_STORE_OP = "hibernate.store_error"
_STORE_INDEX = -(1 << 40)   # pid 0's journal indices from here down number the store calls


def _key(pid: int) -> str:
    return f"hib/{pid}"


def _mark(p: Process) -> tuple[int, int]:
    """What changes when a waiting process's values may have: a syscall it made, a message
    queued for it (a non-plain finding is kept until then, so a turn does not encode again)."""
    return (p.syscalls, len(p.mailbox) if p.mailbox else 0)


def _msg(m: Message) -> list[Any]:
    return [m.sender, plain.encode(m.body, "its mailbox"), list(m.caps), plain.encode(m.corr, "its mailbox"),
            m.deadline, m.sent]


def _space(sp: Any) -> dict[str, Any] | None:
    if sp is None:
        return None
    def seg(s: Segment) -> list[Any]:
        return [s.id, plain.encode(s.body, "its context"), s.tokens, s.kind.value, s.created, list(s.covers)]
    return {"next_id": sp.next_id, "summaries": sp.summaries, "tokens": sp.resident_tokens,
            "resident": [seg(s) for s in sp.resident.values()], "swap": [seg(s) for s in sp.swap.values()]}


class HibernationRecordError(KernelError):
    """A hibernation record that cannot be used: not JSON, a wrong type, a missing key, or
    not the record of this process. The wake fails (counted, journaled as a store call
    that failed); the process stays hibernated and the kernel carries on."""


@dataclass
class _Record:
    """A record read back and checked, as Python values ready to put in place."""

    account: list[int] | None
    counters: tuple[float, int, int, int]
    names: list[str] | None
    devices: list[tuple[str, int]] | None
    memory: tuple[int, int, int, list[Segment], list[Segment]] | None
    mailbox: list[Message]
    loop: tuple[Any, Any, int, tuple[int, ...]] | None


_SEGMENT_KINDS = {k.value: k for k in SegmentKind}


def _checked_record(p: Process, blob: Any) -> _Record:
    """Decode `p`'s record defensively: every field's type and shape is checked, and that it
    fits `p` as hibernated (its pid, a paged-out account, a closed loop), before anything is
    changed. `HibernationRecordError` says what is wrong."""
    try:
        return _decode_record(p, plain.loads(blob))
    except HibernationRecordError:
        raise
    except (plain.Malformed, KeyError, TypeError, ValueError, RecursionError) as e:
        text = str(e) if isinstance(e, plain.Malformed) else f"{type(e).__name__} {str(e)[:80]}"
        raise HibernationRecordError(f"the record of pid {p.pid} is malformed: {text}") from None


def _want(ok: bool, what: str) -> None:
    if not ok:
        raise plain.Malformed(what)


def _int(v: Any, lo: int = 0) -> bool:
    return type(v) is int and lo <= v < 1 << 63


def _decode_record(p: Process, rec: Any) -> _Record:
    _want(type(rec) is dict, "not an object")
    _want(rec.get("v") == RECORD_VERSION and type(rec.get("v")) is int, f"not a version {RECORD_VERSION} record")
    _want(rec.get("pid") == p.pid and type(rec.get("pid")) is int, "the record of another process")
    acct = rec["account"]
    if acct is not None:
        _want(type(acct) is list and len(acct) == 5 and all(_int(x) for x in acct), "account is not 5 counts")
        _want(p.account is None and p.parent is not None and p.parent.account is not None,
              "an account for a process whose account stayed resident")
    c = rec["counters"]
    _want(type(c) is list and len(c) == 4 and _finite(c[0]) and all(_int(x) for x in c[1:]), "counters")
    names = rec["names"]
    _want(names is None or (type(names) is list and all(type(n) is str for n in names)), "names")
    devs = rec["devices"]
    _want(devs is None or (type(devs) is list and all(type(d) is list and len(d) == 2 and type(d[0]) is str
                                                      and _int(d[1]) for d in devs)), "devices")
    _want(type(rec["caps"]) is list and all(type(c) is dict for c in rec["caps"]), "caps")
    memory = None
    mem = rec["memory"]
    if mem is not None:
        _want(type(mem) is dict, "memory")
        next_id, summaries, tokens = mem["next_id"], mem["summaries"], mem["tokens"]
        _want(_int(next_id, 1) and _int(summaries) and _int(tokens), "memory counts")
        parts = []
        for where in ("resident", "swap"):
            rows = mem[where]
            _want(type(rows) is list, f"memory.{where}")
            segs = []
            for row in rows:
                _want(type(row) is list and len(row) == 6, "a segment is not [id, body, tokens, kind, created, covers]")
                sid, body, stoks, kind, created, covers = row
                _want(_int(sid, 1) and _int(stoks) and type(kind) is str and kind in _SEGMENT_KINDS
                      and _finite(created) and type(covers) is list and all(_int(x) for x in covers),
                      "a segment's fields have the wrong types")
                segs.append(Segment(sid, plain.decode(body, "a segment"), stoks, _SEGMENT_KINDS[kind],
                                    float(created), tuple(covers)))
            parts.append(segs)
        memory = (next_id, summaries, tokens, parts[0], parts[1])
    mbox = rec["mailbox"]
    _want(type(mbox) is list, "mailbox")
    msgs = []
    for row in mbox:
        _want(type(row) is list and len(row) == 6, "a message is not [sender, body, caps, corr, deadline, sent]")
        sender, body, caps, corr, deadline, sent = row
        _want(_int(sender) and type(caps) is list and all(_int(x) for x in caps) and _int(sent)
              and (deadline is None or _finite(deadline)), "a message's fields have the wrong types")
        msgs.append(Message(sender, plain.decode(body, "a message"), tuple(caps), plain.decode(corr, "a message"),
                            deadline, sent))
    loop = None
    lp = rec.get("loop")
    if lp is not None:
        _want(type(lp) is dict, "loop")
        seq, spawn_caps = lp["seq"], lp["spawn_caps"]
        _want(_int(seq) and type(spawn_caps) is list and all(_int(x) for x in spawn_caps), "loop seq or caps")
        loop = (plain.decode(lp["state"], "the loop's state"), plain.decode(lp["args"], "the loop's args"),
                seq, tuple(spawn_caps))
    _want((loop is not None) == (p.coro is None), "a loop record for a process that kept its coroutine, or none "
                                                  "for one that did not")
    return _Record(None if acct is None else list(acct), (float(c[0]), c[1], c[2], c[3]),
                   names, [(d, r) for d, r in devs] if devs else None, memory, msgs, loop)


def _finite(v: Any) -> bool:
    return (type(v) is int and -(1 << 63) <= v < 1 << 63) or (type(v) is float and math.isfinite(v))


__all__ = ["HibernationConfig", "HibernationConfigError", "HibernationRecordError", "Hibernator", "STUB_LIMIT",
           "stub_bytes"]
