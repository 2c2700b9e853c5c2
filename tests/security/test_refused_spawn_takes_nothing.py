"""A spawn refused for any argument (a wrong deadline type, a main of the wrong arity, a
bad quota, priority, name, link or caps) carves no budget, opens no account and passes no
capability: the parent's budget and the kernel's open accounts are exactly as before."""
import math

import pytest
from hypothesis import given, settings, strategies as st

from agentos import BadArgument, Quota, SyscallError
from tests.support.boot import boot


async def good(sys, args):
    return "child ran"


async def two_args_too_many(sys, args, extra):
    return None


async def one_arg(sys):
    return None


def sync_main(sys, args):
    return None


BAD_SPAWNS = {
    "deadline_string": dict(image=good, deadline="soon"),
    "deadline_nan": dict(image=good, deadline=math.nan),
    "deadline_negative": dict(image=good, deadline=-5),
    "deadline_list": dict(image=good, deadline=[1]),
    "main_wrong_arity_three": dict(image=two_args_too_many),
    "main_wrong_arity_one": dict(image=one_arg),
    "main_not_async": dict(image=sync_main),
    "quota_wrong_type": dict(image=good, quota={"tokens": 5}),
    "priority_float": dict(image=good, priority=1.5),
    "name_int": dict(image=good, name=7),
    "name_surrogate": dict(image=good, name="a\ud800"),
    "link_string": dict(image=good, link="yes"),
    "args_cycle": "cycle",
}


def _kwargs(spec):
    if spec == "cycle":
        x = []
        x.append(x)
        return dict(image=good, args=x)
    return dict(spec)


@pytest.mark.parametrize("attack", sorted(BAD_SPAWNS))
def test_refused_spawn_carves_nothing(attack):
    async def init(sys, args):
        before = await sys.budget()
        kw = _kwargs(BAD_SPAWNS[attack])
        image = kw.pop("image")
        try:
            await sys.spawn(image, quota=kw.pop("quota", Quota(tokens=100, children=2)), **kw)
        except SyscallError as e:
            after = await sys.budget()
            return ("refused", type(e).__name__, str(e), before.remaining == after.remaining)
        return "spawned"

    k, res = boot(init, quota=Quota(tokens=1000, children=5, mem=100))
    assert res.value[0] == "refused", res.value
    assert res.value[1] == "BadArgument", res.value
    assert res.value[3] is True
    assert k.accounts.open_count == 0
    assert len(k.procs) == 0 or all(p.state.value == "exited" for p in k.procs.values())


spawn_args = st.fixed_dictionaries({
    "deadline": st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-5, 10**6), st.text(max_size=2)),
    "priority": st.one_of(st.none(), st.integers(-2, 12), st.floats(0, 5)),
    "tokens": st.one_of(st.none(), st.integers(-5, 2000), st.floats(allow_nan=True, allow_infinity=True)),
    "children": st.one_of(st.none(), st.integers(-1, 3)),
    "link": st.sampled_from([False, True, 0, "x"]),
})


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(spawn_args, max_size=6))
def test_accounts_are_conserved_across_random_spawns(spawns):
    async def child(sys, args):
        return None

    async def init(sys, args):
        for kw in spawns:
            kw = dict(kw)
            try:
                q = Quota(tokens=kw.pop("tokens"), children=kw.pop("children"))
            except BadArgument:
                q = None
            try:
                await sys.spawn(child, quota=q, **kw)
            except SyscallError:
                pass
            b = await sys.budget()
            assert b.remaining["tokens"] <= 1000
        await sys.sleep(10**7)
        b = await sys.budget()
        return b.remaining["tokens"], b.remaining["children"]

    k, res = boot(init, quota=Quota(tokens=1000, children=4))
    assert res.value == (1000, 4), res
    assert k.accounts.open_count == 0
