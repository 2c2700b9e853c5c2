"""Flooding a process's bounded mailbox must not starve its `call`: the reply its parked
`recv(match=...)` waits for is handed over past the full mailbox and the queue of blocked
senders, and a selective recv also finds a reply that arrived while the mailbox was full."""
from __future__ import annotations

import pytest

from agentos import Quota
from agentos.userland import call, reply
from tests.support.boot import boot


async def adder(sys, args):
    await sys.register("adder")
    while True:
        msg = await sys.recv()
        await reply(sys, msg, msg.body[0] + msg.body[1])


async def flooder(sys, args):
    target = await sys.lookup("victim")
    for i in range(50):
        await sys.send(target, ("junk", i))


def _victim(timeout):
    async def victim(sys, args):
        await sys.register("victim")
        await sys.sleep(5)  # let the flood fill the mailbox and park its senders
        before = (await sys.budget()).used["max_mailbox"]
        cap = await sys.lookup("adder")
        results = [await call(sys, cap, (i, 1), timeout=timeout) for i in range(3)]
        junk = await sys.recv(timeout=0)
        return before, results, junk.body
    return victim


@pytest.mark.parametrize("timeout", [1000, None])
def test_call_reply_is_delivered_past_a_flooded_mailbox(timeout):
    async def init(sys, args):
        await sys.spawn(adder)
        _, v = await sys.spawn(_victim(timeout), quota=Quota(max_mailbox=2))
        await sys.sleep(1)
        for _ in range(3):
            await sys.spawn(flooder)
        return await sys.waitpid(v)

    _, res = boot(init)
    assert str(res.value) == "normal", res  # not fault(CallTimeout) nor a deadlock


def test_reply_that_arrived_while_the_mailbox_was_full_is_found_by_a_selective_recv():
    async def victim(sys, args):
        await sys.register("victim")
        await sys.sleep(5)
        cap = await sys.lookup("adder")
        me = await sys.self_cap()
        await sys.send(cap, (20, 22), caps=(me,), corr="q")
        await sys.sleep(5)  # the reply comes now, while the mailbox is full: its sender parks
        got = await sys.recv(timeout=100, match=lambda m: m.corr == "q")
        rest = []
        while (m := await sys.recv(timeout=10)) is not None:
            rest.append(m.body)
        await sys.send(sys.caps[0], (got.body if got else None, len(rest)))

    async def init(sys, args):
        await sys.spawn(adder)
        me = await sys.self_cap()
        await sys.spawn(victim, caps=(me,), quota=Quota(max_mailbox=2))
        await sys.sleep(1)
        await sys.spawn(flooder)
        await sys.spawn(flooder)
        return (await sys.recv(timeout=10_000)).body

    _, res = boot(init)
    assert res.value == (42, 100)  # the reply, and every flood message still delivered
