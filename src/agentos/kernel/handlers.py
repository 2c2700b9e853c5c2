"""Syscall handlers that need the whole kernel: identity, names, processes, capabilities,
policy queries and scheduling. The groups with state of their own (IPC, signals, devices,
memory) have their own modules; these are the glue.
"""
from __future__ import annotations

from typing import Any

from ..abi import syscalls as S
from ..abi.errors import BadArgument, CapError, NameTaken, SyscallError, shown
from ..abi.types import NORMAL, Budget, Down, ExitKind, ExitReason, Right, WaitKind, fault
from . import args as A
from .values import checked
from .caps import PROC, R_KILL, R_MONITOR, R_SEND, R_SPAWN, SPAWN
from .decision import Decision
from .process import EXITED, PARK, READY, SUSPENDED, WAITING, Process
from .scheduler import MAX_BASE_PRIORITY
from .state import KernelState


class Handlers(KernelState):
    """Mixed into `Kernel`."""

    # -- handlers that need the whole kernel ---------------------------------------------
    def _sys_self_cap(self, proc: Process, req: Any) -> int:
        c = proc.cold
        ref = c.self_ref if c is not None else None
        if ref is not None and ref in proc.caps:
            return ref
        cap = self.caps.grant(proc, PROC, proc, R_SEND | R_MONITOR)
        proc.warm().self_ref = cap.ref
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
        level = A.text("log: level", req.level)
        msg = A.text("log: msg", req.msg)
        fields = req.fields
        if type(fields) is not dict:
            raise BadArgument(f"log: fields must be keyword arguments (a dict), got {type(fields).__name__}")
        if fields:
            for key, value in fields.items():
                A.text("log: a field name", key)
                checked(f"log: field {key}", value)
        self.events.emit(proc.pid, "log", (level, msg, fields))

    def _sys_register(self, proc: Process, req: S.Register) -> None:
        name = A.text("register: name", req.name, empty=False)
        holder = self.names.get(name)
        if holder is not None and holder is not proc and holder.state is not EXITED:
            raise NameTaken(f"register: {name!r} is held by pid {holder.pid}")
        self.names[name] = proc
        if proc.names is None:
            proc.names = set()
        proc.names.add(name)

    def _sys_unregister(self, proc: Process, req: S.Unregister) -> None:
        name = A.text("unregister: name", req.name)
        if self.names.get(name) is not proc:
            raise SyscallError(f"unregister: pid {proc.pid} does not hold {name!r}")
        del self.names[name]
        if proc.names:
            proc.names.discard(name)

    def _sys_lookup(self, proc: Process, req: S.Lookup) -> int | None:
        target = self.names.get(A.text("lookup: name", req.name))
        if target is None or target.state is EXITED:
            return None
        return self.caps.grant(proc, PROC, target, R_SEND).ref

    def _sys_spawn(self, proc: Process, req: S.Spawn) -> Any:
        self._spawn_right(proc)
        if self.police_spawn and not self.authorize(proc, "spawn", _spawn_args(req), req):
            return PARK
        child = self._create(proc, req.image, req.args, req.caps, req.quota, req.link,
                             req.priority, req.deadline, req.name)
        cap = self.caps.grant(proc, PROC, child, R_SEND | R_MONITOR | R_KILL)
        return child.pid, cap.ref

    def _spawn_right(self, proc: Process) -> None:
        """Spawning is authority like any other: it needs a capability with the spawn right
        (init is given one; a child holds one only if its parent passed it one)."""
        ref = proc.devices.get(SPAWN) if proc.devices else None
        cap = proc.caps.get(ref) if ref is not None else None
        if cap is not None and cap.rights & R_SPAWN and cap.expires is None:
            return
        now = self.clock.now()
        for c in proc.caps.values():
            if c.rights & R_SPAWN and (c.expires is None or c.expires > now):
                return
        raise CapError(f"spawn: pid {proc.pid} holds no capability with the spawn right "
                       f"(its parent can pass one: spawn(..., caps=[\"spawn\"]))")

    def _sys_exit(self, proc: Process, req: S.Exit) -> Any:
        reason = req.reason
        if reason is None:
            reason = NORMAL
        elif isinstance(reason, str):
            reason = A.text("exit: reason", reason, max_len=10_000)
            try:
                reason = ExitReason.parse(reason)
            except ValueError:
                reason = fault(reason)
        if type(reason) is not ExitReason or not isinstance(reason.kind, ExitKind) \
                or (reason.detail is not None and type(reason.detail) is not str):
            raise BadArgument(f"exit: reason must be an ExitReason or str, got {type(reason).__name__}")
        if reason.detail is not None:
            A.text("exit: reason detail", reason.detail, max_len=10_000)
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
        proc.wait_target = target
        return self.park(proc, WaitKind.WAITPID, _abort_waitpid)

    def _sys_on_cleanup(self, proc: Process, req: S.OnCleanup) -> None:
        if not callable(req.fn):
            raise BadArgument(f"on_cleanup: expected a callable taking the exit reason, "
                              f"got {type(req.fn).__name__}")
        c = proc.warm()
        if c.cleanups is None:
            c.cleanups = []
        c.cleanups.append(req.fn)

    def _sys_derive(self, proc: Process, req: S.Derive) -> int:
        return self.caps.derive(proc, req.cap, _rights(req.rights)).ref

    def _sys_attenuate(self, proc: Process, req: S.Attenuate) -> int:
        rights = None if req.rights is None else _rights(req.rights)
        expires_in = A.optional_number("attenuate: expires_in (ms)", req.expires_in, minimum=0)
        return self.caps.derive(proc, req.cap, rights, expires_in).ref

    def _sys_check_policy(self, proc: Process, req: S.CheckPolicy) -> Decision:
        action = A.text("check_policy: action", req.action, empty=False)
        checked("check_policy: args", req.args)
        return self.policy.check(proc.pid, action, req.args, dry_run=True)

    def _sys_sleep(self, proc: Process, req: S.Sleep) -> Any:
        ms = A.number("sleep: ms", req.ms)
        if ms <= 0:
            self.requeue(proc, None)
            return PARK
        proc.timer = self.timers.add(self.clock.now() + ms, self._sleep_done, proc)
        return self.park(proc, WaitKind.SLEEP, self._on_abort_timer)

    def _sleep_done(self, proc: Process) -> None:
        proc.timer = None
        if proc.state is not EXITED and proc.wait_kind is WaitKind.SLEEP:
            self.wake(proc, None)

    def _abort_timer(self, proc: Process) -> bool:
        self.timers.cancel(proc.timer)
        proc.timer = None
        return True

    def _sys_yield(self, proc: Process, req: Any) -> Any:
        if proc.stopped:
            proc.state = SUSPENDED
            return PARK
        proc.state = READY
        if proc.deadline is None and not proc.in_queue:
            # RunQueue.push, inlined: yield_ is the context-switch hot path
            proc.in_queue = True
            runq = self.runq
            lvl = proc.level
            runq.levels[lvl].append(proc)
            if lvl > runq.top:
                runq.top = lvl
        else:
            self._push(proc)
        return PARK

    def _sys_sched(self, proc: Process, req: S.Sched) -> None:
        deadline = A.optional_number("sched: deadline (ms)", req.deadline)
        if req.priority is not None:
            p = A.integer("sched: priority", req.priority, minimum=0, maximum=MAX_BASE_PRIORITY)
            if proc.parent is not None and p > proc.parent.priority and proc.parent.state is not EXITED:
                raise SyscallError(f"sched: priority {p} is above the parent's ({proc.parent.priority})")
            proc.priority = p
            self.relevel(proc)
        if deadline is not None:
            proc.deadline = self.clock.now() + deadline
            self._arm_deadline(proc)


def _abort_waitpid(proc: Process) -> bool:
    target = proc.wait_target
    proc.wait_target = None
    if target is not None and target.waiters:
        try:
            target.waiters.remove(proc)
        except ValueError:
            pass
    return True


def _spawn_args(req: S.Spawn) -> dict[str, Any]:
    """What a `spawn` rule's constraints see: the image's name and the requested shape."""
    img = req.image
    image = img if isinstance(img, str) else getattr(img, "name", None) or getattr(img, "__name__", type(img).__name__)
    return {"image": image, "name": req.name, "priority": req.priority, "link": bool(req.link),
            "caps": len(req.caps), "args": req.args}


def _rights(spec: Any) -> int:
    ok = (isinstance(spec, Right) or type(spec) is int or type(spec) is str
          or (type(spec) in (list, tuple) and all(type(x) is str for x in spec)))
    if not ok:
        raise BadArgument(f"rights are a Right, an int, \"send,kill\" or a list of names, got {A.shown(spec)}")
    try:
        return int(Right.parse(spec))
    except (ValueError, TypeError) as e:
        raise CapError(f"bad rights {A.shown(spec)}: {e}") from None
