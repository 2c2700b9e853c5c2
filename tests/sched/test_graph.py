"""The agent graph: what makes a process central, when centrality is recomputed, and what
happens when the eigenvector does not converge. Every test here runs live and then
record-then-replay (conftest.py): the replay must recompute at the same points, reach
byte-identical events and the same `ps()` (centrality and effective priority included),
and leave the same observations in the program's box."""
from __future__ import annotations

from agentos.sched import SchedConfig

from .helpers import cents, run_sched


async def talker(sys, args):
    """Send `n` messages to the capability it was given, then wait (it stays in the graph)."""
    n, hold = args
    for i in range(n):
        await sys.send(sys.caps[0], i)
    await sys.recv(timeout=hold)


async def sink(sys, args):
    """Take messages until none came for `args` ms."""
    while await sys.recv(timeout=args) is not None:
        pass


async def star(sys, k, box):
    _, h = await sys.spawn(sink, args=100, name="hub")
    for i in range(5):
        await sys.spawn(talker, args=(4, 100), caps=[h], name=f"leaf{i}")
    await sys.sleep(10)
    box.update(cents(k))
    box["ps"] = {r["name"]: r for r in k.ps()}


def test_a_stars_hub_outranks_its_leaves():
    k, res, box = run_sched(star, every_changes=1)
    assert box["hub"] == 1.0
    for i in range(5):
        assert box[f"leaf{i}"] < box["hub"]
        assert box["ps"][f"leaf{i}"]["effective_priority"] < box["ps"]["hub"]["effective_priority"]
    assert box["ps"]["hub"]["effective_priority"] == 5 * (1 + 0.5 * 1.0)
    assert box["ps"]["hub"]["centrality"] == 1.0
    assert k.metrics()["sched_recomputes"] > 0


def test_a_stars_hub_outranks_its_leaves_by_out_degree_too():
    async def prog(sys, k, box):
        _, h = await sys.spawn(sink, args=100, name="hub")
        me = await sys.self_cap()
        for i in range(4):  # the hub is told about each leaf, and talks to all of them
            await sys.spawn(talker, args=(1, 100), caps=[h], name=f"leaf{i}")
        await sys.sleep(10)
        box.update(cents(k))

    async def hub_talks(sys, k, box):
        leaves = []
        for i in range(4):
            _, c = await sys.spawn(sink, args=100, name=f"leaf{i}")
            leaves.append(c)
        await sys.spawn(talker_to_all, args=(3, 100), caps=leaves, name="hub")
        await sys.sleep(10)
        box.update(cents(k))

    k, _, box = run_sched(hub_talks, every_changes=1, measure="out_degree")
    assert box["hub"] == 1.0
    assert all(box[f"leaf{i}"] == 0.0 for i in range(4))  # they sent nothing and spawned nothing
    assert k.graph.measure_used == "out_degree"


async def talker_to_all(sys, args):
    n, hold = args
    for _ in range(n):
        for c in sys.caps:
            await sys.send(c, "hi")
    await sys.recv(timeout=hold)


async def chain_node(sys, args):
    n = 20
    if sys.caps:
        for _ in range(n):
            await sys.send(sys.caps[0], "next")
    while await sys.recv(timeout=200) is not None:
        pass


async def chain(sys, k, box):
    prev = None
    for name in "edcba":  # the tail first, so each node is given its successor
        _, prev = await sys.spawn(chain_node, caps=[prev] if prev else [], name=name)
    await sys.sleep(50)
    box.update(cents(k))


def test_a_chain_ranks_its_middle_first_and_its_ends_last():
    _, _, c = run_sched(chain, every_changes=1)
    assert c["c"] > c["b"] > c["a"]
    assert c["c"] > c["d"] > c["e"]


def test_exited_processes_leave_the_graph():
    async def prog(sys, k, box):
        _, h = await sys.spawn(sink, args=5, name="hub")
        for i in range(3):
            await sys.spawn(talker, args=(2, 5), caps=[h], name=f"leaf{i}")
        await sys.sleep(1)
        box["during"] = k.graph.g.num_nodes()
        await sys.sleep(50)  # all of them have ended
        box["after"] = k.graph.g.num_nodes()
        box["gnodes"] = sorted(p.gnode is not None for p in k.procs.values())

    k, _, box = run_sched(prog, every_changes=1)
    assert box["during"] == 5
    assert box["after"] == 1 and box["gnodes"] == [True]  # init alone


