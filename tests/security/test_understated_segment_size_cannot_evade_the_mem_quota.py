"""`remember(text, tokens=0)`: the kernel counts a segment's size itself, so a caller who
understates it cannot keep a megabyte resident under a small `mem` quota."""
import pytest
from hypothesis import given, settings, strategies as st

from agentos import BadArgument, Quota
from tests.support.boot import boot


def test_a_megabyte_claimed_as_zero_tokens_does_not_stay_resident():
    async def init(sys, args):
        await sys.remember("x" * 1_000_000, tokens=0)
        return "resident"

    k, res = boot(init, quota=Quota(mem=100))
    assert res.reason.kind.value == "quota" and "mem" in str(res.reason)
    assert k.accounts.open_count == 0


def test_a_callers_count_may_only_raise_the_kernels():
    async def init(sys, args):
        await sys.remember("a" * 400, tokens=1)
        await sys.remember("b", tokens=50)
        return [s.tokens for s in await sys.working_set()], (await sys.budget()).remaining["mem"]

    k, res = boot(init, quota=Quota(mem=1000))
    sizes, left = res.value
    assert sizes == [101, 50]
    assert left == 1000 - 151


@pytest.mark.parametrize("bad", [-1, 2.5, float("nan"), float("inf"), "10", True, None.__class__])
def test_bad_token_counts_are_refused(bad):
    async def init(sys, args):
        try:
            await sys.remember("x", tokens=bad)
        except BadArgument as e:
            return str(e)

    _, res = boot(init, quota=Quota(mem=100))
    assert "remember: tokens" in res.value


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.text(max_size=600), st.integers(0, 50)), max_size=12))
def test_resident_tokens_never_exceed_the_quota_and_mem_is_conserved(items):
    async def init(sys, args):
        for body, claimed in items:
            await sys.remember(body, tokens=claimed)
            ws = await sys.working_set()
            b = await sys.budget()
            assert sum(s.tokens for s in ws) == b.used["mem"] <= 200
            assert b.used["mem"] + b.remaining["mem"] == 200
        return "ok"

    k, res = boot(init, quota=Quota(mem=200))
    assert res.value == "ok" or res.reason.kind.value in ("quota", "fault") and "mem" in str(res.reason) \
        or "surrogate" in str(res.reason), res.reason
    assert k.accounts.open_count == 0
