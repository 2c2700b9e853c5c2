"""The bus across nodes: topics map to NATS subjects, durable topics to a JetStream stream.

A kernel that is a node of a cluster (`agentos.net.Cluster`) reuses the cluster's NATS
connection: a publish on topic `t` goes out on subject `agentos.<cluster>.bus.t`, or, for
a topic declared durable, into the stream `AGENTOS_<cluster>_BUS` on subject
`agentos.<cluster>.busd.t` (de-duplicated by `Nats-Msg-Id`). Every node subscribes to the
plain subjects and holds a durable consumer `agentos-bus-<node>` on the stream, so a node
that was down when a durable message was published gets it when it comes back. Routing
and storage are NATS's: there is no broker of our own between nodes.

What crosses is a sealed envelope (`agentos.net.envelope`: HMAC with the cluster key,
nonce, timestamp), checked with `verify` and a nonce guard on arrival, so a frame someone
without the key put on the subject, a tampered one or a replayed one is dropped and
counted. A verified frame reaches the kernel as the cluster's own input (an envelope from
the node to itself, kind "bus_in"): applied at a loop turn and journaled as `net.in`, so a
node's run replays from its journal with no NATS. A local subscriber receives a remote
message with `sender` -1; the publishing node checked the publisher's capability, the
receiving node checks topic and body again before fanning out.

Not done here: plain cross-node delivery is at most once (NATS core); a frame lost while
a node is disconnected is lost. Echoes of our own publishes are dropped (local
subscribers were served at publish time).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..abi.errors import BadArgument
from ..abi.types import KERNEL_PID
from . import topics as T
from .bus import Bus, BusMessage, _body
from .lanes import LANES

if TYPE_CHECKING:
    from ..net.cluster import Cluster

log = logging.getLogger("agentos.services.bus_nats")

WINDOW_S = 120.0              # plain frames older than this are stale
DURABLE_WINDOW_S = 7 * 24 * 3600.0
KIND_WIRE = "bus"
KIND_IN = "bus_in"


class NatsBridge:
    """Carries one kernel's bus over its cluster's NATS connection. Build it after the
    `Cluster` (on a replaying kernel too: it installs the handler that applies journaled
    input); `await start()` after `cluster.join()`, `await stop()` before `leave()`."""

    def __init__(self, bus: Bus, cluster: "Cluster") -> None:
        from ..net.envelope import NonceGuard

        self.bus = bus
        self.cluster = cluster
        self.k = cluster.k
        self.guard = NonceGuard(WINDOW_S, 200_000)
        self.durable_guard = NonceGuard(DURABLE_WINDOW_S, 200_000)
        self.counters = {"sent": 0, "durable_sent": 0, "received": 0, "dropped": 0, "echo": 0, "failed": 0}
        self._out: deque[tuple[str, bytes, str | None]] = deque()
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._subs: list[Any] = []
        self.k.on_envelope(KIND_IN, self._apply)
        bus.bridge = self

    # -- naming --------------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return f"agentos.{self.cluster.link.cluster}"

    def subject(self, topic: str, durable: bool) -> str:
        return f"{self.prefix}.{'busd' if durable else 'bus'}.{topic}"

    @property
    def stream(self) -> str:
        return f"AGENTOS_{self.cluster.link.cluster}_BUS"

    # -- live ------------------------------------------------------------------------------------
    async def start(self) -> None:
        from nats.js.api import DeliverPolicy, StreamConfig  # lazy: the cluster extra

        link = self.cluster.link
        nc, js = link.nc, link.js
        if nc is None:
            raise RuntimeError("bus bridge: the cluster is not connected (join it first)")
        try:
            await js.add_stream(StreamConfig(name=self.stream, subjects=[f"{self.prefix}.busd.>"],
                                             duplicate_window=120.0))
        except Exception:  # noqa: BLE001 - it exists: use it
            await js.stream_info(self.stream)

        async def plain(msg: Any) -> None:
            self._arrived(msg.data, durable=False)

        async def durable(msg: Any) -> None:
            self._arrived(msg.data, durable=True)
            try:
                await msg.ack()
            except Exception:  # noqa: BLE001 - not acked: redelivered, dropped by the guard
                log.debug("bus: durable ack failed")

        self._subs.append(await nc.subscribe(f"{self.prefix}.bus.>", cb=plain))
        self._subs.append(await js.subscribe(f"{self.prefix}.busd.>", durable=f"agentos-bus-{self.cluster.node}",
                                             cb=durable, manual_ack=True, stream=self.stream,
                                             deliver_policy=DeliverPolicy.ALL))
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - a broken connection cannot unsubscribe
                pass

    def publish(self, msg: BusMessage, *, durable: bool) -> None:
        """Called by the bus on a live publish: seal and queue (never raises into the bus;
        what cannot go is counted, since a replay has no bridge to refuse it again)."""
        from ..net.envelope import Envelope, fresh_nonce, seal

        net = self.k.net
        if net is None or self._ready is None:
            return
        env = Envelope(self.cluster.node, msg.sender, self.cluster.node, KERNEL_PID, time.time(), fresh_nonce(),
                       {"topic": msg.topic, "lane": msg.lane, "body": msg.body, "durable": durable},
                       net.incarnation, KIND_WIRE)
        try:
            frame = seal(self.cluster.config.key, env)
        except Exception as e:  # noqa: BLE001 - too large for a frame, say
            self.counters["failed"] += 1
            log.debug("bus: cannot seal %s: %s", msg.topic, e)
            return
        self._out.append((self.subject(msg.topic, durable), frame, env.nonce if durable else None))
        self._ready.set()

    async def _pump(self) -> None:
        ready = self._ready
        assert ready is not None
        link = self.cluster.link
        while True:
            await ready.wait()
            ready.clear()
            while self._out:
                subject, frame, msg_id = self._out.popleft()
                try:
                    if msg_id is None:
                        await link.nc.publish(subject, frame)
                        self.counters["sent"] += 1
                    else:
                        await link.js.publish(subject, frame, headers={"Nats-Msg-Id": msg_id})
                        self.counters["durable_sent"] += 1
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001
                    self.counters["failed"] += 1
                    log.debug("bus: publish on %s failed: %s", subject, e)

    def _arrived(self, data: bytes, *, durable: bool) -> None:
        from ..net.envelope import EnvelopeRejected, verify

        try:
            env = verify(self.cluster.config.key, data, self.durable_guard if durable else self.guard, time.time())
        except EnvelopeRejected as e:
            if e.reason != "replayed":
                self.counters["dropped"] += 1
            return
        if env.kind != KIND_WIRE or type(env.body) is not dict:
            self.counters["dropped"] += 1
            return
        if env.from_node == self.cluster.node:
            self.counters["echo"] += 1
            return
        self.counters["received"] += 1
        body = dict(env.body)
        body["from_node"] = env.from_node
        body["from_pid"] = env.from_pid
        self.cluster._input(KIND_IN, body)   # applied at a loop turn, journaled (net.in)

    # -- live and replay ----------------------------------------------------------------------------
    def _apply(self, fields: dict[str, Any]) -> None:
        if fields.get("from_node") != self.cluster.node:
            return   # only our own node hands us bus input (what it verified off the wire)
        b = fields.get("body")
        if type(b) is not dict:
            return
        try:
            topic = T.topic("bus: remote topic", b.get("topic"))
            lane = b.get("lane")
            if type(lane) is not int or not 0 <= lane < LANES:
                raise BadArgument(f"bus: remote lane {lane!r}")
            body = _body("bus: remote body", b.get("body"))
        except BadArgument as e:
            self.k.events.emit(KERNEL_PID, "bus_remote_refused", str(e)[:200])
            return
        self.bus.ingest(topic, lane, body)


__all__ = ["NatsBridge"]
