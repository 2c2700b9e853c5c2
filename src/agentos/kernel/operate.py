"""Operator calls for a kernel that runs as a service: start a program under a live
process, signal a process, and wake the dispatch loop after doing either.

These are the kernel's own authority, used by the daemon (`agentos.server`) on the
kernel's asyncio loop and thread; no process can reach them. A program started here is
carved from its parent's budget like any child (so it can only narrow what the parent
has), and is given only devices the kernel has drivers for.

Invariant: every call here leaves the kernel's tables as a syscall would, then sets the
loop's wakeup so a kernel idling on asyncio notices the work at once.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..abi.errors import KernelError
from ..abi.types import KERNEL_PID, Quota, Right, Signal
from .caps import SPAWN
from .process import EXITED, Process
from .state import KernelState


class Operations(KernelState):
    """Mixed into `Kernel`."""

    _stop_requested: str | None
    _loop_ref: Any

    def _live(self, pid: Any, what: str) -> Process:
        p = self.procs.get(pid) if type(pid) is int else None
        if p is None or p.state is EXITED:
            raise KernelError(f"{what}: no live process {pid!r}")
        return p

    def start(self, image: Any, *, parent: int, args: Any = None, grant: Iterable[str] = (),
              quota: Quota | None = None, name: str | None = None, priority: int | None = None) -> int:
        """Start `image` as a child of live process `parent`, holding the device grants
        `grant`, the spawn right (as init does), and a budget carved from the parent's
        (`quota` narrows it). Returns the pid."""
        par = self._live(parent, "start")
        grants = list(grant)
        for dev in grants:
            if not isinstance(dev, str) or dev not in self.drivers:  # type: ignore[attr-defined]
                known = ", ".join(sorted(self.drivers)) or "none"  # type: ignore[attr-defined]
                raise KernelError(f"start: cannot grant device {dev!r}: no such driver (registered: {known})")
        if quota is not None and not isinstance(quota, Quota):
            raise KernelError(f"start: quota must be a Quota, got {type(quota).__name__}")
        proc = self._create(par, image, args, (), quota, False, priority, None, name)
        # like init, a started program may spawn (its children draw on its own budget)
        self.grant_device(proc, SPAWN, Right.SPAWN)  # type: ignore[attr-defined]
        caps = tuple(self.grant_device(proc, dev) for dev in grants)  # type: ignore[attr-defined]
        proc.spawn_caps = caps
        proc.sys.caps = caps
        self.poke()
        return proc.pid

    def signal(self, pid: int, sig: Signal | str) -> None:
        """Deliver `sig` to live process `pid` from the kernel (the operator's kill/stop/cont)."""
        target = self._live(pid, "signal")
        if isinstance(sig, str):
            try:
                sig = Signal[sig.upper() if sig.upper().startswith("SIG") else "SIG" + sig.upper()]
            except KeyError:
                names = ", ".join(s.name for s in Signal)
                raise KernelError(f"signal: unknown signal {sig!r} (one of {names})") from None
        if not isinstance(sig, Signal):
            raise KernelError(f"signal: expected a Signal, got {type(sig).__name__}")
        self.signals.deliver(target, sig, KERNEL_PID)  # type: ignore[attr-defined]
        self.events.flush()
        self.poke()

    def request_stop(self, why: str) -> None:
        """Stop the whole kernel soon: init ends as `shutdown(<why>)`, then every other
        process, and driver calls in flight are cancelled. Safe to call from a signal
        handler (it only sets a field): the dispatch loop acts on it between batches."""
        self._stop_requested = why
        loop = self._loop_ref
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self.poke)
            except RuntimeError:  # the loop already closed
                pass

    @property
    def stop_requested(self) -> str | None:
        """Why `request_stop` was called, or None."""
        return self._stop_requested

    def poke(self) -> None:
        """Wake the dispatch loop if it idles on asyncio (work arrived from outside)."""
        wakeup = self._wakeup  # type: ignore[attr-defined]
        if wakeup is not None:
            wakeup.set()


__all__ = ["Operations"]
