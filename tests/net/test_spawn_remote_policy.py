"""Policy governs the cluster's calls on every kernel, as it governs `dial`: the caller's
kernel asks about `spawn_remote` before anything is carved or sent (a strict kernel with no
rule allowing it refuses; a deny names its rule), a cluster name's `lookup` hands out a
proxy only where `dial` is allowed, and the receiving node's own `spawn` rules are asked
about a process a peer starts there.

Nodes are joined by loopback routes (no NATS): what is under test is the kernels' checks."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agentos import AllowAll, Kernel, PolicyDenied, Quota
from agentos.abi.types import ExitKind
from agentos.net import Loopback, RemoteRefused
from agentos.net.cluster import Cluster, ClusterConfig
from agentos.policy import PolicyEngine
from agentos.userland import call

KEY = b"spawn-remote-policy-key-0123456789"
# a node's replay needs its Cluster rebuilt around the replaying kernel (test_cluster.py
# replays one that way); the generic record-then-replay harness builds a bare kernel
pytestmark = pytest.mark.live_only(reason="a cluster node's replay needs its Cluster; test_cluster.py covers it")
HEAD = 'kernel: {version: "1.0", mode: strict}\npolicies:\n'


def policy(rules: str) -> PolicyEngine:
    return PolicyEngine.from_text(HEAD + rules, path="security.yaml")


async def echo(sys: Any, args: Any) -> None:
    msg = await sys.recv()
    await sys.send(msg.caps[0], {"echo": msg.body, "args": args}, corr=msg.corr)


def up(k: Kernel, peer: str) -> None:
    """What the failure detector would say: `peer` is up (an input from this node to itself)."""
    assert k.net is not None
    k.net.ship(0, k.net.name, 0, {"node": peer, "incarnation": 1, "up": True}, kind="cl_node")


def pair(policy_a: Any, policy_b: Any = None) -> tuple[Kernel, Cluster, Kernel, Cluster, Loopback]:
    """Node a (the caller, under `policy_a`) and node b (grants a an account, publishes echo)."""
    ka = Kernel(deterministic=True, seed=1, policy=policy_a)
    kb = Kernel(deterministic=True, seed=2, policy=policy_b or AllowAll())
    ca = Cluster(ka, ClusterConfig("nats://127.0.0.1:1", "a", KEY))
    cb = Cluster(kb, ClusterConfig("nats://127.0.0.1:1", "b", KEY, grants={"a": Quota(children=4, tokens=100)}))
    cb.register_image("echo", echo)
    to_b = Loopback(kb)
    ka.connect("a", Loopback(ka), node="a", key=KEY)
    ka.connect("b", to_b)
    kb.connect("b", Loopback(kb), node="b", key=KEY)
    kb.connect("a", Loopback(ka))
    up(ka, "b")
    up(kb, "a")
    return ka, ca, kb, cb, to_b


async def b_waits(sys: Any, args: Any) -> Any:
    """Node b's root: runs until node a tells it the test is over."""
    return (await sys.recv()).body


def run_both(ka: Kernel, kb: Kernel, ia: Any) -> tuple[Any, Any]:
    async def a_then_release(sys: Any, args: Any) -> Any:
        try:
            return await ia(sys, args)
        finally:
            await sys.send(await sys.dial("b", 1), "over")

    async def main() -> tuple[Any, Any]:
        return tuple(await asyncio.gather(ka.boot(a_then_release, quota=Quota(tokens=50, children=3)),
                                          kb.boot(b_waits)))  # type: ignore[return-value]
    return asyncio.run(main())


def stubs(k: Kernel) -> list[Any]:
    return [e.data for e in k.events.events(kind="spawn") if e.data[1] == "remote:b"]


def test_a_rule_allowing_spawn_remote_to_one_node_and_image_lets_it_through() -> None:
    eng = policy("  - {name: echo-on-b, action: spawn_remote, effect: allow,\n"
                 "     constraints: {node: {enum: [b]}, image: {enum: [echo]}}}\n"
                 "  - {name: reach-b, action: dial, effect: allow}\n")

    async def init(sys: Any, args: Any) -> Any:
        pid, proxy = await sys.spawn_remote("b", "echo", {"n": 1}, quota=Quota(tokens=10))
        return await call(sys, proxy, "hi")

    ka, _, kb, _, _ = pair(eng)
    ra, rb = run_both(ka, kb, init)
    assert ra.value == {"echo": "hi", "args": {"n": 1}}, ra.reason
    assert rb.value == "over"
    assert ("spawn_remote", True, "echo-on-b") in [e.data for e in ka.events.events(kind="policy")]
    assert len(stubs(ka)) == 1


def test_a_denied_spawn_remote_kills_the_caller_naming_the_rule_and_carves_and_sends_nothing() -> None:
    eng = policy("  - {name: echo-on-b, action: spawn_remote, effect: allow}\n"
                 "  - {name: never-to-b, action: spawn_remote, effect: deny, constraints: {node: {enum: [b]}}}\n"
                 "  - {name: reach-b, action: dial, effect: allow}\n")
    ka, _, kb, cb, to_b = pair(eng)

    async def init(sys: Any, args: Any) -> Any:
        await sys.spawn_remote("b", "echo", quota=Quota(tokens=10))
        return "spawned"

    ra = ka.run(init, quota=Quota(tokens=50, children=3))
    assert ra.reason.kind is ExitKind.POLICY and ra.reason.detail == "never-to-b", ra.reason
    assert stubs(ka) == []                      # nothing carved: no stub stood for anything
    assert to_b.frames == 0                     # nothing sent to the peer
    assert cb.calls.peer_accounts == {} and kb.events.events(kind="spawn") == []
    assert ("spawn_remote", False, "never-to-b") in [e.data for e in ka.events.events(kind="policy")]


