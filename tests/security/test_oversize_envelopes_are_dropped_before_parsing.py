"""A receiver's frame limit is its own: a peer that seals larger frames (its limit is
higher) gets them dropped as oversize before a byte is parsed; a sender is refused at
`send` with a typed error when its own limit is passed."""
from __future__ import annotations

import asyncio
from typing import Any

from netsec import KEY

from agentos import AllowAll, BadArgument, Kernel
from agentos.net import EnvelopeTooLarge, Loopback


def test_oversize_envelopes_are_dropped_before_parsing() -> None:
    a = Kernel(deterministic=True, seed=1, policy=AllowAll())
    b = Kernel(deterministic=True, seed=2, policy=AllowAll())
    a.connect("b", Loopback(b), node="a", key=KEY, max_frame=8 << 20)
    b.connect("a", Loopback(a), node="b", key=KEY, max_frame=64 << 10)

    async def sender(sys: Any, args: Any) -> list[str]:
        cap = await sys.dial("b", 1)
        await sys.send(cap, "x" * (1 << 20))    # fits a's limit, not b's
        await sys.send(cap, "small")
        out = []
        try:
            await sys.send(cap, "y" * (9 << 20))  # past a's own limit: refused here
        except BadArgument as e:
            out.append(type(e).__name__)
        return out

    async def receiver(sys: Any, args: Any) -> list[Any]:
        got = []
        while (msg := await sys.recv(timeout=50)) is not None:
            got.append(msg.body)
        return got

    async def main() -> tuple[Any, Any]:
        return await asyncio.gather(a.boot(sender), b.boot(receiver))

    ra, rb = asyncio.run(main())
    assert ra.value == [EnvelopeTooLarge.__name__]
    assert rb.value == ["small"]
    assert b.net.dropped == {"oversize": 1}
