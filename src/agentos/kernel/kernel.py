"""Ring 0: boot, the dispatch loop, and process lifecycle.

What belongs here: the trampoline that drives process coroutines, the handler table,
spawn/exit, and the glue between subsystems. What does not: the semantics of any one
syscall group (ipc, signals, devices, memory, caps live in their own modules) and any
policy, storage, file-system or network logic. Those plug in through the kernel's hooks:
`policy`, `journal`, `install_syscall`, `install_sender`, observers (`add_observer`, see
observer.py) and extensions run at construction (`KernelConfig.extensions`; the VFS is
one). Nothing under `agentos.kernel` imports `agentos.vfs` or `agentos.store`.

Invariants: exactly one process runs at a time; a handler returns a value (the process
continues in the same quantum), raises a `SyscallError` (thrown into the process), or
returns PARK after parking, requeueing or ending the process. Nothing a process does can
raise out of the loop: a crash is that process's fault, never the kernel's.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..abi import syscalls as S
from ..abi.driver import Driver
from ..abi.errors import (
    AgentOSError, CapError, InternalError, KernelError, NameTaken, NondeterminismError, NotSupported,
    PolicyDenied, SchemaViolation, SyscallError, TrustDenied,
)
from ..abi.types import (
    KERNEL_PID, NORMAL, SHUTDOWN, Budget, Down, ExitKind, ExitReason, Quota, Right, Signal,
    WaitKind, fault, quota,
)
from .accounts import Accounts
from .caps import DEVICE, PROC, R_MONITOR, R_SEND, R_KILL, SPAWN, CapTable
from .clock import Clock, RealClock, VirtualClock
from .devices import Devices
from .replay_devices import ReplayDevices
from .events import EventLog
from .ipc import IPC
from .pipes import sys_pipe
from . import gcpolicy as _gc
from .gcpolicy import GcPolicy
from .journal import Journal, JournalEntry
from .memory import MemoryManager, Pager
from .metrics import Metrics
from .process import EXITED, HIBERNATED, PARK, READY, RUNNING, SUSPENDED, WAITING, Process, ProcessImage
from .recall import Recaller
from .replay import DecisionRecorder, JournalPolicy, ReplayIO, wrap_policy
from .scheduler import MAX_BASE_PRIORITY, RunQueue, Timers
from .signals import Signals
from .trap import Sys
from .decision import AllowAll, Decision, NoPolicy
from .handlers import Handlers
from .introspect import Introspection
from .lifecycle import Lifecycle, _NO_QUOTA, _pin_forever
from .driverport import driver_port
from .extend import ExtensionPoints
from .operate import Operations
from .remote import Remote
from .observer import BootInfo, Extension, Observer, default_extensions


def fault_frames(e: BaseException, limit: int = 20) -> dict[str, Any]:
    """What a `fault` event keeps of an exception that ended a process: its type, message
    and the program's frames (file, line, function; innermost last), without the kernel's."""
    import traceback

    frames = [[f.filename, f.lineno, f.name] for f in traceback.extract_tb(e.__traceback__)
              if not _outside_the_program(f.filename)]
    try:
        message = str(e)[:2000]
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not escape the kernel
        message = f"<{type(e).__name__} whose message cannot be shown>"
    return {"error": type(e).__name__, "message": message, "frames": frames[-limit:]}


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PROGRAM_DIRS = tuple(os.path.join(_PACKAGE_DIR, d) + os.sep for d in ("userland", "services"))
_RECORDING_POLICIES = (DecisionRecorder, JournalPolicy)   # they know `check_carried`


def _outside_the_program(filename: str) -> bool:
    """Frames of the kernel and its drivers are not the program's: a replay, which calls no
    driver, would not have them (agent libraries in userland run in the process and stay)."""
    return filename.startswith(_PACKAGE_DIR + os.sep) and not filename.startswith(_PROGRAM_DIRS)


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
    message_events: bool = False       # a `recv` event per receipt of a sent message, naming
                                       # its send (provenance; a recorded run turns it on)
    autojump_threshold: float | None = 0.1
                                       # VirtualClock: seconds of real time the loop waits on
                                       # in-flight I/O with nothing runnable before virtual time
                                       # jumps to the next timer (trio's MockClock autojump);
                                       # None: time stands still until the I/O completes
    gc: GcPolicy | None = GcPolicy()  # collector settings while the loop runs (gcpolicy.py);
                                       # None: leave the interpreter's as they are
    hibernation: Any = None            # a HibernationConfig (agentos.sched): waiting processes go
                                       # to a store past a watermark or an idle timeout; None: off
    extensions: dict[str, Extension] | None = None
                                       # install(kernel) callables run at construction, by name;
                                       # None: the defaults `agentos` registers (the VFS)
    sched: Any = None                  # agent-graph scheduling: a sched.SchedConfig (or its
                                       # dict); None: the policy's `scheduling:` section, else off


_INT_OPTIONS: dict[str, tuple[int, int]] = {
    "quantum": (1, 10**9), "default_priority": (0, MAX_BASE_PRIORITY), "event_ring": (0, 2**31),
    "event_batch": (1, 2**24), "switch_batch": (1, 2**31),
    "seed": (-2**256, 2**256),  # (a live run records a seed of 128 random bits: its replay passes it back)
}


def _bound(n: int) -> str:
    """A range's end as a person reads it: 2**256, not 78 digits."""
    if abs(n) < 10**12:
        return str(n)
    return ("-" if n < 0 else "") + f"2**{abs(n).bit_length() - 1}"


