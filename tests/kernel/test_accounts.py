"""Hierarchical budgets: carving, refunds, atomic charges, quota kills, conservation."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from agentos import Cost, Driver, DriverResult, ExitKind, Quota, QuotaExceeded
from agentos.abi.types import USD_SCALE
from agentos.kernel.accounts import Accounts, TOKENS, TOOL_CALLS, USD
from tests.support.boot import boot


class Meter(Driver):
    """Charges whatever the request says it cost."""

    name = "meter"

    def read(self, handle, req):
        return DriverResult(req.get("value"), Cost(**req.get("cost", {})))


def test_child_quota_is_carved_and_returned_on_exit():
    async def child(sys, args):
        h = await sys.open("meter")
        await sys.read(h, {"cost": {"tokens": 30}})

    async def init(sys, args):
        before = (await sys.budget()).remaining["tokens"]
        _, c = await sys.spawn(child, quota=Quota(tokens=100), caps=["meter"])
        during = (await sys.budget()).remaining["tokens"]
        await sys.waitpid(c)
        after = (await sys.budget()).remaining["tokens"]
        return before, during, after

    _, res = boot(init, drivers=[Meter()], grant=["meter"], quota=Quota(tokens=1000))
    assert res.value == (1000, 900, 970)


def test_spawn_asking_more_than_the_parent_has_is_refused_cleanly():
    async def child(sys, args):
        return None

    async def init(sys, args):
        try:
            await sys.spawn(child, quota=Quota(usd=5))
        except QuotaExceeded as e:
            return e.resource, str(e), (await sys.budget()).remaining["usd"]

    _, res = boot(init, quota=Quota(usd=1))
    assert res.value[0] == "usd"
    assert "spawn needs $5.000000 usd but the parent has $1.000000 left" in res.value[1]
    assert res.value[2] == 1.0


def test_over_budget_charge_kills_with_quota_and_charges_nothing():
    async def spender(sys, args):
        h = await sys.open("meter")
        await sys.read(h, {"cost": {"tokens": 40, "usd": 0.5}})
        await sys.read(h, {"cost": {"tokens": 40, "usd": 0.6}})  # usd would overdraw
        return "unreachable"

    async def init(sys, args):
        _, c = await sys.spawn(spender, quota=Quota(tokens=100, usd=1.0), caps=["meter"])
        reason = await sys.waitpid(c)
        return str(reason), (await sys.budget()).remaining

    k, res = boot(init, drivers=[Meter()], grant=["meter"], quota=Quota(tokens=500, usd=2.0))
    assert res.value[0] == "quota(usd)"
    # first charge stuck (40 tokens, $0.5); the refused one charged nothing, the rest came back
    assert res.value[1]["tokens"] == 460
    assert abs(res.value[1]["usd"] - 1.5) < 1e-12


def test_children_quota_limits_live_children():
    async def child(sys, args):
        await sys.recv()

    async def init(sys, args):
        caps = []
        for _ in range(2):
            caps.append((await sys.spawn(child))[1])
        try:
            await sys.spawn(child)
        except QuotaExceeded as e:
            third = e.resource
        await sys.kill(caps[0])
        caps.append((await sys.spawn(child))[1])  # a slot came back
        for c in caps[1:]:
            await sys.kill(c)
        return third

    _, res = boot(init, quota=Quota(children=2))
    assert res.value == "children"


def test_wall_ms_kills_with_quota_wall_ms():
    async def sleeper(sys, args):
        await sys.sleep(10_000)

    async def init(sys, args):
        _, c = await sys.spawn(sleeper, quota=Quota(wall_ms=300))
        return str(await sys.waitpid(c)), await sys.now()

    _, res = boot(init)
    assert res.value == ("quota(wall_ms)", 300.0)


def test_child_wall_never_outlives_parent_wall():
    async def sleeper(sys, args):
        await sys.sleep(10_000)

    async def mid(sys, args):
        _, c = await sys.spawn(sleeper, quota=Quota(wall_ms=5_000))
        return str(await sys.waitpid(c))

    async def init(sys, args):
        _, m = await sys.spawn(mid, quota=Quota(wall_ms=200), caps=["spawn"])
        await sys.waitpid(m)
        return await sys.now()

    k, res = boot(init)
    assert res.value == 200.0
    reasons = [e.data for e in k.events.events() if e.kind == "exit"]
    assert reasons.count("quota(wall_ms)") == 2


# -- properties -------------------------------------------------------------------------

ops = st.lists(st.tuples(st.sampled_from(["spawn", "charge", "close"]), st.integers(0, 30),
                         st.integers(0, 400), st.integers(0, 5), st.floats(0, 0.2)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(100, 5000), st.integers(0, 50))
def test_property_budget_conservation_and_atomicity(steps, root_tokens, root_calls):
    acc = Accounts()
    root = acc.open_root(1, Quota(tokens=root_tokens, tool_calls=root_calls, usd=3.0))
    live = {1: (root, None)}
    every = [root]
    next_pid = 2
    for op, pick, tokens, calls, usd in steps:
        keys = sorted(live)
        pid = keys[pick % len(keys)]
        acct, parent = live[pid]
        if op == "spawn":
            q = Quota(tokens=tokens if pick % 3 else None, tool_calls=calls if pick % 2 else None)
            try:
                child = acc.open_child(next_pid, acct, q)
            except QuotaExceeded:
                continue
            live[next_pid] = (child, acct)
            every.append(child)
            next_pid += 1
        elif op == "charge":
            before = [list(a.balance) for a in every]
            used_before = [list(a.used) for a in every]
            short = acc.charge(acct, tokens, calls, round(usd * USD_SCALE))
            if short is not None:  # atomic: nothing moved anywhere
                assert [list(a.balance) for a in every] == before
                assert [list(a.used) for a in every] == used_before
        elif op == "close" and pid != 1:
            acc.close(acct, parent)
            del live[pid]
        for i, initial in ((TOKENS, root_tokens), (TOOL_CALLS, root_calls), (USD, 3 * USD_SCALE)):
            held = sum(a.balance[i] for a in every if not a.closed and a.bank[i] is a)
            used = sum(a.used[i] for a in every)
            assert held + used == initial
            assert all(a.balance[i] >= 0 for a in every)
    for pid in sorted(live, reverse=True):
        if pid != 1:
            acc.close(*live[pid])
    for i, initial in ((TOKENS, root_tokens), (TOOL_CALLS, root_calls)):
        assert root.balance[i] + sum(a.used[i] for a in every) == initial


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 3)), min_size=1, max_size=25))
def test_property_kernel_conservation_end_to_end(costs):
    """Whatever children spend or get killed for, the root ends with initial − used."""
    async def child(sys, args):
        h = await sys.open("meter")
        for tokens, calls in args:
            await sys.read(h, {"cost": {"tokens": tokens, "tool_calls": calls}})

    async def init(sys, args):
        caps = []
        for i in range(0, len(args), 5):
            _, c = await sys.spawn(child, args=args[i:i + 5], quota=Quota(tokens=120, tool_calls=6),
                                   caps=["meter"])
            caps.append(c)
        for c in caps:
            await sys.waitpid(c)
        return (await sys.budget()).remaining

    k, res = boot(init, drivers=[Meter()], grant=["meter"], args=costs,
                  quota=Quota(tokens=10_000, tool_calls=1_000))
    m = k.metrics()
    assert res.value["tokens"] == 10_000 - m["tokens"]
    assert res.value["tool_calls"] == 1_000 - m["tool_calls"]
    assert m["accounts_open"] == 0
