"""Cross-node round trips over TCP: a `call` from a process on node a to an echo process
on node b and back (seal, frame, socket, verify, nonce guard, loop turn, mailbox, both
ways), beside a bare asyncio TCP echo of frames of the same size (the ceiling), in the
same run and the same event loop. Both nodes and both ends of the ceiling share one
process on 127.0.0.1, so each figure pays for both sides. Reports round trips/s and the
p50/p99 latency of one round trip as the calling program measures it.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

KEY = b"bench-net-key-0123456789abcdefgh"


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _kernels(n: int) -> tuple[float, list[float]]:
    from agentos import AllowAll, Kernel
    from agentos.net import tcp_node
    from agentos.userland import call

    pa, pb = _free_port(), _free_port()
    a, b = Kernel(policy=AllowAll()), Kernel(policy=AllowAll())
    na = await tcp_node(a, "a", KEY, listen=("127.0.0.1", pa), peers={"b": ("127.0.0.1", pb)})
    nb = await tcp_node(b, "b", KEY, listen=("127.0.0.1", pb), peers={"a": ("127.0.0.1", pa)})
    lat: list[float] = []

    async def echo(sys: Any, args: Any) -> None:
        while True:
            msg = await sys.recv()
            if msg.body == "stop":
                return
            await sys.send(msg.caps[0], msg.body, corr=msg.corr)

    async def client(sys: Any, args: Any) -> float:
        cap = await sys.dial("b", 1)
        await call(sys, cap, "warm", timeout=5000)
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            await call(sys, cap, i, timeout=5000)
            lat.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        await sys.send(cap, "stop")
        return total

    ra, _ = await asyncio.gather(a.boot(client), b.boot(echo))
    await na.close()
    await nb.close()
    return float(ra.value), lat


async def _bare(n: int, frame: int) -> tuple[float, list[float]]:
    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await r.readexactly(4)
                data = await r.readexactly(int.from_bytes(head, "big"))
                w.write(head + data)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            w.close()  # the client hung up, or the bench is over

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    payload = (frame).to_bytes(4, "big") + b"x" * frame
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        w.write(payload)
        await w.drain()
        head = await r.readexactly(4)
        await r.readexactly(int.from_bytes(head, "big"))
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    w.close()
    await w.wait_closed()
    server.close()
    await server.wait_closed()
    return total, lat


def _frame_size() -> int:
    from agentos.net import Envelope, fresh_nonce, seal

    env = Envelope("a", 1, "b", 1, time.time(), fresh_nonce(), 12345, corr=("call", 1), reply=True)
    return len(seal(KEY, env))


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 500 if quick else 3000
    frame = _frame_size()
    total, lat = asyncio.run(_kernels(n))
    btotal, blat = asyncio.run(_bare(n, frame))
    ours, ceiling = n / total, n / btotal
    row = {"name": "tcp round trip (call a→b→a)", "ops_per_s": round(ours), "ceiling_ops_per_s": round(ceiling),
           "ratio": round(ours / ceiling, 3), "unit": "round trips/s",
           "p50_ms": round(_pct(lat, 0.5) * 1000, 3), "p99_ms": round(_pct(lat, 0.99) * 1000, 3),
           "ceiling_p50_ms": round(_pct(blat, 0.5) * 1000, 3), "ceiling_p99_ms": round(_pct(blat, 0.99) * 1000, 3),
           "frame_bytes": frame, "n": n}
    row["notes"] = (f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms; bare echo p50 {row['ceiling_p50_ms']} ms, "
                    f"p99 {row['ceiling_p99_ms']} ms ({frame}-byte frames)")
    return [row]


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
