"""The `gateway` and `secure_gateway` drivers: a process relays a peer's sealed frames.

Sometimes the only channel to a peer node is one a process holds (a webhook, a queue, a
serial line behind a tool) and the kernel has no transport for it. A gateway device makes
that process the transport for one peer without giving it the node's authority: the
driver is the node's route to `peer`, so what the kernel seals for the peer waits in the
device until the relay `read`s it (`{"op": "take", "max": n}` → a list of frames, bytes);
and a frame the relay `write`s is handed to `Kernel.ingress`, which verifies it like any
frame from the wire (MAC, nonce guard, address, frame limit) and counts what it drops.
The relay never holds the key: it can neither read a frame's MAC-covered contents into a
forgery nor make one the kernel accepts. `{"op": "stats"}` reads the node's counters.

`secure_gateway` is the same device bound tighter: a frame written must verify and come
from `peer` itself (a relay for one node cannot inject another node's traffic, even
authentic traffic it captured elsewhere), is checked before the write returns so the relay
learns the reason, and `take` is its only read of frames. Both are actions on the world
(`gateway.take`, `gateway.inject`, `gateway.stats`; `secure_gateway.*`) that policy must
allow in a strict kernel; writes run as asynchronous I/O, so a replay answers them from the
journal and applies the delivery at the loop turn the live run did.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ..abi.driver import Driver, DriverResult
from ..abi.errors import DriverError
from ..abi.types import Cost
from .envelope import verify
from .errors import EnvelopeRejected

if TYPE_CHECKING:
    from .node import NetNode

_OPS = ("take", "stats")


class _Outbox:
    """The route to the peer: frames the node seals for it, until the relay takes them."""

    def __init__(self, capacity: int) -> None:
        self.frames: deque[bytes] = deque()
        self.capacity = capacity
        self.refused = 0

    def send(self, frame: bytes) -> bool:
        if len(self.frames) >= self.capacity:
            self.refused += 1
            return False
        self.frames.append(frame)
        return True


class GatewayDriver(Driver):
    """A process relays sealed frames to and from node `peer` (see the module docstring)."""

    name = "gateway"
    secure = False

    def __init__(self, node: "NetNode", peer: str, *, name: str | None = None, queue: int = 1024) -> None:
        if type(queue) is not int or queue < 1:
            raise ValueError(f"queue must be a positive int, got {queue!r}")
        self.name = name or type(self).name
        self.node = node
        self.peer = peer
        self.outbox = _Outbox(queue)
        node.add_route(peer, self.outbox)  # the node's route to `peer` is this device
        self.injected = 0
        self.refused = 0

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        return Cost()  # no tokens, tool calls or money: reductions only

    def open(self, owner: int, params: Any) -> dict[str, Any]:
        if params not in (None, {}):
            raise DriverError(f"{self.name}: open takes no parameters (the device serves peer {self.peer!r})")
        return {"owner": owner}

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        if op == "write":
            return (f"{self.name}.inject", {"peer": self.peer, "bytes": len(req) if isinstance(req, bytes) else None})
        kind = req.get("op") if isinstance(req, dict) else None
        return (f"{self.name}.{kind if kind in _OPS else 'read'}", {"peer": self.peer})

    def read(self, handle: Any, req: Any) -> DriverResult:
        if not isinstance(req, dict) or req.get("op") not in _OPS:
            raise DriverError(f"{self.name}: a read is {{'op': 'take', 'max': n}} or {{'op': 'stats'}}, "
                              f"got {req!r:.80}")
        if req["op"] == "stats":
            return DriverResult({**self.node.stats(), "peer": self.peer, "queued": len(self.outbox.frames),
                                 "injected": self.injected, "refused": self.refused}, Cost(reductions=1))
        n = req.get("max", 64)
        if type(n) is not int or not 1 <= n <= 4096:
            raise DriverError(f"{self.name}: take's max is an int in [1, 4096], got {n!r:.40}")
        frames: list[bytes] = []
        while self.outbox.frames and len(frames) < n:
            frames.append(self.outbox.frames.popleft())
        return DriverResult(frames, Cost(reductions=1 + len(frames)))

    def write(self, handle: Any, data: Any) -> Any:
        if not isinstance(data, (bytes, bytearray)):
            raise DriverError(f"{self.name}: a write is one frame (bytes), got {type(data).__name__}")
        frame = bytes(data)
        return self._inject(frame)  # a coroutine: applied as asynchronous I/O (see the docstring)

    async def _inject(self, frame: bytes) -> DriverResult:
        reason = self._precheck(frame)
        if reason is not None:
            self.refused += 1
            self.node.drop(reason)
            return DriverResult({"accepted": False, "reason": reason}, Cost(reductions=1))
        accepted = self.node.kernel.ingress(frame)
        if accepted:
            self.injected += 1
        else:
            self.refused += 1
        return DriverResult({"accepted": accepted, "reason": None if accepted else self.node.last_reason},
                            Cost(reductions=1))

    def _precheck(self, frame: bytes) -> str | None:
        return None


class SecureGatewayDriver(GatewayDriver):
    """A gateway that takes only frames sealed by its own peer (see the module docstring)."""

    name = "secure_gateway"
    secure = True

    def _precheck(self, frame: bytes) -> str | None:
        node = self.node
        try:  # MAC and shape only: the nonce guard sees the frame once, at ingress
            env = verify(node.key, frame, None, node.wall(), max_frame=node.max_frame)
        except EnvelopeRejected as e:
            return e.reason
        if env.from_node != self.peer:
            return "misrouted"
        return None


__all__ = ["GatewayDriver", "SecureGatewayDriver"]
