"""What a process calls to use the bus: one `async def` per `bus_*` syscall, each a trap
(as `Sys` methods are), so a call someone forgot to await never happens and Python says so."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..abi.syscalls import BusDeclare, BusNarrow, BusPublish, BusRecv, BusReject, BusSubscribe, BusUnsubscribe
from ..kernel.trap import trap

if TYPE_CHECKING:
    from ..kernel.trap import Sys
    from .bus import BusMessage


async def bus_declare(sys: "Sys", cap: int, topic: str, *, overflow: str = "drop_oldest",
                      capacity: int | None = None, durable: bool = False, keep: int | None = None) -> dict[str, Any]:
    """Declare (and own) `topic`; see `BusDeclare`."""
    out: dict[str, Any] = await trap(BusDeclare(cap, topic, overflow, capacity, durable, keep))
    return out


async def bus_publish(sys: "Sys", cap: int, topic: str, body: Any, *, lane: int = 1,
                      ttl: float | None = None) -> int:
    """Publish `body` on `topic`; returns how many subscriptions it was queued for."""
    n: int = await trap(BusPublish(cap, topic, body, lane, ttl))
    return n


async def bus_subscribe(sys: "Sys", cap: int, pattern: str, *, capacity: int | None = None,
                        history: bool = False) -> int:
    """Subscribe to `pattern`; returns the subscription id for `bus_recv`."""
    sub: int = await trap(BusSubscribe(cap, pattern, capacity, history))
    return sub


async def bus_recv(sys: "Sys", sub: int, *, timeout: float | None = None) -> "BusMessage | None":
    """The next message of `sub`, or None after `timeout` ms."""
    msg: BusMessage | None = await trap(BusRecv(sub, timeout))
    return msg


async def bus_reject(sys: "Sys", sub: int, msg: "BusMessage") -> None:
    """Refuse `msg` (the last one received on `sub`): it becomes a dead letter."""
    await trap(BusReject(sub, msg.seq))


async def bus_unsubscribe(sys: "Sys", sub: int) -> int:
    """End `sub`; returns how many queued messages became dead letters."""
    n: int = await trap(BusUnsubscribe(sub))
    return n


async def bus_narrow(sys: "Sys", cap: int, pattern: str, rights: Any = None) -> int:
    """A child of bus capability `cap` limited to `pattern` (and `rights`)."""
    ref: int = await trap(BusNarrow(cap, pattern, rights))
    return ref


__all__ = ["bus_declare", "bus_narrow", "bus_publish", "bus_recv", "bus_reject", "bus_subscribe", "bus_unsubscribe"]
