"""A node that does not hold the cluster's key (a stranger, or a peer with a stale key) can
reach a kernel's ingress, but nothing it sends is delivered: every frame is dropped as
forged and counted, and the receiver's processes never see it."""
from __future__ import annotations

import asyncio
from typing import Any

from netsec import KEY, OTHER_KEY

from agentos import AllowAll, Kernel
from agentos.net import Loopback


def test_a_peer_with_the_wrong_key_delivers_nothing() -> None:
    a = Kernel(deterministic=True, seed=1, policy=AllowAll())
    b = Kernel(deterministic=True, seed=2, policy=AllowAll())
    a.connect("b", Loopback(b), node="a", key=OTHER_KEY)   # the stranger
    b.connect("a", Loopback(a), node="b", key=KEY)

    async def stranger(sys: Any, args: Any) -> int:
        cap = await sys.dial("b", 1)
        for i in range(20):
            await sys.send(cap, {"transfer": i})
        return 20

    async def victim(sys: Any, args: Any) -> list[Any]:
        got = []
        while (msg := await sys.recv(timeout=50)) is not None:
            got.append(msg.body)
        return got

    async def main() -> tuple[Any, Any]:
        return await asyncio.gather(a.boot(stranger), b.boot(victim))

    ra, rb = asyncio.run(main())
    assert ra.value == 20 and rb.value == []
    assert b.net.dropped == {"forged": 20} and b.net.accepted == 0
    assert sum(e.data.get("forged", 0) for e in b.events.events() if e.kind == "net_drop") == 20
    assert not [e for e in b.events.events() if e.kind == "remote_recv"]
