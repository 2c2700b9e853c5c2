"""Mailboxes: send/recv, corr, match, timeouts, message deadlines, backpressure."""
from __future__ import annotations

from agentos import CapError, Quota
from tests.support.boot import boot


async def echo(sys, args):
    while True:
        msg = await sys.recv()
        if msg.body == "stop":
            return "stopped"
        await sys.send(msg.caps[0], ("echo", msg.body), corr=msg.corr)


def test_round_trip_with_reply_cap_and_corr():
    async def init(sys, args):
        _, peer = await sys.spawn(echo)
        me = await sys.self_cap()
        await sys.send(peer, "a", caps=[me], corr=7)
        reply = await sys.recv()
        await sys.send(peer, "stop")
        return reply.body, reply.corr

    _, res = boot(init)
    assert res.value == (("echo", "a"), 7)


def test_recv_match_leaves_other_messages_queued_in_order():
    async def init(sys, args):
        me = await sys.self_cap()
        for i in range(5):
            await sys.send(me, i)
        picked = await sys.recv(match=lambda m: m.body == 3)
        rest = [(await sys.recv()).body for _ in range(4)]
        return picked.body, rest

    _, res = boot(init)
    assert res.value == (3, [0, 1, 2, 4])


def test_recv_timeout_returns_none_after_virtual_time():
    async def init(sys, args):
        t0 = await sys.now()
        msg = await sys.recv(timeout=250)
        return msg, (await sys.now()) - t0

    _, res = boot(init)
    assert res.value == (None, 250.0)


def test_recv_timeout_zero_polls():
    async def init(sys, args):
        return await sys.recv(timeout=0)

    _, res = boot(init)
    assert res.value is None


def test_late_message_is_dropped_and_counted():
    async def init(sys, args):
        me = await sys.self_cap()
        await sys.send(me, "late", deadline=10)
        await sys.send(me, "fresh")
        await sys.sleep(20)
        return (await sys.recv(timeout=0)).body, await sys.recv(timeout=0)

    k, res = boot(init)
    assert res.value == ("fresh", None)
    assert k.metrics()["messages_late_dropped"] == 1
    assert any(e.kind == "drop_late" for e in k.events.events())


def test_backpressure_parks_sender_and_keeps_order_without_drops():
    got = []

    async def slow_consumer(sys, args):
        for _ in range(40):
            await sys.sleep(1)
            got.append((await sys.recv()).body)

    async def producer(sys, args):
        for i in range(20):
            await sys.send(sys.caps[0], (args, i))

    async def init(sys, args):
        _, c = await sys.spawn(slow_consumer, quota=Quota(max_mailbox=2))
        _, a = await sys.spawn(producer, args="a", caps=[c])
        _, b = await sys.spawn(producer, args="b", caps=[c])
        await sys.waitpid(a)
        await sys.waitpid(b)
        return str(await sys.waitpid(c))

    k, res = boot(init)
    assert res.value == "normal"
    assert len(got) == 40
    assert [i for t, i in got if t == "a"] == list(range(20))
    assert [i for t, i in got if t == "b"] == list(range(20))
    assert k.metrics()["messages_dead_letters"] == 0


def test_mailbox_never_exceeds_max_mailbox_while_senders_park():
    observed = []

    async def consumer(sys, args):
        await sys.sleep(100)  # producers fill the mailbox and park meanwhile
        observed.append((await sys.budget()).used["max_mailbox"])
        for _ in range(10):
            await sys.recv()
            observed.append((await sys.budget()).used["max_mailbox"])

    async def producer(sys, args):
        for i in range(10):
            await sys.send(sys.caps[0], i)
        return await sys.now()

    async def init(sys, args):
        _, c = await sys.spawn(consumer, quota=Quota(max_mailbox=3))
        _, p = await sys.spawn(producer, caps=[c])
        await sys.waitpid(c)
        return str(await sys.waitpid(p))

    k, res = boot(init)
    assert res.value == "normal"
    assert observed[0] == 3
    assert max(observed) == 3


def test_zero_size_mailbox_is_a_rendezvous():
    order = []

    async def receiver(sys, args):
        await sys.sleep(10)
        order.append(("recv-start", await sys.now()))
        m = await sys.recv()
        order.append(("got", m.body))

    async def init(sys, args):
        _, r = await sys.spawn(receiver, quota=Quota(max_mailbox=0))
        await sys.send(r, "x")            # parks until the receiver takes it
        order.append(("sent", await sys.now()))
        await sys.waitpid(r)

    boot(init)
    assert order[0] == ("recv-start", 10.0)
    assert ("sent", 10.0) in order and ("got", "x") in order


def test_send_to_dead_process_is_a_counted_dead_letter():
    async def quick(sys, args):
        return 1

    async def init(sys, args):
        _, c = await sys.spawn(quick)
        await sys.waitpid(c)
        await sys.send(c, "anyone?")
        return "ok"

    k, res = boot(init)
    assert res.value == "ok"
    assert k.metrics()["messages_dead_letters"] == 1


