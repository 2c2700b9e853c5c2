"""The kernel's extension points: observers, senders for other capability kinds, and
the operator's grant. Mixed into `Kernel`; see observer.py for the hook interface and
docs/extending.md for how the layers above use them.

Invariants: a hook an observer does not override is never wired, so with no observers
the spawn and exit paths pay one truth test each and the syscall path nothing; an
observer's failure is recorded as an `observer_error` event and never becomes the fault
of the process being observed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, cast

from ..abi.errors import CapError, KernelError
from ..abi.types import KERNEL_PID, Right
from .caps import _KIND_NAMES, PROC
from .observer import HOOKS, Observer, overrides
from .process import EXITED, Process
from .state import KernelState

if TYPE_CHECKING:
    from .kernel import Kernel


class ExtensionPoints(KernelState):
    """Mixed into `Kernel`."""

    def checkpoint(self, proc: Process) -> None:
        """SIGUSR1: every observer takes its checkpoint, then one `checkpoint` event."""
        label = None
        for take in self._on_checkpoint:
            try:
                got = take(proc)
            except Exception as e:  # an observer's failure is recorded, never the process's
                self.events.emit(KERNEL_PID, "observer_error", f"checkpoint: {type(e).__name__}: {e}")
                continue
            if label is None:
                label = got
        self.events.emit(proc.pid, "checkpoint", label)

    def add_observer(self, obs: Observer) -> None:
        """Plug `obs` in (see `Observer`). Hooks it does not override cost nothing."""
        if not isinstance(obs, Observer):
            raise KernelError(f"add_observer: {type(obs).__name__} is not an agentos Observer")
        if obs in self.observers:
            raise KernelError("add_observer: this observer is already attached")
        obs.attached(cast("Kernel", self))
        self.observers.append(obs)
        for hook in HOOKS:
            if not overrides(obs, hook):
                continue
            fn = getattr(obs, hook)
            if hook == "spawned":
                self._on_spawn.append(fn)
            elif hook == "exited":
                self._on_exit.append(fn)
            elif hook == "checkpoint":
                self._on_checkpoint.append(fn)
            elif hook == "flushed":
                self.events.add_sink(fn)
            elif hook == "journaled" and self.journal is not None:
                self.journal.sinks.append(fn)

    def install_sender(self, kind: str, handler: Callable[[Process, Any, Any], Any]) -> None:
        """Route `send` on capabilities of `kind` (not "process") to `handler(proc, cap, req)`.

        This is where a remote proxy plugs in: `dial` hands out caps of kind "remote", and
        the distribution layer installs the sender that puts their messages on the wire.
        The handler answers like any syscall handler (a value, a `SyscallError`, or PARK)."""
        if kind not in _KIND_NAMES or kind in ("process", "pipe"):  # the kernel sends on both itself
            choices = ", ".join(k for k in _KIND_NAMES if k not in ("process", "pipe"))
            raise KernelError(f"install_sender: kind must be one of {choices}, got {kind!r}")
        if not callable(handler):
            raise KernelError(f"install_sender: the handler must be callable, got {type(handler).__name__}")
        self._senders[_KIND_NAMES.index(kind)] = handler

    def grant_process(self, holder: int, target: int, rights: Right = Right.SEND | Right.MONITOR) -> int:
        """Give live process `holder` a capability to live process `target`; returns its ref.

        The kernel's own authority (an operator or a boot script wiring processes up), not
        a process's: no process can call this."""
        h = self.procs.get(holder) if type(holder) is int else None
        t = self.procs.get(target) if type(target) is int else None
        for pid, p in ((holder, h), (target, t)):
            if p is None or p.state is EXITED:
                raise KernelError(f"grant_process: no live process {pid!r}")
        try:
            bits = int(Right.parse(rights)) if not isinstance(rights, bool) else 0
        except (TypeError, ValueError, AttributeError) as e:
            raise KernelError(f"grant_process: bad rights {rights!r}: {e}") from None
        if not bits:
            raise KernelError(f"grant_process: rights must name at least one right, got {rights!r}")
        return self.caps.grant(h, PROC, t, bits).ref  # type: ignore[arg-type]

    def route_send(self, proc: Process, cap: Any, req: Any) -> Any:
        """A send on a non-process capability: the sender installed for its kind answers."""
        handler = self._senders.get(cap.kind)
        if handler is None:
            raise CapError(f"send: the capability designates a {cap.describe()['kind']}, not a process")
        return handler(proc, cap, req)


__all__ = ["ExtensionPoints"]
