"""The LLM device gates rank waiting calls by the caller's effective priority: with two
callers of the same base priority, the central orchestrator's call goes first."""
from __future__ import annotations

import asyncio

from agentos.drivers.llm_sched import PriorityGate, caller_priority
from agentos.kernel.driverport import driver_port

from .helpers import run_sched


async def sink(sys, args):
    while await sys.recv(timeout=args) is not None:
        pass


async def talker(sys, args):
    for i in range(3):
        await sys.send(sys.caps[0], i)
    await sys.recv(timeout=args)


def _priorities():
    async def prog(sys, k, box):
        hub, h = await sys.spawn(sink, args=100, name="orchestrator")
        leaves = []
        for i in range(4):
            pid, _ = await sys.spawn(talker, args=100, caps=[h], name=f"worker{i}")
            leaves.append(pid)
        await sys.sleep(5)
        host = driver_port(k, "llm")  # what the LLM driver is handed at registration
        box["hub"] = hub
        box["prio"] = {pid: host.priority(pid) for pid in [hub, *leaves]}
        box["base"] = {p.pid: p.priority for p in k.procs.values()}

    _, _, box = run_sched(prog, every_changes=1, alpha=1.0)
    return box


def test_the_driver_host_reports_the_effective_priority():
    box = _priorities()
    hub = box["hub"]
    assert box["base"][hub] == 5 and box["prio"][hub] == 10.0  # 5 * (1 + 1.0 * 1.0)
    for pid, p in box["prio"].items():
        if pid != hub:
            assert box["base"][pid] == 5 and 5.0 < p < box["prio"][hub]


def test_under_contention_the_orchestrators_call_goes_first():
    box = _priorities()
    prio = box["prio"]
    hub = box["hub"]
    order: list[int] = []

    async def call(gate, pid):
        async with gate.slot(caller_priority(prio.get, pid)):
            order.append(pid)
            await asyncio.sleep(0)

    async def main():
        gate = PriorityGate(1)
        await gate.acquire()  # the endpoint is busy: everyone below queues
        workers = [p for p in prio if p != hub]
        tasks = [asyncio.create_task(call(gate, p)) for p in workers]  # the workers ask first
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(call(gate, hub)))
        await asyncio.sleep(0)
        gate.release()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order[0] == hub
    assert sorted(order[1:]) == sorted(p for p in prio if p != hub)


def test_a_broken_or_non_finite_priority_ranks_last():
    assert caller_priority(lambda pid: float("nan"), 1) == -1.0
    assert caller_priority(lambda pid: float("inf"), 1) == -1.0
    assert caller_priority(lambda pid: True, 1) == -1.0
    assert caller_priority(lambda pid: 1 / 0, 1) == -1.0
    assert caller_priority(lambda pid: 7.5, 1) == 7.5
