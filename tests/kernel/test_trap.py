"""The trap and the one park/wake primitive: forgotten awaits warn, handler bugs are named
as kernel bugs (never the caller's misuse), every wait kind can be withdrawn by SIGINT and
by teardown, and `ps` shows what a process waits for."""
from __future__ import annotations

import gc
import warnings

import pytest

from agentos import (
    BadArgument, ExitKind, Interrupted, Signal, SyscallError, WaitKind,
)
from agentos.abi import syscalls as S
from agentos.kernel.trap import trap
from tests.support.boot import boot


def test_forgotten_await_warns_and_sends_nothing():
    async def sink(sys, args):
        return await sys.recv(timeout=10)

    async def init(sys, args):
        _, c = await sys.spawn(sink)
        sys.send(c, "lost")  # no await: a coroutine object, never run
        return await sys.waitpid(c)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        k, res = boot(init)
        gc.collect()
    assert any("was never awaited" in str(w.message) and "send" in str(w.message) for w in caught)
    assert str(res.value) == "normal"
    assert [p for p in k.events.events() if p.kind == "sys" and type(p.data).__name__ == "Send"] == []


@pytest.mark.live_only(reason="it installs a broken handler into the live kernel (install_syscall); the "
                              "replay is rebuilt from the recording, which holds no handlers")
def test_handler_bug_faults_caller_as_kernel_bug_and_kernel_runs_on():
    def broken(proc, req):
        raise TypeError("unsupported operand")  # a bug, not a refusal

    async def victim(sys, args):
        return await sys.now()

    async def bystander(sys, args):
        await sys.sleep(5)
        return "still here"

    async def init(sys, args):
        _, b = await sys.spawn(bystander)
        _, v = await sys.spawn(victim)
        return str(await sys.waitpid(v)), str(await sys.waitpid(b))

    from agentos import AllowAll, Kernel

    k = Kernel(deterministic=True, policy=AllowAll())
    k.install_syscall(S.Now, broken)
    res = k.run(init)
    victim_reason, bystander_reason = res.value
    assert victim_reason.startswith("fault")
    assert "kernel bug" in victim_reason and "broken" in victim_reason
    assert "TypeError" in victim_reason
    assert bystander_reason == "normal"
    bugs = [e for e in k.events.events() if e.kind == "internal_error"]
    assert len(bugs) == 1 and "broken" in bugs[0].data[0]


@pytest.mark.live_only(reason="it installs a broken handler into the live kernel (install_syscall); the "
                              "replay is rebuilt from the recording, which holds no handlers")
def test_handler_bug_is_not_catchable_as_misuse():
    """A TypeError inside a handler must never surface as a catchable TypeError in the caller."""
    def broken(proc, req):
        raise ValueError("oops")

    async def init(sys, args):
        try:
            await sys.now()
        except ValueError:
            return "caught as misuse"
        return "returned"

    from agentos import AllowAll, Kernel

    k = Kernel(deterministic=True, policy=AllowAll())
    k.install_syscall(S.Now, broken)
    res = k.run(init)
    assert res.reason.kind is ExitKind.FAULT


@pytest.mark.parametrize("req", [
    S.Sleep("10"), S.Sleep(float("nan")), S.Sleep(float("inf")), S.Sleep(None),
    S.Recv(float("nan"), None), S.Recv("5", None), S.Recv(None, 42),
    S.Send([1], "x"), S.Register(["a"]), S.Lookup({}), S.Unregister(3),
    S.Sched(None, float("nan")), S.Sched("high", None), S.Attenuate(1, None, float("nan")),
    S.Read([1], {}), S.Close("1"), S.ReadAll(1, "abc"), S.CheckPolicy(7, None),
    S.Log(1, "m", {}), S.Log("info", "m", []),
], ids=lambda r: type(r).__name__)
def test_bad_arguments_are_a_typed_error_in_the_caller(req):
    async def init(sys, args):
        try:
            await trap(req)
        except SyscallError as e:
            return type(e).__name__, str(e)
        return "accepted", None

    k, res = boot(init)
    assert res.reason.kind is ExitKind.NORMAL, res.reason
    kind, msg = res.value
    assert kind in ("BadArgument", "CapError", "BadHandle"), (kind, msg)
    assert not [e for e in k.events.events() if e.kind == "internal_error"]


def _sigint_while(wait, setup=None, **boot_kw):
    """Park a child in `wait`, SIGINT it, and report what it saw and what is left behind."""
    async def child(sys, args):
        try:
            await wait(sys)
        except Interrupted as e:
            return "interrupted: " + str(e)
        return "not interrupted"

    async def init(sys, args):
        _, c = await sys.spawn(child, caps=args or ())
        await sys.sleep(1)
        await sys.signal(c, Signal.SIGINT)
        return str(await sys.waitpid(c))

    return boot(init, **boot_kw)


def test_sigint_withdraws_recv_sleep_and_waitpid():
    async def in_recv(sys):
        await sys.recv()

    async def in_sleep(sys):
        await sys.sleep(10_000)

    async def forever(sys, args):
        await sys.recv()

    async def in_waitpid(sys):
        _, c = await sys.spawn(forever)
        await sys.waitpid(c)

    for wait in (in_recv, in_sleep, in_waitpid):
        k, res = _sigint_while(wait)
        assert res.reason.kind is ExitKind.NORMAL
        assert k.timers.next_due() is None  # the sleep's timer went with the wait


def test_parked_process_shows_its_wait_kind_in_ps():
    seen = {}

    async def sleeper(sys, args):
        await sys.sleep(100)

    async def receiver(sys, args):
        await sys.recv()

    async def init(sys, args):
        _, a = await sys.spawn(sleeper)
        _, b = await sys.spawn(receiver)
        await sys.yield_()
        await sys.yield_()
        seen.update({row["name"]: row["wait"] for row in kref[0].ps()})
        await sys.kill(b)
        return None

    from agentos import AllowAll, Kernel

    k = Kernel(deterministic=True, policy=AllowAll())
    kref = [k]
    k.run(init)
    assert seen["sleeper"] == WaitKind.SLEEP.value
    assert seen["receiver"] == WaitKind.RECV.value
    assert seen["init"] is None


def test_teardown_of_a_waiter_leaves_no_stale_registration():
    """A process killed while in waitpid is withdrawn from its target's waiter list."""
    async def forever(sys, args):
        await sys.recv()

    async def waiter(sys, args):
        await sys.waitpid(args)

    async def init(sys, args):
        _, t = await sys.spawn(forever)
        _, w = await sys.spawn(waiter, args=t)
        await sys.yield_()
        await sys.kill(w)
        target = [p for p in kref[0].procs.values() if p.name == "forever"][0]
        left = list(target.waiters or [])
        await sys.kill(t)
        return len(left)

    from agentos import AllowAll, Kernel

    k = Kernel(deterministic=True, policy=AllowAll())
    kref = [k]
    res = k.run(init)
    assert res.value == 0
