"""Nurseries: the scope waits for its children, or kills them when it fails or dies."""
from __future__ import annotations

from agentos.userland import open_nursery
from tests.support.boot import boot


async def work(sys, args):
    await sys.sleep(args)
    return args


async def forever(sys, args):
    await sys.recv()


def test_scope_waits_for_all_children():
    async def init(sys, args):
        async with open_nursery(sys) as n:
            for d in (30, 10, 20):
                await n.start(work, args=d)
        return await sys.now(), sorted(str(r) for r in n.results.values()), await sys.recv(timeout=0)

    _, res = boot(init)
    assert res.value == (30.0, ["normal"] * 3, None)  # no stray Down messages left behind


def test_an_error_in_the_scope_kills_the_children():
    async def init(sys, args):
        try:
            async with open_nursery(sys) as n:
                await n.start(forever)
                await n.start(forever)
                raise ValueError("scope failed")
        except ValueError:
            return sorted(str(r) for r in n.results.values())

    _, res = boot(init)
    assert res.value == ["killed(1)", "killed(1)"]


def test_killing_the_owner_kills_the_scope_children():
    async def owner(sys, args):
        async with open_nursery(sys) as n:
            await n.start(forever)
            await n.start(forever)

    async def init(sys, args):
        _, o = await sys.spawn(owner, caps=["spawn"])
        await sys.sleep(5)
        await sys.kill(o)
        await sys.sleep(5)

    k, _ = boot(init)
    exits = {e.pid: e.data for e in k.events.events() if e.kind == "exit"}
    assert exits[3] == "killed(link:2)" and exits[4] == "killed(link:2)"
