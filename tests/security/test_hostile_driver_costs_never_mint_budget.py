"""A driver that reports a negative, NaN, infinite, None or fractional cost is refused at
the boundary: the caller gets a DriverError, nothing is credited, and the kernel runs on.
Budgets are counted at the driver and in the accounts, which must agree."""
import asyncio
import math

import pytest
from hypothesis import given, settings, strategies as st

from agentos import Cost, DriverError, Quota
from agentos.abi.driver import Driver, DriverResult
from agentos.kernel.accounts import Account, Accounts, BadAmount
from tests.support.boot import boot


class Hostile(Driver):
    name = "hostile"

    def __init__(self, cost, *, slow=False):
        self.cost = cost
        self.slow = slow
        self.calls = 0

    def read(self, handle, req):
        self.calls += 1
        if self.slow:
            async def later():
                await asyncio.sleep(0)
                return DriverResult("v", self.cost)
            return later()
        return DriverResult("v", self.cost)

    def action(self, op, handle, req):
        return ("hostile.read", req)


BAD_FIELDS = [
    dict(tokens=-1000), dict(tool_calls=-1), dict(usd=-1.0), dict(usd=math.nan), dict(usd=math.inf),
    dict(tokens=None), dict(tokens=2.5), dict(tokens=2.0), dict(tokens=math.nan),
    dict(tokens=math.inf), dict(tokens=True), dict(tokens="5"), dict(reductions=-5),
    dict(tokens=1 << 80), dict(usd=None),
]


def forged(**fields):
    """A Cost whose fields were changed after construction (a Cost is mutable)."""
    c = Cost()
    for k, v in fields.items():
        setattr(c, k, v)
    return c


BAD_COSTS = [forged(**f) for f in BAD_FIELDS] + ["not a cost", None]


@pytest.mark.parametrize("fields", BAD_FIELDS, ids=repr)
def test_building_a_bad_cost_is_a_driver_error(fields):
    with pytest.raises(DriverError):
        Cost(**fields)


def _run(cost, *, slow=False):
    drv = Hostile(cost, slow=slow)

    async def init(sys, args):
        h = await sys.open("hostile")
        out = []
        for _ in range(3):
            try:
                out.append(await sys.read(h, "x"))
            except DriverError as e:
                out.append(("DriverError", str(e)))
        out.append((await sys.budget()).remaining["tokens"])
        return out

    k, res = boot(init, drivers=[drv], grant=["hostile"], quota=Quota(tokens=1000, usd=1.0, tool_calls=10))
    return drv, k, res


@pytest.mark.parametrize("slow", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("cost", BAD_COSTS, ids=repr)
def test_bad_driver_cost_is_a_driver_error_and_credits_nothing(cost, slow):
    drv, k, res = _run(cost, slow=slow)
    assert res.reason.kind.value == "normal", res.reason
    *errs, remaining = res.value
    assert drv.calls == 3
    for e in errs:
        assert e[0] == "DriverError" and "bad cost" in e[1], e
    assert remaining == 1000  # nothing minted, nothing charged
    acct = k.ps()  # the kernel still answers
    assert acct is not None


def test_good_cost_is_still_charged():
    drv, k, res = _run(Cost(tokens=10, usd=0.01))
    assert res.value[-1] == 970


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.none()),
                          st.one_of(st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True))),
                max_size=20))
def test_accounts_refuse_every_bad_amount_and_conserve(charges):
    accts = Accounts()
    root = accts.open_root(1, Quota(tokens=1000, tool_calls=100))
    used = 0
    for tokens, calls in charges:
        before = list(root.balance)
        try:
            short = accts.charge(root, tokens, calls, 0)
        except BadAmount:
            assert root.balance == before
            continue
        if short is None:
            used += tokens
    assert root.balance[0] + root.used[0] == 1000
    assert root.used[0] == used
    assert all(type(b) is int and b >= 0 for b in root.balance)


def test_accounts_refuse_negative_and_nan_by_construction():
    accts = Accounts()
    root = accts.open_root(1, Quota(tokens=10))
    for bad in (-1, math.nan, math.inf, 1.5, None):
        with pytest.raises(BadAmount):
            accts.charge(root, bad, 0, 0)
        with pytest.raises(BadAmount):
            accts.mem_take(root, bad)
    assert root.balance[0] == 10
