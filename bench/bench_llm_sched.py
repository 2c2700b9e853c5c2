"""LLM scheduling per device, on a contended endpoint: scheduled vs. everyone at once.

The endpoint is a real HTTP server on 127.0.0.1 (tests/support/openai_server.py) that
behaves like a provider with a concurrency limit: it serves `capacity` requests at a time,
each taking `service_ms`, and answers 429 to any request beyond that. N agent processes
each make K chat calls through the `llm` driver.

- unscheduled: the driver admits every call at once (max_concurrent=None); calls over the
  limit get 429 and retry with jittered exponential backoff (the usual client behaviour);
- scheduled: the driver's per-device gate admits `capacity` calls at a time; the rest wait
  in the kernel, by process priority then FIFO, and never hit a 429.

Reported: throughput (calls/s over the whole run), p50/p90 latency of a call (issued →
reply, which is queueing + retries + service), 429s received, and calls that failed for
good. A third row runs the scheduled case with half the processes at high priority, to
show where the waiting goes.

    .venv/bin/python bench/bench_llm_sched.py [--quick]
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def _run_case(*, procs: int, calls: int, capacity: int, service_ms: float, scheduled: bool,
              split_priority: bool = False) -> dict[str, Any]:
    from agentos import AllowAll, DriverError, Kernel
    from agentos.drivers.llm import Backoff, LLMDriver
    from tests.support.openai_server import OpenAIServer

    lat: dict[int, list[float]] = {}
    failed = [0]
    with OpenAIServer(capacity=capacity, service_time=service_ms / 1000.0) as srv:
        d = LLMDriver(base_url=srv.base_url, api_key="bench", model="bench-model",
                      max_concurrent=capacity if scheduled else None, max_retries=10,
                      backoff=Backoff(base=0.05, factor=2.0, cap=1.0, jitter=0.5), seed=1)
        k = Kernel(policy=AllowAll())
        k.register_driver(d)

        async def agent(sys: Any, prio: int) -> None:
            h = await sys.open("llm")
            for i in range(calls):
                t0 = await sys.now()
                try:
                    await sys.read(h, {"messages": [{"role": "user", "content": f"step {i}"}], "max_tokens": 8})
                except DriverError:
                    failed[0] += 1
                lat.setdefault(prio, []).append(await sys.now() - t0)

        async def init(sys: Any, args: Any) -> float:
            t0 = await sys.now()
            caps = []
            for i in range(procs):
                prio = (8 if i % 2 else 2) if split_priority else 5
                caps.append((await sys.spawn(agent, args=prio, caps=["llm"], priority=prio))[1])
            for c in caps:
                await sys.waitpid(c)
            return await sys.now() - t0

        # warm the SDK and the connection path once, outside the measurement
        async def warm(sys: Any, args: Any) -> None:
            await sys.read(await sys.open("llm"), {"messages": [{"role": "user", "content": "warm"}]})

        k2 = Kernel(policy=AllowAll())
        k2.register_driver(LLMDriver(base_url=srv.base_url, api_key="bench", model="bench-model"))
        k2.run(warm, grant=["llm"])
        srv.reset()

        res = k.run(init, grant=["llm"], priority=9)
        wall_ms = res.value
        refused = srv.refused
    allv = [x for v in lat.values() for x in v]
    n_ok = len(allv) - failed[0]
    row: dict[str, Any] = {
        "calls": len(allv), "failed": failed[0], "http_429": refused,
        "wall_s": round(wall_ms / 1000.0, 3),
        "ops_per_s": round(n_ok / (wall_ms / 1000.0), 1),
        "p50_ms": round(_pct(allv, 0.5), 1), "p90_ms": round(_pct(allv, 0.9), 1),
        "ideal_ops_per_s": round(capacity / (service_ms / 1000.0), 1),
    }
    if split_priority:
        row["p90_ms_high_prio"] = round(_pct(lat.get(8, []), 0.9), 1)
        row["p90_ms_low_prio"] = round(_pct(lat.get(2, []), 0.9), 1)
    return row


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(rows, key=lambda r: r["ops_per_s"])[len(rows) // 2]


def run(quick: bool = False) -> list[dict[str, Any]]:
    procs, calls, reps = (16, 3, 1) if quick else (32, 4, 3)
    capacity, service_ms = 4, 25.0
    common = dict(procs=procs, calls=calls, capacity=capacity, service_ms=service_ms)
    bases, scheds, prios = [], [], []
    for _ in range(reps):  # interleaved, so machine noise hits both sides alike
        bases.append(_run_case(scheduled=False, **common))
        scheds.append(_run_case(scheduled=True, **common))
        prios.append(_run_case(scheduled=True, split_priority=True, **common))
    base, sched, prio = _median(bases), _median(scheds), _median(prios)
    setup = (f"{procs} processes x {calls} calls; endpoint serves {capacity} at a time, "
             f"{service_ms:g} ms each, 429 beyond; retries: backoff 50 ms x2, cap 1 s, jitter 50%; "
             f"median of {reps} run(s)")
    speedup = sched["ops_per_s"] / base["ops_per_s"] if base["ops_per_s"] else float("inf")
    if reps > 1:
        ratios = sorted(s["ops_per_s"] / b["ops_per_s"] for s, b in zip(scheds, bases))
        setup += f"; per-run speed-ups {', '.join(f'{r:.2f}' for r in ratios)}"
    return [
        {"name": "llm_sched.unscheduled", **base, "notes": f"every call at once; {setup}"},
        {"name": "llm_sched.scheduled", **sched,
         "speedup_vs_unscheduled": round(speedup, 2),
         "p90_ratio_unscheduled_over_scheduled": round(base["p90_ms"] / sched["p90_ms"], 2) if sched["p90_ms"] else None,
         "notes": f"per-device gate, max_concurrent={capacity}; {setup}"},
        {"name": "llm_sched.scheduled_two_priorities", **prio,
         "notes": "as scheduled, half the processes at priority 8 and half at 2"},
    ]


if __name__ == "__main__":
    import json

    rows = run(quick="--quick" in sys.argv)
    for r in rows:
        print(json.dumps(r))
