"""Protection and fairness: a protected process gets at most a doubled quantum; every
ready process runs within a bounded number of dispatches whatever the priorities and the
graph; a swarm of chatty children does not make its parent protected; centrality never
changes a budget. Each kernel run here is also replayed and compared (conftest.py)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from agentos import AllowAll, Kernel, Quota
from agentos.kernel.scheduler import LEVELS
from agentos.sched import SchedConfig

from .helpers import cents, run_sched


async def sink(sys, args):
    while await sys.recv(timeout=args) is not None:
        pass


async def talker(sys, args):
    n, hold = args
    for i in range(n):
        await sys.send(sys.caps[0], i)
    await sys.recv(timeout=hold)


async def busy(sys, args):
    for _ in range(args):
        await sys.pid()


def _last(k, pid):
    return max(e.seq for e in k.events.events(kind="sys") if e.pid == pid)


def _runs(k, pids, until):
    """Lengths of the unbroken runs of `sys` events of each pid (one run: one quantum), up
    to event `until` (while both run: past it, one alone runs its quanta back to back)."""
    runs: dict[int, list[int]] = {p: [] for p in pids}
    last, n = None, 0
    for e in k.events.events():
        if e.kind != "sys" or e.seq > until:
            continue
        if e.pid != last:
            if last in runs:
                runs[last].append(n)
            last, n = e.pid, 0
        n += 1
    if last in runs:
        runs[last].append(n)
    return runs


def test_a_protected_process_gets_a_doubled_quantum_and_no_more():
    async def hub(sys, args):
        for _ in range(12):   # the leaves' messages make it the hub
            await sys.recv()
        await sys.sleep(1)    # recomputed by now
        for _ in range(200):
            await sys.pid()

    async def prog(sys, k, box):
        _, h = await sys.spawn(hub, name="hub")
        for i in range(4):
            await sys.spawn(talker, args=(3, 100), caps=[h], name=f"leaf{i}")
        await sys.sleep(1)
        _, b = await sys.spawn(busy, args=200, name="plain")
        box["cents"] = cents(k)
        box["protected"] = {p.name: k.sched_protected(p) for p in k.procs.values()}
        await sys.sleep(100)

    # alpha 0: the same level for both, so their quanta alternate and each run is one quantum
    k, _, box = run_sched(prog, quantum=10, alpha=0.0, every_changes=1)
    assert box["protected"]["hub"] and not box["protected"]["plain"]
    hub_pid = next(r for r in k.events.events(kind="spawn") if r.data[1] == "hub").pid
    plain_pid = next(r for r in k.events.events(kind="spawn") if r.data[1] == "plain").pid
    runs = _runs(k, [hub_pid, plain_pid], until=min(_last(k, hub_pid), _last(k, plain_pid)))
    hub_busy = runs[hub_pid][-5:]       # quanta of its busy loop
    plain_busy = runs[plain_pid]
    assert hub_busy and max(hub_busy) == 20, runs[hub_pid]        # 2 x quantum of 1-reduction calls
    assert max(runs[hub_pid]) <= 20
    assert plain_busy and max(plain_busy) == 10 and max(runs[plain_pid]) <= 10


async def yielder(sys, args):
    for _ in range(args):
        await sys.yield_()


def _gaps(k, pids):
    """For each pid, the most dispatches of others between two of its own (each `yield_`
    is one dispatch: it parks at once)."""
    order = [e.pid for e in k.events.events(kind="sys") if e.pid in pids]
    worst = {p: 0 for p in pids}
    last_seen: dict[int, int] = {}
    first = {}
    for i, p in enumerate(order):
        first.setdefault(p, i)
        if p in last_seen:
            worst[p] = max(worst[p], i - last_seen[p] - 1)
        last_seen[p] = i
    return worst, first


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prios=st.lists(st.integers(0, 9), min_size=2, max_size=6),
       edges=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=10),
       alpha=st.floats(0.0, 3.0), bypass=st.integers(1, 6))
def test_every_ready_process_runs_within_a_bounded_number_of_dispatches(prios, edges, alpha, bypass):
    n = len(prios)
    iters = 30

    async def prog(sys, k, box):
        caps = []
        for i, pr in enumerate(prios):
            _, c = await sys.spawn(sink, args=10_000, name=f"s{i}", priority=pr)
            caps.append(c)
        for a, b in edges:  # a random graph: talkers that link sink a to sink b
            if a < n and b < n and a != b:
                await sys.spawn(talker, args=(3, 1), caps=[caps[b]], priority=0)
        pids = []
        for i, pr in enumerate(prios):
            pid, _ = await sys.spawn(yielder, args=iters, name=f"y{i}", priority=pr)
            pids.append(pid)
        box["pids"] = pids
        await sys.sleep(10_000)

    k = Kernel(deterministic=True, policy=AllowAll(), default_priority=9,
               sched=SchedConfig(enabled=True, alpha=alpha, bypass=bypass, every_changes=2))
    box: dict = {}

    async def init(sys, args):
        await prog(sys, k, box)

    k.run(init)
    worst, _ = _gaps(k, box["pids"])
    bound = bypass * min(LEVELS, n) * n
    assert max(worst.values()) <= bound, (worst, bound)


def test_without_the_scheduler_strict_levels_starve_a_low_process():
    """What the bound above rules out: a busy high level holds a low one back for as long
    as it runs (the kernel without the scheduler keeps strict levels)."""
    async def init(sys, args):
        low, _ = await sys.spawn(yielder, args=5, priority=1)
        for _ in range(3):
            await sys.spawn(yielder, args=100, priority=8)
        await sys.sleep(10)
        return low

    k = Kernel(deterministic=True, policy=AllowAll(), default_priority=9)
    res = k.run(init)
    order = [e.pid for e in k.events.events(kind="sys") if e.pid != 1]
    assert order.index(res.value) >= 300  # ran only once every high process had finished


def _swarm(n_children, cap):
    async def chatty(sys, args):
        for _ in range(3):
            await sys.send(sys.caps[0], "hi")
        await sys.recv(timeout=1000)

    async def parent(sys, args):
        me = await sys.self_cap()
        for _ in range(args):
            await sys.spawn(chatty, caps=[me])
        while await sys.recv(timeout=1000) is not None:
            pass

    async def prog(sys, k, box):
        _, o = await sys.spawn(sink, args=1000, name="orchestrator")
        for i in range(4):
            await sys.spawn(talker, args=(3, 1000), caps=[o], name=f"peer{i}")
        await sys.spawn(parent, args=n_children, name="swarm_parent", caps=["spawn"])
        await sys.sleep(50)
        k.graph.recompute()
        box["cents"] = {n: c for n, c in cents(k).items() if n in ("orchestrator", "swarm_parent")}
        box["protected"] = {p.name: k.sched_protected(p) for p in k.procs.values()
                            if p.name in ("orchestrator", "swarm_parent")}

    return run_sched(prog, subtree_cap=cap, every_changes=64)


def test_a_swarm_of_chatty_children_does_not_protect_its_parent():
    _, _, box = _swarm(150, 8.0)
    assert box["protected"] == {"orchestrator": True, "swarm_parent": False}
    assert box["cents"]["swarm_parent"] < box["cents"]["orchestrator"]
    assert box["cents"]["swarm_parent"] < 0.8


def test_without_the_subtree_cap_the_same_swarm_would_buy_protection():
    """The cap is what stops it: with no cap the parent of the swarm is the most central."""
    _, _, box = _swarm(150, 1e12)
    assert box["cents"]["swarm_parent"] == 1.0 and box["protected"]["swarm_parent"]


def test_centrality_never_changes_a_budget():
    """The same program with and without the scheduler: every account ends the same (the
    hub's centrality raised its priority, not its quota), and the root's is conserved."""
    async def spender(sys, args):
        await sys.spawn(busy, args=5, quota=Quota(tool_calls=1, children=0))
        for _ in range(3):
            await sys.send(sys.caps[0], "x")
        await sys.sleep(5)

    async def prog(sys, k, box):
        _, h = await sys.spawn(sink, args=100, quota=Quota(tool_calls=10), name="hub")
        for i in range(4):
            await sys.spawn(spender, caps=[h], quota=Quota(tool_calls=5, children=2), name=f"s{i}")
        await sys.sleep(2)
        box["views"] = sorted((p.name, repr(k.accounts.view(p.account))) for p in k.procs.values())
        box["hub_cent"] = next(p.cent for p in k.procs.values() if p.name == "hub")
        await sys.sleep(200)
        box["end"] = repr(await sys.budget())

    root = Quota(tool_calls=100, children=50)
    k, _, on = run_sched(prog, every_changes=1, quota=root)
    k_off = Kernel(deterministic=True, policy=AllowAll())
    off: dict = {}

    async def init(sys, args):
        await prog(sys, k_off, off)

    k_off.run(init, quota=root)
    assert on["hub_cent"] == 1.0 and off["hub_cent"] == 0.0
    assert on["views"] == off["views"]
    assert on["end"] == off["end"]
    assert k.accounts.view(k.init.account) == k_off.accounts.view(k_off.init.account)


def test_a_process_above_the_protection_threshold_is_never_hibernated():
    from agentos.abi.errors import KernelError
    from agentos.sched import HibernationConfig

    ref = {}
    out = {}

    async def hub(sys, args):
        while True:
            await sys.recv()

    async def sleeper(sys, args):
        await sys.sleep(300)

    async def init(sys, args):
        k = ref["k"]
        hpid, h = await sys.spawn(hub, name="hub", priority=0)   # the lowest score of all
        for i in range(4):
            await sys.spawn(talker, args=(3, 400), caps=[h], name=f"leaf{i}")
        await sys.sleep(5)   # the leaves' messages make it the hub: protected
        out["protected"] = k.sched_protected(k.procs[hpid])
        try:
            k.hibernate(hpid)
        except KernelError as e:
            out["refused"] = str(e)
        for i in range(3):   # past the watermark now: 9 resident, 6 allowed
            await sys.spawn(sleeper, name=f"s{i}")
        await sys.sleep(50)
        out["hub"] = k.procs[hpid].state.value
        out["hibernated"] = sorted(p.name for p in k.procs.values() if p.state.value == "hibernated")
        return "ok"

    k = Kernel(deterministic=True, policy=AllowAll(), sched=SchedConfig(enabled=True, every_changes=1),
               hibernation=HibernationConfig(max_resident=6, low_water=0.5))
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["protected"] is True and "the scheduler protects it" in out["refused"]
    assert out["hub"] == "waiting"
    assert len(out["hibernated"]) == 6 and "hub" not in out["hibernated"]
    hub_pid = next(e.pid for e in k.events.events(kind="spawn") if e.data[1] == "hub")
    assert hub_pid not in {e.pid for e in k.events.events(kind="hibernate")}
