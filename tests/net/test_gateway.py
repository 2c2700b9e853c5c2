"""The gateway devices: a process relays a peer's sealed frames over a channel only it has
(here a key-value device both kernels share), and the kernel still seals and verifies."""
from __future__ import annotations

import asyncio
from typing import Any

from agentos import AllowAll, Kernel
from agentos.drivers import KVDriver
from agentos.net import Envelope, fresh_nonce, seal
from agentos.net.gateway import GatewayDriver, SecureGatewayDriver
from agentos.userland import call

KEY = b"gateway-tests-key-0123456789abcd"
WALL = 1_800_000_000.0


async def relay(sys: Any, args: Any) -> None:
    """Carry frames between the gateway and the shared channel, forever."""
    out_ns, in_ns, device = args
    gw = await sys.open(device)
    wire_out = await sys.open("wire", {"ns": out_ns})
    wire_in = await sys.open("wire", {"ns": in_ns})
    sent = 0
    seen = 0
    while True:
        for frame in await sys.read(gw, {"op": "take", "max": 16}):
            await sys.write(wire_out, {"op": "set", "key": f"{sent:06d}", "value": frame})
            sent += 1
        keys = await sys.read(wire_in, {"op": "keys"})
        for key in keys[seen:]:
            await sys.write(gw, await sys.read(wire_in, {"op": "get", "key": key}))
        seen = len(keys)
        await sys.sleep(1)


def node(name: str, peer: str, wire: KVDriver, gateway: type = GatewayDriver) -> Kernel:
    k = Kernel(deterministic=True, seed=len(name), policy=AllowAll())
    net = k.connect(peer, _Unused(), node=name, key=KEY, wall=lambda: WALL)
    k.register_driver(gateway(net, peer))
    k.register_driver(wire, "wire")
    return k


class _Unused:
    def send(self, frame: bytes) -> bool:
        raise AssertionError("the gateway is the route")


def test_a_call_travels_both_ways_through_two_relays() -> None:
    wire = KVDriver("wire")
    a, b = node("a", "b", wire), node("b", "a", wire)

    async def client(sys: Any, args: Any) -> Any:
        _, r = await sys.spawn(relay, args=("a->b", "b->a", "gateway"), caps=["gateway", "wire"])
        answer = await call(sys, await sys.dial("b", 2), "ping", timeout=500)
        await sys.kill(r)
        return answer

    async def echo(sys: Any, args: Any) -> None:
        msg = await sys.recv()
        await sys.send(msg.caps[0], ["pong", msg.body], corr=msg.corr)

    async def server(sys: Any, args: Any) -> str:
        _, e = await sys.spawn(echo)
        _, r = await sys.spawn(relay, args=("b->a", "a->b", "gateway"), caps=["gateway", "wire"])
        await sys.waitpid(e)
        await sys.sleep(20)  # the reply is on its way out through the relay
        await sys.kill(r)
        return "served"

    async def main() -> tuple[Any, Any]:
        return await asyncio.gather(a.boot(client, grant=["gateway", "wire"]),
                                    b.boot(server, grant=["gateway", "wire"]))

    ra, rb = asyncio.run(main())
    assert ra.value == ["pong", "ping"] and rb.value == "served"
    assert a.net.dropped == {} and b.net.dropped == {}
    assert a.drivers["gateway"].injected == 1 and b.drivers["gateway"].injected == 1


def test_a_secure_gateway_takes_only_its_peers_frames_and_says_why_not() -> None:
    wire = KVDriver("wire")
    k = node("b", "a", wire, SecureGatewayDriver)

    def sealed(frm: str, nonce: str | None = None, key: bytes = KEY) -> bytes:
        return seal(key, Envelope(frm, 1, "b", 1, WALL, nonce or fresh_nonce(), "hi"))

    good = sealed("a")
    frames = [sealed("c"), b"junk", sealed("a", key=b"x" * 32), good, good]

    async def init(sys: Any, args: Any) -> Any:
        gw = await sys.open("secure_gateway")
        out = [await sys.write(gw, f) for f in args]
        msg = await sys.recv(timeout=10)
        stats = await sys.read(gw, {"op": "stats"})
        return [out, msg.body, stats["injected"], stats["refused"]]

    res = k.run(init, args=frames, grant=["secure_gateway"])
    out, body, injected, refused = res.value
    assert [o["reason"] for o in out] == ["misrouted", "malformed", "forged", None, "replayed"]
    assert body == "hi" and injected == 1 and refused == 4
    assert k.net.dropped == {"misrouted": 1, "malformed": 1, "forged": 1, "replayed": 1}


def test_a_strict_policy_governs_the_gateway() -> None:
    from agentos import PolicyDenied
    from agentos.policy import PolicyEngine

    eng = PolicyEngine.from_text('kernel: {version: "1.0", mode: strict}\npolicies:\n'
                                 '  - {name: stats-only, action: gateway.stats, effect: allow}\n', path="p.yaml")
    wire = KVDriver("wire")
    k = node("b", "a", wire)
    k.policy = eng

    async def init(sys: Any, args: Any) -> Any:
        gw = await sys.open("gateway")
        stats = await sys.read(gw, {"op": "stats"})
        await sys.write(gw, b"anything")
        return stats

    res = k.run(init, grant=["gateway"])
    assert str(res.reason) == "policy(default-deny)"
    decisions = [e.data for e in k.events.events() if e.kind == "policy"]
    assert decisions == [("gateway.stats", True, "stats-only"), ("gateway.inject", False, "default-deny")]
    assert k.drivers["gateway"].injected == 0 and k.net.accepted == 0
