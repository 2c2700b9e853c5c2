"""Many agents in one kernel: resident memory with and without hibernation.

N message-loop agents, each with a name and about 4 KiB of context of its own (a
remembered segment, indexed by the recaller), are spawned into one kernel; then Zipf
traffic (s=1.1) runs: the router (init) sends a batch of messages to Zipf-chosen agents and
collects their replies, batch after batch. With hibernation on, the resident watermark is
1% of N: the other 99% wait as stubs, their records in a SQLite hibernation store on disk
(durability "off": committed, not fsynced). The records must leave the process: a store in
memory would keep every agent's context bytes in the RSS.

Each configuration runs in a child process; the parent reads the child's resident memory
from outside (/proc/<pid>/status: VmRSS after the run, VmHWM the peak). Reported:
spawn rate, messages/s under traffic, wake latency (restoring one agent from the store,
p50/p99), bytes per agent, the stub size; and with hibernation off, the same workload at
sizes that fit, bytes per agent, and the N at which 2 GiB would be passed.

Usage: python bench/bench_scale.py [--n 1000000] [--off 20000,100000] [--messages 100000]
(from bench/run.py: `run(quick)` runs small sizes).
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

ERLANG_DEFAULT_PROCS = 1_048_576      # +P default of the BEAM
AKKA_ACTORS_PER_GB = 2_500_000        # Akka's documented figure (~400 bytes an actor)
BUDGET = 2 * 1024 ** 3

WORDS = ("plan tool call budget agent message context memory search answer router crawler index "
         "summary lesson policy device store kernel reply request result error retry").split()


_rnd = random.Random(7)
_BASE = " ".join(_rnd.choice(WORDS) for _ in range(700))[:4080]


def _context(i: int) -> str:
    """About 4 KiB of text of agent i's own (a rotation of a shared vocabulary)."""
    cut = (i * 7919) % len(_BASE)
    return f"agent {i}: " + _BASE[cut:] + " " + _BASE[:cut]


