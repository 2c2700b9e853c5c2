"""The agent-graph scheduler: what it costs the hot path, how long a centrality
recomputation pauses dispatch, and the dispatch throughput while recomputations run.

Figures:
  * ipc_round_trips_sched / spawn_exit_sched: bench_kernel's loops with the scheduler on
    (counters only: no periodic recomputation), beside the bare ceiling of the same run.
  * sched_recompute_<n>: one recomputation over a graph of n processes (a tree: init,
    n/100 supervisors, 99 workers each; every worker has sent 2 messages to its
    supervisor, every supervisor 2 to init): seconds, median of 3. 10k and 100k always;
    1M only with AGENTOS_BENCH_SCHED_MILLION=1 (it takes a few minutes and several GiB).
  * ipc_during_recompute_<n>: round trips/s between two processes while a graph of n
    processes is recomputed every 50 ms of (real) kernel clock, beside the bare ceiling,
    with the number of recomputations and the mean pause.
Usage: python bench/run.py --only bench_sched [--quick]
"""
from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Any

import bench_kernel as bk
from agentos import AllowAll, Kernel
from agentos.sched import SchedConfig

COUNTERS_ONLY = SchedConfig(enabled=True, every_changes=None, every_ms=None)


async def _worker(sys: Any, args: Any) -> None:
    for _ in range(2):
        await sys.send(sys.caps[0], "up")
    await sys.recv()  # parked until shutdown


async def _supervisor(sys: Any, args: Any) -> None:
    me = await sys.self_cap()
    for _ in range(args):
        await sys.spawn(_worker, caps=[me])
    for _ in range(2):
        await sys.send(sys.caps[0], "up")
    while True:  # takes its workers' messages; parked until shutdown
        await sys.recv()


def _populate(n: int) -> Any:
    """An init that builds the n-process tree, then calls `then(sys)`."""
    sups = max(1, n // 100)

    def make(then: Any) -> Any:
        async def init(sys: Any, args: Any) -> Any:
            me = await sys.self_cap()
            for _ in range(sups):
                await sys.spawn(_supervisor, args=n // sups - 1, caps=[me, "spawn"])
            await sys.sleep(1)  # everyone has spawned and sent
            return await then(sys)
        return init
    return make


def recompute_seconds(n: int, repeats: int = 3) -> tuple[float, int, int, float]:
    """Median seconds of one recomputation at n processes; nodes, edges; build seconds."""
    k = Kernel(deterministic=True, policy=AllowAll(), sched=COUNTERS_ONLY)
    out: dict[str, Any] = {}

    async def measure(sys: Any) -> None:
        out["built"] = time.perf_counter()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            k.graph.recompute()
            ts.append(time.perf_counter() - t0)
        out["ts"] = ts
        out["size"] = (k.graph.g.num_nodes(), k.graph.g.num_edges())

    t0 = time.perf_counter()
    k.run(_populate(n)(measure))
    return statistics.median(out["ts"]), out["size"][0], out["size"][1], out["built"] - t0


def ipc_during_recompute(n: int, trips: int) -> tuple[float, int, float]:
    """Round trips/s between two processes while n processes' graph is recomputed every
    50 ms of real kernel clock; the recomputations that ran and their mean seconds."""
    k = Kernel(policy=AllowAll(), sched=SchedConfig(enabled=True, every_changes=None, every_ms=50.0))
    body = bk.ipc_body(trips)
    out: dict[str, Any] = {}

    async def measure(sys: Any) -> None:
        r0 = k.graph.recomputes
        s0 = k.graph.total_seconds
        t0 = time.process_time()
        await body(sys, None)
        out["secs"] = time.process_time() - t0
        out["recomputes"] = k.graph.recomputes - r0
        out["pause"] = (k.graph.total_seconds - s0) / max(1, out["recomputes"])

    k.run(_populate(n)(measure))
    return trips / out["secs"], out["recomputes"], out["pause"]


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    scale = 1 if quick else 5
    # hot path: the same loops as bench_kernel, the scheduler's counters on
    for name, n, body, unit in (("ipc_round_trips_sched", 20_000 * scale, bk.ipc_body, "round trips/s"),
                                ("spawn_exit_sched", 10_000 * scale, bk.spawn_body, "spawns/s")):
        tk = tc = float("inf")
        for _ in range(2 if quick else 3):
            tk = min(tk, bk._best(lambda: bk.on_kernel(body, sched=COUNTERS_ONLY)(n), 1))
            tc = min(tc, bk._best(lambda: bk.on_bare(body)(n), 1))
        rows.append({"name": name, "ops_per_s": round(n / tk), "ceiling_ops_per_s": round(n / tc),
                     "ratio": round(tc / tk, 3), "unit": unit, "n": n,
                     "notes": "scheduler on, counters only (no recomputation in the loop)"})
    sizes = [10_000] if quick else [10_000, 100_000]
    if os.environ.get("AGENTOS_BENCH_SCHED_MILLION") == "1":
        sizes.append(1_000_000)
    for n in sizes:
        gc.collect()
        secs, nodes, edges, built = recompute_seconds(n)
        rows.append({"name": f"sched_recompute_{n}", "value": round(secs, 4), "unit": "s per recomputation",
                     "notes": f"eigenvector, {nodes} nodes, {edges} edges (median of 3; graph built "
                              f"in {built:.1f} s by spawns and sends)"})
    for n in ([10_000] if quick else [10_000, 100_000]):
        gc.collect()
        trips = 20_000 * scale
        ops, recs, pause = ipc_during_recompute(n, trips)
        tc = bk._best(lambda: bk.on_bare(bk.ipc_body)(trips), 1)
        rows.append({"name": f"ipc_during_recompute_{n}", "ops_per_s": round(ops),
                     "ceiling_ops_per_s": round(trips / tc), "ratio": round(ops / (trips / tc), 3),
                     "unit": "round trips/s",
                     "notes": f"{recs} recomputations of a {n}-process graph every 50 ms during the loop, "
                              f"{pause * 1000:.1f} ms each (dispatch pauses that long)"})
    return rows
