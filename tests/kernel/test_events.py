"""The event log: stamped, complete, deterministic under VirtualClock; ps and metrics read it."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from agentos import Cost, Driver, DriverResult, Quota
from agentos.kernel.events import digest, encode_event
from tests.support.boot import boot


class Counter(Driver):
    name = "ctr"

    def read(self, handle, req):
        return DriverResult(req * 2, Cost(tokens=req % 7, tool_calls=1))


async def worker(sys, args):
    steps, peer_count = args
    h = await sys.open("ctr")
    total = 0
    for i, op in enumerate(steps):
        if op == 0:
            total += await sys.read(h, i)
        elif op == 1:
            await sys.remember(f"note {i} {total}", tokens=3)
        elif op == 2:
            await sys.sleep(i % 5 + 1)
        elif op == 3:
            await sys.send(sys.caps[1], (await sys.pid(), i))
        elif op == 4:
            await sys.recall(f"note {i - 1}", k=2)
        else:
            await sys.yield_()
    return total


async def program(sys, args):
    me = await sys.self_cap()
    caps = []
    for steps in args:
        _, c = await sys.spawn(worker, args=(steps, len(args)), caps=["ctr", me],
                               quota=Quota(tokens=200, mem=30))
        caps.append(c)
    got = 0
    for c in caps:
        await sys.waitpid(c)
    while await sys.recv(timeout=0):
        got += 1
    return got


workloads = st.lists(st.lists(st.integers(0, 5), max_size=25), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(workloads, st.integers(0, 2**32))
def test_property_two_runs_give_byte_identical_event_logs(wl, seed):
    k1, r1 = boot(program, drivers=[Counter()], grant=["ctr"], args=wl, seed=seed)
    k2, r2 = boot(program, drivers=[Counter()], grant=["ctr"], args=wl, seed=seed)
    e1, e2 = k1.events.events(), k2.events.events()
    assert [encode_event(e) for e in e1] == [encode_event(e) for e in e2]
    assert r1.value == r2.value


def test_different_seeds_give_different_cap_refs_but_same_behaviour():
    wl = [[0, 3, 1, 2], [3, 0, 4]]
    k1, r1 = boot(program, drivers=[Counter()], grant=["ctr"], args=wl, seed=1)
    k2, r2 = boot(program, drivers=[Counter()], grant=["ctr"], args=wl, seed=2)
    assert r1.value == r2.value
    assert digest(k1.events.events()) != digest(k2.events.events())


def test_event_log_records_syscalls_charges_and_lifecycle_with_stamps():
    k, _ = boot(program, drivers=[Counter()], grant=["ctr"], args=[[0, 2, 0]])
    evs = k.events.events()
    assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
    assert all(a.time <= b.time for a, b in zip(evs, evs[1:]))
    kinds = {e.kind for e in evs}
    assert {"spawn", "sys", "charge", "exit", "policy"} <= kinds
    charges = [e for e in evs if e.kind == "charge"]
    assert [c.data for c in charges] == [(1, 0, 1, 0), (2, 2, 1, 0)]  # (op index, tokens, calls, nano-usd); op 0: open


def test_ps_and_metrics_text():
    seen = {}

    async def init(sys, args):
        async def sleeper(sys, args):
            await sys.recv()
        _, c = await sys.spawn(sleeper, name="waiting-one")
        await sys.sleep(1)
        seen["ps"] = kernel_ref[0].ps()
        await sys.kill(c)

    kernel_ref = []
    from agentos import AllowAll, Kernel
    k = Kernel(deterministic=True, policy=AllowAll())
    kernel_ref.append(k)
    k.run(init)
    rows = {r["name"]: r for r in seen["ps"]}
    assert rows["waiting-one"]["state"] == "waiting" and rows["waiting-one"]["wait"] == "recv"
    assert rows["init"]["state"] == "running"
    text = k.metrics_text()
    assert 'agentos_syscalls_total{syscall="spawn"} 1.0' in text or 'agentos_syscalls_total{syscall="spawn"} 1' in text
    assert "agentos_processes 0" in text
