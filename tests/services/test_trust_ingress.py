"""Across nodes: a remote send carries its sender's attestation, and a kernel that pins the
sending node's key verifies it at ingress. A holder of the cluster's envelope key can seal
any frame, but cannot make another node's attestation: forged, tampered, missing or
borrowed attestations are dropped, counted under the reason `attestation`."""
from __future__ import annotations

import asyncio
from typing import Any

from agentos import AllowAll, Kernel
from agentos.net import Envelope, Loopback, fresh_nonce, seal

from .test_trust import _forge

KEY = b"trust-ingress-test-key-012345678"
NOW = 1_800_000_000.0


def pair() -> tuple[Kernel, Kernel]:
    a = Kernel(deterministic=True, seed=1, policy=AllowAll())
    b = Kernel(deterministic=True, seed=2, policy=AllowAll())
    a.connect("b", Loopback(b), node="a", key=KEY)
    b.connect("a", Loopback(a), node="b", key=KEY)
    return a, b


def run_both(a: Kernel, b: Kernel, ia: Any, ib: Any) -> tuple[Any, Any]:
    async def main() -> tuple[Any, Any]:
        return await asyncio.gather(a.boot(ia), b.boot(ib))
    return asyncio.run(main())


async def collect(sys: Any, args: Any) -> list[Any]:
    got = []
    while (msg := await sys.recv(timeout=10)) is not None:
        got.append(msg.body)
    return got


async def client(sys: Any, args: Any) -> str:
    cap = await sys.dial("b", 1)
    await sys.send(cap, "signed hello")
    await sys.send(cap, "again")  # the same attestation, verified once
    return "sent"


def test_a_remote_send_is_attested_and_verified_against_the_pinned_node_key() -> None:
    a, b = pair()
    b.trust.trust_node("a", a.trust.node_public_key())
    ra, rb = run_both(a, b, client, collect)
    assert rb.value == ["signed hello", "again"]
    assert b.net.dropped == {} and b.trust.stats.refused_ingress == 0


def test_without_a_pinned_key_attested_sends_pass_and_are_counted_unverified() -> None:
    a, b = pair()
    _, rb = run_both(a, b, client, collect)
    assert rb.value == ["signed hello", "again"] and b.trust.stats.unverified_ingress == 2


class Clock:
    def __call__(self) -> float:
        return NOW


class Sink:
    def send(self, frame: bytes) -> bool:
        return True


def genuine() -> tuple[dict[str, Any], bytes]:
    """An attestation node "a" really issued for its process 1, and a's public key."""
    a = Kernel(deterministic=True, seed=1, policy=AllowAll())
    a.connect("b", Sink(), node="a", key=KEY, wall=Clock())
    att = a.run(attest).value
    return att, a.trust.node_public_key()


async def attest(sys: Any, args: Any) -> Any:
    return await sys.attest()


def frame(att: Any, from_pid: int = 1, body: Any = "pay 100") -> bytes:
    return seal(KEY, Envelope("a", from_pid, "b", 1, NOW, fresh_nonce(), body, 0, "send", None, False, att))


def test_forged_tampered_missing_and_borrowed_attestations_are_dropped_at_ingress() -> None:
    att, a_key = genuine()
    b = Kernel(deterministic=True, seed=2, policy=AllowAll())
    b.connect("a", Sink(), node="b", key=KEY, wall=Clock())
    b.trust.trust_node("a", a_key)
    attacks = [frame(_forge(att)),                          # signed by keys node a never certified
               frame({**att, "image": "payments-admin"}),  # a claim changed after signing
               frame(None),                                 # no attestation from a node that attests
               frame(att, from_pid=2),                      # pid 1's attestation on pid 2's message
               frame({**att, "sig": 7})]                    # not an attestation's shape
    assert [b.ingress(f) for f in attacks] == [False] * 5
    assert b.ingress(frame(att, body="the real one")) is True
    assert b.net.dropped == {"attestation": 5} and b.trust.stats.refused_ingress == 5
    assert b.run(collect).value == ["the real one"]
    assert [e.data for e in b.events.events(kind="net_drop")] == [{"attestation": 5}]


def test_a_nodes_attestation_names_its_incarnation_and_replays_alike() -> None:
    a = Kernel(deterministic=True, seed=1, policy=AllowAll())
    a.connect("b", Sink(), node="a", key=KEY, incarnation=3, wall=Clock())
    att = a.run(attest).value  # the conformance replay has no node: it reads the incarnation back
    assert (att["node"], att["incarnation"]) == ("a", 3)
    assert att["key"] != genuine()[0]["key"]  # incarnation 0's process 1 has another key
