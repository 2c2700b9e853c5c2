"""Quota values that would poison an account (NaN, infinities, negatives, wrong types,
fractional counts) are refused with a BadArgument saying which field and why. None is the
one spelling of "unlimited"; `inf` is refused, not read as unlimited."""
import math

import pytest

from agentos import BadArgument, Quota, SyscallError
from tests.support.boot import boot


@pytest.mark.parametrize("field,value", [
    ("tokens", math.inf), ("tokens", math.nan), ("tokens", -1), ("tokens", 2.5), ("tokens", "10"),
    ("tokens", True), ("usd", math.nan), ("usd", math.inf), ("usd", -0.5), ("wall_ms", math.inf),
    ("mem", 1 << 80), ("children", 1.0), ("max_mailbox", -3), ("usd", 1e300),
])
def test_bad_quota_field_is_a_bad_argument(field, value):
    with pytest.raises(BadArgument) as ei:
        Quota(**{field: value})
    assert field in str(ei.value)


def test_quota_inf_is_refused_and_none_is_unlimited():
    with pytest.raises(BadArgument, match="None means unlimited"):
        Quota(tokens=math.inf)
    assert Quota(tokens=None).tokens is None


def test_tampered_quota_is_refused_at_spawn_and_takes_nothing():
    async def child(sys, args):
        return None

    async def init(sys, args):
        q = Quota(tokens=10)
        object.__setattr__(q, "tokens", math.inf)
        try:
            await sys.spawn(child, quota=q)
        except BadArgument as e:
            return ("refused", str(e), (await sys.budget()).remaining["tokens"])
        return "spawned"

    k, res = boot(init, quota=Quota(tokens=100, children=5))
    assert res.value[0] == "refused" and "tokens" in res.value[1]
    assert res.value[2] == 100
    assert k.accounts.open_count == 0
