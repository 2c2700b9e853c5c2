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
  turn retries.
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
import json
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
from ..kernel.recording import decode_value, encode_value
from ..kernel.trap import Sys
from . import loop as L
from .config import SchedConfigError, _shown
from .hibstore import HibernationStore, MemoryHibernationStore

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel

HIBERNATED = ProcState.HIBERNATED
RECORD_VERSION = 1
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
        self._deferred: dict[int, list[tuple[Any, ...]]] = {}  # woken, record unreadable
        self._idle: dict[int, list[Any]] = {}    # pid -> idle timer entry
        self._stale: list[str] = []              # records of woken or ended processes, deleted in batches
        self._calls = 0                          # store calls made, numbering their journal entries
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
            if idle_ms is not None:
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
        if why is not None:
            raise KernelError(f"hibernate: pid {proc.pid} cannot hibernate now: {why}")
        return self._hibernate([proc], "request") == 1

    def _hibernate(self, victims: list[Process], cause: str) -> int:
        recs = []
        for p in victims:
            recs.append((p, self._record(p)))
        items = [(_key(p.pid), blob) for p, (blob, _) in recs]
        if self._stale:
            self._drop_stale({k for k, _ in items})  # before the puts: never delete a fresh record
        failed = self._store_call("put", lambda: self.store.put_many(items))[1]
        if failed is not None:  # the store went away: nothing was freed, nothing is lost
            self.errors += 1
            self.k.events.emit(KERNEL_PID, "hibernate_error", (len(items), failed))
            return 0
        for p, (blob, full) in recs:
            self._free(p, full)
            self.k.events.emit(p.pid, "hibernate", (cause, "full" if full else "context", len(blob)))
        return len(recs)

    def _record(self, p: Process) -> tuple[bytes, bool]:
        """The process's record (canonical JSON) and whether it hibernates completely."""
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
                    enc = encode_value(state)
                    json.dumps(enc, allow_nan=False)
                    rec["loop"] = {"state": enc, "args": encode_value(p.args), "seq": p.sys._seq,  # type: ignore[union-attr]
                                   "spawn_caps": list(p.spawn_caps)}
                    full = True
                except Exception:  # state that is not plain data: page out the context only
                    full = False
        return dumps_canonical(rec).encode(), full

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
    def thaw(self, p: Process, cause: str = "event") -> bool:
        """Bring `p` back; False (and the error counted) when its record cannot be read."""
        if p.state is not HIBERNATED:
            return True
        key = _key(p.pid)
        def read() -> Any:
            blob = self.store.get(key)
            if blob is None:
                raise KeyError(f"no record {key}")
            return json.loads(blob)

        rec, failed = self._store_call("get", read)
        if failed is not None:
            self.errors += 1
            self.k.events.emit(p.pid, "hibernate_error", (0, f"wake: {failed}"))
            return False
        self._restore(p, rec)
        self._stale.append(key)  # deleted with others later: one store round trip for many
        self.wakes += 1
        self.k.events.emit(p.pid, "wake", cause)
        pending = self._deferred.pop(p.pid, None)
        if pending:
            self._redo(p, pending)
        return True

    def _restore(self, p: Process, rec: dict[str, Any]) -> None:
        k = self.k
        if p.caps is _NO_CAPS:
            p.caps = {}
        if rec["account"] is not None:
            a = Account.thin(p.pid, p.parent.account.bank)  # type: ignore[union-attr]
            a.used = [int(x) for x in rec["account"]]
            p.account = a
        p.started, p.reductions, p.syscalls, p.op_index = rec["counters"]
        if rec["names"]:
            p.names = set(rec["names"])
        if rec["devices"]:
            p.devices = {d: r for d, r in rec["devices"]}
        mem = rec["memory"]
        if mem is not None:
            sp = k.memory.space(p)
            sp.next_id, sp.summaries, sp.resident_tokens = mem["next_id"], mem["summaries"], mem["tokens"]
            segs = []
            for where, rows in (("resident", sp.resident), ("swap", sp.swap)):
                for sid, body, tokens, kind, created, covers in mem[where]:
                    seg = Segment(sid, decode_value(body), tokens, SegmentKind(kind), created, tuple(covers))
                    rows[sid] = seg
                    segs.append(seg)
            if segs:  # the index is rebuilt on first use, in id order: as it was built
                sp.recaller = _LazyIndex(sp, sorted(segs, key=lambda s: s.id))
        if rec["mailbox"]:
            from collections import deque

            p.mailbox = deque(_unmsg(m) for m in rec["mailbox"])
        self.count -= 1
        self.resident[p.pid] = p
        lp = rec.get("loop")
        if lp is not None:
            self.full -= 1
            args = decode_value(lp["args"])
            sys = Sys(tuple(lp["spawn_caps"]))
            sys._seq = lp["seq"]
            p.sys = sys
            p.args = args
            p.spawn_caps = sys.caps
            p.coro = L.resume(p.image, sys, args, decode_value(lp["state"]))
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


def _msg(m: Message) -> list[Any]:
    return [m.sender, encode_value(m.body), list(m.caps), encode_value(m.corr), m.deadline, m.sent]


def _unmsg(row: list[Any]) -> Message:
    sender, body, caps, corr, deadline, sent = row
    return Message(sender, decode_value(body), tuple(caps), decode_value(corr), deadline, sent)


def _space(sp: Any) -> dict[str, Any] | None:
    if sp is None:
        return None
    def seg(s: Segment) -> list[Any]:
        return [s.id, encode_value(s.body), s.tokens, s.kind.value, s.created, list(s.covers)]
    return {"next_id": sp.next_id, "summaries": sp.summaries, "tokens": sp.resident_tokens,
            "resident": [seg(s) for s in sp.resident.values()], "swap": [seg(s) for s in sp.swap.values()]}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


__all__ = ["HibernationConfig", "HibernationConfigError", "Hibernator", "STUB_LIMIT", "stub_bytes"]
