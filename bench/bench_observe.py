"""The cost of observation: kernel figures with OpenTelemetry tracing on (every span
sampled, 1% sampled by the provider's sampler, 1% sampled by the tracer itself, none
sampled) beside the plain kernel, in the same run. Sampling is decided once per trace (a
run here is one trace), so the 1% figures are the unsampled path's cost.

Target: at most 10% off with tracing sampled at 1%. Spans go to no exporter (their cost
is made in the kernel's thread: creating and ending them); an exporter's cost is the
span processor's, off the kernel's path when batched. Skips when opentelemetry-sdk is
not installed.
"""
from __future__ import annotations

from typing import Any, Callable

from bench_kernel import Null, _best, _kernel, reads_body, spawn_body


def _run(body: Callable[[int], Any], n: int, tracer: Any, drivers: list[Any]) -> None:
    k = _kernel()
    for d in drivers:
        k.register_driver(d)
    if tracer is not None:
        k.add_observer(tracer())
    k.run(body(n), grant=[d.name for d in drivers])


def run(quick: bool = False) -> list[dict[str, Any]]:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

        from agentos.telemetry import GenAITracer
    except ImportError:
        return []
    scale = 1 if quick else 4
    reps = 3 if quick else 5
    modes: dict[str, Any] = {
        "plain": None,
        "traced_all": lambda: GenAITracer(TracerProvider(sampler=ALWAYS_ON)),
        "traced_1pct": lambda: GenAITracer(TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.01)))),
        "traced_1pct_tracer": lambda: GenAITracer(TracerProvider(), sample_ratio=0.01),
        "traced_none": lambda: GenAITracer(TracerProvider(sampler=ALWAYS_OFF)),
    }
    results = []
    for name, body, n, drivers in (("spawn_exit", spawn_body, 5_000 * scale, []),
                                   ("driver_reads", reads_body, 20_000 * scale, [Null()])):
        best = {m: float("inf") for m in modes}
        for _ in range(reps):  # interleaved: every mode sees the same machine weather
            for m, tr in modes.items():
                best[m] = min(best[m], _best(lambda: _run(body, n, tr, drivers), 1))
        for m in modes:
            results.append({"name": f"{name}_{m}", "ops_per_s": round(n / best[m]), "n": n,
                            "ratio": round(best["plain"] / best[m], 3), "unit": "ops/s",
                            "notes": f"{m} beside plain in the same run (ratio = plain time / this time)"})
    return results
