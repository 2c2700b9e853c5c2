"""Kernels as cluster nodes in one process, on a real nats-server: budgets per peer, the
caller's carve, incarnations, durable de-duplication, and replay of a node's run."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest

from agentos import AllowAll, Kernel, Quota
from agentos.abi.errors import BadArgument, NameTaken, QuotaExceeded
from agentos.abi.types import Down
from agentos.kernel.events import encode_event
from agentos.net import Envelope, RemoteRefused, fresh_nonce, seal
from agentos.net.cluster import Cluster, ClusterConfig

pytestmark = pytest.mark.live_only(reason="a real nats-server and wall-clock leases; "
                                          "test_a_nodes_run_replays_from_its_own_journal replays explicitly")

KEY = b"cluster-in-process-key-0123456789"
LEASE = 0.6


async def echo(sys: Any, args: Any) -> Any:
    while True:
        m = await sys.recv()
        if m.body == "stop":
            return "stopped"
        await sys.send(m.caps[0], {"echo": m.body}, corr=m.corr)


async def idle(sys: Any, args: Any) -> None:
    await sys.recv()


def node(url: str, name: str, **kw: Any) -> tuple[Kernel, Cluster]:
    k = Kernel(policy=AllowAll(), **kw.pop("kernel", {}))
    c = Cluster(k, ClusterConfig(url, name, KEY, lease=LEASE, **kw))
    for img, fn in (("echo", echo), ("idle", idle)):
        c.register_image(img, fn)
    return k, c


@contextlib.asynccontextmanager
async def cluster(*nodes: tuple[Kernel, Cluster]) -> AsyncIterator[None]:
    for _, c in nodes:
        await c.join()
    try:
        for _ in range(600):                      # 30 s: a loaded machine joins slowly
            if all(len(c.members.up_nodes()) == len(nodes) - 1 for _, c in nodes):
                break
            await asyncio.sleep(0.05)
        assert all(len(c.members.up_nodes()) == len(nodes) - 1 for _, c in nodes), "the nodes never all saw each other"
        yield
    finally:
        for _, c in nodes:
            await c.leave()


async def serve(sys: Any, args: Any) -> None:
    while True:
        m = await sys.recv()
        if m.body == "quit":
            return


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))  # a hang guard, generous for a loaded machine


def test_a_peer_never_spends_more_on_a_node_than_it_was_granted(nats_server) -> None:  # type: ignore[no-untyped-def]
    a = node(nats_server.url, "a")
    b = node(nats_server.url, "b", grants={"a": Quota(children=2, tokens=1000)})

    async def init(sys: Any, args: Any) -> Any:
        out = []
        p1, c1 = await sys.spawn_remote("b", "idle", quota=Quota(tokens=600))
        try:
            await sys.spawn_remote("b", "idle", quota=Quota(tokens=600))
        except RemoteRefused as e:
            out.append("tokens: " + ("QuotaExceeded" if "QuotaExceeded" in str(e) else str(e)))
        p2, c2 = await sys.spawn_remote("b", "idle", quota=Quota(tokens=300))
        try:
            await sys.spawn_remote("b", "idle")
        except RemoteRefused as e:
            out.append("children: " + ("QuotaExceeded" if "QuotaExceeded" in str(e) else str(e)))
        await sys.monitor(c1)
        await sys.send(c1, "bye")                   # idle ends: its 600 tokens go back to a's account
        d = await sys.recv(match=lambda m: isinstance(m.body, Down))
        p3, _ = await sys.spawn_remote("b", "idle", quota=Quota(tokens=600))
        out.append(str(d.body.reason))
        return out

    async def main() -> Any:
        async with cluster(a, b):
            tb = asyncio.ensure_future(b[0].boot(serve))
            res = await a[0].boot(init)
            acct = b[1].calls.peer_accounts["a"]
            view = b[0].ps()
            b[0].request_stop("test over")
            await tb
            return res, acct, view

    res, acct, view = run(main())
    assert res.value == ["tokens: QuotaExceeded", "children: QuotaExceeded", "normal"]
    holder = next(p for p in view if p["pid"] == acct)
    assert holder["name"] == "peer:a"
    assert holder["remaining"]["tokens"] == 1000 - 300 - 600


def test_a_node_without_a_grant_for_the_caller_refuses_its_spawns(nats_server) -> None:  # type: ignore[no-untyped-def]
    a = node(nats_server.url, "a")
    b = node(nats_server.url, "b", grants={"someone-else": Quota(children=5)})

    async def init(sys: Any, args: Any) -> str:
        try:
            await sys.spawn_remote("b", "idle")
        except RemoteRefused as e:
            return str(e)
        return "spawned"

    async def main() -> Any:
        async with cluster(a, b):
            tb = asyncio.ensure_future(b[0].boot(serve))
            res = await a[0].boot(init)
            b[0].request_stop("test over")
            await tb
            return res

    assert "grants no account to 'a'" in run(main()).value


def test_the_callers_budget_is_carved_for_a_remote_spawn_and_returned_when_it_ends(nats_server) -> None:  # type: ignore[no-untyped-def]
    a = node(nats_server.url, "a")
    b = node(nats_server.url, "b", grants={"*": Quota(children=10, tokens=10_000)})
    seen: list[Any] = []

    async def child(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn_remote("b", "idle", quota=Quota(tokens=700))
        left = (await sys.budget())
        try:
            await sys.spawn_remote("b", "idle", quota=Quota(tokens=700))
            second = "spawned"
        except QuotaExceeded:
            second = "QuotaExceeded"
        await sys.monitor(c)
        await sys.send(c, "bye")
        await sys.recv(match=lambda m: isinstance(m.body, Down))
        for _ in range(50):                      # the stub ends right after the Down
            if (await sys.budget()).remaining["tokens"] == 1000:
                break
            await sys.yield_()
        seen.append([left.remaining["tokens"], second, (await sys.budget()).remaining["tokens"]])

    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(child, quota=Quota(tokens=1000), caps=["spawn"])
        return str(await sys.waitpid(c))

    async def main() -> Any:
        async with cluster(a, b):
            tb = asyncio.ensure_future(b[0].boot(serve))
            res = await a[0].boot(init)
            b[0].request_stop("test over")
            await tb
            return res

    res = run(main())
    assert res.value == "normal", res
    # the child carved 700 of its 1,000, was refused a second 700, and got it all back
    assert seen == [[300, "QuotaExceeded", 1000]]


def test_forged_tampered_and_garbage_frames_on_a_nodes_subject_are_dropped_and_counted(nats_server) -> None:  # type: ignore[no-untyped-def]
    a = node(nats_server.url, "a")

    async def main() -> Any:
        import nats

        async with cluster(a):
            nc = await nats.connect(nats_server.url)
            subject = a[1].link.subject("a")
            env = Envelope("b", 1, "a", 1, __import__("time").time(), fresh_nonce(), "hi", 1)
            good = seal(KEY, env)
            forged = seal(b"another-key-entirely-0123456789", env)
            tampered = good[:-3] + b"XX" + good[-1:]
            replayed = good  # sent twice: the second is a replay
            for frame in (b"", b"\x00" * 100, forged, tampered, good, replayed):
                await nc.publish(subject, frame)
            await nc.flush()
            for _ in range(600):                  # until all five bad frames are counted (30 s)
                if sum(a[0].net.dropped.values()) >= 5:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)              # and a moment for any miscount beyond them
            await nc.close()
            return dict(a[0].net.dropped)

    async def boot_and_check() -> Any:
        t = asyncio.ensure_future(main())
        await asyncio.sleep(0)
        return await t

    dropped = run(boot_and_check())
    assert dropped.get("forged") == 1 and dropped.get("tampered") == 1
    assert dropped.get("malformed", 0) >= 2
    assert dropped.get("replayed") == 1
    # (an oversize frame cannot reach a node: NATS's own payload limit, 1 MiB by default,
    # equals the frame limit; a process's oversize send is refused at seal)


def test_frames_from_an_incarnation_declared_down_are_refused(nats_server) -> None:  # type: ignore[no-untyped-def]
    a = node(nats_server.url, "a")
    b = node(nats_server.url, "b")
    got: list[Any] = []

    async def init(sys: Any, args: Any) -> Any:
        m = await sys.recv(timeout=1500)
        return None if m is None else m.body

    async def main() -> Any:
        import time

        import nats

        async with cluster(a, b):
            await b[1].leave()                       # b stops renewing: declared down
            for _ in range(600):
                if "b" not in a[1].members.up_nodes():
                    break
                await asyncio.sleep(0.05)
            assert "b" not in a[1].members.up_nodes()
            nc = await nats.connect(nats_server.url)
            env = Envelope("b", 7, "a", 1, time.time(), fresh_nonce(), "from the old incarnation", 1)
            await nc.publish(a[1].link.subject("a"), seal(KEY, env))
            await nc.flush()
            res = await a[0].boot(init)
            await nc.close()
            got.append(res.value)
            return dict(a[0].net.dropped)

    dropped = run(main())
    assert got == [None]
    assert dropped.get("incarnation") == 1


def test_cluster_wide_names_one_holder_and_lookup_from_another_node(nats_server) -> None:  # type: ignore[no-untyped-def]
    a = node(nats_server.url, "a")
    b = node(nats_server.url, "b")
    order: list[str] = []

    async def holder(sys: Any, args: Any) -> Any:
        await sys.register("svc")
        order.append("registered")
        m = await sys.recv()
        await sys.send(m.caps[0], "from b", corr=m.corr)
        await sys.recv()

    async def other(sys: Any, args: Any) -> Any:
        while "registered" not in order:
            await sys.sleep(20)
        await sys.sleep(200)
        out = []
        try:
            await sys.register("svc")
        except NameTaken as e:
            out.append("taken: " + str(e))
        cap = await sys.lookup("svc")
        await sys.send(cap, "hello", corr=1, caps=[await sys.self_cap()])
        r = await sys.recv(match=lambda m: m.corr == 1, timeout=3000)
        out.append(r.body if r else None)
        for bad in ("", "x" * 100_000, "\udc80"):
            try:
                await sys.lookup(bad)
                out.append("looked up")
            except BadArgument:
                out.append("bad")
        return out

    async def main() -> Any:
        async with cluster(a, b):
            tb = asyncio.ensure_future(b[0].boot(holder))
            res = await a[0].boot(other)
            b[0].request_stop("test over")
            await tb
            return res

    value = run(main()).value
    assert value[0] == "taken: register: 'svc' is held by b/1"
    assert value[1] == "from b"
    assert value[2:] == ["looked up", "looked up", "bad"] or value[2:].count("bad") >= 1


def test_a_nodes_run_replays_from_its_own_journal(nats_server) -> None:  # type: ignore[no-untyped-def]
    """Remote deliveries, spawn_remote answers, name lookups and a Down from the failure
    detector all reach node a as journaled inputs: replaying a's journal alone (no NATS, no
    peer) gives the same event log, byte for byte."""
    a = node(nats_server.url, "a", kernel={"deterministic": True, "seed": 7})
    b = node(nats_server.url, "b", grants={"a": Quota(children=5)})
    c = node(nats_server.url, "c", grants={"a": Quota(children=5)})

    async def named(sys: Any, args: Any) -> None:
        await sys.register("far")
        await sys.recv()

    async def init(sys: Any, args: Any) -> Any:
        pid, cap = await sys.spawn_remote("b", "echo")
        await sys.send(cap, "ping", corr=1, caps=[await sys.self_cap()])
        r = await sys.recv(match=lambda m: m.corr == 1)
        pid2, cap2 = await sys.spawn_remote("c", "idle")
        await sys.monitor(cap2)
        found = None
        while found is None:                       # the name arrives through the cluster's table
            found = await sys.lookup("far")
            if found is None:
                await sys.recv(match=lambda m: False, timeout=0)
                await sys.yield_()
        await sys.send(found, "hi")
        d = await sys.recv(match=lambda m: isinstance(m.body, Down))   # c is killed: noconnection
        await sys.send(cap, "stop")
        return [r.body, str(d.body.reason)]

    async def main() -> Any:
        async with cluster(a, b, c):
            tb = asyncio.ensure_future(b[0].boot(named))
            tc = asyncio.ensure_future(c[0].boot(serve))

            async def kill_c() -> None:
                while not c[1].calls.spawned_by:
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.2)
                await c[1].leave()                  # c goes silent: a's detector declares it down
                c[0].request_stop("gone")
            killer = asyncio.ensure_future(kill_c())
            try:
                res = await a[0].boot(init)
                await asyncio.wait_for(killer, 30)
            finally:
                killer.cancel()
            b[0].request_stop("test over")
            await asyncio.gather(tb, tc)
            return res

    res = run(main())
    assert res.value == [{"echo": "ping"}, "noconnection(c)"]
    live_events = [encode_event(e) for e in a[0].events.events()]
    assert a[0].journal is not None

    rk = Kernel(policy=AllowAll(), deterministic=True, seed=7, mode="replay", journal=a[0].journal)
    rc = Cluster(rk, ClusterConfig(nats_server.url, "a", KEY, lease=LEASE))
    for img, fn in (("echo", echo), ("idle", idle)):
        rc.register_image(img, fn)
    nats_server.stop()                               # the replay needs no network at all
    replayed = rk.run(init)
    assert replayed.value == res.value
    assert [encode_event(e) for e in rk.events.events()] == live_events


async def counting(sys: Any, args: Any) -> None:
    """A message loop whose state is in its memory: it survives a migration."""
    await sys.register("acc")
    while True:
        m = await sys.recv()
        await sys.remember({"seen": m.body})
        await sys.send(m.caps[0], [m.body, len(await sys.working_set())], corr=m.corr)


def test_a_message_loop_migrates_with_its_name_memory_and_budget_and_its_old_address_forwards(
        nats_server) -> None:  # type: ignore[no-untyped-def]
    a = node(nats_server.url, "a")
    b = node(nats_server.url, "b", grants={"a": Quota(children=5, tokens=10_000)})
    for _, c in (a, b):
        c.register_image("counting", counting)
    state: dict[str, Any] = {}

    async def a_init(sys: Any, args: Any) -> None:
        pid, _ = await sys.spawn("counting", quota=Quota(tokens=700))
        state["pid"] = pid
        await sys.recv(match=lambda m: m.body == "quit")

    async def call(sys: Any, cap: Any, body: Any) -> Any:
        corr = sys.next_corr()
        await sys.send(cap, body, corr=corr, caps=[await sys.self_cap()])
        r = await sys.recv(match=lambda m: m.corr == corr, timeout=5000)
        return None if r is None else r.body

    async def b_init(sys: Any, args: Any) -> Any:
        old = None
        while old is None:
            old = await sys.lookup("acc")
            if old is None:
                await sys.sleep(20)
        out = [await call(sys, old, "x1"), await call(sys, old, "x2")]
        state["ready"] = True
        while "moved" not in state:
            await sys.sleep(20)
        out.append(await call(sys, old, "x3"))          # the old address: forwarded
        new = None
        for _ in range(100):
            new = await sys.lookup("acc")                # the name moved with it: local now
            if new is not None:
                break
            await sys.sleep(20)
        out.append(await call(sys, new, "x4"))
        moved = b[0].procs[state["moved"][1]]          # (the test looks at the kernel's books)
        state["carved"] = b[0].accounts.view(moved.account)
        state["parent"] = moved.parent.name if moved.parent else None
        return out

    async def main() -> Any:
        a[0].register_image(counting)
        async with cluster(a, b):
            ta = asyncio.ensure_future(a[0].boot(a_init))
            tb = asyncio.ensure_future(b[0].boot(b_init))
            while "ready" not in state:
                await asyncio.sleep(0.02)
            where = await a[1].migrate(state["pid"], "b")
            state["moved"] = where
            res = await tb
            a[0].request_stop("test over")
            await ta
            return res, where, state.get("carved")

    res, where, carved = run(main())
    assert where[0] == "b"
    assert res.value == [["x1", 1], ["x2", 2], ["x3", 3], ["x4", 4]], res.value
    assert carved is not None and carved["limits"]["tokens"] == 700 and state["parent"] == "peer:a"
