"""Signals, delivered by the kernel, never requested of the process.

SIGKILL, SIGPOLICY and SIGTRUST can be neither masked nor caught: the kernel closes the
coroutine itself. SIGSTOP/SIGCONT suspend and resume scheduling. SIGINT raises
`Interrupted` at the pending syscall (or the next one). SIGTERM and SIGUSR1 arrive as
`SignalMessage`s; SIGUSR1 also asks the kernel to write a checkpoint. A masked signal
waits in the pending list until it is unmasked. A signal a process sends passes the
capability check (kill right) and, when the policy governs signals (a `signals` list or a
rule naming one), policy; the kernel's own signals (SIGPOLICY, SIGTRUST, quota and
deadline kills) are delivered directly and are never subject to either.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..abi.errors import BadArgument, Interrupted, SyscallError, shown
from ..abi.syscalls import SendSignal, Sigmask
from ..abi.types import Signal, SignalMessage, killed, policy, trust
from . import args as A
from .caps import PROC, R_KILL
from .process import EXITED, HIBERNATED, PARK, READY, RUNNING, SUSPENDED, WAITING, Process

if TYPE_CHECKING:
    from .kernel import Kernel


class _InterruptNext:
    """Handler table swapped in when SIGINT must hit a process's next syscall."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[[Process, Any], Any]) -> None:
        self.handler = (handler, 0)

    def get(self, _t: type) -> tuple[Callable[[Process, Any], Any], int]:
        return self.handler


class Signals:
    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self._interrupt_next = _InterruptNext(self._raise_interrupt)

    def handlers(self) -> dict[type, Callable[..., Any]]:
        return {SendSignal: self.sys_signal, Sigmask: self.sys_sigmask}

    def sys_signal(self, proc: Process, req: SendSignal) -> Any:
        sig = A.signal("signal", req.signal)
        cap = self.k.caps.resolve(proc, req.cap, R_KILL, f"signal {sig.name}")
        if cap.kind != PROC:
            raise SyscallError(f"signal {sig.name}: the capability designates a {cap.describe()['kind']}, "
                               f"not a process")
        target: Process = cap.target
        # a process's signal is an action policy may govern (the `signals` list, rules on
        # signal.<SIG>); the kernel's own enforcement calls `deliver` and never comes here
        if self.k.police_signal and not self.k.authorize(
                proc, f"signal.{sig.name}", {"signal": sig.name, "target": target.pid}, req):
            return PARK
        self.deliver(target, sig, proc.pid)
        if target is proc:
            # signalled itself: end this quantum so a kill, stop or SIGINT takes effect now
            if proc.state is RUNNING:
                self.k.requeue(proc, None)
            return PARK
        return None

    def sys_sigmask(self, proc: Process, req: Sigmask) -> frozenset[Signal]:
        block = [A.signal("sigmask: block", s) for s in A.sequence("sigmask: block", req.block)]
        unblock = [A.signal("sigmask: unblock", s) for s in A.sequence("sigmask: unblock", req.unblock)]
        for sig in block:
            if not sig.maskable:
                raise SyscallError(f"sigmask: {sig.name} cannot be masked")
        c = proc.warm() if block else proc.cold  # nothing blocked: no cold fields needed
        if c is None:
            return frozenset()
        for sig in block:
            c.sigmask |= 1 << sig
        for sig in unblock:
            c.sigmask &= ~(1 << sig)
        pending = c.pending_signals
        if pending:
            c.pending_signals = None
            for sig, sender in pending:
                self.deliver(proc, sig, sender)
        return frozenset(s for s in Signal if c.sigmask & (1 << s))

    # -- delivery ---------------------------------------------------------------------
    def deliver(self, target: Process, sig: Signal, sender: int, detail: str | None = None) -> None:
        if target.state is EXITED:
            return
        k = self.k
        if target.state is HIBERNATED:
            hib = k.hibernation
            # a signal that ends it must not wait on a record that went bad for good
            ends = sig is Signal.SIGKILL or sig is Signal.SIGPOLICY or sig is Signal.SIGTRUST
            if not (hib.thaw_for_exit(target, "signal") if ends else hib.thaw(target, "signal")):
                hib.defer(target, ("sig", sig, sender, detail))  # its record cannot be read now
                return
        k.events.emit(target.pid, "signal", (sig.name, sender))
        if sig is Signal.SIGKILL:
            k.terminate(target, killed(sender))
            return
        if sig is Signal.SIGPOLICY:
            k.terminate(target, policy(detail or f"SIGPOLICY from {sender}"))
            return
        if sig is Signal.SIGTRUST:
            k.terminate(target, trust(detail or f"SIGTRUST from {sender}"))
            return
        c = target.cold
        if c is not None and c.sigmask & (1 << sig):
            pend = c.pending_signals
            if pend is None:
                pend = c.pending_signals = []
            pend.append((sig, sender))
            return
        if sig is Signal.SIGSTOP:
            self._stop(target)
        elif sig is Signal.SIGCONT:
            self._cont(target)
        elif sig is Signal.SIGINT:
            self._interrupt(target)
        elif sig is Signal.SIGTERM:
            k.ipc.deliver_kernel(target, SignalMessage(sig, sender))
        elif sig is Signal.SIGUSR1:
            k.checkpoint(target)
            k.ipc.deliver_kernel(target, SignalMessage(sig, sender))

    def _stop(self, p: Process) -> None:
        if p.stopped:
            return
        p.stopped = True
        if p.state is READY or p.state is RUNNING:
            p.state = SUSPENDED
        # a waiting process stays WAITING; `wake` will park it as SUSPENDED

    def _cont(self, p: Process) -> None:
        if not p.stopped:
            return
        p.stopped = False
        if p.state is SUSPENDED:
            p.state = READY
            self.k.runq.push(p)
        else:
            self.k.continued(p)  # an approval or audit commit that came while it was stopped

    def _interrupt(self, p: Process) -> None:
        if p.state is WAITING and self.k.cancel_wait(p):
            self.k.wake(p, None, Interrupted("SIGINT: interrupted while waiting"))
            return
        p.handlers = self._interrupt_next

    def _raise_interrupt(self, proc: Process, req: Any) -> Any:
        proc.handlers = None
        raise Interrupted(f"SIGINT: interrupted before {type(req).__name__.lower()}")

