"""Ring 0: boot, the dispatch loop, and process lifecycle.

What belongs here: the trampoline that drives process coroutines, the handler table,
spawn/exit, and the glue between subsystems. What does not: the semantics of any one
syscall group (ipc, signals, devices, memory, caps live in their own modules) and any
policy, storage or network logic (those plug in through hooks: `policy`, `journal`,
event sinks, `install_syscall`).

Invariants: exactly one process runs at a time; a handler returns a value (the process
continues in the same quantum), raises a `SyscallError` (thrown into the process), or
returns PARK after parking, requeueing or ending the process. Nothing a process does can
raise out of the loop: a crash is that process's fault, never the kernel's.
"""
from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..abi import syscalls as S
from ..abi.driver import Driver
from ..abi.errors import (
    AgentOSError, CapError, InternalError, KernelError, NameTaken, NondeterminismError, PolicyDenied,
    SyscallError,
)
from ..abi.types import (
    KERNEL_PID, NORMAL, SHUTDOWN, Budget, Down, ExitKind, ExitReason, Quota, Right, Signal,
    fault, quota,
)
from .accounts import Accounts
from .caps import DEVICE, PROC, R_MONITOR, R_SEND, R_KILL, CapTable
from .clock import Clock, RealClock, VirtualClock
from .devices import Devices
from .events import EventLog
from .ipc import IPC
from .journal import Journal
from .memory import MemoryManager, Pager
from .metrics import Metrics
from .process import EXITED, PARK, READY, RUNNING, SUSPENDED, WAITING, Process, ProcessImage
from .recall import Recaller
from .replay import ReplayIO, wrap_policy
from .scheduler import MAX_BASE_PRIORITY, RunQueue, Timers
from .signals import Signals
from .trap import Sys


_NO_QUOTA = Quota()


def _pin_forever(obj: Any) -> None:
    """Take one permanent reference: the object is never deallocated, so never finalized."""
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


@dataclass
class KernelConfig:
    """Everything a kernel can be booted with. Defaults suit a live, single-node run."""

    clock: Clock | None = None
    deterministic: bool = False        # seeded cap refs and ids; VirtualClock unless a clock is given
    seed: int = 0
    quantum: int = 2000                # reductions before a running process is preempted
    default_priority: int = 5
    event_ring: int = 65536
    event_batch: int = 4096
    mode: str = "live"                 # live | replay
    journal: Journal | None = None
    record: bool = True                # journal driver results in live mode
    policy: Any = None                 # an object with check(pid, action, args, dry_run=) -> Decision;
                                       # None: strict default deny (no actions on the world)
    audit: Any = None                  # flight recorder: decision(...) write-ahead, append, commit
    approvals: Any = None              # approval channel: ask(proc, action, args, decision, req)
    pager: Pager | None = None
    recaller: Callable[[], Recaller] | None = None
    switch_batch: int = 512            # process switches between looks at asyncio


@dataclass(frozen=True)
class Decision:
    """A policy answer. `rule` names what decided it; `reason` says why, for humans."""

    allowed: bool
    rule: str = "default"
    reason: str = ""
    effect: str = "allow"
    extra: dict[str, Any] = field(default_factory=dict)


class AllowAll:
    """Explicitly allow every action (tests, trusted scripts). Never the default."""

    _YES = Decision(True, "allow-all", "AllowAll policy installed")

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        return self._YES


class NoPolicy:
    """Strict default deny: with no policy loaded, no action on the world runs."""

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        return Decision(False, "no-policy",
                        f"strict kernel with no policy loaded refuses {action}: load a policy "
                        f"(.agents/security.md) or pass policy=AllowAll() deliberately",
                        effect="raise")


@dataclass(frozen=True)
class RunResult:
    reason: ExitReason
    value: Any
    pid: int