def test_a_strict_kernel_with_no_policy_refuses_spawn_remote_before_anything_is_carved() -> None:
    ka, _, _, _, to_b = pair(None)

    async def init(sys: Any, args: Any) -> Any:
        try:
            await sys.spawn_remote("b", "echo", quota=Quota(tokens=10))
        except PolicyDenied as e:
            b = await sys.budget()
            return e.rule, str(e), b.remaining["tokens"], b.used["children"]
        return "spawned"

    res = ka.run(init, quota=Quota(tokens=50, children=3))
    rule, msg, tokens, children = res.value
    assert rule == "no-policy" and "refuses spawn_remote" in msg
    assert (tokens, children) == (50, 0) and stubs(ka) == [] and to_b.frames == 0


def test_the_receiving_nodes_spawn_rules_refuse_a_peers_spawn_and_the_caller_is_told() -> None:
    b_rules = policy("  - {name: nothing-from-a, action: spawn, effect: deny, constraints: {from_node: {enum: [a]}}}\n"
                     "  - {name: anything-else, action: \"*\", effect: allow}\n")

    async def init(sys: Any, args: Any) -> Any:
        try:
            await sys.spawn_remote("b", "echo", quota=Quota(tokens=10))
        except RemoteRefused as e:
            b = await sys.budget()
            return str(e), b.remaining["tokens"], b.used["children"]
        return "spawned"

    ka, _, kb, cb, _ = pair(AllowAll(), b_rules)
    ra, rb = run_both(ka, kb, init)
    why, tokens, children = ra.value
    assert "nothing-from-a" in why and "policy of 'b'" in why
    assert (tokens, children) == (50, 0)                         # the stub's carve came back
    assert ("spawn", False, "nothing-from-a") in [e.data for e in kb.events.events(kind="policy")]
    assert [e for e in kb.events.events(kind="spawn") if e.data[0] != 0] == []   # nothing started on b
    assert rb.value == "over"


def test_a_cluster_name_looked_up_gives_a_proxy_only_where_dial_is_allowed() -> None:
    eng = policy("  - {name: reach-b-root-only, action: dial, effect: allow, constraints: {pid: {enum: [1]}}}\n")
    ka, ca, kb, _, _ = pair(eng)
    ca.names["svc"] = {"node": "b", "pid": 7, "incarnation": 1}
    ca.names["root-b"] = {"node": "b", "pid": 1, "incarnation": 1}

    async def init(sys: Any, args: Any) -> Any:
        ok = await sys.lookup("root-b")
        info = await sys.cap_info(ok)
        await sys.lookup("svc")       # pid 7: no allow rule holds → SIGPOLICY
        return info

    res = ka.run(init)
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "reach-b-root-only", res.reason
    assert [e.data[:2] for e in ka.events.events(kind="policy")] == [("dial", True), ("dial", False)]


def test_a_spawn_remote_rule_loads_in_a_process_that_never_imported_the_cluster() -> None:
    """The policy language knows spawn_remote on its own (no process-wide registry that only
    importing the cluster fills): the same file loads, and denies, anywhere."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    code = ("import sys; from agentos.policy import PolicyEngine\n"
            f"e = PolicyEngine.from_text({HEAD + '  - {name: no-remote, action: spawn_remote, effect: deny}' + chr(10)!r})\n"
            "d = e.check(1, 'spawn_remote', {'node': 'b', 'image': 'x', 'args': None})\n"
            "assert 'agentos.net' not in sys.modules and 'agentos.net.cluster' not in sys.modules\n"
            "print(d.allowed, d.rule)\n")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": src}, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "no-remote"]


def test_the_receiving_nodes_spawn_rules_refuse_a_migration_into_it_before_the_grant_is_touched() -> None:
    import time

    from agentos.net import Envelope, fresh_nonce, seal

    b_rules = policy("  - {name: no-migrants, action: spawn, effect: deny, constraints: {remote: {enum: [migrate]}}}\n"
                     "  - {name: anything-else, action: \"*\", effect: allow}\n")
    kb = Kernel(deterministic=True, policy=b_rules)
    cb = Cluster(kb, ClusterConfig("nats://127.0.0.1:1", "b", KEY, grants={"a": Quota(children=4)}))
    cb.register_image("echo", echo)
    kb.connect("b", Loopback(kb), node="b", key=KEY)
    kb.connect("a", Loopback(Kernel(deterministic=True, policy=AllowAll())))
    up(kb, "a")
    restore = seal(KEY, Envelope("a", 3, "b", 0, time.time(), fresh_nonce(),
                                 {"mid": 1, "snap": {"image": {"name": "echo"}}}, 1, "cl_restore"))

    async def init(sys: Any, args: Any) -> str:
        kb.ingress(restore)
        await sys.sleep(10)  # applied at the top of the next turn
        await sys.sleep(10)
        return "alive"

    res = kb.run(init)
    assert res.value == "alive"
    refused = [e.data["error"] for e in kb.events.events(kind="migrate_refused")]
    assert len(refused) == 1 and "no-migrants" in refused[0], refused
    assert ("spawn", False, "no-migrants") in [e.data for e in kb.events.events(kind="policy")]
    assert cb.calls.peer_accounts == {}           # the peer's grant was never opened
