"""Hibernation: waiting processes go to the store and come back on any event."""
from __future__ import annotations

import sys as _sys

import pytest

from agentos import Kernel
from agentos.abi.errors import KernelError
from agentos.abi.types import Down, Signal, SignalMessage
from agentos.sched import STUB_LIMIT, HibernationConfig, MemoryHibernationStore, loop_exit, message_loop, stub_bytes
from agentos.userland import ChildSpec, SupervisorSpec, supervisor, which_children
from tests.support.boot import boot

CONTEXT = "context " * 512  # about 4 KiB


async def _setup(sys, args):
    await sys.remember(CONTEXT)
    return {"n": 0, "tag": args}


@message_loop(init=_setup)
async def counter(sys, state, msg):
    body = msg.body
    if body == "crash":
        raise RuntimeError("asked to crash")
    if body == "stop":
        return loop_exit(state["n"])
    if body == "watch":
        await sys.monitor(msg.caps[0])
        return {"n": state["n"] + 1, "tag": state["tag"]}
    if isinstance(body, SignalMessage):
        body = f"signal:{body.signal.name}"
    elif isinstance(body, Down):
        body = f"down:{body.pid}"
    n = state["n"] + 1
    if msg.caps:
        ws = await sys.working_set()
        await sys.send(msg.caps[0], [n, state["tag"], body, len(ws)], corr=msg.corr)
    return {"n": n, "tag": state["tag"]}


@message_loop(idle_ms=50)
async def sleepy(sys, state, msg):
    await sys.send(msg.caps[0], (state or 0) + 1)
    return (state or 0) + 1


async def plain_waiter(sys, args):
    """Not a message loop: only its context can be paged out."""
    await sys.remember(CONTEXT)
    msg = await sys.recv()
    ws = await sys.working_set()
    await sys.send(msg.caps[0], ["plain", len(ws), ws[0].body == CONTEXT])
    await sys.sleep(20)
    return "slept"


async def _ask(sys, cap, body="ping"):
    me = await sys.self_cap()
    await sys.send(cap, body, caps=[me], corr=1)
    return (await sys.recv()).body


def _hib(**kw):
    return HibernationConfig(**kw)


def _kinds(k, *kinds):
    return [(e.pid, e.kind, e.data) for e in k.events.events() if e.kind in kinds]


def test_a_hibernated_loop_that_receives_a_message_answers_it():
    out = {}
    kernel_ref = {}

    async def init(sys, args):
        pid, cap = await sys.spawn(counter, args="a", name="c1")
        out["first"] = await _ask(sys, cap)
        kernel_ref["k"].hibernate(pid)
        out["row"] = [r for r in kernel_ref["k"].ps() if r["pid"] == pid][0]["state"]
        out["second"] = await _ask(sys, cap)
        return "ok"

    k = Kernel(deterministic=True, hibernation=_hib())
    kernel_ref["k"] = k
    res = k.run(init)
    assert res.value == "ok"
    assert out["row"] == "hibernated"
    assert out["first"] == [1, "a", "ping", 1]
    # the state (n=1, tag) and the 4 KiB context came back from the store
    assert out["second"] == [2, "a", "ping", 1]
    hib = _kinds(k, "hibernate", "wake")
    assert [(kind, data if kind == "wake" else data[:2]) for _, kind, data in hib] == \
        [("hibernate", ("request", "full")), ("wake", "message")]
    assert k.metrics()["hibernations"] == 1 and k.metrics()["hibernate_wakes"] == 1


def test_watermark_hibernates_lowest_scored_waiting_processes_first():
    out = {}

    async def init(sys, args):
        caps = [(await sys.spawn(counter, args=i, priority=1 if i < 2 else 5))[1] for i in range(6)]
        await sys.sleep(1)   # all parked; the watermark (4 resident) is past
        out["answers"] = [await _ask(sys, c) for c in caps]
        return "ok"

    k, res = boot(init, hibernation=_hib(max_resident=4, low_water=0.75))
    assert res.value == "ok"
    assert [a[:2] for a in out["answers"]] == [[1, i] for i in range(6)]
    first = [pid for pid, kind, data in _kinds(k, "hibernate") if data[0] == "watermark"][:4]
    assert first[:2] == [2, 3]  # priority 1 goes first


