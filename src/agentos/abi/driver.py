"""The ring-1 driver ABI: `open → handle`, `read`, `write`, `close`, each metered.

A driver returns a `DriverResult` (or an awaitable of one, for real I/O). The kernel,
not the driver, charges the reported cost, journals the result and writes the events.

A driver never holds the kernel. At registration it is handed a `DriverHost`: the name
it serves under, the kernel's clock, a caller's priority, and the few things a driver
may do on its own initiative (write an event, keep the kernel alive while an outside
source can still act, end a process whose backing resource died). That is all of the
kernel a driver can reach, so a driver bug cannot corrupt scheduling, accounts or caps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

from .types import Cost, Pid


@dataclass(slots=True)
class DriverResult:
    value: Any
    cost: Cost = field(default_factory=Cost)


@runtime_checkable
class DriverHandle(Protocol):
    """Whatever a driver's `open` returns; opaque to the kernel."""


@runtime_checkable
class DriverHost(Protocol):
    """The whole of the kernel a driver may see or touch (handed to `Driver.on_register`)."""

    @property
    def name(self) -> str:
        """The device name the driver is registered under."""
        ...

    def now(self) -> float:
        """The kernel's clock, in ms (virtual under a `VirtualClock`)."""
        ...

    def priority(self, pid: Pid) -> float:
        """The effective scheduling priority of process `pid` (its base priority, raised by
        its centrality when the agent-graph scheduler runs); -1 once it has exited."""
        ...

    def alive(self, pid: Pid) -> bool:
        """Whether process `pid` still runs."""
        ...

    def emit(self, pid: Pid, kind: str, data: Any = None) -> None:
        """Append an event to the kernel's log, on behalf of `pid`."""
        ...

    def keep_alive(self, delta: int) -> None:
        """+1 when an outside source (a live child process, a socket) may wake a process
        while all of them wait, so the kernel must not call that a deadlock; -1 when it
        is gone. Every +1 is matched by one -1."""
        ...

    def fail(self, pid: Pid, why: str) -> bool:
        """End process `pid` with `fault(why)` because the resource behind its operation
        died (called from an event-loop callback). False if it had already exited."""
        ...

    def lineage(self, pid: Pid) -> tuple[Pid, ...]:
        """`pid` and its ancestors, nearest first (exited ones included): for drivers whose
        restrictions are inherited down the process tree (the sandbox's confinement)."""
        ...

    def live_pids(self) -> tuple[Pid, ...]:
        """The pids of every live process (to prune per-process state a driver keeps)."""
        ...

    def record(self, pid: Pid, kind: str, data: Any) -> None:
        """An event, and a flight-recorder record when the kernel has a recorder."""
        ...

    def limited(self, pid: Pid, resource: str) -> bool:
        """Whether `pid`'s budget limits `resource` ("tokens", "tool_calls", "usd"): a
        driver that cannot bound that resource must refuse such a caller."""
        ...

    def shared(self, key: str, factory: Callable[[], Any]) -> Any:
        """State shared by every driver of this kernel under `key` (made by `factory` on
        first use): e.g. one confinement registry whichever sandbox device opened."""
        ...

    def check_policy(self, pid: Pid, action: str, args: Any) -> Any:
        """What policy would answer `pid` about `action` (a `Decision`), asked as
        `sys.check_policy` asks: no side effect (no rate-limit slot is taken) and not
        journaled, so only for an answer the driver returns as its operation's result
        (which is). For a driver that lists what a caller may do (the tool registry)."""
        ...

    def ontology(self) -> Any:
        """The policy's ontology (a `SubsumptionIndex`), or None."""
        ...

    def tools_changed(self) -> None:
        """The tools this driver serves (or their classes) changed: policy re-reads them.
        Raises the policy's load error when one is typed by a class its ontology lacks."""
        ...


