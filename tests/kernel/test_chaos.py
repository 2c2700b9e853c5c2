"""Seeded chaos: thousands of processes spawning, messaging, killing, crashing, deriving and
revoking caps. Afterwards nothing leaks: no processes, caps, ghosts, accounts, names or
mailboxes, and the budget is conserved."""
from __future__ import annotations

import random

import pytest

from agentos import AllowAll, Cost, Driver, DriverResult, Kernel, Quota, SyscallError


class Spend(Driver):
    name = "spend"

    def read(self, handle, req):
        return DriverResult(None, Cost(tokens=req))


async def chaotic(sys, args):
    seed, depth = args
    rng = random.Random(seed)
    peers = list(sys.caps[1:])
    h = await sys.open(sys.caps[0])
    for step in range(rng.randint(1, 25)):
        op = rng.random()
        try:
            if op < 0.15 and depth < 4:
                _, c = await sys.spawn(chaotic, args=(rng.getrandbits(32), depth + 1),
                                       caps=[sys.caps[0], *peers[-2:], "spawn"],
                                       quota=Quota(tokens=rng.choice([None, 50, 200])),
                                       link=rng.random() < 0.3)
                peers.append(c)
            elif op < 0.40 and peers:
                await sys.send(rng.choice(peers), ("hello", step), caps=[await sys.self_cap()])
            elif op < 0.50 and peers:
                await sys.kill(rng.choice(peers))
            elif op < 0.60:
                await sys.recv(timeout=rng.randint(0, 5))
            elif op < 0.68 and peers:
                d = await sys.derive(rng.choice(peers), "send")
                peers.append(d)
                if rng.random() < 0.5:
                    await sys.revoke(d)
                    peers.remove(d)
            elif op < 0.75:
                await sys.read(h, rng.randint(0, 30))
            elif op < 0.80:
                await sys.register(f"n{rng.randint(0, 20)}")
            elif op < 0.83:
                raise RuntimeError("chaos crash")
            elif op < 0.86:
                await sys.remember("x" * rng.randint(1, 50))
            else:
                await sys.sleep(rng.randint(1, 10))
        except SyscallError:
            pass  # killed peers, revoked caps, taken names: all expected in chaos


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chaos_churn_leaks_nothing(seed):
    kernel = Kernel(deterministic=True, seed=seed, policy=AllowAll())
    kernel.register_driver(Spend())
    mid = {}

    async def init(sys, args):
        rng = random.Random(seed)
        caps = []
        for i in range(400):
            _, c = await sys.spawn(chaotic, args=(rng.getrandbits(32), 0), caps=["spend", "spawn"],
                                   quota=Quota(tokens=300))
            caps.append(c)
            if i == 200:
                # invariant mid-run: the live-cap count equals what live processes hold
                mid["live"] = kernel.caps.live
                mid["held"] = sum(len(p.caps) for p in kernel.procs.values())
        for c in caps:
            await sys.waitpid(c)
        await sys.sleep(100)
        return (await sys.budget()).remaining["tokens"]

    res = kernel.run(init, grant=["spend"], quota=Quota(tokens=1_000_000))
    m = kernel.metrics()
    assert mid["live"] == mid["held"]
    assert m["spawned"] > 1000, "chaos should have produced thousands of processes"
    assert kernel.procs == {}
    assert kernel.caps.live == 0 and kernel.caps.ghosts == 0
    assert kernel.accounts.open_count == 0
    assert kernel.names == {}
    assert res.value == 1_000_000 - m["tokens"]
    assert {"normal", "killed", "fault"} <= set(m["exits"])
