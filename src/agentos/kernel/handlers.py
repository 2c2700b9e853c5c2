"""Syscall handlers that need the whole kernel: identity, names, processes, capabilities,
policy queries and scheduling. The groups with state of their own (IPC, signals, devices,
memory) have their own modules; these are the glue.
"""
from __future__ import annotations

from typing import Any

from ..abi import syscalls as S
from ..abi.errors import CapError, NameTaken, SyscallError, shown
from ..abi.types import NORMAL, Budget, Down, ExitKind, ExitReason, Right, fault
from .caps import PROC, R_KILL, R_MONITOR, R_SEND
from .decision import Decision
from .process import EXITED, PARK, READY, SUSPENDED, WAITING, Process
from .scheduler import MAX_BASE_PRIORITY
from .state import KernelState


class Handlers(KernelState):
    """Mixed into `Kernel`."""

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
                raise SyscallError(f"sched: priority must be an int in 0..{MAX_BASE_PRIORITY}, got {shown(p)}")
            if proc.parent is not None and p > proc.parent.priority and proc.parent.state is not EXITED:
                raise SyscallError(f"sched: priority {p} is above the parent's ({proc.parent.priority})")
            proc.priority = p
        if req.deadline is not None:
            proc.deadline = self.clock.now() + req.deadline
            self._arm_deadline(proc)


def _rights(spec: Any) -> int:
    try:
        return int(Right.parse(spec))
    except (ValueError, TypeError) as e:
        raise CapError(f"bad rights {shown(spec)}: {e}") from None
