"""Attacks on the cluster's syscalls and envelopes: each refused with a typed error or
dropped, the kernel keeps running and budgets are conserved.

Nodes here are joined by loopback routes (no NATS): the checks under attack are the
kernel's and the cluster layer's, not the transport's."""
from __future__ import annotations

import math
import time
from typing import Any

import pytest

from agentos import AllowAll, Kernel, Quota
from agentos.abi.errors import BadArgument, CapError
from agentos.net import Envelope, Loopback, RemoteRefused, fresh_nonce, seal
from agentos.net.cluster import Cluster, ClusterConfig

KEY = b"cluster-attacks-key-0123456789abcdef"


def node(name: str, peer: Kernel | None = None, **kw: Any) -> tuple[Kernel, Cluster]:
    k = Kernel(policy=AllowAll(), deterministic=True)
    c = Cluster(k, ClusterConfig("nats://127.0.0.1:1", name, KEY, **kw))
    k.connect(name, Loopback(k), node=name, key=KEY)
    if peer is not None:
        k.connect(peer.net.name if peer.net else "b", Loopback(peer))
    return k, c


def up(k: Kernel, peer: str, inc: int = 1) -> None:
    """What the failure detector would say: `peer` is up (an input from this node to itself)."""
    k.net.ship(0, k.net.name, 0, {"node": peer, "incarnation": inc, "up": True}, kind="cl_node")


def frame(frm: str, to: str, kind: str, body: Any, *, to_pid: int = 0, from_pid: int = 1) -> bytes:
    return seal(KEY, Envelope(frm, from_pid, to, to_pid, time.time(), fresh_nonce(), body, 1, kind))


@pytest.mark.parametrize("call", [
    lambda s: s.spawn_remote(123, "img"),
    lambda s: s.spawn_remote("", "img"),
    lambda s: s.spawn_remote("a b", "img"),
    lambda s: s.spawn_remote("x" * 65, "img"),
    lambda s: s.spawn_remote("\udc80", "img"),
    lambda s: s.spawn_remote("b", ""),
    lambda s: s.spawn_remote("b", 7),
    lambda s: s.spawn_remote("b", "x" * 300),
    lambda s: s.spawn_remote("b", "\udc80"),
    lambda s: s.spawn_remote("b", "img", quota={"tokens": 5}),
    lambda s: s.spawn_remote("b", "img", link="yes"),
    lambda s: s.spawn_remote("a", "img"),
])
def test_spawn_remote_refuses_bad_arguments_with_bad_argument(call: Any) -> None:
    k, _ = node("a")

    async def init(sys: Any, args: Any) -> str:
        try:
            await call(sys)
        except BadArgument as e:
            return "refused: " + str(e)
        return "accepted"

    res = k.run(init)
    assert res.value.startswith("refused: spawn_remote"), res.value


def test_spawn_remote_args_that_cannot_travel_are_refused_before_anything_is_carved() -> None:
    k, _ = node("a")
    up(k, "b")
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    cyc: list[Any] = []
    cyc.append(cyc)

    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        out = []
        for bad in (deep, cyc, {"cap": me}, "\udc80"):
            try:
                await sys.spawn_remote("b", "img", bad)
                out.append("accepted")
            except BadArgument:
                out.append("refused")
        return out, (await sys.budget()).used["children"]

    res = k.run(init, quota=Quota(children=3))
    assert res.value == (["refused"] * 4, 0)


def test_spawn_remote_to_a_node_that_is_not_up_is_remote_refused_and_carves_nothing() -> None:
    k, _ = node("a")

    async def init(sys: Any, args: Any) -> Any:
        try:
            await sys.spawn_remote("b", "img", quota=Quota(tokens=10))
        except RemoteRefused as e:
            return str(e), (await sys.budget()).remaining["tokens"]
        return "spawned"

    res = k.run(init, quota=Quota(tokens=100))
    assert res.value == ("spawn_remote: node 'b' is not a live member of the cluster", 100)


def test_spawn_remote_needs_the_spawn_right() -> None:
    k, _ = node("a")
    up(k, "b")

    async def child(sys: Any, args: Any) -> str:
        try:
            await sys.spawn_remote("b", "img")
        except CapError as e:
            return str(e)
        return "spawned"

    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(child)
        await sys.waitpid(c)

    k.run(init)
    exits = [e.data for e in k.events.events(kind="error")]
    assert any(x[0] == "CapError" and "spawn" in x[1] for x in exits), exits


