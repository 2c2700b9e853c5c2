"""Scheduling: priorities, EDF within a priority, deadline kills, quantum preemption, sched()."""
from __future__ import annotations

from tests.support.boot import boot


def test_higher_priority_runs_first():
    order = []

    async def worker(sys, args):
        order.append(args)

    async def init(sys, args):
        for prio in (1, 9, 5):
            await sys.spawn(worker, args=prio, priority=prio)
        await sys.sleep(1)

    boot(init, default_priority=0)
    assert order == [9, 5, 1]


def test_earliest_deadline_first_within_a_priority():
    order = []

    async def worker(sys, args):
        order.append(args)

    async def init(sys, args):
        for d in (300, 100, 200):
            await sys.spawn(worker, args=d, deadline=d)
        await sys.spawn(worker, args="none")
        await sys.sleep(1)

    boot(init)
    assert order == [100, 200, 300, "none"]


def test_process_past_its_deadline_is_killed():
    async def slow(sys, args):
        await sys.sleep(500)
        return "finished"

    async def init(sys, args):
        _, c = await sys.spawn(slow, deadline=100)
        return str(await sys.waitpid(c)), await sys.now()

    _, res = boot(init)
    assert res.value == ("deadline", 100.0)


def test_quantum_preempts_a_busy_process():
    order = []

    async def busy(sys, args):
        for i in range(50):
            await sys.pid()
            order.append(args)

    async def init(sys, args):
        await sys.spawn(busy, args="a")
        await sys.spawn(busy, args="b")
        await sys.sleep(1)

    boot(init, quantum=10)
    # neither ran to completion before the other started: they interleave in quanta
    first_b = order.index("b")
    assert 0 < first_b < 50
    assert order[first_b:].count("a") > 0


def test_yield_goes_to_the_back_of_the_queue():
    order = []

    async def w(sys, args):
        for i in range(3):
            order.append((args, i))
            await sys.yield_()

    async def init(sys, args):
        await sys.spawn(w, args="a")
        await sys.spawn(w, args="b")
        await sys.sleep(1)

    boot(init)
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_sched_changes_priority_and_deadline_but_not_above_parent():
    from agentos import SyscallError

    async def child(sys, args):
        try:
            await sys.sched(priority=9)
        except SyscallError as e:
            err = str(e)
        await sys.sched(priority=2, deadline=50)
        await sys.sleep(100)
        return err

    async def init(sys, args):
        _, c = await sys.spawn(child)
        return str(await sys.waitpid(c))

    k, res = boot(init)
    assert res.value == "deadline"
    errors = [e.data for e in k.events.events() if e.kind == "error"]
    assert errors == [("SyscallError", "sched: priority 9 is above the parent's (5)")]