def _check_config(cfg: KernelConfig) -> None:
    """Refuse a configuration the kernel cannot run with, naming the option: a zero
    `switch_batch` would never let the loop turn, a NaN quantum never preempt, a forged run's
    metadata replays through here too."""
    from .args import shown

    for name, (lo, hi) in _INT_OPTIONS.items():
        v = getattr(cfg, name)
        if type(v) is not int or not lo <= v <= hi:
            raise KernelError(f"{name} must be an integer in {_bound(lo)}..{_bound(hi)}, got {shown(v)}")
    for name in ("deterministic", "record", "message_events"):
        v = getattr(cfg, name)
        if v is not True and v is not False:
            raise KernelError(f"{name} must be True or False, got {shown(v)}")
    if cfg.clock is not None and not isinstance(cfg.clock, Clock):
        raise KernelError(f"clock must be a Clock (RealClock, VirtualClock), got {type(cfg.clock).__name__}")
    if cfg.gc is not None and not isinstance(cfg.gc, GcPolicy):
        raise KernelError(f"gc must be a GcPolicy or None, got {type(cfg.gc).__name__}")
    if cfg.journal is not None and not isinstance(cfg.journal, Journal):
        raise KernelError(f"journal must be a Journal or None, got {type(cfg.journal).__name__}")
    # the parts the kernel calls into: each must offer the calls it will make, or the first
    # action would fault as a kernel bug instead of the boot being refused
    for name, needs in (("policy", ("check",)), ("audit", ("decision", "commit")),
                        ("approvals", ("ask",)), ("pager", ("victims", "summarize"))):
        part = getattr(cfg, name)
        if part is not None:
            missing = [m for m in needs if not callable(getattr(part, m, None))]
            if missing:
                raise KernelError(f"{name} must be an object with {' and '.join(needs)}() "
                                  f"(got a {type(part).__name__} without {missing[0]}())")
    if cfg.recaller is not None and not callable(cfg.recaller):
        raise KernelError(f"recaller must be a callable that makes a Recaller, got {type(cfg.recaller).__name__}")
    exts = cfg.extensions
    if exts is not None and (not isinstance(exts, dict)
                             or not all(type(n) is str and callable(f) for n, f in exts.items())):
        raise KernelError("extensions must be a dict of name -> install(kernel) callable")


@dataclass(frozen=True)
class RunResult:
    reason: ExitReason
    value: Any
    pid: int


