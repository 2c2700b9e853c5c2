"""call/reply: replies are matched by corr; other traffic stays queued; timeouts are typed."""
from __future__ import annotations

import pytest

from agentos.userland import CallTimeout, call, reply
from tests.support.boot import boot


async def adder(sys, args):
    await sys.register("adder")
    while True:
        msg = await sys.recv()
        await reply(sys, msg, msg.body[0] + msg.body[1])


def test_call_matches_its_own_reply():
    async def init(sys, args):
        await sys.spawn(adder)
        await sys.sleep(1)
        me = await sys.self_cap()
        await sys.send(me, "unrelated")
        cap = await sys.lookup("adder")
        results = [await call(sys, cap, (i, i)) for i in range(3)]
        leftover = (await sys.recv(timeout=0)).body
        return results, leftover

    _, res = boot(init)
    assert res.value == ([0, 2, 4], "unrelated")


def test_call_timeout_is_typed():
    async def silent(sys, args):
        await sys.recv()
        await sys.recv()

    async def init(sys, args):
        _, c = await sys.spawn(silent)
        try:
            await call(sys, c, "hello?", timeout=50)
        except CallTimeout as e:
            return str(e), await sys.now()

    _, res = boot(init)
    assert res.value[1] == 50.0 and "no reply" in res.value[0]


def test_call_reply_overtakes_a_full_mailbox():
    """The reply is handed to the waiting `call` even when other senders fill the mailbox."""
    from agentos import Quota

    async def flooder(sys, args):
        target = await sys.lookup("caller")
        for i in range(20):
            await sys.send(target, i)

    async def caller(sys, args):
        await sys.register("caller")
        await sys.sleep(5)
        cap = await sys.lookup("adder")
        return [await call(sys, cap, (i, i)) for i in range(3)]

    async def init(sys, args):
        await sys.spawn(adder)
        _, c = await sys.spawn(caller, quota=Quota(max_mailbox=1))
        await sys.sleep(1)
        await sys.spawn(flooder)
        await sys.spawn(flooder)
        return str(await sys.waitpid(c))

    _, res = boot(init)
    assert res.value == "normal"
