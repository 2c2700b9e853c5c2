"""Typed pipe figures: a send through a typed pipe beside a plain send on the same kernel.

One process sends to itself and receives, N times: through its plain self capability
(the "ceiling" column here is this plain send, not the bare trampoline), through a pipe
whose schema is `{"type": "integer"}`, and through the mute agent's plan pipe carrying a
three-step plan. The plain loop's figure is the one to compare with bench_kernel's: typed
pipes add no work to it (the send path already branches on the capability's kind).
Best CPU time of several interleaved runs, garbage collector on.
"""
from __future__ import annotations

import gc
import time
from typing import Any

from agentos import AllowAll, Kernel
from agentos.userland.mute import plan_schema

PLAN = {"steps": [{"tool": "fetch_report", "args": {"quarter": "Q3"}, "why": "the numbers"},
                  {"tool": "calculator", "args": {"expression": "40 - 32"}, "why": "growth"},
                  {"tool": "send_email", "args": {"to": "a@example.com", "body": "hi"}, "why": "report"}]}


def _loop(n: int, schema: Any, body: Any) -> float:
    async def init(sys: Any, args: Any) -> None:
        cap = await sys.self_cap() if schema is None else await sys.pipe(schema)
        send, recv = sys.send, sys.recv
        for _ in range(n):
            await send(cap, body)
            await recv()

    k = Kernel(deterministic=True, policy=AllowAll())
    gc.collect()
    t0 = time.process_time()
    k.run(init)
    return time.process_time() - t0


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 5_000 if quick else 50_000
    repeats = 3 if quick else 5
    cases = {"plain": (None, 7), "int_schema": ({"type": "integer"}, 7), "plan_schema": (plan_schema(), PLAN),
             "plain_plan_body": (None, PLAN)}
    best = {name: float("inf") for name in cases}
    for _ in range(repeats):
        for name, (schema, body) in cases.items():
            best[name] = min(best[name], _loop(n, schema, body))
    rate = {name: n / t for name, t in best.items()}
    rows = []
    for name, base in (("int_schema", "plain"), ("plan_schema", "plain_plan_body")):
        rows.append({"name": f"pipe_send_recv_{name}", "ops_per_s": round(rate[name], 1),
                     "ceiling_ops_per_s": round(rate[base], 1), "ratio": round(rate[name] / rate[base], 3),
                     "unit": "send+recv/s", "notes": f"ceiling: the same loop on a plain capability ({base})"})
    rows.append({"name": "plain_send_recv", "ops_per_s": round(rate["plain"], 1), "unit": "send+recv/s",
                 "notes": "the plain path, with typed pipes present in the kernel"})
    return rows


if __name__ == "__main__":
    for row in run(quick=False):
        print(row)