def test_recomputation_waits_for_k_changes_or_t_ms():
    async def prog(sys, k, box):
        _, h = await sys.spawn(sink, args=500, name="hub")   # 2 changes so far (init, hub)
        box["after_hub"] = k.graph.recomputes
        await sys.spawn(talker, args=(1, 500), caps=[h])      # 3rd change; its send, the 4th: K
        await sys.sleep(1)
        box["after_k"] = k.graph.recomputes
        await sys.spawn(talker, args=(1, 500), caps=[h])      # two changes: fewer than K, so T
        await sys.sleep(50)
        box["before_t"] = k.graph.recomputes
        await sys.sleep(100)
        box["after_t"] = k.graph.recomputes

    _, _, box = run_sched(prog, every_changes=4, every_ms=100.0)
    assert box["after_hub"] == 0
    assert box["after_k"] == 1
    assert box["before_t"] == 1
    assert box["after_t"] == 2


def test_non_convergence_falls_back_to_out_degree_with_an_event():
    k, _, box = run_sched(star, every_changes=1, max_iter=1)
    assert box["init"] == 1.0 and box["hub"] == 0.0  # out-degree: the hub only receives
    falls = [e for e in k.events.events(kind="sched_fallback")]
    assert falls and falls[0].data == ("eigenvector", "out_degree", 1)
    assert k.metrics()["sched_fallbacks"] == len(falls) == k.graph.fallbacks
    assert all(e.data[2] == "out_degree" for e in k.events.events(kind="sched"))


def test_traffic_decays_over_kernel_time():
    async def prog(sys, k, box):
        _, a = await sys.spawn(sink, args=10_000, name="a")
        _, b = await sys.spawn(sink, args=10_000, name="b")
        await sys.spawn(talker, args=(10, 10_000), caps=[a], name="ta")
        await sys.sleep(1)
        k.graph.recompute()
        edge = [p for _, _, p in k.graph.g.edge_index_map().values() if p[2] or p[3]]
        box["before"] = sum(p[2] + p[3] for p in edge)
        await sys.sleep(1000)  # one half-life
        await sys.spawn(talker, args=(0, 1), caps=[b], name="tb")
        k.graph.recompute()
        box["after"] = sum(p[2] + p[3] for _, _, p in k.graph.g.edge_index_map().values())

    _, _, box = run_sched(prog, every_changes=10_000, every_ms=None, half_life_ms=1000.0)
    assert box["before"] == 10.0
    assert abs(box["after"] - 5.0) < 0.01


def test_the_scheduler_is_off_by_default_and_loads_no_graph():
    from agentos import AllowAll, Kernel

    k = Kernel(deterministic=True, policy=AllowAll())
    assert k.graph is None and k.sched_config == SchedConfig()

    async def init(sys, args):
        _, h = await sys.spawn(sink, args=1)
        await sys.send(h, "x")

    k.run(init)
    assert "sched_recomputes" not in k.metrics()
    assert all(r["centrality"] == 0.0 for r in k.ps())


async def recorded_star(sys, args):
    me = await sys.self_cap()
    _, h = await sys.spawn(sink, args=100, name="hub")
    for i in range(5):
        await sys.spawn(talker, args=(4, 100), caps=[h], name=f"leaf{i}")
    await sys.sleep(10)
    return await sys.pid()


def test_a_recorded_run_with_recomputations_replays_byte_identical():
    from agentos import AllowAll, Kernel
    from agentos.store import MemoryStore, record_run

    k = Kernel(deterministic=True, policy=AllowAll(), sched=SchedConfig(enabled=True, every_changes=2))
    store = MemoryStore()
    rid = record_run(k, store, "sched")
    k.run(recorded_star)
    assert store.get_run(rid).meta["sched"]["enabled"] is True
    rep = Kernel.replay_from(store, rid, image=recorded_star)
    assert rep.identical, rep
    live = [e.data for e in k.events.events(kind="sched")]
    again = [e.data for e in rep.kernel.events.events(kind="sched")]
    assert live and again == live
    assert rep.kernel.sched_config == k.sched_config


def test_a_flood_of_new_pairs_without_recomputation_keeps_the_counters_bounded(monkeypatch):
    from agentos.sched import graph as graph_mod

    monkeypatch.setattr(graph_mod, "PENDING_MAX", 8)

    async def prog(sys, k, box):
        _, h = await sys.spawn(sink, args=50, name="hub")
        most = 0
        for i in range(30):
            await sys.spawn(talker, args=(2, 50), caps=[h])
            await sys.sleep(0)
            most = max(most, len(k.graph.pending))
        await sys.sleep(1)
        box["most"] = most
        box["recomputes"] = k.graph.recomputes
        box["traffic"] = sum(p[2] + p[3] for p in k.graph.g.edges())

    _, _, box = run_sched(prog, every_changes=None, every_ms=None)
    assert box["recomputes"] == 0
    assert box["most"] <= 8
    assert box["traffic"] >= 30 * 2 - 8 * 2  # all but the last unfolded pairs reached the edges
