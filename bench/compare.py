"""Kernel ratios of two source trees, measured side by side in one invocation.

Usage: python bench/compare.py --base REV [--head DIR] [--runs 3] [--gc on|off]

Checks REV out into a temporary git worktree, then runs the kernel throughput figures of
bench_kernel.py for the base and for the head tree alternately, each run in a fresh
interpreter (so neither inherits the other's heap), `--runs` times each. Reports the
median ratio to the bare-trampoline ceiling per figure, and the change. With `--gc on`
(the default) the collector stays enabled while timing, as in every real program.
Ratios, not absolute times: the machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Runs inside the child interpreter, against whichever tree is first on sys.path.
_CHILD = r"""
import gc, json, sys, time
import bench_kernel as bk
gc_on = sys.argv[1] == "on"
if hasattr(bk, "GC_MODES"):
    bk.GC_MODES = ("on" if gc_on else "off",)   # one column: the mode asked for
def _best(fn, repeats, *_):
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        if not gc_on:
            gc.disable()
        try:
            t0 = time.process_time(); fn(); best = min(best, time.process_time() - t0)
        finally:
            gc.enable()
    return best
bk._best = _best
bk.idle_memory = lambda n: (1.0, 1.0, 1) if hasattr(bk, "GC_MODES") else (1.0, 1.0)  # measured elsewhere
bk.read_all_speedup = lambda: (1.0, 1.0)       # wall-clock sleeps, not kernel work
rows = [r for r in bk.run(quick=True) if r.get("ops_per_s")]
print(json.dumps({r["name"]: r["ratio"] for r in rows}))
"""


def _run(tree: Path, gc_mode: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree / 'bench'}")
    out = subprocess.run([sys.executable, "-c", _CHILD, gc_mode], env=env, cwd=str(tree / "bench"),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--head", default=str(ROOT), help="source tree to measure (default: this one)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gc", choices=("on", "off"), default="on")
    args = ap.parse_args(argv)
    head = Path(args.head).resolve()
    with tempfile.TemporaryDirectory(prefix="agentos-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base],
                       check=True)
        try:
            runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
            for i in range(args.runs):  # alternate, so both see the same machine weather
                for label, tree in (("base", base), ("head", head)):
                    runs[label].append(_run(tree, args.gc))
                    print(f"run {i + 1}/{args.runs} {label} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    names = [n for n in runs["head"][0] if n in runs["base"][0]]
    print(f"kernel ratios to the bare ceiling, median of {args.runs}, gc {args.gc}: base {args.base}, head {head}")
    print(f"{'figure':28} {'base':>7} {'head':>7} {'change':>8}")
    report = {}
    for n in names:
        b = statistics.median(r[n] for r in runs["base"])
        h = statistics.median(r[n] for r in runs["head"])
        report[n] = {"base": b, "head": h, "change": (h - b) / b if b else None}
        print(f"{n:28} {b:7.3f} {h:7.3f} {100 * (h - b) / b:+7.1f}%")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