def test_a_plain_process_has_its_context_paged_out_and_carries_on():
    out = {}
    ref = {}

    async def init(sys, args):
        pid, cap = await sys.spawn(plain_waiter)
        await sys.sleep(1)
        ref["k"].hibernate(pid)
        out["answer"] = await _ask(sys, cap)
        ref["k"].hibernate(pid)   # now asleep in sys.sleep: the timer wakes it
        out["exit"] = str(await sys.waitpid(cap))
        return "ok"

    k = Kernel(deterministic=True, hibernation=_hib())
    ref["k"] = k
    res = k.run(init)
    assert res.value == "ok"
    assert out["answer"] == ["plain", 1, True]
    assert out["exit"] == "normal"
    assert [d[:2] for _, kind, d in _kinds(k, "hibernate")] == [("request", "context")] * 2
    assert [d for _, kind, d in _kinds(k, "wake")] == ["message", "wake"]


def test_a_signal_wakes_a_hibernated_loop():
    out = {}
    ref = {}

    async def init(sys, args):
        pid, cap = await sys.spawn(counter, args="s")
        await _ask(sys, cap)
        ref["k"].hibernate(pid)
        await sys.term(cap)                 # SIGTERM arrives as a message
        out["after"] = await _ask(sys, cap)  # it counted the signal
        ref["k"].hibernate(pid)
        await sys.kill(cap)
        out["exit"] = str(await sys.waitpid(cap))
        return "ok"

    k = Kernel(deterministic=True, hibernation=_hib())
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["after"][0] == 3
    assert out["exit"].startswith("killed")
    assert [d for _, _, d in _kinds(k, "wake")] == ["signal", "signal"]


def test_a_down_for_a_hibernated_watcher_wakes_it():
    out = {}
    ref = {}

    async def short(sys, args):
        await sys.sleep(5)

    async def init(sys, args):
        pid, cap = await sys.spawn(counter, args="m")
        _, victim = await sys.spawn(short)
        await sys.send(cap, "watch", caps=[victim], corr=0)  # it now holds a cap to `short`
        await sys.sleep(1)
        ref["k"].hibernate(pid)
        await sys.sleep(10)  # `short` exits: the Down wakes the loop
        out["after"] = await _ask(sys, cap)
        return "ok"

    k = Kernel(deterministic=True, hibernation=_hib())
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["after"][0] == 3   # watch (1), Down (2), ping (3)
    assert "message" in [d for _, _, d in _kinds(k, "wake")]


def test_idle_timeout_hibernates_a_loop_after_its_idle_ms():
    out = {}

    async def init(sys, args):
        _, cap = await sys.spawn(sleepy)
        out["a"] = await _ask(sys, cap)
        await sys.sleep(100)   # past sleepy's 50 ms idle timeout
        out["b"] = await _ask(sys, cap)
        return "ok"

    k, res = boot(init, hibernation=_hib())
    assert res.value == "ok"
    assert (out["a"], out["b"]) == (1, 2)
    assert [d[0] for _, _, d in _kinds(k, "hibernate")] == ["idle"]  # the second timer is still pending when init returns


def test_a_supervisor_restarts_a_hibernated_child_that_crashes_on_wake():
    out = {}
    ref = {}

    async def init(sys, args):
        spec = SupervisorSpec([ChildSpec("w", counter, args="w")])
        _, sup = await sys.spawn(supervisor, args=spec, caps=["spawn"])
        await sys.sleep(5)
        (name, pid), = await which_children(sys, sup)
        ref["k"].hibernate(pid)
        out["state"] = ref["k"].procs[pid].state.value
        # a cap to the child, made on the kernel side (the supervisor holds the real one)
        kcap = ref["k"].caps.grant(ref["k"].procs[1], 0, ref["k"].procs[pid], 0x7F).ref
        await sys.send(kcap, "crash")
        await sys.sleep(5)
        (name2, pid2), = await which_children(sys, sup)
        out["pids"] = (pid, pid2)
        await sys.term(sup)
        await sys.waitpid(sup)
        return "ok"

    k = Kernel(deterministic=True, hibernation=_hib())
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["state"] == "hibernated"
    assert out["pids"][1] != out["pids"][0]