def test_a_peers_hostile_cluster_envelopes_are_ignored_and_cost_nothing() -> None:
    """A key holder can send any kind: membership and fencing speak only for the node that
    holds them; spawns with hostile quotas are refused; garbage bodies change nothing."""
    k, c = node("b", grants={"a": Quota(children=2, tokens=100)})
    up(k, "a")
    attacks = [
        frame("a", "b", "cl_fence", {"incarnation": 1}),
        frame("a", "b", "cl_node", {"node": "c", "incarnation": 1, "up": True}),
        frame("a", "b", "cl_rejoin", {"incarnation": 99}),
        frame("a", "b", "cl_name", {"name": "svc", "record": {"node": "a", "pid": 1, "incarnation": 1}}),
        frame("a", "b", "cl_claimed", {"name": "svc", "pid": 1, "ok": True, "record": {}}),
        frame("a", "b", "cl_timeout", {"rid": 1}),
        frame("a", "b", "cl_spawn", {"rid": 1, "image": "idle", "quota": {"tokens": 10_000}}),
        frame("a", "b", "cl_spawn", {"rid": 2, "image": "idle", "quota": {"tokens": -5}}),
        frame("a", "b", "cl_spawn", {"rid": 3, "image": "idle", "quota": {"bogus": 1}}),
        frame("a", "b", "cl_spawn", {"rid": 4, "image": "idle", "quota": {"usd": math.inf}}),
        frame("a", "b", "cl_spawn", {"rid": 5, "image": None}),
        frame("a", "b", "cl_spawn", ["not", "a", "dict"]),
        frame("a", "b", "cl_spawned", {"rid": "x", "pid": "y"}),
        frame("a", "b", "cl_down", {"pid": "x", "reason": "\udc80" if False else "nonsense(kind"}),
        frame("a", "b", "cl_mon", None, to_pid=10**12),
        frame("a", "b", "cl_kill", None, to_pid=1),      # init was not spawned by a: not a's to kill
        frame("a", "b", "no_such_kind", {"x": 1}),
    ]

    async def idle(sys: Any, args: Any) -> None:
        await sys.recv()

    c.register_image("idle", idle)

    async def init(sys: Any, args: Any) -> Any:
        for f in attacks:
            k.ingress(f)
        await sys.sleep(10)  # a new turn of the loop: the frames are applied at its top
        await sys.sleep(10)
        return "alive"

    res = k.run(init)
    assert res.value == "alive" and res.reason.normal
    assert not c.fenced and c.view == {"a": 1} and c.names == {}
    refused = [e.data["error"] for e in k.events.events(kind="remote_spawn_refused")]
    assert len(refused) == 6 and all(("QuotaExceeded" in r or "Quota" in r or "BadArgument" in r
                                      or "RemoteRefused" in r or "ValueError" in r) for r in refused), refused
    # the peer's account was opened (for the spawns that got as far as a carve), and no
    # process was ever started on it: nothing was carved from the grant
    holder = c.calls.peer_accounts.get("a")
    assert holder is not None
    assert [e for e in k.events.events(kind="spawn") if e.data[0] == holder] == []


def test_a_remote_process_cannot_be_monitored_through_a_send_only_proxy() -> None:
    kb = Kernel(policy=AllowAll(), deterministic=True)
    ka, _ = node("a", peer=None)
    ka.connect("b", Loopback(kb))
    up(ka, "b")

    async def init(sys: Any, args: Any) -> str:
        cap = await sys.dial("b", 1)
        try:
            await sys.monitor(cap)
        except CapError as e:
            return str(e)
        return "monitoring"

    assert "monitor" in ka.run(init).value


def test_durable_sends_refuse_what_cannot_cross_and_say_when_not_joined() -> None:
    kb = Kernel(policy=AllowAll(), deterministic=True)
    ka, _ = node("a")
    ka.connect("b", Loopback(kb))

    async def other(sys: Any, args: Any) -> None:
        await sys.recv()

    async def init(sys: Any, args: Any) -> Any:
        cap = await sys.dial("b", 1)
        _, mine = await sys.spawn(other)
        out = []
        for kw in ({"deadline": 5}, {"caps": [mine]}):
            try:
                await sys.send(cap, "x", durable=True, **kw)
                out.append("sent")
            except BadArgument:
                out.append("bad")
        try:
            await sys.send(cap, "x", durable=True)
        except RemoteRefused as e:
            out.append(str(e))
        await sys.kill(mine)
        return out

    res = ka.run(init)
    assert res.value[:2] == ["bad", "bad"]
    assert res.value[2] == "send: a durable send needs this node to have joined a cluster"


def test_hostile_process_rows_in_the_membership_table_are_checked_and_bounded() -> None:
    """The membership table is plain NATS KV, not sealed: whoever can write it can publish
    any `ps` rows for a node. Only well-formed rows of a node that is up are shown, at most
    100 a node, names cut to 64 characters and made encodable."""
    _, c = node("a")
    good = [[1, "root", "waiting", "recv"], [2, "w\udc80" + "x" * 10_000, "running", None]]
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    junk = [None, 5, "row", [], [1, 2, 3], [0, "z", "ready", None], [-1, "z", "ready", None],
            [True, "z", "ready", None], [1.5, "z", "ready", None], [math.nan, "z", "ready", None],
            [1 << 70, "z", "ready", None], [3, None, "ready", None], [3, "z", "<b>pwned</b>", None],
            [3, "z", "ready", 7], [3, "z", "ready", None, "extra"], deep, {"pid": 3}]
    c.members.observe({"b": (1, [0, 1], {"ps": good + junk + [[10 + i, "n", "ready", None] for i in range(500)]}),
                       "c": (1, [0, 1], {"ps": {"not": "a list"}}),
                       "d": (1, [0, 1], {"ps": deep})}, 0.0)
    rows = c.remote_ps()
    assert {r["node"] for r in rows} == {"b"}
    assert rows[:2] == [{"node": "b", "pid": 1, "name": "root", "state": "waiting", "wait": "recv"},
                        {"node": "b", "pid": 2, "name": "w?" + "x" * 62, "state": "running", "wait": None}]
    assert len(rows) == 2 + (100 - len(good) - len(junk))  # only the first 100 published rows are read
    import json
    json.dumps(rows, ensure_ascii=False).encode("utf-8")     # every row can be served
    c.members.observe({"b": (1, [0, 1], {})}, 10.0)          # b's lease not renewed: down
    assert c.remote_ps() == []