class Kernel(Lifecycle, Handlers, Introspection, ExtensionPoints, Operations, Remote):
    def __init__(self, config: KernelConfig | None = None, **overrides: Any) -> None:
        if config is not None and not isinstance(config, KernelConfig):
            raise KernelError(f"the first argument must be a KernelConfig (or pass options by name), "
                              f"got {type(config).__name__}")
        # the caller's config is never changed: overrides apply to a copy
        cfg = dataclasses.replace(config) if config is not None else KernelConfig()
        for key, val in overrides.items():
            if key.startswith("_") or not hasattr(cfg, key):
                raise KernelError(f"unknown kernel option {key!r}")
            setattr(cfg, key, val)
        if cfg.mode not in ("live", "replay"):
            raise KernelError(f"mode must be 'live' or 'replay', got {cfg.mode!r}")
        if cfg.mode == "replay" and cfg.journal is None:
            raise KernelError("replay mode needs a journal to answer driver operations from")
        _check_config(cfg)
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
        self._on_abort_timer = self._abort_timer  # bound once: every sleeping process holds it
        self.procs: dict[int, Process] = {}
        self.names: dict[str, Process] = {}
        self.images: dict[str, ProcessImage] = {}
        self._image_cache: dict[Any, ProcessImage] = {}
        self.drivers: dict[str, Driver] = {}
        self.driver_shared: dict[str, Any] = {}  # DriverHost.shared: state drivers of this kernel share
        self.replaying = cfg.mode == "replay"
        self.journal: Journal | None = cfg.journal if (cfg.journal is not None or not cfg.record) else Journal()
        self.policy = cfg.policy if cfg.policy is not None else NoPolicy()
        self.audit: Any = cfg.audit
        self.approvals: Any = cfg.approvals
        self.observers: list[Observer] = []  # see add_observer; hooks wired per override
        self._on_spawn: list[Callable[[Process], None]] = []
        self._on_exit: list[Callable[[Process, ExitReason], None]] = []
        self._on_checkpoint: list[Callable[[Process], str | None]] = []
        self._senders: dict[int, Callable[[Process, Any, Any], Any]] = {}
        self.extensions: dict[str, Any] = {}  # what each extension installed, by name
        self.trust: Any = None             # the trust service (services/trust.py), when installed:
                                           # told of the misbehaviour the kernel sees (evidence)
        self.io_tick = 0                   # await points with I/O in flight (replay timing)
        self.replay_io = ReplayIO(self) if self.replaying else None
        self.ipc = IPC(self)
        self.signals = Signals(self)
        self.devices = ReplayDevices(self) if self.replaying else Devices(self)
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
        self._stop_requested: str | None = None  # request_stop (operate.py): Ctrl-C, SIGTERM
        self._loop_ref: asyncio.AbstractEventLoop | None = None
        self._external_sources = 0
        self._held_waits = 0               # parked on a person or the recorder (see park)
        # stopped processes whose wait ended while they were stopped: what to run at SIGCONT
        self._on_continue: dict[Process, Callable[[], None]] = {}
        self._table: dict[type, tuple[Callable[[Process, Any], Any], int]] = {}
        self._init_remote()  # before the table: it installs the remote sender (remote.py)
        self._build_table()
        # cached for the dispatch loop (the event buffer list is never replaced)
        self._append = self.events.buf.append
        self._now = self.clock.now
        self._virtual = self.clock.virtual
        self.message_events = bool(cfg.message_events)
        aj = cfg.autojump_threshold
        if aj is not None and (isinstance(aj, bool) or not isinstance(aj, (int, float))
                               or not 0.0 <= aj < float("inf")):
            raise KernelError(f"autojump_threshold must be a finite number of seconds >= 0 "
                              f"or None, got {aj!r}")
        self._autojump: float | None = float(aj) if aj is not None and self._virtual else None
        self._quantum = cfg.quantum
        self._push = self.runq.push
        self._init_sched(cfg)
        self.hibernation: Any = None
        if cfg.hibernation is not None:  # agentos.sched is imported only when it is used
            from ..sched.hibernate import Hibernator

            self.hibernation = Hibernator(self, cfg.hibernation)
        for part in (self.policy, self.audit, self.approvals):  # give them the clock, drivers, events
            attach = getattr(part, "attach", None)
            if attach is not None:
                attach(self)
        exts = default_extensions() if cfg.extensions is None else cfg.extensions
        for ext_name, install in exts.items():
            self.extensions[ext_name] = install(self)
        self._booted_parts = True

    @property
    def policy(self) -> Any:
        """The policy consulted by `authorize`; decisions are journaled (replayed in replay mode)."""
        return self._policy

    @policy.setter
    def policy(self, value: Any) -> None:
        attach = getattr(value, "attach", None)
        if attach is not None and getattr(self, "_booted_parts", False):
            attach(self)  # a policy swapped in after construction gets the kernel too (it may refuse)
        self._policy = wrap_policy(self, value)
        # the kernel actions this policy has rules for; it is asked about no others
        governs = getattr(self._policy, "governs_kernel", None)
        self.governs = frozenset(governs) if governs is not None else frozenset({"spawn", "send", "signal", "vfs"})
        self.police_spawn = "spawn" in self.governs
        self.police_send = "send" in self.governs     # read on every send: a plain bool
        self.police_signal = "signal" in self.governs

    # -- agent-graph scheduling (the work lives in agentos.sched) ----------------------
    def _init_sched(self, cfg: KernelConfig) -> None:
        from ..sched.config import SchedConfig, SchedConfigError

        sc = cfg.sched if cfg.sched is not None else getattr(cfg.policy, "scheduling", None)
        if isinstance(sc, dict):
            sc = SchedConfig.from_dict(sc)
        elif sc is None:
            sc = SchedConfig()
        elif not isinstance(sc, SchedConfig):
            raise SchedConfigError(f"sched must be a SchedConfig, a dict of its fields or None, "
                                   f"got {type(sc).__name__}")
        self.sched_config: Any = sc
        self.graph: Any = None             # the AgentGraph, when the scheduler runs
        self._protect_at = float("inf")    # centrality that doubles a quantum (inf: never)
        self._bypass = 0                   # every n-th dispatch serves the levels in turn (0: off)
        if sc.enabled:
            from ..sched.graph import AgentGraph

            self.graph = AgentGraph(self, sc)
            self._protect_at = sc.threshold
            self._bypass = sc.bypass
            self.runq.age = sc.bypass
            self._on_spawn.append(self.graph.spawned)
            self._on_exit.append(self.graph.exited)
        self.ipc.graph = self.graph

    def relevel(self, proc: Process) -> None:
        """Set `proc`'s run-queue level from its base priority and centrality (after a
        change of either); it applies from its next enqueue."""
        if self.graph is None:
            proc.level = proc.priority
        else:
            from ..sched.graph import level_of

            proc.level = level_of(proc.priority, proc.cent, self.sched_config.alpha)

    def effective_priority(self, proc: Process) -> float:
        """base × (1 + α × centrality): what the run queue and the LLM device gates rank by."""
        if self.graph is None:
            return float(proc.priority)
        return proc.priority * (1.0 + self.sched_config.alpha * proc.cent)

    def sched_score(self, proc: Process) -> float:
        """Lower hibernates first: the effective priority, then least recently active (the
        event seq of the send of the last message it received; 0 if none)."""
        m = proc.last_msg
        return self.effective_priority(proc) * 1099511627776.0 + (m.sent if m is not None else 0)

    def sched_protected(self, proc: Process) -> bool:
        """Above the protection threshold: a doubled quantum, and never hibernated."""
        return self.graph is not None and proc.cent >= self._protect_at

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
            S.Dial: self._sys_dial,
            S.Pipe: lambda p, r: sys_pipe(self, p, r),  # pipes.py: typed pipes
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
            raise NotSupported(f"syscall {spec.name} needs the {spec.owner} subsystem, "
                               f"which this kernel does not provide")
        handler.not_supported = True  # type: ignore[attr-defined]  # for the syscall table
        return handler

    def install_syscall(self, req_type: type, handler: Callable[[Process, Any], Any]) -> None:
        """Plug in a handler for a registered syscall (VFS, distribution, ...)."""
        spec = S.SYSCALLS.get(req_type)
        if spec is None:
            raise KernelError(f"{req_type.__name__} is not in the syscall registry")
        self._table[req_type] = (handler, spec.reductions)

    # -- setup ------------------------------------------------------------------------
    def register_driver(self, driver: Driver, name: str | None = None) -> None:
        if isinstance(driver, type) or not isinstance(driver, Driver):
            what = f"the class {driver.__name__} (register an instance)" if isinstance(driver, type) \
                else f"a {type(driver).__name__}"
            raise KernelError(f"register_driver takes a Driver instance, got {what}")
        name = name or driver.name
        if not name or not isinstance(name, str):
            raise KernelError("a driver needs a non-empty name")
        if name in self.drivers:
            raise KernelError(f"a driver named {name!r} is already registered")
        check = getattr(self.policy, "check_driver", None)
        if check is not None:
            check(name, driver)  # e.g. a tool typed by a class the ontology does not have
        hook = getattr(driver, "on_register", None)
        if hook is not None:
            hook(driver_port(self, name))  # a driver gets a narrow DriverHost, never the kernel
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
        if isinstance(grant, (str, bytes)) or not isinstance(grant, Iterable):
            raise KernelError(f"grant must be a list of device names, got {type(grant).__name__}")
        grants = list(grant)
        for dev in grants:
            if type(dev) is not str:
                raise KernelError(f"grant must be a list of device names, got an entry of type {type(dev).__name__}")
            if dev not in self.drivers and not self.replaying:
                known = ", ".join(sorted(self.drivers)) or "none"
                raise KernelError(f"cannot grant device {dev!r}: no such driver (registered: {known})")
        self._running = True
        self._wakeup = asyncio.Event()
        self._stop_requested = None
        saved = self._catch_signals()
        try:
            proc = self._create(None, init, args, (), quota, False, priority, None, name)
            self.grant_device(proc, SPAWN, Right.SPAWN)  # init may spawn; it passes this on or not
            # init is "spawned" with its grants: like any process, its `sys.caps` lists them
            proc.spawn_caps = tuple(self.grant_device(proc, dev) for dev in grants)
            proc.sys.caps = proc.spawn_caps  # type: ignore[union-attr]
            self.init = proc
            try:
                if self.observers:
                    info = BootInfo(args, tuple(grants), quota, name, priority)
                    for obs in list(self.observers):
                        obs.booted(self, proc, info)
                if self.trust is not None:
                    self.trust.booted()  # journals the run's trust settings (a recorder now listens)
                collector = _gc.apply(self.config.gc)  # what boot made is frozen from here on
                try:
                    await self._loop()
                finally:
                    _gc.restore(collector)
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
            _restore_signals(saved)

    def _catch_signals(self) -> dict[int, Any]:
        """While the kernel runs, SIGINT and SIGTERM are a request to shut down, not an
        exception thrown through the dispatch loop (or into whichever process happened to
        run): the handler only records the signal and wakes the loop, which ends init with
        `shutdown` at its next turn. Only the main thread can install handlers; elsewhere
        the host's own handling stays as it was. The previous handlers come back after."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: Any) -> None:
            self.request_stop(signal.Signals(signum).name)

        saved: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                saved[sig] = signal.signal(sig, on_signal)
            except (ValueError, OSError):  # pragma: no cover - not the main interpreter
                pass
        return saved

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
        self._loop_ref = asyncio.get_running_loop()
        while init.state is not EXITED:
            if self._stop_requested is not None:
                self.events.emit(KERNEL_PID, "shutdown_request", self._stop_requested)
                self.terminate(init, ExitReason(ExitKind.SHUTDOWN, self._stop_requested))
                break
            self._net_turn += 1      # network input is applied at a turn (remote.py)
            if self._net_on:
                self._net_tick()
            busy = self._run_ready(switch_batch)
            if init.state is EXITED:
                break
            if self.hibernation is not None:
                self.hibernation.turn()  # a deterministic point: after a batch of switches
            if busy:
                if self._io_inflight:
                    self.io_tick += 1
                    if self.replay_io is not None:
                        self.replay_io.tick(self.io_tick, idle=False)
                    else:
                        await asyncio.sleep(0)
                elif self._external_sources:
                    await asyncio.sleep(0)  # a served kernel keeps answering its control API
                continue
            # idle: nothing runnable
            if self._net_self_pending:
                continue  # a message this node sent itself is applied at the next turn, before time moves
            due = self.timers.next_due()
            if self._io_inflight or self._external_sources or self._held_waits:
                wakeup.clear()
                timeout = None
                if due is not None:
                    if self.clock.virtual:  # time stands still while someone outside may answer
                        timeout = 0.0 if not (self._io_inflight or self._held_waits) else None
                    else:
                        timeout = max(0.0, (due - self.clock.now()) / 1000.0)
                jump = (timeout is None and due is not None and self._io_inflight > 0
                        and self._autojump is not None and self.replay_io is None)
                if jump:
                    timeout = self._autojump
                if timeout != 0.0:
                    if self._io_inflight or self._external_sources:
                        self.io_tick += 1  # held waits (approvals, audit) are not I/O: no tick
                    if self.replay_io is not None and self._io_inflight:
                        self.replay_io.tick(self.io_tick, idle=True)
                    elif self._net_replay is not None:
                        self._net_replay_wait()  # the recorded network input comes at a later turn
                    else:
                        try:
                            await asyncio.wait_for(wakeup.wait(), timeout)
                        except asyncio.TimeoutError:
                            if jump and not wakeup.is_set() and self.runq.top < 0 and self._io_inflight:
                                assert due is not None
                                self._clock_jump(due)
                elif self._net_on and self._external_sources:
                    # virtual time is about to move: a node lets its peers speak first, and what
                    # they said is applied (at the next turn) before time moves (remote.py)
                    if self._net_replay is None:
                        await asyncio.sleep(0)
                    if self._net_input_waiting():
                        continue
                if self.runq.top >= 0 or self._io_inflight or self._held_waits:
                    continue
            if due is None:
                self.events.flush()
                if self.runq.top < 0 and not (self._io_inflight or self._external_sources
                                                   or self._held_waits):
                    self.terminate(init, fault("deadlock: every process is waiting and nothing "
                                               "(timer, I/O or message) can wake one"))
                continue
            if self.clock.virtual:
                self.clock.advance_to(due)
            else:
                delay = (due - self.clock.now()) / 1000.0
                if delay > 0 and not self._net_inbox:  # network input waits for no timer
                    wakeup.clear()
                    try:
                        await asyncio.wait_for(wakeup.wait(), delay)
                    except asyncio.TimeoutError:
                        pass
            self.timers.fire_due(self.clock.now())

    def _clock_jump(self, due: float) -> None:
        """Virtual time jumps to the next timer while driver I/O hangs (autojump).

        When the jump happens depends on how long a driver took in real time, so it is an
        input from outside the program: it is journaled at this I/O tick, and a replay
        applies it at the same tick (`ReplayIO.tick`) instead of waiting on anything."""
        if self.journal is not None:
            self.journal.record(JournalEntry(KERNEL_PID, self.io_tick, "clock_jump", "", None, None,
                                             True, due, at=self.io_tick))
        self.apply_clock_jump(due)

    def apply_clock_jump(self, due: float) -> None:
        clock = self.clock
        assert isinstance(clock, VirtualClock)
        clock.advance_to(due)
        self.timers.fire_due(clock.now())

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
        quantum2 = quantum * 2            # a protected process's quantum (sched/)
        protect_at = self._protect_at     # inf unless the agent-graph scheduler runs
        bypass = self._bypass             # 0 unless it runs
        age = runq.age
        default_table = self._table
        terminate = self.terminate
        for _ in range(max_switches):
            proc: Process | None
            if bypass and age <= 1:
                age = bypass
                proc = runq.pop_aged()  # every bypass-th dispatch: the levels in turn
            else:
                age -= 1
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
                runq.age = age
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
            budget = qn = quantum2 if proc.cent >= protect_at else quantum
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
                except BaseException as e:
                    # whatever the body raised (KeyboardInterrupt, SystemExit included) is the
                    # process's own: a real Ctrl-C reaches the kernel through its signal handler
                    self._append((self._now(), proc.pid, "fault", fault_frames(e)))
                    terminate(proc, fault(_exc_text(e)))
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
                    if self.trust is not None:
                        if type(e) is CapError:  # refused capability use
                            self.trust.evidence(proc, "cap_refused")
                        elif type(e) is SchemaViolation:  # a message that failed the kernel's check
                            self.trust.evidence(proc, "failed_verification")
                except NondeterminismError:
                    raise  # a replay that left the recorded path: the replayer must hear it
                except Exception as e:
                    # not a refusal the handler meant: a kernel bug, never the caller's misuse
                    self._handler_bug(proc, entry[0], req, e)
                    break
                except BaseException as e:
                    # only code the process supplied raises these here (a value's __str__, a
                    # predicate): it faults that process, never the kernel
                    self._process_code_raised(proc, req, e)
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
            proc.reductions += qn - budget
            # -- between quanta: due timers, and a full event buffer --
            if heap and heap[0][0] <= now():
                timers.fire_due(now())
            if len(buf) >= batch:
                events.flush()
        runq.age = age
        return True

    def _handler_bug(self, proc: Process, handler: Any, req: Any, e: BaseException) -> None:
        """A handler raised something it did not mean to: fault the caller, name the handler,
        record it, and keep the kernel running."""
        name = getattr(handler, "__qualname__", None) or type(handler).__name__
        text = _exc_text(e)
        bug = InternalError(f"kernel bug in handler {name} for {type(req).__name__} (pid {proc.pid}): "
                            f"{text} (this is a bug in agentos, not in the caller)")
        self._append((self._now(), proc.pid, "internal_error", (name, type(e).__name__, text)))
        self.terminate(proc, fault(bug))

    def _process_code_raised(self, proc: Process, req: Any, e: BaseException) -> None:
        why = f"raised by the process's own code during {type(req).__name__}: {_exc_text(e)}"
        self._append((self._now(), proc.pid, "fault", why))
        self.terminate(proc, fault(why))

    def _bad_await(self, proc: Process, req: Any) -> None:
        what = type(req).__name__ if req is not None else "a bare yield (asyncio.sleep(0)?)"
        err = KernelError(
            f"pid {proc.pid} ({proc.name}) awaited {what}, which is not a syscall: a process "
            f"reaches the world only through `sys` calls (sys.sleep, not asyncio.sleep; "
            f"a driver, not direct I/O)")
        self.events.emit(proc.pid, "fault", str(err))
        self.terminate(proc, fault(err))

    # -- park / wake: the one way a process waits -----------------------------------------
    def park(self, proc: Process, kind: WaitKind, abort: Callable[[Process], bool] | None,
             *, held: bool = False) -> Any:
        """Put `proc` to sleep until someone calls `wake` on it; returns PARK for the handler.

        `abort(proc)` withdraws the wait (SIGINT, teardown) and undoes whatever the waiter
        registered (a timer, a place in a queue, an in-flight operation); it returns True if
        the wait was withdrawn, False if it cannot be (the process then stays parked).
        `held`: something outside the program (a person, a disk thread) will wake it, so
        the loop keeps listening; counted apart from driver I/O, which alone moves the I/O
        tick that replay keys on.
        """
        proc.state = WAITING
        proc.wait_kind = kind
        proc.abort = abort
        if held:
            proc.wait_held = True
            self._held_waits += 1
        return PARK

    def _unpark(self, proc: Process) -> None:
        """Forget `proc`'s wait (its waker or its abort has run)."""
        proc.wait_kind = None
        proc.abort = None
        if proc.wait_held:
            proc.wait_held = False
            self._held_waits -= 1
            if self._wakeup is not None:
                self._wakeup.set()  # the loop may be asleep listening for exactly this

    def wake(self, proc: Process, value: Any = None, exc: BaseException | None = None) -> None:
        """Make a parked `proc` runnable again; it resumes with `value` or has `exc` thrown in."""
        if proc.state is EXITED:
            return
        if proc.state is HIBERNATED:
            hib = self.hibernation
            if not hib.thaw(proc, "wake"):
                hib.defer(proc, ("wake", value, exc))  # its record cannot be read now: later
                return
            if proc.state is READY:
                value = None  # a rebuilt message loop starts from its top: recv takes the message
        if proc.wait_kind is not None:
            self._unpark(proc)
        proc.resume_value = value
        proc.resume_exc = exc
        if proc.stopped:
            proc.state = SUSPENDED
            return
        proc.state = READY
        self.runq.push(proc)
        wakeup = self._wakeup
        if wakeup is not None and (self._io_inflight or self._external_sources or self._held_waits):
            wakeup.set()  # woken from a callback while the loop may be waiting on asyncio

    def requeue(self, proc: Process, value: Any) -> None:
        """Send a running `proc` to the back of its queue (not a wait: nothing must wake it)."""
        proc.resume_value = value
        proc.resume_exc = None
        if proc.stopped:
            proc.state = SUSPENDED
            return
        proc.state = READY
        self.runq.push(proc)

    def hold_until_continued(self, proc: Process, kind: WaitKind, resume: Callable[[], None],
                             abort: Callable[[Process], bool]) -> None:
        """`proc`'s wait ended while it is stopped (SIGSTOP): its action must not run yet.

        The process stays parked, as a plain wait that keeps no loop listening, until SIGCONT
        runs `resume`; if it ends or is interrupted first, `abort` gives back what the wait
        held. Approvals and audit commits use this, so a stopped process's driver call never
        runs while it is stopped."""
        if proc.wait_kind is not None:
            self._unpark(proc)

        def withdraw(p: Process) -> bool:
            self._on_continue.pop(p, None)
            return abort(p)

        self._on_continue[proc] = resume
        self.park(proc, kind, withdraw)

    def continued(self, proc: Process) -> bool:
        """SIGCONT reached `proc`: run the action held for it, if any (see hold_until_continued)."""
        resume = self._on_continue.pop(proc, None)
        if resume is None:
            return False
        if proc.wait_kind is not None:
            self._unpark(proc)
        resume()
        return True

    def cancel_wait(self, proc: Process) -> bool:
        """Withdraw whatever `proc` waits for (SIGINT). True if the wait was withdrawn; the
        caller then wakes it with its error."""
        abort = proc.abort
        if proc.wait_kind is None or abort is None or not abort(proc):
            return False
        self._unpark(proc)
        return True

    def _abort_wait(self, proc: Process) -> None:
        """Teardown: withdraw the wait of a process that is ending, whatever it was."""
        abort = proc.abort
        self._unpark(proc)
        if abort is not None:
            abort(proc)

    def io_started(self) -> None:
        self._io_inflight += 1

    def io_finished(self) -> None:
        self._io_inflight -= 1
        if self._wakeup is not None:
            self._wakeup.set()

    def external_source(self, delta: int) -> None:
        """A driver that can inject messages from outside (network) keeps the kernel alive."""
        self._external_sources += delta

    # -- durability (the work lives in snapshot.py and rebuild.py) ----------------------
    def snapshot(self, pid: int) -> dict[str, Any]:
        """Process `pid` as a portable, JSON-ready description (see kernel/snapshot.py)."""
        from .snapshot import snapshot

        proc = self.procs.get(pid)
        if proc is None:
            raise KernelError(f"snapshot: no live process {pid}")
        if proc.state is HIBERNATED and not self.hibernation.thaw(proc, "snapshot"):
            raise KernelError(f"snapshot: pid {pid} is hibernated and its record cannot be read now")
        return snapshot(self, proc)

    # -- hibernation (the work lives in agentos.sched.hibernate) --------------------------
    def _hib_proc(self, pid: Any, what: str) -> Process:
        if self.hibernation is None:
            raise KernelError(f"{what}: hibernation is off (KernelConfig.hibernation)")
        proc = self.procs.get(pid) if type(pid) is int else None
        if proc is None or proc.state is EXITED:
            raise KernelError(f"{what}: no live process {pid!r}")
        return proc

    def hibernate(self, pid: int) -> bool:
        """Hibernate process `pid` now; False if the store refused (it stays resident, the
        error is counted). KernelError if it cannot hibernate (not waiting, root, ...)."""
        proc = self._hib_proc(pid, "hibernate")
        if proc.state is HIBERNATED:
            return True
        return self.hibernation.hibernate(proc)

    def thaw(self, pid: int) -> bool:
        """Wake hibernated process `pid` (it carries on waiting as it was, or a message loop
        is rebuilt at its top); False if the store cannot be read now, and a
        `HibernationRecordError` (a KernelError) if its record was read but is malformed."""
        proc = self._hib_proc(pid, "wake")
        return self.hibernation.thaw(proc, "request", strict=True)

    def restore(self, snap: dict[str, Any], image: Any, *, parent: int | None = None) -> int:
        """Start `image` again with the state in `snap`; refuses another ABI version. Returns
        the pid. `parent` (a live pid) carves the budget from that process; by default init."""
        from .snapshot import restore

        par = None
        if parent is not None:
            par = self.procs.get(parent) if type(parent) is int else None
            if par is None or par.state is EXITED:
                raise KernelError(f"restore: no live parent process {parent!r}")
        return restore(self, snap, image, parent=par)

    @staticmethod
    def replay_from(store: Any, run_id: str, **kw: Any) -> Any:
        """Rebuild a stored run and replay it from its journal; returns a ReplayReport."""
        from .rebuild import replay_from

        return replay_from(store, run_id, **kw)

    def authorize(self, proc: Process, action: str, args: Any, req: Any = None,
                  carried: bool = False) -> bool:
        """Ask policy about an action on the world, before it happens. `carried`: the
        operation's own journal entry will name the action (a device read or write).

        True: go ahead; with a flight recorder, the action's record is already durable
        (write-ahead). False: not now: the process was killed (SIGPOLICY, naming the rule)
        or parked until the approval channel answers or its record is durable (group
        commit); then `req` runs again and finds its clearance. A device operation uses
        `decide` and writes its record itself, after its reservation (devices.py).
        """
        audit = self.audit
        if audit is not None and audit.passes and audit.cleared(proc.pid, action, args):
            return True  # decided and recorded before it parked for the group commit
        decision = self.decide(proc, action, args, req, carried)
        if decision is None:
            return False
        if audit is not None:
            return audit.decision(proc.pid, action, args, decision, before_action=True, proc=proc, req=req)
        return True

    def decide(self, proc: Process, action: str, args: Any, req: Any = None, carried: bool = False) -> Any:
        """The policy half of `authorize`: the allowing (or approved) `Decision`, with no
        write-ahead record yet; None when the process was killed or parked for an approval
        (holding nothing while it waits); `PolicyDenied` raised for a refusal."""
        audit = self.audit
        pol = self.policy
        if carried and type(pol) in _RECORDING_POLICIES:  # the op's journal entry names the action
            decision = pol.check_carried(proc.pid, action, args)
        else:
            decision = pol.check(proc.pid, action, args)
        self._append((self._now(), proc.pid, "policy", (action, decision.allowed, decision.rule)))
        if decision.effect == "log":  # permissive/audit: allowed, but strict would not have
            self._append((self._now(), proc.pid, "policy_violation", (action, decision.rule, decision.reason)))
            if self.trust is not None and not (decision.extra and "min_trust" in decision.extra):
                self.trust.evidence(proc, "policy_violation")
                if proc.state is EXITED:  # SIGTRUST: the action must not run for a dead process
                    return None
        if not decision.allowed:
            if decision.effect == "approve" and self.approvals is not None and req is not None:
                if audit is not None:
                    audit.decision(proc.pid, action, args, decision, before_action=False)
                if not self.approvals.ask(proc, action, args, decision, req):  # a refusal raises
                    return None
            else:
                if audit is not None:
                    audit.decision(proc.pid, action, args, decision, before_action=False)
                if decision.effect in ("raise", "approve"):
                    why = decision.reason or f"policy denies {action}"
                    if decision.effect == "approve":
                        why += ": no approval channel can answer this call"
                    if decision.extra and "min_trust" in decision.extra:
                        raise TrustDenied(decision.rule, why)  # low trust is not new misbehaviour
                    if self.trust is not None:
                        self.trust.evidence(proc, "policy_denial")  # SIGTRUST may end it here
                    raise PolicyDenied(decision.rule, why)
                self.signals.deliver(proc, Signal.SIGPOLICY, KERNEL_PID, decision.rule)
                return None
        return decision

    def retry_syscall(self, proc: Process, req: Any) -> None:
        """Run a parked process's syscall again (an approval came, a record became durable)
        and wake it with the result."""
        if proc.state is EXITED:
            return
        entry = self._table.get(type(req))
        if entry is None:
            raise KernelError(f"retry_syscall: {type(req).__name__} is not a syscall")
        if proc.wait_kind is not None:
            self._unpark(proc)  # the wait is over; the rerun may park again (approval → audit)
        try:
            value = entry[0](proc, req)
        except SyscallError as e:
            self.wake(proc, None, e)
            return
        except NondeterminismError:
            raise
        except Exception as e:
            self._handler_bug(proc, entry[0], req, e)
            return
        except BaseException as e:
            self._process_code_raised(proc, req, e)
            return
        if value is not PARK and proc.state is not EXITED:
            self.wake(proc, value)

    def send_other(self, proc: Process, cap: Any, req: Any) -> Any:
        """A send on a non-process capability: remote proxies plug in here."""
        return self.route_send(proc, cap, req)  # the sender installed for its kind (extend.py)

def _restore_signals(saved: dict[int, Any]) -> None:
    import signal

    for sig, old in saved.items():
        try:
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        except (ValueError, OSError):  # pragma: no cover
            pass


def _exc_text(e: BaseException) -> str:
    """`Type: message` of an exception, bounded; one whose str raises is named by type."""
    try:
        text = str(e)
        if type(text) is not str:
            text = "?"
    except BaseException:
        text = "?"
    if len(text) > 500:
        text = text[:500] + "..."
    if not text.isascii():  # a lone surrogate from process code must not reach the log as is
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{type(e).__name__}: {text}"


__all__ = ["Kernel", "KernelConfig", "RunResult"]

