"""The message bus: publish→deliver throughput and latency with 1, 100 and 10,000
subscribers, beside the same process code on the bare trampoline (bench/ceiling.py).

One publisher publishes M messages on one topic, yielding every `batch` publishes so the
subscribers drain; N subscriber processes each loop on `bus_recv`. Throughput counts
deliveries (M × N) per second of the whole run; latency is publish→receipt of each
delivery, in real time, p50 and p99. On the bare trampoline a bus capability is nothing,
a subscription is a deque and a publish appends to each subscriber's deque, so the ratio
is the cost of the bus's work (capability and topic checks, body check, lanes, events,
the dispatch loop), not of Python.

    python bench/bench_bus.py [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections import deque
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agentos import AllowAll, Kernel  # noqa: E402
from agentos.abi import syscalls as S  # noqa: E402
from agentos.services import attach_bus, bus_publish, bus_recv, bus_subscribe  # noqa: E402
from bench.ceiling import Bare  # noqa: E402

TOPIC = "bench.t"


def program(n_subs: int, m: int, batch: int, lat: list[float]) -> Any:
    clock = time.perf_counter

    async def subscriber(sys_: Any, args: Any) -> None:
        cap = sys_.caps[0]
        sub = await bus_subscribe(sys_, cap, TOPIC, capacity=4096)
        await sys_.send(sys_.caps[1], "ready")
        for _ in range(m):
            msg = await bus_recv(sys_, sub)
            lat.append(clock() - msg.body)

    async def init(sys_: Any, args: Any) -> float:
        cap = sys_.caps[0]
        me = await sys_.self_cap()
        for _ in range(n_subs):
            await sys_.spawn(subscriber, caps=(cap, me))
        for _ in range(n_subs):
            await sys_.recv()
        t0 = clock()
        for i in range(m):
            await bus_publish(sys_, cap, TOPIC, clock())
            if i % batch == batch - 1:
                await sys_.yield_()
        while len(lat) < n_subs * m:
            await sys_.yield_()
        return clock() - t0

    return init


class BareBus(Bare):
    """The ceiling's trampoline with a bus that does nothing but move bodies."""

    def __init__(self) -> None:
        super().__init__()
        self.topics: dict[str, list[Any]] = {}
        self.subs: list[Any] = []
        self.handlers.update({S.BusSubscribe: self._sub, S.BusPublish: self._pub, S.BusRecv: self._brecv})

    def _sub(self, p: Any, req: Any) -> int:
        q: deque[Any] = deque()
        entry = [p, q]
        self.subs.append(entry)
        self.topics.setdefault(req.pattern, []).append(entry)
        return len(self.subs) - 1

    def _pub(self, p: Any, req: Any) -> int:
        n = 0
        for entry in self.topics.get(req.topic, ()):
            target, q = entry
            if target.waiting:
                target.waiting = False
                self.ready.append((target, _Msg(req.body)))
            else:
                q.append(_Msg(req.body))
            n += 1
        return n

    def _brecv(self, p: Any, req: Any) -> Any:
        q = self.subs[req.sub][1]
        if q:
            return q.popleft()
        p.waiting = True
        return self


class _Msg:
    __slots__ = ("body",)

    def __init__(self, body: Any) -> None:
        self.body = body


def _kernel_run(n: int, m: int, batch: int) -> tuple[float, list[float], dict[str, Any]]:
    lat: list[float] = []
    k = Kernel(policy=AllowAll())
    bus = attach_bus(k)
    gc.collect()
    res = k.run(program(n, m, batch, lat), grant=["bus"])
    if res.value is None:
        raise RuntimeError(f"the kernel run failed: {res.reason}")
    return res.value, lat, bus.stats()


def _bare_run(n: int, m: int, batch: int) -> tuple[float, list[float]]:
    lat: list[float] = []
    bare = BareBus()
    box: list[float] = []

    async def wrap(sys_: Any, args: Any) -> None:
        box.append(await program(n, m, batch, lat)(sys_, args))

    gc.collect()
    # the bare Sys has no bus cap table: cap 0 stands for the bus, "self" for init's pid
    bare.spawn(lambda s, a: wrap(type(s)((0,)), a))
    bare.run(lambda s, a: _noop())
    return box[0], lat


async def _noop() -> None:
    return None


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    scale = 0.2 if a.quick else 1.0
    cases = [(1, int(50_000 * scale), 100), (100, int(1_000 * scale), 1), (10_000, max(2, int(20 * scale)), 1)]
    out = []
    for n, m, batch in cases:
        kt, klat, stats = _kernel_run(n, m, batch)
        bt, blat = _bare_run(n, m, batch)
        if stats["dropped"] or stats["delivered"] != n * m:
            raise RuntimeError(f"the kernel run lost messages: {stats}")
        row = {
            "subscribers": n, "messages": m, "deliveries": n * m,
            "kernel_deliveries_per_s": round(n * m / kt), "bare_deliveries_per_s": round(n * m / bt),
            "ratio": round((n * m / kt) / (n * m / bt), 3),
            "kernel_p50_us": round(_pct(klat, 0.50), 1), "kernel_p99_us": round(_pct(klat, 0.99), 1),
            "bare_p50_us": round(_pct(blat, 0.50), 1), "bare_p99_us": round(_pct(blat, 0.99), 1),
        }
        out.append(row)
        print(f"{n:>6} subscribers  {row['kernel_deliveries_per_s']:>10,} deliveries/s "
              f"(bare {row['bare_deliveries_per_s']:>10,}/s, ratio {row['ratio']:.2f})  "
              f"p50 {row['kernel_p50_us']:>9,.1f} us  p99 {row['kernel_p99_us']:>10,.1f} us "
              f"(bare p99 {row['bare_p99_us']:,.1f} us)", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"bench": "bus", "rows": out, "median_ratio": statistics.median(r["ratio"] for r in out)},
                      f, indent=2)


if __name__ == "__main__":
    main()