class DriverPort:
    """The kernel's `DriverHost`: a bundle of the callables the kernel chose to expose.

    Holding one gives a driver these operations and nothing else; the kernel builds it
    in `Kernel.register_driver` (and closes over the kernel weakly, so a driver that
    outlives its kernel keeps nothing alive)."""

    __slots__ = ("_name", "_now", "_priority", "_alive", "_emit", "_keep_alive", "_fail", "_lineage",
                 "_live_pids", "_record", "_shared", "_limited", "_check_policy", "_ontology",
                 "_tools_changed")

    def __init__(self, name: str, *, now: Callable[[], float], priority: Callable[[Pid], float],
                 alive: Callable[[Pid], bool], emit: Callable[[Pid, str, Any], None],
                 keep_alive: Callable[[int], None], fail: Callable[[Pid, str], bool],
                 lineage: Callable[[Pid], tuple[Pid, ...]], live_pids: Callable[[], tuple[Pid, ...]],
                 record: Callable[[Pid, str, Any], None],
                 shared: Callable[[str, Callable[[], Any]], Any],
                 limited: Callable[[Pid, str], bool],
                 check_policy: Callable[[Pid, str, Any], Any] | None = None,
                 ontology: Callable[[], Any] | None = None,
                 tools_changed: Callable[[], None] | None = None) -> None:
        self._name = name
        self._now = now
        self._priority = priority
        self._alive = alive
        self._emit = emit
        self._keep_alive = keep_alive
        self._fail = fail
        self._lineage = lineage
        self._live_pids = live_pids
        self._record = record
        self._shared = shared
        self._limited = limited
        self._check_policy = check_policy
        self._ontology = ontology
        self._tools_changed = tools_changed

    @property
    def name(self) -> str:
        return self._name

    def now(self) -> float:
        return self._now()

    def priority(self, pid: Pid) -> float:
        return self._priority(pid)

    def alive(self, pid: Pid) -> bool:
        return self._alive(pid)

    def emit(self, pid: Pid, kind: str, data: Any = None) -> None:
        self._emit(pid, kind, data)

    def keep_alive(self, delta: int) -> None:
        self._keep_alive(delta)

    def fail(self, pid: Pid, why: str) -> bool:
        return self._fail(pid, why)

    def lineage(self, pid: Pid) -> tuple[Pid, ...]:
        return self._lineage(pid)

    def live_pids(self) -> tuple[Pid, ...]:
        return self._live_pids()

    def record(self, pid: Pid, kind: str, data: Any) -> None:
        self._record(pid, kind, data)

    def shared(self, key: str, factory: Callable[[], Any]) -> Any:
        return self._shared(key, factory)

    def limited(self, pid: Pid, resource: str) -> bool:
        return self._limited(pid, resource)

    def check_policy(self, pid: Pid, action: str, args: Any) -> Any:
        if self._check_policy is None:
            from .policy import Decision

            return Decision(False, "no-policy", "this host answers no policy questions", "raise")
        return self._check_policy(pid, action, args)

    def ontology(self) -> Any:
        return self._ontology() if self._ontology is not None else None

    def tools_changed(self) -> None:
        if self._tools_changed is not None:
            self._tools_changed()

    def __repr__(self) -> str:
        return f"<DriverPort {self._name!r}>"


class Driver:
    """Base class for drivers. Subclasses override what they support.

    `action(op, req)` names the action on the world that an operation performs, for
    policy checks and audit (e.g. ``("tools.calc", {"x": 1})``); `None` means the
    operation does not touch the world (a pure read of kernel-owned state).
    """

    name: str = "driver"
    host: DriverHost | None = None
    """Set by `on_register`: this driver's view of the kernel it serves."""

    def on_register(self, host: DriverHost) -> None:
        """Called by `Kernel.register_driver` with the driver's `DriverHost` (its name,
        the clock, callers' priorities, events). Overrides call this first."""
        self.host = host
        self.name = host.name  # the family of the actions it names, as policies see it

    def bound(self, op: str, handle: Any, req: Any) -> "Cost | None":
        """The most this operation can cost (tokens, tool_calls, usd), known before it runs.

        The kernel reserves it from the caller's budget before the driver is called and
        settles the actual cost after; an operation whose bound does not fit never starts.
        A reported cost above the bound is an overrun: charged, and the caller is killed.
        None: the driver declares no bound, and its costs are charged after the fact (a
        charge that does not fit still kills, but the effect has happened). Every driver
        agentos ships declares one."""
        return None

    def open(self, owner: Pid, params: Any) -> Any:
        return params

    def read(self, handle: Any, req: Any) -> DriverResult | Awaitable[DriverResult]:
        raise NotImplementedError(f"device {self.name!r} does not support read")

    def write(self, handle: Any, data: Any) -> DriverResult | Awaitable[DriverResult]:
        raise NotImplementedError(f"device {self.name!r} does not support write")

    def close(self, handle: Any) -> None:
        return None

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any] | None:
        return (f"{self.name}.{op}", req)


__all__ = ["Driver", "DriverHandle", "DriverHost", "DriverPort", "DriverResult"]