def child(n: int, hibernate: bool, messages: int, batch: int, seed: int, store_dir: str = "") -> dict[str, Any]:
    from agentos import Kernel
    from agentos.sched import HibernationConfig, message_loop, stub_bytes

    async def setup(sys: Any, args: Any) -> Any:
        await sys.remember(_context(args))
        return 0

    @message_loop(init=setup)
    async def agent(sys: Any, state: Any, msg: Any) -> Any:
        await sys.send(msg.caps[0], state + 1)
        await sys.revoke(msg.caps[0])  # the reply cap was for this message only
        return state + 1

    # Zipf over ranks (a permutation of the agents so rank is not spawn order)
    rnd = random.Random(seed)
    weights = [1.0 / (r ** 1.1) for r in range(1, n + 1)]
    cum = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    perm = list(range(n))
    rnd.shuffle(perm)
    targets = [perm[bisect.bisect_left(cum, rnd.random() * acc)] for _ in range(messages)]
    del weights, cum, perm
    out: dict[str, Any] = {}

    async def init(sys: Any, args: Any) -> Any:
        caps = []
        t0 = time.perf_counter()
        c0 = time.process_time()
        for i in range(n):
            caps.append((await sys.spawn(agent, args=i, name=f"a{i}"))[1])
        await sys.sleep(1)  # everyone parks at the top of its loop (and, on, hibernates)
        out["spawn_s"] = time.perf_counter() - t0
        out["spawn_cpu_s"] = time.process_time() - c0
        me = await sys.self_cap()
        t1 = time.perf_counter()
        c1 = time.process_time()
        sent = 0
        for b in range(0, messages, batch):
            chunk = targets[b:b + batch]
            for t in chunk:
                await sys.send(caps[t], "ping", caps=[me])
            for _ in chunk:
                await sys.recv()
            sent += len(chunk)
        out["traffic_s"] = time.perf_counter() - t1
        out["traffic_cpu_s"] = time.process_time() - c1
        out["messages"] = sent * 2  # each ping has its reply
        finish()  # measured here: tearing down a million processes is not the benchmark
        return "ok"

    hib = None
    if hibernate:  # the records live on disk: a store in this process would hold their bytes
        from agentos.sched import SqliteHibernationStore

        assert store_dir, "the parent makes (and removes) the store's directory"
        where = store_dir
        hib = HibernationConfig(store=SqliteHibernationStore(os.path.join(where, "hib.db"), "off"),
                                max_resident=max(64, n // 100), low_water=0.9)
    k = Kernel(deterministic=True, hibernation=hib, event_ring=4096, record=False)
    lat: list[float] = []
    if hibernate:
        h = k.hibernation
        thaw = h.thaw

        def timed(p: Any, cause: str = "event") -> bool:
            t = time.perf_counter()
            ok = thaw(p, cause)
            lat.append(time.perf_counter() - t)
            return ok
        h.thaw = timed  # type: ignore[method-assign]

    def finish() -> None:
        m = k.metrics()
        out["hibernations"] = m.get("hibernations", 0)
        out["wakes"] = m.get("hibernate_wakes", 0)
        out["resident_now"] = len(k.procs) - m.get("hibernated", 0)
        stubs = [stub_bytes(p) for p in list(k.procs.values())[:2000] if p.coro is None and p.pid != 1]
        if stubs:
            out["stub_bytes_max"] = max(stubs)
        if lat:
            lat.sort()
            out["wake_p50_us"] = lat[len(lat) // 2] * 1e6
            out["wake_p99_us"] = lat[int(len(lat) * 0.99)] * 1e6
        _deliver(out)

    k.run(init)
    return out


def _deliver(out: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # the parent reads our /proc status, then closes stdin
    os._exit(0)       # skip tearing down the processes


def _run_child(n: int, hibernate: bool, messages: int, batch: int, timeout: float) -> dict[str, Any]:
    """Run one size in a fresh process; its hibernation store lives in a directory removed here.

    The child leaves with os._exit (tearing down a million processes is not measured), so
    the parent owns the store's directory and deletes it whatever the child did."""
    import shutil
    import tempfile

    where = tempfile.mkdtemp(prefix="agentos-scale-")
    try:
        return _run_child_in(n, hibernate, messages, batch, timeout, where)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _run_child_in(n: int, hibernate: bool, messages: int, batch: int, timeout: float,
                  store_dir: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--n", str(n), "--messages", str(messages),
           "--batch", str(batch), "--store-dir", store_dir] + (["--hibernate"] if hibernate else [])
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = ""
    deadline = time.monotonic() + timeout
    peak = 0
    import select

    assert p.stdout is not None and p.stdin is not None
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        peak = max(peak, _status(p.pid).get("VmRSS", 0))
        if r:
            line = p.stdout.readline()
            break
        if p.poll() is not None:
            break
    if not line:
        p.kill()
        p.wait()
        return {"n": n, "hibernate": hibernate, "error": f"no result within {timeout:.0f} s (or it died)",
                "peak_rss_seen": peak}
    st = _status(p.pid)  # the child waits on stdin: read its memory from outside, then let it go
    p.stdin.close()
    p.wait(30)
    out = json.loads(line)
    out.update(n=n, hibernate=hibernate, rss=st.get("VmRSS", 0), peak_rss=st.get("VmHWM", 0))
    return out


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = ln.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def _baseline() -> int:
    """RSS of a child that imports agentos and boots an empty kernel (subtracted per agent)."""
    r = _run_child(0, False, 0, 1, 60)
    return int(r.get("rss", 0))


def report(rows: list[dict[str, Any]], base: int) -> None:
    print(f"baseline (python + agentos + empty kernel): {base / 2**20:.0f} MiB")
    for r in rows:
        if "error" in r:
            print(f"N={r['n']:>9,} hibernation={'on ' if r['hibernate'] else 'off'}  {r['error']} "
                  f"(peak RSS seen {r.get('peak_rss_seen', 0) / 2**20:.0f} MiB)")
            continue
        per = (r["rss"] - base) / max(1, r["n"])
        msgs = r["messages"] / r["traffic_s"] if r.get("traffic_s") else 0.0
        msgs_cpu = r["messages"] / r["traffic_cpu_s"] if r.get("traffic_cpu_s") else 0.0
        line = (f"N={r['n']:>9,} hibernation={'on ' if r['hibernate'] else 'off'}  RSS {r['rss'] / 2**20:7.0f} MiB "
                f"(peak {r['peak_rss'] / 2**20:.0f})  {per:7.0f} B/agent  spawn {r['n'] / r['spawn_s']:6.0f}/s "
                f"({r['n'] / r['spawn_cpu_s']:6.0f}/cpu-s)  traffic {msgs:6.0f} msg/s ({msgs_cpu:6.0f}/cpu-s)")
        if r["hibernate"]:
            line += (f"\n{'':>10}wake p50 {r.get('wake_p50_us', 0):.0f} us p99 {r.get('wake_p99_us', 0):.0f} us"
                     f"  hibernations {r['hibernations']:,} wakes {r['wakes']:,} resident {r['resident_now']:,}"
                     f"  stub <= {r.get('stub_bytes_max', 0)} B")
        else:
            fits = int((BUDGET - base) / per) if per > 0 else 0
            line += f"  -> 2 GiB holds about {fits:,} agents without hibernation"
        print(line)
    print(f"reference: Erlang/OTP default process limit {ERLANG_DEFAULT_PROCS:,}; "
          f"Akka ~{AKKA_ACTORS_PER_GB:,} actors per GB of heap (~{2**30 // AKKA_ACTORS_PER_GB} B an actor, no context)")


def run(quick: bool = False) -> list[dict[str, Any]]:
    """For bench/run.py: small sizes (the full run is `python bench/bench_scale.py`)."""
    n = 5_000 if quick else 20_000
    base = _baseline()
    rows = [_run_child(n, True, n, 100, 300), _run_child(n, False, n, 100, 300)]
    out = []
    for r in rows:
        if "error" in r:
            out.append({"name": f"scale {r['n']} hibernation={r['hibernate']}", "error": r["error"]})
            continue
        out.append({"name": f"scale {r['n']} agents hibernation={'on' if r['hibernate'] else 'off'}",
                    "ops_per_s": r["messages"] / r["traffic_s"],
                    "bytes_per_agent": (r["rss"] - base) / r["n"], "rss": r["rss"]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--hibernate", action="store_true")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--off", default="20000,100000", help="sizes to run with hibernation off")
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--store-dir", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        if a.n:
            child(a.n, a.hibernate, a.messages, a.batch, seed=1, store_dir=a.store_dir)
        else:
            from agentos import Kernel

            Kernel(deterministic=True)
            _deliver({})
    base = _baseline()
    rows = [_run_child(a.n, True, a.messages, a.batch, a.timeout)]
    for n in (int(x) for x in a.off.split(",") if x):
        rows.append(_run_child(n, False, min(a.messages, n), a.batch, a.timeout))
    report(rows, base)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
