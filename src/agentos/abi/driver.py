"""The ring-1 driver ABI: `open → handle`, `read`, `write`, `close`, each metered.

A driver returns a `DriverResult` (or an awaitable of one, for real I/O). The kernel,
not the driver, charges the reported cost, journals the result and writes the events.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Protocol, runtime_checkable

from .types import Cost, Pid


@dataclass(slots=True)
class DriverResult:
    value: Any
    cost: Cost = field(default_factory=Cost)


@runtime_checkable
class DriverHandle(Protocol):
    """Whatever a driver's `open` returns; opaque to the kernel."""


class Driver:
    """Base class for drivers. Subclasses override what they support.

    `action(op, req)` names the action on the world that an operation performs, for
    policy checks and audit (e.g. ``("tools.calc", {"x": 1})``); `None` means the
    operation does not touch the world (a pure read of kernel-owned state).
    """

    name: str = "driver"

    def on_register(self, kernel: Any, name: str) -> None:
        """Called by `Kernel.register_driver`: the name it is registered under (which is
        the family of the actions it names, so policies see the name they grant), and the
        kernel, for drivers that must read scheduling state (e.g. a caller's priority)."""
        self.name = name

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