class Kernel:
    def __init__(self, config: KernelConfig | None = None, **overrides: Any) -> None:
        cfg = config or KernelConfig()
        for key, val in overrides.items():
            if not hasattr(cfg, key):
                raise KernelError(f"unknown kernel option {key!r}")
            setattr(cfg, key, val)
        if cfg.mode not in ("live", "replay"):
            raise KernelError(f"mode must be 'live' or 'replay', got {cfg.mode!r}")
        if cfg.mode == "replay" and cfg.journal is None:
            raise KernelError("replay mode needs a journal to answer driver operations from")
        self.config = cfg
        self.clock: Clock = cfg.clock or (VirtualClock() if cfg.deterministic else RealClock())
        seed = cfg.seed if cfg.deterministic else int.from_bytes(os.urandom(16), "big")
        self.seed = seed                   # recorded with a run so replay rebuilds the same refs
        self.rng = random.Random(seed)
        self.events = EventLog(self.clock.now, cfg.event_ring, cfg.event_batch)
        self.caps = CapTable(random.Random(self.rng.getrandbits(64)), self.clock.now)
        self.accounts = Accounts()
        self.runq = RunQueue()
        self.timers = Timers()
        self.procs: dict[int, Process] = {}
        self.names: dict[str, Process] = {}
        self.images: dict[str, ProcessImage] = {}
        self._image_cache: dict[Any, ProcessImage] = {}
        self.drivers: dict[str, Driver] = {}
        self.replaying = cfg.mode == "replay"
        self.journal: Journal | None = cfg.journal if (cfg.journal is not None or not cfg.record) else Journal()
        self.policy = cfg.policy if cfg.policy is not None else NoPolicy()
        self.audit: Any = cfg.audit
        self.approvals: Any = cfg.approvals
        self.checkpointer: Callable[[Process], Any] | None = None
        self.boot_hooks: list[Callable[[Process, dict[str, Any]], None]] = []  # record_run
        self.io_tick = 0                   # await points with I/O in flight (replay timing)
        self.replay_io = ReplayIO(self) if self.replaying else None
        self.ipc = IPC(self)
        self.signals = Signals(self)
        self.devices = Devices(self)
        self.memory = MemoryManager(self, cfg.pager, cfg.recaller)
        self.metrics_folder = Metrics()
        self.events.add_raw_sink(self.metrics_folder.observe)
        self.current: Process | None = None
        self.init: Process | None = None
        self.next_pid = 1
        self._io_inflight = 0
        self._wakeup: asyncio.Event | None = None
        self._dying: list[tuple[Process, ExitReason, Any]] = []
        self._draining = False
        self._running = False
        self._external_sources = 0
        self._table: dict[type, tuple[Callable[[Process, Any], Any], int]] = {}
        self._build_table()
        # cached for the dispatch loop (the event buffer list is never replaced)
        self._append = self.events.buf.append
        self._now = self.clock.now
        self._virtual = self.clock.virtual
        self._quantum = cfg.quantum
        self._push = self.runq.push
        for part in (self.policy, self.audit, self.approvals):  # give them the clock, drivers, events
            attach = getattr(part, "attach", None)
            if attach is not None:
                attach(self)
        from ..vfs import install as install_vfs  # stdlib only; the /agent tree costs a dict

        self.vfs = install_vfs(self, checkpoints=False)

    @property
    def policy(self) -> Any:
        """The policy consulted by `authorize`; decisions are journaled (replayed in replay mode)."""
        return self._policy

    @policy.setter
    def policy(self, value: Any) -> None:
        self._policy = wrap_policy(self, value)

    # -- handler table ----------------------------------------------------------------
    def _build_table(self) -> None:
        handlers: dict[type, Callable[..., Any]] = {
            S.GetPid: lambda p, r: p.pid,
            S.SelfCap: self._sys_self_cap,
            S.Now: lambda p, r: self.clock.now(),
            S.GetBudget: self._sys_budget,
            S.Log: self._sys_log,
            S.Register: self._sys_register,
            S.Unregister: self._sys_unregister,
            S.Lookup: self._sys_lookup,
            S.Spawn: self._sys_spawn,
            S.Exit: self._sys_exit,
            S.Monitor: self._sys_monitor,
            S.Waitpid: self._sys_waitpid,
            S.OnCleanup: self._sys_on_cleanup,
            S.Derive: self._sys_derive,
            S.Attenuate: self._sys_attenuate,
            S.Revoke: lambda p, r: self.caps.revoke(p, r.cap),
            S.CapInfo: lambda p, r: self.caps.resolve(p, r.cap, 0x7F, "cap_info").describe(),
            S.CheckPolicy: self._sys_check_policy,
            S.Sleep: self._sys_sleep,
            S.Yield: self._sys_yield,
            S.Sched: self._sys_sched,
        }
        for sub in (self.ipc, self.signals, self.devices, self.memory):
            handlers.update(sub.handlers())
        for req_type, spec in S.SYSCALLS.items():
            fn = handlers.get(req_type)
            if fn is None:
                fn = self._not_implemented(spec)
            self._table[req_type] = (fn, spec.reductions)

    @staticmethod
    def _not_implemented(spec: S.SyscallSpec) -> Callable[[Process, Any], Any]:
        def handler(proc: Process, req: Any) -> Any:
            raise NotImplementedError(f"syscall {spec.name} belongs to the {spec.owner} area, "
                                      f"which this kernel does not provide yet")
        return handler

    def install_syscall(self, req_type: type, handler: Callable[[Process, Any], Any]) -> None:
        """Plug in a handler for a registered syscall (VFS, distribution, ...)."""
        spec = S.SYSCALLS.get(req_type)
        if spec is None:
            raise KernelError(f"{req_type.__name__} is not in the syscall registry")
        self._table[req_type] = (handler, spec.reductions)

    # -- setup ------------------------------------------------------------------------
    def register_driver(self, driver: Driver, name: str | None = None) -> None:
        name = name or driver.name
        if not name or not isinstance(name, str):
            raise KernelError("a driver needs a non-empty name")
        if name in self.drivers:
            raise KernelError(f"a driver named {name!r} is already registered")
        hook = getattr(driver, "on_register", None)
        if hook is not None:
            hook(self, name)
        self.drivers[name] = driver

    def register_image(self, image: ProcessImage | Callable[..., Any]) -> ProcessImage:
        img = ProcessImage.of(image)
        self.images[img.name] = img
        return img

    # -- boot and run -----------------------------------------------------------------
    async def boot(self, init: Any, *, args: Any = None, grant: Iterable[str] = (),
                   quota: Quota | None = None, name: str | None = None,
                   priority: int | None = None) -> RunResult:
        """Start `init` with the given device grants and budget; run until it ends."""
        if self._running:
            raise KernelError("this kernel is already running")
        grants = list(grant)
        for dev in grants:
            if dev not in self.drivers and not self.replaying:
                known = ", ".join(sorted(self.drivers)) or "none"
                raise KernelError(f"cannot grant device {dev!r}: no such driver (registered: {known})")
        self._running = True
        self._wakeup = asyncio.Event()
        try:
            proc = self._create(None, init, args, (), quota, False, priority, None, name)
            for dev in grants:
                self.grant_device(proc, dev)
            self.init = proc
            for hook in self.boot_hooks:
                hook(proc, {"args": args, "grant": grants, "quota": quota, "name": name,
                            "priority": priority})
            try:
                await self._loop()
            except BaseException:
                try:  # no process outlives a kernel that stopped on an error
                    self.shutdown()
                except BaseException:  # noqa: BLE001 - the first error is the one to report
                    pass
                raise
            self.shutdown()
            self.events.flush()
            assert proc.exit_reason is not None
            return RunResult(proc.exit_reason, proc.result, proc.pid)
        finally:
            self._running = False

    def run(self, init: Any, **kw: Any) -> RunResult:
        """Synchronous `boot`, for scripts and tests."""
        return asyncio.run(self.boot(init, **kw))

    def grant_device(self, proc: Process, device: str, rights: Right | None = None) -> int:
        bits = int(rights) if rights is not None else int(Right.OPEN | Right.READ | Right.WRITE)
        cap = self.caps.grant(proc, DEVICE, device, bits)
        if proc.devices is None:
            proc.devices = {}
        proc.devices.setdefault(device, cap.ref)
        return cap.ref

    async def _loop(self) -> None:
        init = self.init
        assert init is not None and self._wakeup is not None
        wakeup = self._wakeup
        switch_batch = self.config.switch_batch
        while init.state is not EXITED:
            busy = self._run_ready(switch_batch)
            if init.state is EXITED:
                break
            if busy:
                if self._io_inflight:
                    self.io_tick += 1
                    if self.replay_io is not None:
                        self.replay_io.tick(self.io_tick, idle=False)
                    else:
                        await asyncio.sleep(0)
                continue
            # idle: nothing runnable
            due = self.timers.next_due()
            if self._io_inflight or self._external_sources:
                wakeup.clear()
                timeout = None
                if due is not None:
                    if self.clock.virtual:
                        timeout = 0.0 if not self._io_inflight else None
                    else:
                        timeout = max(0.0, (due - self.clock.now()) / 1000.0)
                if timeout != 0.0:
                    self.io_tick += 1
                    if self.replay_io is not None and self._io_inflight:
                        self.replay_io.tick(self.io_tick, idle=True)
                    else:
                        try:
                            await asyncio.wait_for(wakeup.wait(), timeout)
                        except asyncio.TimeoutError:
                            pass
                if self.runq.top >= 0 or self._io_inflight:
                    continue
            if due is None:
                self.events.flush()
                if self.runq.top < 0 and not self._io_inflight and not self._external_sources:
                    self.terminate(init, fault("deadlock: every process is waiting and nothing "
                                               "(timer, I/O or message) can wake one"))
                continue
            if self.clock.virtual:
                self.clock.advance_to(due)
            else:
                delay = (due - self.clock.now()) / 1000.0
                if delay > 0:
                    wakeup.clear()
                    try:
                        await asyncio.wait_for(wakeup.wait(), delay)
                    except asyncio.TimeoutError:
                        pass
            self.timers.fire_due(self.clock.now())

    def _run_ready(self, max_switches: int) -> bool:
        """Run up to `max_switches` process quanta. True if there may be more to run.

        This is the trampoline, and the hot path: everything it touches is a local."""
        runq = self.runq
        pop = runq.pop
        push = runq.push
        levels = runq.levels
        edf = runq.edf
        timers = self.timers
        heap = timers.heap
        events = self.events
        buf = events.buf
        batch = events.batch
        append = self._append
        now = self._now
        real = not self._virtual
        clock: Any = self.clock
        quantum = self._quantum
        default_table = self._table
        terminate = self.terminate
        for _ in range(max_switches):
            # RunQueue.pop, inlined for the common case (a FIFO level with a READY head)
            top = runq.top
            q = levels[top] if top >= 0 else None
            if q and not edf[top] and q[0].state is READY:
                proc = q.popleft()
                proc.in_queue = False
            else:
                proc = pop()
            if proc is None:
                if heap and heap[0][0] <= now():
                    timers.fire_due(now())
                    continue
                return False
            # -- run one quantum of `proc` --
            coro = proc.coro
            value = proc.resume_value
            exc = proc.resume_exc
            proc.resume_value = None
            proc.resume_exc = None
            proc.state = RUNNING
            table = proc.handlers or default_table
            t = now() if real else clock._now  # virtual time cannot move while a process runs
            pid = proc.pid
            budget = quantum
            while True:
                try:
                    if exc is None:
                        req = coro.send(value)
                    else:
                        req = coro.throw(exc)
                        exc = None
                except StopIteration as stop:
                    terminate(proc, NORMAL, stop.value)
                    break
                except KeyboardInterrupt:
                    raise
                except BaseException as e:
                    terminate(proc, fault(e))
                    break
                entry = table.get(type(req))
                if entry is None:
                    self._bad_await(proc, req)
                    break
                if real:
                    t = now()
                append((t, pid, "sys", req))
                try:
                    value = entry[0](proc, req)
                except SyscallError as e:
                    value = None
                    exc = e
                    append((now(), pid, "error", (type(e).__name__, str(e))))
                except NondeterminismError:
                    raise  # a replay that left the recorded path: the replayer must hear it
                except (NotImplementedError, TypeError, ValueError) as e:
                    # misuse of a syscall's arguments: the caller's error, raised in the caller
                    value = None
                    exc = e
                    append((now(), pid, "error", (type(e).__name__, str(e))))
                except Exception as e:
                    bug = InternalError(f"kernel bug handling {type(req).__name__} for pid {pid}: "
                                        f"{type(e).__name__}: {e} (this is a bug in agentos)")
                    append((now(), pid, "internal_error", str(bug)))
                    terminate(proc, fault(bug))
                    break
                if value is PARK or proc.state is not RUNNING:
                    break
                budget -= entry[1]
                if budget <= 0:
                    proc.resume_value = value
                    proc.resume_exc = exc
                    proc.state = READY
                    push(proc)
                    break
            proc.reductions += quantum - budget
            # -- between quanta: due timers, and a full event buffer --
            if heap and heap[0][0] <= now():
                timers.fire_due(now())
            if len(buf) >= batch:
                events.flush()
        return True

    def _bad_await(self, proc: Process, req: Any) -> None:
        what = type(req).__name__ if req is not None else "a bare yield (asyncio.sleep(0)?)"
        err = KernelError(
            f"pid {proc.pid} ({proc.name}) awaited {what}, which is not a syscall: a process "
            f"reaches the world only through `sys` calls (sys.sleep, not asyncio.sleep; "
            f"a driver, not direct I/O)")
        self.events.emit(proc.pid, "fault", str(err))
        self.terminate(proc, fault(err))

    # -- scheduling primitives used by subsystems ---------------------------------------
    def wake(self, proc: Process, value: Any = None, exc: BaseException | None = None) -> None:
        if proc.state is EXITED:
            return
        proc.resume_value = value
        proc.resume_exc = exc
        proc.wait_kind = None
        if proc.stopped:
            proc.state = SUSPENDED
            return
        proc.state = READY
        self.runq.push(proc)
        if self._wakeup is not None and (self._io_inflight or self._external_sources):
            self._wakeup.set()

    def requeue(self, proc: Process, value: Any) -> None:
        proc.resume_value = value
        proc.resume_exc = None
        if proc.stopped:
            proc.state = SUSPENDED
            return
        proc.state = READY
        self.runq.push(proc)

    def cancel_wait(self, proc: Process) -> bool:
        """Abandon whatever `proc` waits for (for SIGINT). True if it was cancellable."""
        if self.ipc.cancel_wait(proc):
            return True
        if proc.wait_kind in ("sleep", "waitpid"):
            self.timers.cancel(proc.timer)
            proc.timer = None
            proc.wait_target = None
            return True
        if proc.wait_kind == "io":
            self.devices.release_io(proc)
            return True
        return False

    def io_started(self) -> None:
        self._io_inflight += 1

    def io_finished(self) -> None:
        self._io_inflight -= 1
        if self._wakeup is not None:
            self._wakeup.set()

    def external_source(self, delta: int) -> None:
        """A driver that can inject messages from outside (network) keeps the kernel alive."""
        self._external_sources += delta

    # -- lifecycle ----------------------------------------------------------------------
    def _create(self, parent: Process | None, image: Any, args: Any, caps: tuple[Any, ...],
                quota_: Quota | None, link: bool, priority: int | None, deadline: float | None,
                name: str | None) -> Process:
        img = self._image_cache.get(image) if not isinstance(image, (str, ProcessImage)) else None
        if img is None:
            try:
                img = ProcessImage.of(image) if not isinstance(image, str) else self._image_named(image)
            except TypeError as e:
                raise SyscallError(f"spawn: {e}") from None
            if not isinstance(image, (str, ProcessImage)):
                self._image_cache[image] = img
        if quota_ is not None and not isinstance(quota_, Quota):
            raise SyscallError(f"spawn: quota must be a Quota, got {type(quota_).__name__}")
        if priority is None:
            priority = parent.priority if parent is not None else self.config.default_priority
        if not isinstance(priority, int) or not 0 <= priority <= MAX_BASE_PRIORITY:
            raise SyscallError(f"spawn: priority must be an int in 0..{MAX_BASE_PRIORITY}, got {priority!r}")
        # resolve capabilities to pass before anything is allocated
        srcs = []
        if parent is not None:
            for c in caps:
                if isinstance(c, str):
                    ref = parent.devices.get(c) if parent.devices else None
                    if ref is None:
                        raise CapError(f"spawn: pid {parent.pid} holds no capability for device {c!r} to pass on")
                    c = ref
                srcs.append(self.caps.resolve(parent, c, 0x7F, "spawn caps"))
        pid = self.next_pid
        if parent is None:
            account = self.accounts.open_root(pid, quota_ or _NO_QUOTA)
        else:
            account = self.accounts.open_child(pid, parent.account, quota_)  # type: ignore[arg-type]
        self.next_pid = pid + 1
        proc = Process(pid, name or img.name, img, parent)
        proc.account = account
        proc.priority = priority
        now = self._now()
        proc.started = now
        q = quota_ or _NO_QUOTA
        wall = now + q.wall_ms if q.wall_ms is not None else None
        if parent is not None and parent.wall_deadline is not None:
            wall = parent.wall_deadline if wall is None else min(wall, parent.wall_deadline)
        proc.wall_deadline = wall
        mm = q.max_mailbox
        if parent is not None and parent.max_mailbox is not None:
            mm = parent.max_mailbox if mm is None else min(mm, parent.max_mailbox)
        proc.max_mailbox = mm
        if deadline is not None:
            proc.deadline = now + deadline
        if proc.deadline is not None or wall is not None:
            self._arm_deadline(proc)
        child_caps = []
        for src in srcs:
            cap = self.caps.transfer(src, proc)
            child_caps.append(cap.ref)
            if cap.kind == DEVICE:
                if proc.devices is None:
                    proc.devices = {}
                proc.devices.setdefault(cap.target, cap.ref)
        proc.spawn_caps = tuple(child_caps)
        sys = Sys(proc.spawn_caps)
        proc.sys = sys
        proc.args = args
        proc.coro = img.main(sys, args)
        self.procs[pid] = proc
        if parent is not None:
            if link:
                for a, b in ((parent, proc), (proc, parent)):
                    if a.links is None:
                        a.links = set()
                    a.links.add(b)
        self._append((now, pid, "spawn", (parent.pid if parent else 0, proc.name, q)))
        self.runq.push(proc)
        return proc

    def _image_named(self, name: str) -> ProcessImage:
        img = self.images.get(name)
        if img is None:
            raise TypeError(f"no image named {name!r} is registered")
        return img

    def _arm_deadline(self, proc: Process) -> None:
        self.timers.cancel(proc.dl_timer)
        proc.dl_timer = None
        when = [t for t in (proc.deadline, proc.wall_deadline) if t is not None]
        if when:
            proc.dl_timer = self.timers.add(min(when), self._deadline_fired, proc)

    def _deadline_fired(self, proc: Process) -> None:
        proc.dl_timer = None
        if proc.state is EXITED:
            return
        now = self.clock.now()
        if proc.deadline is not None and now >= proc.deadline:
            self.terminate(proc, ExitReason(ExitKind.DEADLINE))
        elif proc.wall_deadline is not None and now >= proc.wall_deadline:
            self.terminate(proc, quota("wall_ms"))

    def terminate(self, proc: Process, reason: ExitReason, result: Any = None) -> None:
        """End `proc` for good. Safe to call from anywhere in the kernel, any number of times."""
        if proc.state is EXITED:
            return
        if self._draining:  # a teardown in progress queued this one (a link): do it after
            self._dying.append((proc, reason, result))
            return
        self._draining = True
        try:
            self._teardown(proc, reason, result)
            dying = self._dying
            while dying:
                p, r, v = dying.pop(0)
                self._teardown(p, r, v)
        finally:
            self._draining = False

    def _teardown(self, proc: Process, reason: ExitReason, result: Any) -> None:
        if proc.state is EXITED:
            return
        proc.state = EXITED
        proc.exit_reason = reason
        proc.result = result
        coro = proc.coro
        proc.coro = None
        if coro is not None:
            try:
                coro.close()  # GeneratorExit inside; `finally` blocks run, syscalls cannot
            except BaseException as e:
                # It swallowed GeneratorExit and yielded again. It will never be resumed, and
                # it must never be finalized either (finalizing runs its code again).
                _pin_forever(coro)
                self.events.emit(proc.pid, "close_error", f"{type(e).__name__}: {e}")
        if proc.timer is not None or proc.dl_timer is not None:
            self.timers.cancel(proc.timer)
            self.timers.cancel(proc.dl_timer)
            proc.timer = proc.dl_timer = None
        if proc.io is not None or proc.handles:
            self.devices.release(proc)
        if proc.mailbox is not None or proc.blocked_senders or proc.blocked_on is not None \
                or proc.recv_match is not None:
            self.ipc.release(proc)
        if proc.memory is not None:
            self.memory.release(proc)
        if proc.cleanups:
            for fn in proc.cleanups:
                try:
                    fn(reason)
                except Exception as e:
                    self.events.emit(proc.pid, "cleanup_error", f"{type(e).__name__}: {e}")
            proc.cleanups = None
        if proc.names:
            for n in proc.names:
                if self.names.get(n) is proc:
                    del self.names[n]
            proc.names = None
        if proc.caps:
            self.caps.drop_all(proc)
        parent = proc.parent
        self.accounts.close(proc.account, parent.account if parent else None)  # type: ignore[arg-type]
        self._append((self._now(), proc.pid, "exit", str(reason)))
        if proc.waiters:
            for w in proc.waiters:
                if w.wait_target is proc and w.wait_kind == "waitpid":
                    w.wait_target = None
                    self.wake(w, reason)
            proc.waiters = None
        down = Down(proc.pid, reason, proc.name) if (proc.watchers or proc.links) else None
        if proc.watchers:
            for w in proc.watchers:
                self.ipc.deliver_kernel(w, down)
            proc.watchers = None
        if proc.links:
            for other in proc.links:
                if other.links is not None:
                    other.links.discard(proc)
                if other.parent is proc:
                    self._dying.append((other, ExitReason(ExitKind.KILLED, f"link:{proc.pid}"), None))
                else:
                    self.ipc.deliver_kernel(other, down)
            proc.links = None
        self.procs.pop(proc.pid, None)
        proc.sys = None
        proc.args = None

    def shutdown(self) -> None:
        """End every remaining process with `shutdown`, children before parents."""
        for proc in sorted(self.procs.values(), key=lambda p: -p.pid):
            self.terminate(proc, SHUTDOWN)
        self.events.flush()
        if self.audit is not None:
            try:
                self.audit.commit()
            except Exception as e:  # the records stay pending in the recorder; say so
                self.events.emit(KERNEL_PID, "audit_error", f"{type(e).__name__}: {e}")

    # -- durability (the work lives in snapshot.py and rebuild.py) ----------------------
    def snapshot(self, pid: int) -> dict[str, Any]:
        """Process `pid` as a portable, JSON-ready description (see kernel/snapshot.py)."""
        from .snapshot import snapshot

        proc = self.procs.get(pid)
        if proc is None:
            raise KernelError(f"snapshot: no live process {pid}")
        return snapshot(self, proc)

    def restore(self, snap: dict[str, Any], image: Any) -> int:
        """Start `image` again with the state in `snap`; refuses another ABI version. Returns the pid."""
        from .snapshot import restore

        return restore(self, snap, image)

    @staticmethod
    def replay_from(store: Any, run_id: str, **kw: Any) -> Any:
        """Rebuild a stored run and replay it from its journal; returns a ReplayReport."""
        from .rebuild import replay_from

        return replay_from(store, run_id, **kw)

    def checkpoint(self, proc: Process) -> None:
        if self.checkpointer is not None:
            self.checkpointer(proc)
        else:
            self.events.emit(proc.pid, "checkpoint", None)

    def authorize(self, proc: Process, action: str, args: Any, req: Any = None) -> bool:
        """Ask policy about an action on the world, before the driver runs.

        True: go ahead; with a flight recorder, the action's record is already durable
        (write-ahead). False: not now: the process was killed (SIGPOLICY, naming the rule)
        or parked until the approval channel answers or its record is durable (group
        commit); then `req` runs again and finds its clearance.
        """
        audit = self.audit
        if audit is not None and audit.passes and audit.cleared(proc.pid, action, args):
            return True  # decided and recorded before it parked for the group commit
        decision = self.policy.check(proc.pid, action, args)
        self._append((self._now(), proc.pid, "policy", (action, decision.allowed, decision.rule)))
        if decision.effect == "log":  # permissive/audit: allowed, but strict would not have
            self._append((self._now(), proc.pid, "policy_violation", (action, decision.rule, decision.reason)))
        if not decision.allowed:
            if decision.effect == "approve" and self.approvals is not None and req is not None:
                if audit is not None:
                    audit.decision(proc.pid, action, args, decision, before_action=False)
                if not self.approvals.ask(proc, action, args, decision, req):  # a refusal raises
                    return False
            else:
                if audit is not None:
                    audit.decision(proc.pid, action, args, decision, before_action=False)
                if decision.effect in ("raise", "approve"):
                    why = decision.reason or f"policy denies {action}"
                    if decision.effect == "approve":
                        why += ": no approval channel can answer this call"
                    raise PolicyDenied(decision.rule, why)
                self.signals.deliver(proc, Signal.SIGPOLICY, KERNEL_PID, decision.rule)
                return False
        if audit is not None:
            return audit.decision(proc.pid, action, args, decision, before_action=True, proc=proc, req=req)
        return True

    def retry_syscall(self, proc: Process, req: Any) -> None:
        """Run a parked process's syscall again (an approval came, a record became durable)
        and wake it with the result."""
        if proc.state is EXITED:
            return
        entry = self._table.get(type(req))
        if entry is None:
            raise KernelError(f"retry_syscall: {type(req).__name__} is not a syscall")
        try:
            value = entry[0](proc, req)
        except (SyscallError, NotImplementedError, TypeError, ValueError) as e:
            self.wake(proc, None, e)
            return
        except Exception as e:
            self.terminate(proc, fault(InternalError(f"kernel bug rerunning {type(req).__name__} for pid "
                                                     f"{proc.pid}: {type(e).__name__}: {e}")))
            return
        if value is not PARK and proc.state is not EXITED:
            self.wake(proc, value)

    def send_other(self, proc: Process, cap: Any, req: Any) -> Any:
        """A send on a non-process capability: remote proxies plug in here."""
        raise CapError(f"send: the capability designates a {cap.describe()['kind']}, not a process")

    # -- handlers that need the whole kernel ---------------------------------------------
    def _sys_self_cap(self, proc: Process, req: Any) -> int:
        ref = proc.self_ref
        if ref is not None and ref in proc.caps:
            return ref
        cap = self.caps.grant(proc, PROC, proc, R_SEND | R_MONITOR)
        proc.self_ref = cap.ref
        return cap.ref

    def _sys_budget(self, proc: Process, req: Any) -> Budget:
        v = self.accounts.view(proc.account)  # type: ignore[arg-type]
        for name, val in (("wall_ms", proc.wall_deadline), ("max_mailbox", proc.max_mailbox)):
            if name == "wall_ms":
                v["limits"][name] = None if val is None else val - proc.started
                v["remaining"][name] = None if val is None else max(0.0, val - self.clock.now())
                v["used"][name] = self.clock.now() - proc.started
            else:
                v["limits"][name] = val
                v["remaining"][name] = val
                v["used"][name] = len(proc.mailbox) if proc.mailbox else 0
        return Budget(v["limits"], v["remaining"], v["used"])

    def _sys_log(self, proc: Process, req: S.Log) -> None:
        self.events.emit(proc.pid, "log", (req.level, req.msg, req.fields))

    def _sys_register(self, proc: Process, req: S.Register) -> None:
        if not isinstance(req.name, str) or not req.name:
            raise SyscallError(f"register: a name must be a non-empty string, got {req.name!r}")
        holder = self.names.get(req.name)
        if holder is not None and holder is not proc and holder.state is not EXITED:
            raise NameTaken(f"register: {req.name!r} is held by pid {holder.pid}")
        self.names[req.name] = proc
        if proc.names is None:
            proc.names = set()
        proc.names.add(req.name)

    def _sys_unregister(self, proc: Process, req: S.Unregister) -> None:
        if self.names.get(req.name) is not proc:
            raise SyscallError(f"unregister: pid {proc.pid} does not hold {req.name!r}")
        del self.names[req.name]
        if proc.names:
            proc.names.discard(req.name)

    def _sys_lookup(self, proc: Process, req: S.Lookup) -> int | None:
        target = self.names.get(req.name)
        if target is None or target.state is EXITED:
            return None
        return self.caps.grant(proc, PROC, target, R_SEND).ref

    def _sys_spawn(self, proc: Process, req: S.Spawn) -> tuple[int, int]:
        child = self._create(proc, req.image, req.args, req.caps, req.quota, req.link,
                             req.priority, req.deadline, req.name)
        cap = self.caps.grant(proc, PROC, child, R_SEND | R_MONITOR | R_KILL)
        return child.pid, cap.ref

    def _sys_exit(self, proc: Process, req: S.Exit) -> Any:
        reason = req.reason
        if reason is None:
            reason = NORMAL
        elif isinstance(reason, str):
            try:
                reason = ExitReason.parse(reason)
            except ValueError:
                reason = fault(reason)
        if not isinstance(reason, ExitReason):
            raise SyscallError(f"exit: reason must be an ExitReason or str, got {type(reason).__name__}")
        if reason.kind not in (ExitKind.NORMAL, ExitKind.FAULT, ExitKind.SHUTDOWN):
            raise SyscallError(f"exit: a process may end itself only as normal, fault or shutdown, "
                               f"not {reason.kind.value}")
        self.terminate(proc, reason)
        return PARK

    def _target(self, proc: Process, ref: Any, right: int, what: str) -> Process:
        cap = self.caps.resolve(proc, ref, right, what)
        if cap.kind != PROC:
            raise CapError(f"{what}: the capability designates a {cap.describe()['kind']}, not a process")
        return cap.target

    def _sys_monitor(self, proc: Process, req: S.Monitor) -> None:
        target = self._target(proc, req.cap, R_MONITOR, "monitor")
        if target.state is EXITED:
            self.ipc.deliver_kernel(proc, Down(target.pid, target.exit_reason, target.name))  # type: ignore[arg-type]
            return
        if target.watchers is None:
            target.watchers = []
        target.watchers.append(proc)

    def _sys_waitpid(self, proc: Process, req: S.Waitpid) -> Any:
        target = self._target(proc, req.cap, R_MONITOR, "waitpid")
        if target is proc:
            raise SyscallError("waitpid: a process cannot wait for itself")
        if target.state is EXITED:
            return target.exit_reason
        if target.waiters is None:
            target.waiters = []
        target.waiters.append(proc)
        proc.state = WAITING
        proc.wait_kind = "waitpid"
        proc.wait_target = target
        return PARK

    def _sys_on_cleanup(self, proc: Process, req: S.OnCleanup) -> None:
        if not callable(req.fn):
            raise SyscallError("on_cleanup: expected a callable taking the exit reason")
        if proc.cleanups is None:
            proc.cleanups = []
        proc.cleanups.append(req.fn)

    def _sys_derive(self, proc: Process, req: S.Derive) -> int:
        return self.caps.derive(proc, req.cap, _rights(req.rights)).ref

    def _sys_attenuate(self, proc: Process, req: S.Attenuate) -> int:
        rights = None if req.rights is None else _rights(req.rights)
        return self.caps.derive(proc, req.cap, rights, req.expires_in).ref

    def _sys_check_policy(self, proc: Process, req: S.CheckPolicy) -> Decision:
        return self.policy.check(proc.pid, req.action, req.args, dry_run=True)

    def _sys_sleep(self, proc: Process, req: S.Sleep) -> Any:
        ms = req.ms
        if ms <= 0:
            self.requeue(proc, None)
            return PARK
        proc.state = WAITING
        proc.wait_kind = "sleep"
        proc.timer = self.timers.add(self.clock.now() + ms, self._sleep_done, proc)
        return PARK

    def _sleep_done(self, proc: Process) -> None:
        proc.timer = None
        if proc.state is not EXITED and proc.wait_kind == "sleep":
            self.wake(proc, None)

    def _sys_yield(self, proc: Process, req: Any) -> Any:
        if proc.stopped:
            proc.state = SUSPENDED
            return PARK
        proc.state = READY
        if proc.deadline is None and not proc.in_queue:
            # RunQueue.push, inlined: yield_ is the context-switch hot path
            proc.in_queue = True
            runq = self.runq
            lvl = proc.priority
            runq.levels[lvl].append(proc)
            if lvl > runq.top:
                runq.top = lvl
        else:
            self._push(proc)
        return PARK

    def _sys_sched(self, proc: Process, req: S.Sched) -> None:
        if req.priority is not None:
            p = req.priority
            if not isinstance(p, int) or not 0 <= p <= MAX_BASE_PRIORITY:
                raise SyscallError(f"sched: priority must be an int in 0..{MAX_BASE_PRIORITY}, got {p!r}")
            if proc.parent is not None and p > proc.parent.priority and proc.parent.state is not EXITED:
                raise SyscallError(f"sched: priority {p} is above the parent's ({proc.parent.priority})")
            proc.priority = p
        if req.deadline is not None:
            proc.deadline = self.clock.now() + req.deadline
            self._arm_deadline(proc)

    # -- introspection ----------------------------------------------------------------
    def ps(self) -> list[dict[str, Any]]:
        """One row per live process: state, priority, reductions, budget used and left."""
        rows = []
        for p in self.procs.values():
            rows.append(self._row(p))
        return rows

    def _row(self, p: Process) -> dict[str, Any]:
        view = self.accounts.view(p.account)  # type: ignore[arg-type]
        state = "suspended" if p.stopped and p.state is not EXITED else p.state.value
        return {"pid": p.pid, "name": p.name, "state": state, "parent": p.parent.pid if p.parent else 0,
                "priority": p.priority, "reductions": p.reductions,
                "mailbox": len(p.mailbox) if p.mailbox else 0, "used": view["used"],
                "remaining": view["remaining"], "wait": p.wait_kind,
                "exit": str(p.exit_reason) if p.exit_reason else None}

    def metrics(self) -> dict[str, Any]:
        self.events.flush()
        m = self.metrics_folder.snapshot()
        m["processes"] = len(self.procs)
        m["caps_live"] = self.caps.live
        m["caps_ghost"] = self.caps.ghosts
        m["accounts_open"] = self.accounts.open_count
        m["messages_late_dropped"] = self.ipc.late_dropped
        m["messages_dead_letters"] = self.ipc.dead_letters
        m["pages_evicted"] = self.memory.evictions
        return m

    def metrics_text(self) -> str:
        """The metrics in Prometheus text exposition format."""
        return self.metrics_folder.exposition(self.metrics())


def _rights(spec: Any) -> int:
    try:
        return int(Right.parse(spec))
    except (ValueError, TypeError) as e:
        raise CapError(f"bad rights {spec!r}: {e}") from None


__all__ = ["AgentOSError", "AllowAll", "Decision", "Kernel", "KernelConfig", "NoPolicy", "RunResult"]
