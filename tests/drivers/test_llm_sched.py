"""LLM scheduling per device: the priority gate, alone and behind the `llm` driver."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos import AllowAll, Kernel
from agentos.drivers.llm_sched import PriorityGate


def test_limit_must_be_positive() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            PriorityGate(bad)  # type: ignore[arg-type]


def test_waiters_go_by_priority_then_fifo() -> None:
    async def main() -> list[str]:
        gate = PriorityGate(1)
        order: list[str] = []
        await gate.acquire(0)                       # hold the only slot

        async def client(tag: str, prio: int) -> None:
            async with gate.slot(prio):
                order.append(tag)
                await asyncio.sleep(0)

        tasks = []
        for tag, prio in [("low1", 1), ("high1", 9), ("low2", 1), ("mid", 5), ("high2", 9)]:
            tasks.append(asyncio.ensure_future(client(tag, prio)))
            await asyncio.sleep(0)                  # arrive in this order
        gate.release()
        await asyncio.gather(*tasks)
        s = gate.statistics()
        assert s.in_use == 0 and s.waiting == 0 and s.queued == 5 and s.max_waiting == 5
        return order

    assert asyncio.run(main()) == ["high1", "high2", "mid", "low1", "low2"]


def test_a_cancelled_waiter_leaves_the_queue_and_the_slot_moves_on() -> None:
    async def main() -> None:
        gate = PriorityGate(1)
        await gate.acquire(0)
        got: list[str] = []

        async def client(tag: str, prio: int) -> None:
            async with gate.slot(prio):
                got.append(tag)

        a = asyncio.ensure_future(client("a", 9))
        b = asyncio.ensure_future(client("b", 1))
        await asyncio.sleep(0)
        a.cancel()                                   # killed while waiting
        await asyncio.sleep(0)
        assert gate.statistics().waiting == 1
        gate.release()
        await b
        assert got == ["b"] and gate.in_use == 0

    asyncio.run(main())


def test_cancel_in_the_instant_the_slot_is_handed_over_passes_it_on() -> None:
    async def main() -> None:
        gate = PriorityGate(1)
        await gate.acquire(0)
        a = asyncio.ensure_future(gate.acquire(5))
        b = asyncio.ensure_future(gate.acquire(1))
        await asyncio.sleep(0)
        gate.release()            # the slot goes to a's future ...
        a.cancel()                # ... and a dies before it runs
        with pytest.raises(asyncio.CancelledError):
            await a
        await asyncio.wait_for(b, 1)                 # b got the slot a could not use
        assert gate.in_use == 1
        gate.release()
        assert gate.in_use == 0

    asyncio.run(main())


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 4),
       clients=st.lists(st.tuples(st.integers(0, 9), st.integers(1, 3), st.booleans()), min_size=1, max_size=25))
def test_property_bound_order_and_no_leak(limit: int, clients: list[tuple[int, int, bool]]) -> None:
    """Never more than `limit` holders; the clients that queued are admitted by priority,
    then arrival; every slot comes back, whatever is cancelled (waiting or holding)."""
    async def main() -> None:
        gate = PriorityGate(limit)
        holders = 0
        admitted: list[tuple[int, int]] = []

        async def client(i: int, prio: int, hold: int) -> None:
            nonlocal holders
            async with gate.slot(prio):
                holders += 1
                try:
                    assert holders <= limit
                    admitted.append((prio, i))
                    for _ in range(hold):
                        await asyncio.sleep(0)
                finally:
                    holders -= 1

        tasks = [asyncio.ensure_future(client(i, p, h)) for i, (p, h, _) in enumerate(clients)]
        await asyncio.sleep(0)          # every client has arrived: the first `limit` hold, the rest queue
        assert gate.statistics().waiting == max(0, len(clients) - limit)
        for t, (_, _, cancel) in zip(tasks, clients):
            if cancel:
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert gate.in_use == 0 and gate.statistics().waiting == 0 and holders == 0
        queued = [(p, i) for p, i in admitted if i >= limit]
        assert queued == sorted(queued, key=lambda a: (-a[0], a[1]))
        survivors = {i for i, (_, _, c) in enumerate(clients) if not c and i >= limit}
        assert {i for _, i in queued} == survivors

    asyncio.run(main())


def test_strict_order_when_all_queue_at_once() -> None:
    """A deterministic version of the property: everyone waits before the first release."""
    async def main() -> list[int]:
        gate = PriorityGate(2)
        await gate.acquire(0)
        await gate.acquire(0)
        prios = [3, 7, 3, 9, 0, 7, 7, 1]
        order: list[int] = []

        async def client(i: int, p: int) -> None:
            async with gate.slot(p):
                order.append(i)

        tasks = [asyncio.ensure_future(client(i, p)) for i, p in enumerate(prios)]
        await asyncio.sleep(0)
        gate.release()
        gate.release()
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(main())
    prios = [3, 7, 3, 9, 0, 7, 7, 1]
    assert order == sorted(range(len(prios)), key=lambda i: (-prios[i], i))


# -- behind the driver, against a real endpoint --------------------------------------

@pytest.mark.live_only(reason="the program polls the server's and the gate's state, waiting in wall "
                              "time: outside the journal, and a virtual clock stands still while I/O is in flight")
def test_driver_serves_waiters_by_process_priority_then_fifo() -> None:
    pytest.importorskip("openai")
    from agentos.drivers.llm import LLMDriver
    from tests.support.openai_server import OpenAIServer, Reply

    with OpenAIServer() as srv:
        srv.script(Reply("hog", delay=0.3))
        d = LLMDriver(base_url=srv.base_url, api_key="k", model="m", max_concurrent=1)
        k = Kernel(policy=AllowAll())
        k.register_driver(d)               # the kernel hands the driver its priority lookup
        prios = [1, 3, 8, 1, 5, 8, 3, 1]

        async def caller(sys: Any, tag: str) -> None:
            await sys.read(await sys.open("llm"), {"messages": [{"role": "user", "content": tag}]})

        async def until(sys: Any, pred: Any) -> None:
            for _ in range(2000):
                if pred():
                    return
                await sys.sleep(1)
            raise AssertionError("timed out")

        async def init(sys: Any, args: Any) -> Any:
            caps = [(await sys.spawn(caller, args="hog", caps=["llm"], priority=0))[1]]
            await until(sys, lambda: srv.active == 1)          # the hog holds the only slot
            for i, p in enumerate(prios):                       # queue in this (mixed) order
                caps.append((await sys.spawn(caller, args=f"{i}:{p}", caps=["llm"], priority=p))[1])
                await until(sys, lambda: d.gate.statistics().waiting == i + 1)
            for c in caps:
                await sys.waitpid(c)

        k.run(init, grant=["llm"], priority=9)
        served = [e["body"]["messages"][0]["content"] for e in srv.log][1:]
        expect = [f"{i}:{p}" for i, p in sorted(enumerate(prios), key=lambda ip: (-ip[1], ip[0]))]
        assert served == expect
        s = d.gate.statistics()
        assert s.admitted == 9 and s.queued == 8 and s.in_use == 0 and s.max_waiting == 8


def test_driver_bounds_concurrency() -> None:
    pytest.importorskip("openai")
    from agentos.drivers.llm import LLMDriver
    from tests.support.openai_server import OpenAIServer

    with OpenAIServer(service_time=0.03) as srv:
        d = LLMDriver(base_url=srv.base_url, api_key="k", model="m", max_concurrent=2)
        k = Kernel(deterministic=True, policy=AllowAll())
        k.register_driver(d)

        async def caller(sys: Any, args: Any) -> None:
            await sys.read(await sys.open("llm"), {"messages": [{"role": "user", "content": "x"}]})

        async def init(sys: Any, args: Any) -> None:
            caps = [(await sys.spawn(caller, caps=["llm"]))[1] for _ in range(8)]
            for c in caps:
                await sys.waitpid(c)

        k.run(init, grant=["llm"])
        assert len(srv.log) == 8 and srv.max_active == 2 and srv.refused == 0


def test_unbounded_driver_lets_everyone_in() -> None:
    pytest.importorskip("openai")
    from agentos.drivers.llm import LLMDriver
    from tests.support.openai_server import OpenAIServer

    with OpenAIServer(service_time=0.05) as srv:
        d = LLMDriver(base_url=srv.base_url, api_key="k", model="m", max_concurrent=None)
        k = Kernel(deterministic=True, policy=AllowAll())
        k.register_driver(d)

        async def caller(sys: Any, args: Any) -> None:
            await sys.read(await sys.open("llm"), {"messages": [{"role": "user", "content": "x"}]})

        async def init(sys: Any, args: Any) -> None:
            caps = [(await sys.spawn(caller, caps=["llm"]))[1] for _ in range(6)]
            for c in caps:
                await sys.waitpid(c)

        k.run(init, grant=["llm"])
        assert srv.max_active >= 4          # nothing held them back (the gate is what bounds)


@pytest.mark.live_only(reason="the program polls the server's and the gate's state, waiting in wall "
                              "time: outside the journal, and a virtual clock stands still while I/O is in flight")
def test_a_process_killed_while_queued_never_reaches_the_endpoint() -> None:
    pytest.importorskip("openai")
    from agentos.drivers.llm import LLMDriver
    from tests.support.openai_server import OpenAIServer, Reply

    with OpenAIServer() as srv:
        srv.script(Reply("hog", delay=0.4))
        d = LLMDriver(base_url=srv.base_url, api_key="k", model="m", max_concurrent=1)
        k = Kernel(policy=AllowAll())
        k.register_driver(d)

        async def caller(sys: Any, tag: str) -> Any:
            return (await sys.read(await sys.open("llm"), {"messages": [{"role": "user", "content": tag}]}))["content"]

        async def init(sys: Any, args: Any) -> Any:
            _, hog = await sys.spawn(caller, args="hog", caps=["llm"])
            for _ in range(2000):
                if srv.active == 1:
                    break
                await sys.sleep(1)
            _, victim = await sys.spawn(caller, args="victim", caps=["llm"], priority=9)
            for _ in range(2000):
                if d.gate.statistics().waiting == 1:
                    break
                await sys.sleep(1)
            await sys.kill(victim)
            return str(await sys.waitpid(victim)), str(await sys.waitpid(hog))

        victim_reason, hog_reason = k.run(init, grant=["llm"]).value
        assert victim_reason.startswith("killed") and hog_reason == "normal"
        assert [e["body"]["messages"][0]["content"] for e in srv.log] == ["hog"]
        s = d.gate.statistics()
        assert s.in_use == 0 and s.waiting == 0
