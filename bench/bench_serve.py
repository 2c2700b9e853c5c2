"""The cost of being served: the same driver-read loop in a plain kernel, in the daemon
with nobody watching, and in the daemon while a client scrapes /metrics every 100 ms and a
dashboard client holds the live stream open. Wall time of the loop as the program
measures it on the kernel's real clock (plain: around `run`); best of `reps`.

The served kernel also records its run (to a memory store) and keeps the daemon's event
ring, which the plain kernel does not: the figure is the whole cost of being served.
Skips when starlette/uvicorn are not installed.
"""
from __future__ import annotations

import asyncio
import http.client
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

PROGRAM = """
from agentos import Cost, Driver, DriverResult

class Null(Driver):
    name = "null"
    _cost = Cost(reductions=1)
    def read(self, handle, req):
        return DriverResult(req, self._cost)

def setup(k):
    k.register_driver(Null())

GRANT = ["null"]

async def init(sys, args):
    h = await sys.open("null")
    t0 = await sys.now()
    for i in range(args["n"]):
        await sys.read(h, i)
    await sys.log("info", "elapsed", ms=await sys.now() - t0)
"""


def _plain(n: int) -> float:
    from agentos import AllowAll, Kernel

    ns: dict[str, Any] = {}
    exec(textwrap.dedent(PROGRAM), ns)
    k = Kernel(policy=AllowAll(), event_batch=256)
    ns["setup"](k)
    t0 = time.perf_counter()
    k.run(ns["init"], args={"n": n}, grant=["null"])
    return time.perf_counter() - t0


class _Served:
    def __init__(self, home: Path) -> None:
        from agentos import AllowAll
        from agentos.server.daemon import Daemon
        from agentos.store import open_store

        ready = threading.Event()
        self.box: dict[str, Any] = {}

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            self.d = Daemon(home=home, policy=AllowAll(), store=open_store("memory:"))
            loop.run_until_complete(self.d.serve(signals=False, on_ready=lambda _: ready.set()))
            loop.close()

        self.t = threading.Thread(target=main, daemon=True)
        self.t.start()
        ready.wait(30)

    def req(self, method: str, path: str, body: bytes | None = None) -> bytes:
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=60)
        h = {"Host": f"127.0.0.1:{self.d.port}", "Authorization": f"Bearer {self.d.token}"}
        if body is not None:
            h["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=h)
        data = c.getresponse().read()
        c.close()
        return data

    def timed(self, prog: str, n: int) -> float:
        import json

        pid = json.loads(self.req("POST", "/v1/submit", json.dumps({"path": prog, "args": {"n": n}}).encode()))["pid"]
        while True:
            rows = json.loads(self.req("GET", f"/v1/procs/{pid}/logs"))["events"]
            done = [e["data"][2]["ms"] for e in rows if e["kind"] == "log" and e["data"][1] == "elapsed"]
            if done:
                return float(done[0]) / 1000.0
            time.sleep(0.05)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.d.stop, "bench")
        self.t.join(30)


def run(quick: bool = False) -> list[dict[str, Any]]:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return []
    n = 20_000 if quick else 100_000
    reps = 3 if quick else 5
    tmp = Path(tempfile.mkdtemp())
    prog = tmp / "reads.py"
    prog.write_text(textwrap.dedent(PROGRAM))
    s = _Served(tmp / "home")
    stop_watch = threading.Event()

    def watchers() -> None:
        c = http.client.HTTPConnection("127.0.0.1", s.d.port, timeout=60)
        c.request("GET", "/v1/stream", headers={"Host": f"127.0.0.1:{s.d.port}",
                                                "Authorization": f"Bearer {s.d.token}"})
        r = c.getresponse()

        def drain() -> None:
            try:
                while not stop_watch.is_set() and r.readline():
                    pass
            except (AttributeError, OSError, http.client.HTTPException):
                pass  # the connection was closed under us: the bench is over
        threading.Thread(target=drain, daemon=True).start()
        while not stop_watch.is_set():
            s.req("GET", "/metrics")
            time.sleep(0.1)
        c.close()

    best = {"plain": float("inf"), "served": float("inf"), "served_watched": float("inf")}
    try:
        for _ in range(reps):
            best["plain"] = min(best["plain"], _plain(n))
            best["served"] = min(best["served"], s.timed(str(prog), n))
            stop_watch.clear()
            w = threading.Thread(target=watchers, daemon=True)
            w.start()
            time.sleep(0.2)
            best["served_watched"] = min(best["served_watched"], s.timed(str(prog), n))
            stop_watch.set()
            w.join(10)
    finally:
        s.stop()
    return [{"name": f"driver_reads_{m}", "ops_per_s": round(n / t), "n": n, "ratio": round(best["plain"] / t, 3),
             "unit": "reads/s", "notes": f"{m} beside the plain kernel in the same run (ratio = plain time / this)"}
            for m, t in best.items()]
