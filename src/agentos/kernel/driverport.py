"""What a driver gets of the kernel: the `DriverPort` built at `register_driver`.

Drivers are ring 1: they may know a caller's priority and the clock, write an event,
keep the loop alive while something outside can still act, and end a process whose
backing resource died. They never see the process table, the capability table or the
accounts. The port reaches the kernel through a weak reference, so a driver kept past
its kernel's life (one pool serving several runs) neither keeps the kernel alive nor
acts on it after it is gone.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from ..abi.driver import DriverPort
from ..abi.policy import Decision
from ..abi.types import POOLED_RESOURCES, Pid, fault
from .process import EXITED
from .replay import DecisionRecorder, JournalPolicy

if TYPE_CHECKING:
    from .kernel import Kernel


def driver_port(kernel: "Kernel", name: str) -> DriverPort:
    """The `DriverHost` a driver registered as `name` on `kernel` receives."""
    ref = weakref.ref(kernel)
    now = kernel.clock.now

    def live(pid: Any) -> Any:
        k = ref()
        if k is None or type(pid) is not int:
            return None
        p = k.procs.get(pid)
        return p if p is not None and p.state is not EXITED else None

    def priority(pid: Pid) -> float:
        p = live(pid)  # the effective priority: base, raised by centrality when sched runs
        k = ref()
        return k.effective_priority(p) if p is not None and k is not None else -1.0

    def alive(pid: Pid) -> bool:
        return live(pid) is not None

    def emit(pid: Pid, kind: str, data: Any) -> None:
        k = ref()
        if k is not None:
            k.events.emit(pid, kind, data)

    def keep_alive(delta: int) -> None:
        if type(delta) is not int or delta not in (1, -1):
            raise ValueError(f"{name}: keep_alive takes +1 or -1, got {delta!r}")
        k = ref()
        if k is not None:
            k.external_source(delta)

    def fail(pid: Pid, why: str) -> bool:
        k = ref()
        proc = live(pid)
        if k is None or proc is None:
            return False
        why = why if isinstance(why, str) else repr(why)
        # this runs in an event-loop callback, outside the dispatch loop: count it as an
        # I/O completion so that the processes it wakes (waitpid, Down) get the loop's
        # attention even when nothing else is in flight
        k.io_started()
        try:
            k.terminate(proc, fault(why))
        finally:
            k.io_finished()
        return True

    def lineage(pid: Pid) -> tuple[Pid, ...]:
        k = ref()
        proc = k.procs.get(pid) if k is not None and type(pid) is int else None
        if proc is None:
            return (pid,) if type(pid) is int else ()
        out = []
        while proc is not None:  # a PCB keeps its parent even after the parent exits
            out.append(proc.pid)
            proc = proc.parent
        return tuple(out)

    def live_pids() -> tuple[Pid, ...]:
        k = ref()
        return tuple(k.procs) if k is not None else ()

    def record(pid: Pid, kind: str, data: Any) -> None:
        k = ref()
        if k is None:
            return
        k.events.emit(pid, kind, data)
        rec = k.audit
        if rec is None:
            return
        note = getattr(rec, "note", None)
        try:
            if note is not None:
                note(pid, kind, data)
            else:
                rec.append(pid, kind, data)
        except Exception as e:  # the recorder says why in its own error event; the caller goes on
            k.events.emit(pid, "audit_error", f"{type(e).__name__}: {e}")

    def shared(key: str, factory: Any) -> Any:
        k = ref()
        if k is None:
            return factory()
        store = k.driver_shared
        if key not in store:
            store[key] = factory()
        return store[key]

    def limited(pid: Pid, resource: str) -> bool:
        proc = live(pid)
        if proc is None or resource not in POOLED_RESOURCES:
            return False
        return proc.account.bank[POOLED_RESOURCES.index(resource)] is not None

    def check_policy(pid: Pid, action: str, args: Any) -> Decision:
        k = ref()
        if k is None:
            return Decision(False, "no-kernel", "the kernel is gone", "raise")
        pol = k.policy
        # the answer goes into the driver's own (journaled) result: asking the recording
        # wrapper would journal a decision that a replay, which calls no driver, never asks
        inner = pol.inner if isinstance(pol, (DecisionRecorder, JournalPolicy)) else pol
        if inner is None:
            return Decision(False, "no-policy", "no policy to ask", "raise")
        return inner.check(pid, action, args, dry_run=True)

    def ontology() -> Any:
        k = ref()
        return getattr(k.policy, "ontology", None) if k is not None else None

    def tools_changed() -> None:
        k = ref()
        check = getattr(k.policy, "check_driver", None) if k is not None else None
        if check is not None and name in k.drivers:  # type: ignore[union-attr]
            check(name, k.drivers[name])  # type: ignore[union-attr]

    return DriverPort(name, now=now, priority=priority, alive=alive, emit=emit, keep_alive=keep_alive,
                      fail=fail, lineage=lineage, live_pids=live_pids, record=record, shared=shared,
                      limited=limited, check_policy=check_policy, ontology=ontology,
                      tools_changed=tools_changed)


__all__ = ["driver_port"]