def test_send_without_send_right_is_refused():
    async def idle(sys, args):
        await sys.recv()

    async def init(sys, args):
        _, c = await sys.spawn(idle)
        mon_only = await sys.derive(c, "monitor")
        try:
            await sys.send(mon_only, "x")
        except CapError as e:
            await sys.kill(c)
            return str(e)

    _, res = boot(init)
    assert "lacks the send right" in res.value


def test_caps_ride_on_messages_and_are_translated():
    async def holder(sys, args):
        msg = await sys.recv()
        peer = msg.caps[0]
        await sys.send(peer, "via passed cap")

    async def init(sys, args):
        _, h = await sys.spawn(holder)
        me = await sys.self_cap()
        await sys.send(h, "here", caps=[me])
        reply = await sys.recv()
        return reply.body

    _, res = boot(init)
    assert res.value == "via passed cap"


def test_a_received_message_sent_on_is_not_checked_again_but_a_forged_one_is(monkeypatch):
    from agentos import BadArgument
    from agentos.abi.types import Message
    from agentos.kernel import ipc

    seen = []
    real = ipc.checked
    monkeypatch.setattr(ipc, "checked", lambda what, v: seen.append(type(v).__name__) or real(what, v))

    async def relay(sys, args):
        msg = await sys.recv()
        await sys.send(sys.caps[0], msg)          # forwarded as received: checked when first sent

    async def init(sys, args):
        me = await sys.self_cap()
        _, r = await sys.spawn(relay, caps=[me])
        await sys.send(r, ["a", {"b": 1}])
        got = await sys.recv()
        loop = []
        loop.append(loop)
        try:
            await sys.send(r, Message(1, loop))   # made by the process, not the kernel
        except BadArgument as e:
            return got.body.body, "cycle" in str(e)

    _, res = boot(init)
    assert res.value == (["a", {"b": 1}], True)
    # one check of the list when first sent and one of the forged message, per run (a replayed
    # test runs twice); the relayed Message itself is never walked again
    assert seen[:2] == ["list", "Message"] and seen.count("list") == seen.count("Message")



def test_a_process_cannot_forge_a_down_or_a_signal_notice():
    """A supervisor restarts a child on a `Down`, a loop stops on a SIGTERM notice: a peer
    that could build either would restart or stop them at will. Only the kernel makes them;
    a process may pass on the very notice it last received (with itself as the sender)."""
    from agentos import BadArgument, Signal
    from agentos.abi.types import KERNEL_PID, Down, SignalMessage

    async def quick(sys, args):
        return "done"

    async def init(sys, args):
        me = await sys.self_cap()
        out = []
        for forged in (Down(2, "normal", "child"), SignalMessage(Signal.SIGTERM, KERNEL_PID)):
            try:
                await sys.send(me, forged)
                out.append("sent")
            except BadArgument as e:
                out.append(str(e).split(":")[0] + ":" + type(forged).__name__)
        _, child = await sys.spawn(quick)
        await sys.monitor(child)
        real = await sys.recv()
        await sys.send(me, real.body)              # forwarding what it received is allowed
        again = await sys.recv()
        return out, real.sender == KERNEL_PID, again.body is real.body, again.sender == await sys.pid()

    _, res = boot(init)
    assert res.value == (["send:Down", "send:SignalMessage"], True, True, True)


def test_parked_receivers_and_sleepers_share_one_abort_each_not_one_object_per_process():
    # a million idle processes must not hold a million bound methods: every process parked in
    # recv holds the same abort object, and every sleeper the same one
    from agentos import Driver, DriverResult, WaitKind

    class Peek(Driver):
        name = "peek"
        kernel = None

        def read(self, handle, req):
            waits = {WaitKind.RECV: set(), WaitKind.SLEEP: set()}
            counts = {WaitKind.RECV: 0, WaitKind.SLEEP: 0}
            for p in self.kernel.procs.values():
                if p.wait_kind in waits:
                    waits[p.wait_kind].add(id(p.abort))
                    counts[p.wait_kind] += 1
            return DriverResult([counts[WaitKind.RECV], len(waits[WaitKind.RECV]),
                                 counts[WaitKind.SLEEP], len(waits[WaitKind.SLEEP])])

    async def sleeper(sys, args):
        await sys.sleep(10_000)

    async def init(sys, args):
        for _ in range(4):
            await sys.spawn(idle_recv)
            await sys.spawn(sleeper)
        await sys.sleep(1)
        h = await sys.open("peek")
        return await sys.read(h, None)

    peek = Peek()
    from agentos import AllowAll, Kernel
    k = Kernel(deterministic=True, policy=AllowAll())
    peek.kernel = k
    k.register_driver(peek)
    res = k.run(init, grant=["peek"])
    assert res.value == [4, 1, 4, 1]


async def idle_recv(sys, args):
    await sys.recv()
