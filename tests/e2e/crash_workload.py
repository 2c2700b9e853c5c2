"""The kernel the crash-recovery test kills: records into SQLite and prints each commit.

Run as `python crash_workload.py DB DURABILITY SEED`; prints `ACK <seq>` after every
commit of the run's events, and runs far longer than the test lets it live.
"""
from __future__ import annotations

import sys
from typing import Any

from agentos import AllowAll, Kernel
from agentos.abi.driver import Driver, DriverResult
from agentos.abi.types import Cost
from agentos.drivers.kv import KVDriver


class Counter(Driver):
    name = "meter"

    def __init__(self) -> None:
        self.n = 0

    def open(self, owner: int, params: Any) -> int:
        return owner

    def read(self, handle: Any, req: Any) -> DriverResult:
        self.n += 1
        return DriverResult({"n": self.n, "req": req}, Cost(tokens=1))

    def write(self, handle: Any, data: Any) -> DriverResult:
        return DriverResult(True)


async def worker(sys: Any, args: Any) -> None:
    kv = await sys.open("kv")
    meter = await sys.open("meter")
    parent = sys.caps[0]
    for i in range(args["iters"]):
        await sys.write(kv, {"op": "set", "key": f"k{i % 7}", "value": i})
        r = await sys.read(meter, {"w": args["w"], "i": i})
        if i % 5 == 0:
            await sys.send(parent, r["n"])
        if i % 3 == 0:
            await sys.sleep(1)


async def crash_init(sys: Any, args: Any) -> int:
    me = await sys.self_cap()
    caps = []
    for w in range(args["workers"]):
        _, cap = await sys.spawn(worker, args={"w": w, "iters": args["iters"]}, caps=[me, "kv", "meter"])
        caps.append(cap)
    got = 0
    for _ in range(args["workers"] * ((args["iters"] + 4) // 5)):
        m = await sys.recv()
        got += m.body
    for c in caps:
        await sys.waitpid(c)
    return got


def main() -> None:
    from agentos.store import record_run
    from agentos.store.sqlite import SqliteStore

    db, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SqliteStore(db, mode, group_ms=2, group_rows=256)

    def ack(d: dict[str, int]) -> None:
        for _run, seq in d.items():
            sys.stdout.write(f"ACK {seq}\n")
        sys.stdout.flush()

    store.on_commit.append(ack)
    k = Kernel(deterministic=True, seed=seed, policy=AllowAll(), event_batch=32)
    k.register_driver(KVDriver())
    k.register_driver(Counter())
    record_run(k, store, f"crash-{seed}")
    sys.stdout.write("BOOT\n")
    sys.stdout.flush()
    k.run(crash_init, args={"workers": 3, "iters": 1_000_000}, grant=["kv", "meter"])


if __name__ == "__main__":
    main()
