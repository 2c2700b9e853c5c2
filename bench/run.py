"""Run the benchmark suite: every `bench_*.py` beside this file, in one process run.

Prints a table and writes JSON (bench/results/latest.json, or --out). Each figure is
reported as ops/s beside its bare-trampoline ceiling from the same run, and the ratio, with
the garbage collector on (as users run) and, in a second column, off.
Usage: python bench/run.py [--quick] [--only NAME ...] [--out FILE]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller loops (for a smoke run)")
    ap.add_argument("--only", nargs="*", default=None, help="module names, e.g. bench_kernel")
    ap.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    modules = args.only or discover()
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "python": platform.python_version(), "machine": platform.machine(),
                              "cpus": os.cpu_count(), "quick": args.quick, "results": []}
    for name in modules:
        mod = importlib.import_module(name)
        t0 = time.perf_counter()
        try:
            rows = mod.run(quick=args.quick)
        except Exception as e:  # one broken benchmark must not hide the others
            rows = [{"name": name, "error": f"{type(e).__name__}: {e}"}]
        for r in rows:
            r.setdefault("module", name)
        report["results"].extend(rows)
        print(f"{name}: {len(rows)} figures in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print_table(report["results"])
    print(f"JSON: {out}")
    return 0


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v >= 1000 or isinstance(v, int) and v >= 1000:
        return f"{v:,.0f}"
    return str(v)


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="agentos benchmarks (best of N; ratio = ours / bare trampoline, same run; "
                    "GC on as users run, GC off beside it)")
    for col in ("figure", "ours", "ceiling", "ratio", "ours gc off", "ratio gc off", "unit", "seed", "target",
                "notes"):
        t.add_column(col, overflow="fold")
    for r in rows:
        if "error" in r:
            t.add_row(r["name"], "error", "", "", "", "", "", r["error"])
            continue
        ours = r.get("ops_per_s") or r.get("speedup") or r.get("bytes") or r.get("value")
        ceil = r.get("ceiling_ops_per_s") or r.get("ceiling_speedup") or r.get("ceiling_bytes") or r.get("ceiling")
        t.add_row(r["name"], _fmt(ours), _fmt(ceil), _fmt(r.get("ratio")), _fmt(r.get("ops_per_s_gc_off")),
                  _fmt(r.get("ratio_gc_off")), r.get("unit", ""),
                  _fmt(r.get("seed")), _fmt(r.get("target")), r.get("notes", ""))
    Console(width=160).print(t)


if __name__ == "__main__":
    raise SystemExit(main())
