"""Cluster nodes pin each other's trust keys (`ClusterConfig.node_keys`): a process's send
across the cluster is attested and delivered, while a holder of the cluster's envelope key
who publishes frames claiming to come from a pinned node, with a forged attestation or
none, is dropped at ingress under the reason `attestation`."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from agentos import AllowAll, Kernel
from agentos.net import Envelope, fresh_nonce, seal
from agentos.net.cluster import Cluster, ClusterConfig
from tests.services.test_trust import _forge

pytestmark = pytest.mark.live_only(reason="a real nats-server and wall-clock leases")

KEY = b"cluster-trust-test-key-0123456789"
LEASE = 0.6


def test_pinned_node_keys_deliver_attested_sends_and_drop_forgeries(nats_server) -> None:  # type: ignore[no-untyped-def]
    ka, kb = Kernel(policy=AllowAll()), Kernel(policy=AllowAll())
    ca = Cluster(ka, ClusterConfig(nats_server.url, "a", KEY, lease=LEASE,
                                   node_keys={"b": kb.trust.node_public_key()}))
    cb = Cluster(kb, ClusterConfig(nats_server.url, "b", KEY, lease=LEASE,
                                   node_keys={"a": ka.trust.node_public_key().hex()}))

    async def collector(sys: Any, args: Any) -> list[Any]:
        got = []
        while (m := await sys.recv()).body != "quit":
            got.append(m.body)
        return got

    async def sender(sys: Any, args: Any) -> str:
        cap = await sys.dial("a", 1)
        await sys.send(cap, "from b, attested")
        await sys.send(cap, "quit")
        return "sent"

    async def main() -> Any:
        import nats

        await ca.join()
        await cb.join()
        try:
            for _ in range(600):
                if ca.members.up_nodes() and cb.members.up_nodes():
                    break
                await asyncio.sleep(0.05)
            ta = asyncio.ensure_future(ka.boot(collector))
            await asyncio.sleep(0.1)
            nc = await nats.connect(nats_server.url)
            inc = cb.members.incarnation
            base = {"v": 1, "node": "b", "pid": 1, "incarnation": inc, "image": "payments-admin",
                    "image_ref": None, "persona": None, "parent": 0, "issued_at": 0.0}
            for att in (_forge(base), None):  # sealed with the real cluster key: only the attestation is wrong
                env = Envelope("b", 1, "a", 1, time.time(), fresh_nonce(), "forged", inc, "send", None, False, att)
                await nc.publish(ca.link.subject("a"), seal(KEY, env))
            await nc.flush()
            for _ in range(600):
                if ka.net.dropped.get("attestation", 0) >= 2:
                    break
                await asyncio.sleep(0.05)
            await nc.close()
            rb = await kb.boot(sender)
            ra = await asyncio.wait_for(ta, 30)
            return ra.value, rb.value, dict(ka.net.dropped)
        finally:
            await ca.leave()
            await cb.leave()

    got, sent, dropped = asyncio.run(asyncio.wait_for(main(), 90))
    assert sent == "sent" and got == ["from b, attested"]
    assert dropped == {"attestation": 2} and ka.trust.stats.refused_ingress == 2


def test_a_bad_node_key_in_the_cluster_config_is_refused() -> None:
    for key in (b"short", "XY" * 32, 5, "ab" * 31):
        with pytest.raises(ValueError, match="trust key of node 'b'"):
            ClusterConfig("nats://127.0.0.1:4222", "a", KEY, node_keys={"b": key})
