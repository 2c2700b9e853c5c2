"""A kernel's node: its name, key and incarnation, its routes, and its ingress checks.

`Kernel.connect` makes one (the first call) and adds routes to it; `Kernel.ingress` asks
it to `accept` each frame; a remote `send` asks it to `ship`. A route is any *transport*:
an object with `send(frame: bytes) -> bool` (False: it holds all it may, the frame was not
taken) that hands the frames it receives to `kernel.ingress`. `Loopback` (two kernels in
one process), `agentos.net.tcp.TcpLink` and the cluster's NATS transport are transports.

Invariants: `accept` never raises for what a frame holds: it returns a checked envelope
or None, having counted the drop under its reason in `dropped` (and kept the reason in
`last_reason`); `ship` raises only `SyscallError`s, for the sending process.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..abi.errors import KernelError
from .envelope import MAX_FRAME, Envelope, NonceGuard, _NODE, _key, fresh_nonce, seal, verify
from .errors import REASONS, EnvelopeRejected, LinkBackpressure, NoRoute

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel


class Transport(Protocol):
    """What a route is: `send` queues one frame for the peer; False means it was not taken."""

    def send(self, frame: bytes) -> bool: ...


class NetNode:
    """One kernel's identity and routes on a network (see the module docstring)."""

    def __init__(self, kernel: "Kernel", name: str, key: bytes, *, incarnation: int = 0,
                 window_s: float = 30.0, max_nonces: int = 100_000, skew_s: float | None = None,
                 max_frame: int = MAX_FRAME, max_inbox: int = 65_536,
                 wall: Callable[[], float] | None = None) -> None:
        if type(name) is not str or _NODE.fullmatch(name) is None:
            raise KernelError(f"a node name is 1-128 of A-Z a-z 0-9 _ . : - (not starting with "
                              f"a symbol), got {name!r:.60}")
        try:
            _key(key)
        except Exception as e:
            raise KernelError(str(e)) from None
        if type(incarnation) is not int or incarnation < 0:
            raise KernelError(f"incarnation must be an int >= 0, got {incarnation!r}")
        if type(max_frame) is not int or max_frame < 256:
            raise KernelError(f"max_frame must be an int of at least 256 bytes, got {max_frame!r}")
        self.kernel = kernel
        self.name = name
        self.key = key
        self.incarnation = incarnation
        if type(max_inbox) is not int or max_inbox < 1:
            raise KernelError(f"max_inbox must be a positive int, got {max_inbox!r}")
        self.max_frame = max_frame
        self.max_inbox = max_inbox
        self.wall: Callable[[], float] = wall or time.time
        try:
            self.guard = NonceGuard(window_s, max_nonces, skew_s=skew_s)
        except ValueError as e:
            raise KernelError(str(e)) from None
        self.routes: dict[str, Transport] = {}
        self.dropped: Counter[str] = Counter()   # reason -> frames dropped at ingress
        self.last_reason = ""
        self.accepted = 0
        self.sent = 0
        self.min_incarnation: dict[str, int] = {}  # node -> its oldest incarnation still accepted

    # -- routes -----------------------------------------------------------------------------
    def add_route(self, peer: str, transport: Transport) -> None:
        if peer != "*" and (type(peer) is not str or _NODE.fullmatch(peer) is None):
            raise KernelError(f"connect: {peer!r:.60} is not a node name (or '*')")
        if not callable(getattr(transport, "send", None)):
            raise KernelError(f"connect: a transport has send(frame) -> bool; "
                              f"{type(transport).__name__} does not")
        self.routes[peer] = transport

    def remove_route(self, peer: str) -> None:
        self.routes.pop(peer, None)

    def route(self, node: str) -> Transport | None:
        return self.routes.get(node) or self.routes.get("*")

    def check_route(self, node: str) -> None:
        if node != self.name and self.route(node) is None:
            raise NoRoute(f"dial: node {node!r} cannot be reached from {self.name!r} (no route)")

    def refuse_incarnations_below(self, node: str, incarnation: int) -> None:
        """From now on drop envelopes from `node` sent by an incarnation before `incarnation`
        (a node that was declared down and came back is a new incarnation)."""
        self.min_incarnation[node] = max(incarnation, self.min_incarnation.get(node, 0))

    # -- out --------------------------------------------------------------------------------
    def ship(self, from_pid: int, node: str, pid: int, body: Any, *, corr: Any = None,
             kind: str = "send", reply: bool = False, att: Any = None) -> str:
        """Seal a message and hand it to the route for `node`; returns its nonce. `att`: the
        sender's attestation, which a receiver that pins this node's key requires."""
        env = Envelope(self.name, from_pid, node, pid, self.wall(), fresh_nonce(), body,
                       self.incarnation, kind, corr, reply, att)
        frame = seal(self.key, env, max_frame=self.max_frame)
        if node == self.name:
            self.kernel.ingress(frame)  # to itself: through the same checks as any frame
            self.sent += 1
            return env.nonce
        transport = self.route(node)
        if transport is None:
            raise NoRoute(f"send: node {node!r} cannot be reached from {self.name!r} (no route)")
        try:
            taken = transport.send(frame)
        except Exception as e:  # a transport's failure is the sender's refusal, never a kernel crash
            raise NoRoute(f"send: the link to node {node!r} failed ({type(e).__name__}: {str(e)[:200]})") from None
        if not taken:
            raise LinkBackpressure(f"send: the link to node {node!r} holds all the frames it may "
                                   f"(is the peer down?); the message was not sent")
        self.sent += 1
        return env.nonce

    # -- in ---------------------------------------------------------------------------------
    def accept(self, frame: Any) -> Envelope | None:
        """The envelope in `frame` if it passes every check, else None (counted)."""
        try:
            env = verify(self.key, frame, self.guard, self.wall(), max_frame=self.max_frame)
            if env.to_node != self.name:
                raise EnvelopeRejected("misrouted", f"addressed to node {env.to_node!r}, this is {self.name!r}")
            if len(self.kernel._net_inbox) >= self.max_inbox:
                raise EnvelopeRejected("overload", f"{self.max_inbox} deliveries wait to be applied")
            floor = self.min_incarnation.get(env.from_node)
            if floor is not None and env.incarnation < floor:
                raise EnvelopeRejected("incarnation", f"from incarnation {env.incarnation} of "
                                                      f"{env.from_node!r}, which is over (now {floor})")
            trust = getattr(self.kernel, "trust", None)
            if trust is not None and env.kind == "send":
                why = trust.check_ingress(env)
                if why is not None:
                    trust.stats.refused_ingress += 1
                    raise EnvelopeRejected("attestation", why)
        except EnvelopeRejected as e:
            self.dropped[e.reason] += 1
            self.last_reason = e.reason
            return None
        except Exception:  # noqa: BLE001 - nothing a frame holds may crash the kernel
            self.dropped["malformed"] += 1
            self.last_reason = "malformed"
            return None
        self.accepted += 1
        return env

    def drop(self, reason: str) -> None:
        """A transport dropped a frame before it could reach `accept` (one longer than the
        frame limit is never read into memory): counted like any other drop."""
        if reason not in REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        self.dropped[reason] += 1
        self.kernel._net_dropped(reason)

    def stats(self) -> dict[str, Any]:
        return {"node": self.name, "incarnation": self.incarnation, "sent": self.sent,
                "accepted": self.accepted, "dropped": dict(self.dropped), "routes": sorted(self.routes)}


class Loopback:
    """A transport straight into another kernel in the same process (tests, one-host setups)."""

    def __init__(self, peer: "Kernel") -> None:
        self.peer = peer
        self.frames = 0

    def send(self, frame: bytes) -> bool:
        if self.peer.net is None:
            return False  # the peer is on no network yet: nothing can take the frame
        self.frames += 1
        self.peer.ingress(frame)
        return True


__all__ = ["Loopback", "NetNode", "Transport"]
