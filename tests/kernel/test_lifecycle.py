"""Processes: spawn, exit reasons, link, monitor, waitpid, cleanup hooks, names, faults."""
from __future__ import annotations

import asyncio

import pytest

from agentos import (
    Down, ExitKind, Kernel, KernelError, NameTaken, NotSupported, ProcessImage, SyscallError,
)
from tests.support.boot import boot


async def idle(sys, args):
    while True:
        await sys.recv()


async def crash(sys, args):
    raise ValueError("boom")


def test_bare_function_and_process_image_both_run():
    async def child(sys, args):
        return args * 2

    async def init(sys, args):
        _, a = await sys.spawn(child, args=2)
        _, b = await sys.spawn(ProcessImage("doubler", child), args=3)
        return str(await sys.waitpid(a)), str(await sys.waitpid(b))

    k, res = boot(init)
    assert res.value == ("normal", "normal")
    names = [e.data[1] for e in k.events.events() if e.kind == "spawn"]
    assert names == ["init", "child", "doubler"]


def test_a_crashing_process_faults_alone():
    async def init(sys, args):
        _, peer = await sys.spawn(idle)
        _, c = await sys.spawn(crash)
        reason = await sys.waitpid(c)
        me = await sys.self_cap()
        await sys.send(peer, "still alive?", caps=[me])
        await sys.kill(peer)
        return str(reason)

    _, res = boot(init)
    assert res.value == "fault(ValueError: boom)"


def test_awaiting_a_non_syscall_faults_with_a_clear_error():
    async def bad(sys, args):
        await asyncio.sleep(0.01)

    async def init(sys, args):
        _, c = await sys.spawn(bad)
        return str(await sys.waitpid(c))

    _, res = boot(init)
    assert res.value.startswith("fault(KernelError: pid 2 (bad) awaited Future, which is not a syscall")
    assert "sys.sleep, not asyncio.sleep" in res.value


def test_monitor_delivers_down_with_reason():
    async def init(sys, args):
        _, c = await sys.spawn(crash)
        await sys.monitor(c)
        msg = await sys.recv()
        return msg.body

    _, res = boot(init)
    assert isinstance(res.value, Down)
    assert res.value.reason.kind is ExitKind.FAULT and res.value.pid == 2


def test_monitor_of_an_already_dead_process_still_gets_down():
    async def init(sys, args):
        _, c = await sys.spawn(crash)
        await sys.waitpid(c)
        await sys.monitor(c)
        return (await sys.recv(timeout=0)).body.pid

    _, res = boot(init)
    assert res.value == 2


def test_link_kills_linked_children_when_the_parent_dies():
    async def parent(sys, args):
        await sys.spawn(idle, link=True)
        await sys.spawn(idle, link=True)
        await sys.spawn(idle)  # unlinked: survives
        await sys.recv()

    async def init(sys, args):
        _, p = await sys.spawn(parent, caps=["spawn"])
        await sys.sleep(1)
        await sys.kill(p)
        await sys.sleep(1)

    k, res = boot(init)
    exits = {e.pid: e.data for e in k.events.events() if e.kind == "exit"}
    assert exits[3] == "killed(link:2)" and exits[4] == "killed(link:2)"
    assert exits[5] == "shutdown"  # the unlinked one ran until the kernel shut down


def test_linked_child_exit_sends_down_to_parent():
    async def init(sys, args):
        await sys.spawn(crash, link=True)
        msg = await sys.recv()
        return str(msg.body.reason)

    _, res = boot(init)
    assert res.value == "fault(ValueError: boom)"


@pytest.mark.parametrize("how", ["normal", "crash", "kill", "quota", "deadline", "shutdown"])
def test_cleanup_hooks_run_on_every_kind_of_exit(how):
    from agentos import Quota

    seen = []

    async def worker(sys, args):
        await sys.on_cleanup(lambda reason: seen.append(str(reason)))
        if how == "crash":
            raise RuntimeError("x")
        if how == "normal":
            return
        await sys.sleep(1_000_000)

    async def init(sys, args):
        kw = {}
        if how == "quota":
            kw["quota"] = Quota(wall_ms=5)
        if how == "deadline":
            kw["deadline"] = 5
        _, c = await sys.spawn(worker, **kw)
        if how == "kill":
            await sys.sleep(1)
            await sys.kill(c)
        if how == "shutdown":
            await sys.sleep(1)
            return
        await sys.waitpid(c)

    boot(init)
    expected = {"normal": "normal", "crash": "fault(RuntimeError: x)", "kill": "killed(1)",
                "quota": "quota(wall_ms)", "deadline": "deadline", "shutdown": "shutdown"}[how]
    assert seen == [expected]


