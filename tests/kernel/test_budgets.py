"""Budgets are hard caps on effects: reserve → act → settle.

Effects are counted where they happen (inside the tool, at the driver), not in the kernel's
table: a budget that the kernel only books after the fact would pass a table check and
still let the effect through. Every run here is also replayed from its journal and must
produce the same event log, with reservations and refusals taken from the journal.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos import AllowAll, Cost, Driver, DriverError, DriverResult, Journal, Kernel, Quota, ToolError
from agentos.drivers import ToolsDriver, tool
from agentos.kernel.events import encode_event


class Effects:
    """Counts what really happened, at the tool."""

    def __init__(self) -> None:
        self.done = 0


def tools_for(effects: Effects) -> ToolsDriver:
    @tool()
    def act(n: int) -> int:
        """Acts, then returns."""
        effects.done += 1
        return n

    @tool()
    def act_then_raise(n: int) -> int:
        """Acts, then raises: the effect has happened."""
        effects.done += 1
        raise RuntimeError("after the effect")

    @tool()
    async def act_later(n: int) -> int:
        """Acts asynchronously."""
        await asyncio.sleep(0)
        effects.done += 1
        return n

    return ToolsDriver([act, act_then_raise, act_later])


def run_both(init: Any, driver_factory: Any, *, quota: Quota, grant: list[str]) -> tuple[Kernel, Kernel, Any]:
    """Run live (deterministic), then replay from the journal with drivers that must not be
    called; both event logs must be byte-identical."""
    live = Kernel(deterministic=True, seed=7, policy=AllowAll())
    live.register_driver(driver_factory())
    res = live.run(init, grant=grant, quota=quota)
    assert live.journal is not None
    replay = Kernel(deterministic=True, seed=7, mode="replay", journal=Journal(live.journal.entries),
                    policy=AllowAll())
    res2 = replay.run(init, grant=grant, quota=quota)
    a = [encode_event(e) for e in live.events]
    b = [encode_event(e) for e in replay.events]
    assert a == b
    assert res2.reason == res.reason
    return live, replay, res


def test_tool_that_acts_then_raises_is_charged_so_a_budget_of_two_allows_two_effects():
    effects = Effects()

    async def child(sys, args):
        h = await sys.open("tools")
        for _ in range(6):
            try:
                await sys.read(h, {"tool": "act_then_raise", "args": {"n": 1}})
            except ToolError:
                pass

    async def init(sys, args):
        _, c = await sys.spawn(child, caps=["tools"], quota=Quota(tool_calls=2))
        return str(await sys.waitpid(c))

    live, _, res = run_both(init, lambda: tools_for(effects), quota=Quota(tool_calls=10), grant=["tools"])
    assert res.value == "quota(tool_calls)"
    assert effects.done == 2  # counted at the tool; the replay called nothing


def test_last_tool_call_cannot_become_three_through_read_all():
    effects = Effects()

    async def child(sys, args):
        h = await sys.open("tools")
        await sys.read(h, {"tool": "act", "args": {"n": 1}})
        await sys.read_all(h, [{"tool": "act_later", "args": {"n": i}} for i in range(3)])
        return "ran"

    async def init(sys, args):
        _, c = await sys.spawn(child, caps=["tools"], quota=Quota(tool_calls=2))
        return str(await sys.waitpid(c))

    live, _, res = run_both(init, lambda: tools_for(effects), quota=Quota(tool_calls=10), grant=["tools"])
    assert res.value == "quota(tool_calls)"
    assert effects.done == 1  # the sum of three bounds did not fit: none of them started
    refused = [e for e in live.journal.entries if e.error_type == "ReservationRefused"]
    assert len(refused) == 1 and refused[0].reserve == (0, 3, 0)


def test_budget_is_conserved_exactly_across_reserve_and_settle():
    effects = Effects()

    async def child(sys, args):
        h = await sys.open("tools")
        for i in range(args):
            try:
                await sys.read(h, {"tool": "act_then_raise" if i % 2 else "act_later", "args": {"n": i}})
            except ToolError:
                pass

    async def init(sys, args):
        for n in (1, 3, 5):
            _, c = await sys.spawn(child, args=n, caps=["tools"], quota=Quota(tool_calls=4))
            await sys.waitpid(c)
        return (await sys.budget()).remaining["tool_calls"]

    live, _, res = run_both(init, lambda: tools_for(effects), quota=Quota(tool_calls=20), grant=["tools"])
    assert res.value == 20 - effects.done   # every effect paid once; every unused call returned
    assert effects.done == 1 + 3 + 4


class Metered(Driver):
    """A driver with a declared bound that reports whatever cost it is told to."""

    name = "metered"

    def __init__(self, bound: Cost, report: Any) -> None:
        self._bound = bound
        self.report = report
        self.calls = 0

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        return self._bound

    def read(self, handle: Any, req: Any) -> Any:
        self.calls += 1
        return DriverResult("ok", self.report)


def _bad(**fields: Any) -> Cost:
    """A Cost no constructor would accept: a driver can still mutate one after building it."""
    c = Cost()
    for k, v in fields.items():
        object.__setattr__(c, k, v)
    return c


@pytest.mark.parametrize("fields", [
    {"tokens": -1000}, {"tokens": 2.5}, {"usd": float("nan")}, {"usd": float("inf")},
    {"usd": -1.0}, {"tokens": None},
], ids=repr)
def test_a_driver_reporting_a_bad_cost_never_credits_and_is_charged_its_reservation(fields):
    drv = Metered(Cost(tokens=50), _bad(**fields))

    async def init(sys, args):
        h = await sys.open("metered")
        try:
            await sys.read(h, "x")
        except DriverError as e:
            return "DriverError", (await sys.budget()).remaining["tokens"]
        return "accepted", None

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(drv)
    res = k.run(init, grant=["metered"], quota=Quota(tokens=1000))
    assert res.value == ("DriverError", 950)   # never more than 1000; the reservation was used


def test_a_driver_declaring_a_bad_bound_is_refused_before_it_runs():
    drv = Metered(_bad(tokens=-5), Cost())

    async def init(sys, args):
        h = await sys.open("metered")
        try:
            await sys.read(h, "x")
        except DriverError as e:
            return str(e)

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(drv)
    res = k.run(init, grant=["metered"], quota=Quota(tokens=1000))
    assert "bound" in res.value and drv.calls == 0


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(budget=st.integers(0, 12), plan=st.lists(st.tuples(st.sampled_from(["act", "act_then_raise", "act_later"]),
                                                         st.integers(1, 3)), min_size=1, max_size=8))
def test_effects_never_exceed_the_budget_and_replay_agrees(budget, plan):
    effects = Effects()

    async def child(sys, args):
        h = await sys.open("tools")
        for name, n in plan:
            reqs = [{"tool": name, "args": {"n": i}} for i in range(n)]
            try:
                if n == 1:
                    await sys.read(h, reqs[0])
                else:
                    await sys.read_all(h, reqs)
            except ToolError:
                pass

    async def init(sys, args):
        _, c = await sys.spawn(child, caps=["tools"], quota=Quota(tool_calls=budget))
        await sys.waitpid(c)
        return (await sys.budget()).remaining["tool_calls"]

    _, _, res = run_both(init, lambda: tools_for(effects), quota=Quota(tool_calls=100), grant=["tools"])
    assert effects.done <= budget
    assert res.value == 100 - effects.done  # conserved: what remains is exactly what was not used
