"""Signals: kernel-enforced kill, stop/cont, SIGINT, SIGTERM as a message, masking."""
from __future__ import annotations

from agentos import CapError, Interrupted, Signal, SignalMessage, SyscallError
from tests.support.boot import boot


def test_kill_is_enforced_even_if_the_process_catches_everything():
    trace = []

    async def stubborn(sys, args):
        while True:
            try:
                await sys.sleep(10)
                trace.append("tick")
            except BaseException:  # noqa: BLE001 - the point of the test
                trace.append("caught")
                continue

    async def init(sys, args):
        _, c = await sys.spawn(stubborn)
        await sys.sleep(35)
        await sys.kill(c)
        reason = await sys.waitpid(c)
        await sys.sleep(100)
        return str(reason)

    k, res = boot(init)
    assert res.value.startswith("killed(")
    assert trace.count("tick") == 3
    assert "caught" in trace  # it tried to swallow GeneratorExit...
    assert trace[-1] == "caught" and len(trace) == 4  # ...and never ran again


def test_kill_needs_the_kill_right():
    async def idle(sys, args):
        await sys.recv()

    async def init(sys, args):
        _, c = await sys.spawn(idle)
        weak = await sys.derive(c, "send,monitor")
        try:
            await sys.kill(weak)
        except CapError as e:
            await sys.kill(c)
            return str(e)

    _, res = boot(init)
    assert "lacks the kill right" in res.value


def test_stop_and_cont_suspend_scheduling():
    ticks = []

    async def ticker(sys, args):
        while True:
            await sys.sleep(10)
            ticks.append(await sys.now())

    async def init(sys, args):
        _, c = await sys.spawn(ticker)
        await sys.sleep(25)
        await sys.suspend(c)
        await sys.sleep(100)
        frozen = list(ticks)
        await sys.resume(c)
        await sys.sleep(25)
        await sys.kill(c)
        return frozen

    _, res = boot(init)
    assert res.value == [10.0, 20.0]
    # while stopped (25..125) nothing ran; after SIGCONT it picks up again
    assert all(t <= 25 or t >= 125 for t in ticks)
    assert ticks[-1] >= 125


def test_sigint_raises_interrupted_at_the_pending_syscall():
    async def waiter(sys, args):
        try:
            await sys.recv()
        except Interrupted as e:
            return str(e)

    got = []

    async def wrapper(sys, args):
        got.append(await waiter(sys, args))

    async def init(sys, args):
        _, c = await sys.spawn(wrapper)
        await sys.sleep(5)
        await sys.signal(c, Signal.SIGINT)
        await sys.waitpid(c)

    boot(init)
    assert got == ["SIGINT: interrupted while waiting"]


def test_sigterm_arrives_as_a_message_and_can_be_handled():
    async def graceful(sys, args):
        msg = await sys.recv()
        assert isinstance(msg.body, SignalMessage)
        return msg.body.signal

    async def init(sys, args):
        _, c = await sys.spawn(graceful)
        await sys.term(c)
        return str(await sys.waitpid(c))

    _, res = boot(init)
    assert res.value == "normal"


def test_masked_signal_waits_until_unmasked():
    order = []

    async def masked(sys, args):
        await sys.sigmask(block=[Signal.SIGTERM])
        await sys.sleep(50)
        order.append(("mailbox-before-unmask", await sys.recv(timeout=0)))
        await sys.sigmask(unblock=[Signal.SIGTERM])
        m = await sys.recv(timeout=0)
        order.append(("after", m.body.signal if m else None))

    async def init(sys, args):
        _, c = await sys.spawn(masked)
        await sys.sleep(1)
        await sys.term(c)
        await sys.waitpid(c)

    boot(init)
    assert order == [("mailbox-before-unmask", None), ("after", Signal.SIGTERM)]


def test_kill_policy_and_trust_cannot_be_masked():
    async def proc(sys, args):
        for sig in (Signal.SIGKILL, Signal.SIGPOLICY, Signal.SIGTRUST):
            try:
                await sys.sigmask(block=[sig])
            except SyscallError as e:
                await sys.log("info", str(e))
        await sys.recv()

    async def init(sys, args):
        _, c = await sys.spawn(proc)
        await sys.sleep(1)
        await sys.signal(c, Signal.SIGPOLICY)
        return str(await sys.waitpid(c))

    k, res = boot(init)
    assert res.value.startswith("policy(")
    logs = [e.data[1] for e in k.events.events() if e.kind == "log"]
    assert logs == ["sigmask: SIGKILL cannot be masked", "sigmask: SIGPOLICY cannot be masked",
                    "sigmask: SIGTRUST cannot be masked"]


def test_self_cap_carries_no_kill_right():
    async def init(sys, args):
        me = await sys.self_cap()
        # a self cap has no kill right; spawn gives one to the parent only
        try:
            await sys.kill(me)
        except CapError:
            return "no kill right on self cap"

    _, res = boot(init)
    assert res.value == "no kill right on self cap"


def test_sigusr1_asks_the_kernel_for_a_checkpoint():
    async def loop(sys, args):
        msg = await sys.recv()
        return msg.body.signal

    async def init(sys, args):
        _, c = await sys.spawn(loop)
        await sys.signal(c, Signal.SIGUSR1)
        await sys.waitpid(c)

    k, _ = boot(init)
    assert [e.pid for e in k.events.events() if e.kind == "checkpoint"] == [2]


def test_interrupted_waitpid_does_not_leave_a_stale_wakeup():
    from agentos import Interrupted

    seen = []

    async def slow(sys, args):
        await sys.sleep(args)

    async def waiter(sys, args):
        b, c = sys.caps
        try:
            await sys.waitpid(b)
        except Interrupted:
            seen.append("interrupted")
        seen.append(str(await sys.waitpid(c)))   # B's exit must not wake this one

    async def init(sys, args):
        _, b = await sys.spawn(slow, args=10)
        _, c = await sys.spawn(slow, args=50)
        _, w = await sys.spawn(waiter, caps=[b, c])
        await sys.sleep(1)
        await sys.signal(w, Signal.SIGINT)
        await sys.waitpid(w)
        return await sys.now()

    _, res = boot(init)
    assert seen == ["interrupted", "normal"]
    assert res.value == 50.0