def test_a_raising_cleanup_hook_does_not_hurt_the_kernel():
    async def worker(sys, args):
        await sys.on_cleanup(lambda r: 1 / 0)

    async def init(sys, args):
        _, c = await sys.spawn(worker)
        return str(await sys.waitpid(c))

    k, res = boot(init)
    assert res.value == "normal"
    assert any(e.kind == "cleanup_error" for e in k.events.events())


def test_names_register_lookup_and_clear_on_exit():
    async def server(sys, args):
        await sys.register("db")
        msg = await sys.recv()
        await sys.send(msg.caps[0], "pong")

    async def init(sys, args):
        _, s = await sys.spawn(server)
        await sys.sleep(1)
        try:
            await sys.register("db")
        except NameTaken as e:
            taken = str(e)
        cap = await sys.lookup("db")
        info = await sys.cap_info(cap)
        me = await sys.self_cap()
        await sys.send(cap, "ping", caps=[me])
        reply = (await sys.recv()).body
        await sys.waitpid(s)
        return taken, info["rights"], reply, await sys.lookup("db")

    _, res = boot(init)
    assert res.value == ("register: 'db' is held by pid 2", "send", "pong", None)


def test_exit_cannot_forge_a_kill_reason():
    async def liar(sys, args):
        try:
            await sys.exit("killed(1)")
        except SyscallError as e:
            await sys.exit("normal")

    async def init(sys, args):
        _, c = await sys.spawn(liar)
        return str(await sys.waitpid(c))

    _, res = boot(init)
    assert res.value == "normal"


def test_deadlock_is_reported_not_hung():
    async def init(sys, args):
        await sys.recv()

    _, res = boot(init)
    assert res.reason.kind is ExitKind.FAULT and "deadlock" in res.reason.detail


def test_unknown_kernel_option_and_unknown_driver_grant_are_clear_errors():
    with pytest.raises(KernelError, match="unknown kernel option 'quantumm'"):
        Kernel(quantumm=3)

    async def init(sys, args):
        return None

    with pytest.raises(KernelError, match="cannot grant device 'nope': no such driver"):
        Kernel().run(init, grant=["nope"])


def test_spawn_with_bad_arguments_is_a_syscall_error_not_a_crash():
    async def init(sys, args):
        errs = []
        for kw in ({"priority": 42}, {"quota": "lots"}):
            try:
                await sys.spawn(idle, **kw)
            except SyscallError as e:
                errs.append(str(e))
        try:
            await sys.spawn(lambda s, a: None)
        except SyscallError as e:
            errs.append(str(e))
        return errs

    _, res = boot(init)
    assert "priority must be an int in 0..9" in res.value[0]
    assert "quota must be a Quota" in res.value[1]
    assert "expected a ProcessImage or an async function" in res.value[2]


def test_unimplemented_syscall_area_names_itself():
    async def init(sys, args):
        try:
            await sys.spawn_remote("node-b", "img")
        except NotSupported as e:
            return str(e)

    _, res = boot(init)
    assert "spawn_remote" in res.value and "net" in res.value


def test_a_cached_image_whose_function_was_swapped_for_a_plain_one_is_refused_at_spawn():
    # the image cache skips the async-function check for a function spawned before: the
    # coroutine check that follows must still refuse what it now returns
    async def child(sys, args):
        return "ran"

    def plain(sys, args):
        return "not a coroutine"

    original = child.__code__

    async def init(sys, args):
        _, first = await sys.spawn(child)
        ran = await sys.waitpid(first)
        child.__code__ = plain.__code__
        try:
            await sys.spawn(child)
        except SyscallError as e:
            return str(ran), str(e)
        finally:
            child.__code__ = original
        return str(ran), "spawned"

    _, res = boot(init)
    assert res.value[0] == "normal"
    assert "main must be an async function" in res.value[1]