def test_kernel_hibernate_refuses_what_cannot_hibernate():
    ref = {}
    out = {}

    async def busy(sys, args):
        await sys.sleep(1000)

    async def init(sys, args):
        k = ref["k"]
        for pid in (1, 999, "x"):
            try:
                k.hibernate(pid)
            except KernelError as e:
                out.setdefault("errors", []).append(str(e))
        return "ok"

    k = Kernel(deterministic=True, hibernation=_hib())
    ref["k"] = k
    assert k.run(init).value == "ok"
    errs = out["errors"]
    assert "running" in errs[0] and "no live process" in errs[1] and "no live process" in errs[2]
    off = Kernel(deterministic=True)
    with pytest.raises(KernelError, match="hibernation is off"):
        off.hibernate(1)


def test_stub_of_a_fully_hibernated_loop_is_at_most_512_bytes():
    ref = {}
    out = {}

    async def init(sys, args):
        pid, cap = await sys.spawn(counter, args="x", name="w1234567")
        await sys.sleep(1)
        k = ref["k"]
        k.hibernate(pid)
        p = k.procs[pid]
        out["bytes"] = stub_bytes(p)
        out["coro"] = p.coro
        out["account"] = p.account
        return "ok"

    k = Kernel(deterministic=True, hibernation=_hib())
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["coro"] is None and out["account"] is None
    assert out["bytes"] <= STUB_LIMIT, out["bytes"]


def test_budget_conserved_across_a_round_trip():
    from agentos.abi.types import Quota

    ref = {}
    out = {}

    async def init(sys, args):
        pid, cap = await sys.spawn(counter, args="b", quota=Quota(mem=10_000))
        _, cap2 = await sys.spawn(counter, args="t")
        await _ask(sys, cap)
        await _ask(sys, cap2)
        k = ref["k"]
        before = (k.accounts.view(k.procs[pid].account), k.accounts.view(k.procs[1].account))
        k.hibernate(pid)
        k.hibernate(pid + 1)
        await _ask(sys, cap)
        await _ask(sys, cap2)
        after = (k.accounts.view(k.procs[pid].account), k.accounts.view(k.procs[1].account))
        out["same"] = before == after
        return "ok"

    k = Kernel(deterministic=True, hibernation=_hib())
    ref["k"] = k
    assert k.run(init, quota=__import__("agentos").Quota(mem=100_000)).value == "ok"
    assert out["same"]


def test_a_hand_made_image_with_a_hostile_idle_ms_gets_no_idle_timer():
    import math

    from agentos.kernel.process import ProcessImage

    ref = {}
    out = {}
    images = []
    for bad in (math.nan, math.inf, -5.0, 10**400, "30", True):
        @message_loop()
        async def h(sys, state, msg):
            return state
        h.main._agentos_idle_ms = bad    # forged after the decorator checked its own
        images.append(h)

    async def init(sys, args):
        k = ref["k"]
        for img in images:
            await sys.spawn(img)
        await sys.sleep(5)
        out["timers"] = len(k.hibernation._idle)
        return "ok"

    k = Kernel(deterministic=True, hibernation=_hib())
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["timers"] == 0


def test_a_forged_resume_marker_in_spawn_args_is_refused_and_init_is_not_skipped():
    from agentos.abi.errors import BadArgument
    from agentos.sched.loop import _Resume

    out = {}

    async def init(sys, args):
        try:
            await sys.spawn(counter, args=_Resume("x", {"n": 100, "tag": "forged"}))
        except BadArgument as e:
            out["refused"] = str(e)
        try:
            await sys.spawn(counter, args=[1, _Resume("x", 0)])
        except BadArgument as e:
            out["nested"] = str(e)
        return "ok"

    k, res = boot(init, hibernation=_hib())
    assert res.value == "ok"
    assert "resume" in out["refused"] or "_Resume" in out["refused"]
    assert "_Resume" in out["nested"]
    assert [e.data[1] for e in k.events.events(kind="spawn")] == ["init"]
