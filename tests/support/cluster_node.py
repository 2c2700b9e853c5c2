"""One kernel as a cluster node in its own OS process, driven by the cluster's tests.

    python -m tests.support.cluster_node --url nats://127.0.0.1:4222 --node a --lease 1.0

It joins the cluster, publishes the images below, and runs an init process that takes
commands, one JSON object a line, on stdin, and answers each with one JSON line on stdout
(`{"re": <id>, ...}`); cluster changes and received messages are printed as they happen
(`{"ev": "node_down", ...}`, `{"ev": "got", ...}`). `--sink NAME` starts a local process
that registers NAME and prints every message it receives (it is pid 2 on every start, so
a restarted node has it at the same address).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from agentos import AllowAll, Kernel
from agentos.abi.types import Down, Quota
from agentos.net.cluster import Cluster, ClusterConfig

KEY = b"cluster-test-key-0123456789abcdef"


def out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


async def echo(sys_: Any, args: Any) -> Any:
    """Answers every message on its reply proxy; "stop" ends it, "crash" faults it."""
    while True:
        m = await sys_.recv()
        if m.body == "stop":
            return "stopped"
        if m.body == "crash":
            raise RuntimeError("asked to crash")
        await sys_.send(m.caps[0], {"echo": m.body, "args": args}, corr=m.corr)


async def sleeper(sys_: Any, args: Any) -> None:
    while True:
        await sys_.recv()


async def sink(sys_: Any, args: Any) -> None:
    await sys_.register(args)
    out({"ev": "sink_ready", "name": args, "pid": await sys_.pid()})
    while True:
        m = await sys_.recv()
        out({"ev": "got", "body": m.body})


async def counter(sys_: Any, args: Any) -> None:
    """Counts messages; {"count?": 1} answers with the count (fan-out bench)."""
    n = 0
    while True:
        m = await sys_.recv()
        if isinstance(m.body, dict) and "count?" in m.body:
            await sys_.send(m.caps[0], n, corr=m.corr)
        else:
            n += 1


def make_init(cmds: "asyncio.Queue[dict[str, Any]]", sink_name: str | None) -> Any:
    async def init(sys_: Any, args: Any) -> None:
        caps: dict[str, Any] = {}
        if sink_name:
            await sys_.spawn(sink, args=sink_name)
        out({"ev": "ready"})
        while True:
            m = await sys_.recv(match=lambda m: m.sender == 0 and isinstance(m.body, dict) and "op" in m.body)
            cmd = m.body
            op, rid = cmd["op"], cmd.get("id")
            try:
                res = await run(sys_, caps, cmd)
            except Exception as e:  # noqa: BLE001 - the test reads the error
                out({"re": rid, "error": f"{type(e).__name__}: {e}"})
                continue
            if op == "exit":
                out({"re": rid, "ok": True})
                return
            out({"re": rid, **res})
    return init


async def run(sys_: Any, caps: dict[str, Any], cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd["op"]
    if op == "spawn_remote":
        q = Quota(**cmd["quota"]) if cmd.get("quota") else None
        pid, cap = await sys_.spawn_remote(cmd["node"], cmd["image"], cmd.get("args"), quota=q,
                                           link=bool(cmd.get("link")))
        caps[cmd["as"]] = cap
        return {"pid": pid}
    if op == "dial":
        caps[cmd["as"]] = await sys_.dial(cmd["node"], cmd["pid"])
        return {"ok": True}
    if op == "send":
        await sys_.send(caps[cmd["to"]], cmd["body"], durable=bool(cmd.get("durable")))
        return {"ok": True}
    if op == "call":
        corr = sys_.next_corr()
        await sys_.send(caps[cmd["to"]], cmd["body"], corr=corr, caps=[await sys_.self_cap()])
        r = await sys_.recv(match=lambda m: m.corr == corr, timeout=cmd.get("timeout", 30_000))
        return {"reply": None if r is None else r.body}
    if op == "monitor":
        await sys_.monitor(caps[cmd["to"]])
        return {"ok": True}
    if op == "await_down":
        r = await sys_.recv(match=lambda m: isinstance(m.body, Down), timeout=cmd.get("timeout", 30_000))
        if r is None:
            return {"down": None}
        return {"down": r.body.pid, "reason": str(r.body.reason), "t": time.time()}
    if op == "register":
        await sys_.register(cmd["name"])
        return {"ok": True}
    if op == "lookup":
        cap = await sys_.lookup(cmd["name"])
        if cap is not None:
            caps[cmd["as"]] = cap
        return {"found": cap is not None}
    if op == "budget":
        b = await sys_.budget()
        return {"budget": str(b)}
    if op == "fanout":
        n, node = cmd["n"], cmd["node"]
        targets = []
        for _ in range(n):
            _pid, cap = await sys_.spawn_remote(node, "counter")
            targets.append(cap)
        t0 = time.perf_counter()
        for _ in range(cmd.get("rounds", 1)):
            for cap in targets:
                await sys_.send(cap, 1)
        corr = sys_.next_corr()
        await sys_.send(targets[-1], {"count?": 1}, corr=corr, caps=[await sys_.self_cap()])  # per-sender order: all before it are in
        await sys_.recv(match=lambda m: m.corr == corr, timeout=30000)
        dt = time.perf_counter() - t0
        return {"msgs": n * cmd.get("rounds", 1), "seconds": dt}
    if op == "rtt":
        lat = []
        corr0 = sys_.next_corr()
        me = await sys_.self_cap()
        for i in range(cmd["n"]):
            t0 = time.perf_counter()
            await sys_.send(caps[cmd["to"]], i, corr=corr0 + i, caps=[me])
            await sys_.recv(match=lambda m, c=corr0 + i: m.corr == c, timeout=5000)
            lat.append(time.perf_counter() - t0)
        return {"lat": lat}
    if op == "exit":
        return {}
    raise ValueError(f"unknown op {op!r}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--lease", type=float, default=1.0)
    ap.add_argument("--sink")
    ap.add_argument("--grant-children", type=int, default=2000)
    opts = ap.parse_args()
    k = Kernel(policy=AllowAll())
    cfg = ClusterConfig(opts.url, opts.node, KEY, lease=opts.lease,
                        grants={"*": Quota(children=opts.grant_children, tokens=1_000_000)})
    cluster = Cluster(k, cfg)
    for name, main_ in (("echo", echo), ("sleeper", sleeper), ("counter", counter)):
        cluster.register_image(name, main_)
    def changed(ch: Any) -> None:
        # `lease_age`: seconds, on this node's monotonic clock, since it last saw the
        # peer's lease change: the detector's own measure, free of the test's pipe delays
        peer = cluster.members.peers.get(ch.node)
        age = None
        if peer is not None and ch.node != opts.node and peer.changed_at != float("inf"):
            age = time.monotonic() - peer.changed_at
        out({"ev": "node_up" if ch.up else "node_down", "node": ch.node,
             "incarnation": ch.incarnation, "t": time.time(), "lease_age": age})
    cluster.on_change(changed)
    await cluster.join()
    out({"ev": "joined", "node": opts.node, "incarnation": cluster.members.incarnation})
    cmds: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def feed() -> None:
        while True:
            line = await reader.readline()
            if not line:
                k.request_stop("stdin closed")
                return
            try:
                cmd = json.loads(line)
            except ValueError:
                out({"error": "bad command line"})
                continue
            if cmd.get("op") == "events":
                k.events.flush()
                out({"re": cmd.get("id"), "events": [[e.pid, e.kind, repr(e.data)[:200]]
                                                     for e in k.events.events()][-cmd.get("n", 30):]})
                continue
            if cmd.get("op") == "stats":
                out({"re": cmd.get("id"), **cluster.stats()})
                continue
            init = k.init
            if init is not None:
                k.ipc.deliver_kernel(init, cmd)
                if k._wakeup is not None:
                    k._wakeup.set()

    feeder = loop.create_task(feed())
    try:
        res = await k.boot(make_init(cmds, opts.sink))
        out({"ev": "exited", "reason": str(res.reason)})
    finally:
        feeder.cancel()
        await cluster.leave()


if __name__ == "__main__":
    asyncio.run(main())
