"""Observers: the one hook interface for recorders, checkpointing and tracers; and the
other documented extension points (senders for non-process caps, operator grants)."""
from __future__ import annotations

import pytest

from agentos import (
    AllowAll, BootInfo, CapError, Kernel, KernelError, Observer, Quota, Right, Signal,
)
from agentos.abi.types import NORMAL


class Tape(Observer):
    """Writes down every hook, in order."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.batches = 0
        self.entries = 0

    def attached(self, kernel):
        self.log.append(("attached", type(kernel).__name__))

    def booted(self, kernel, init, boot):
        self.log.append(("booted", init.pid, boot))

    def spawned(self, proc):
        self.log.append(("spawned", proc.pid, proc.name))

    def exited(self, proc, reason):
        self.log.append(("exited", proc.pid, str(reason)))

    def checkpoint(self, proc):
        self.log.append(("checkpoint", proc.pid))
        return f"cp-{proc.pid}"

    def flushed(self, batch):
        self.batches += 1
        self.log.extend(("event", e.kind) for e in batch if e.kind in ("spawn", "exit", "checkpoint"))

    def journaled(self, entry):
        self.entries += 1


async def child(sys, _):
    while True:
        await sys.recv()


async def init(sys, _):
    pid, cap = await sys.spawn(child)
    await sys.sleep(1)
    await sys.signal(cap, Signal.SIGUSR1)
    await sys.sleep(1)
    await sys.kill(cap)
    return "done"


def run(*observers, **kw):
    k = Kernel(policy=AllowAll(), deterministic=True, **kw)
    for o in observers:
        k.add_observer(o)
    return k, k.run(init, args={"a": 1}, quota=Quota(tokens=10), name="root", priority=3)


@pytest.mark.live_only(reason="an observer labels the checkpoint event: a label from outside the program, which no journal holds")
def test_an_observer_sees_boot_spawn_checkpoint_exit_in_order():
    tape = Tape()
    k, res = run(tape)
    assert res.value == "done"
    hooks = [e for e in tape.log if e[0] != "event"]
    assert hooks[0] == ("attached", "Kernel")
    assert hooks[1] == ("spawned", 1, "root")
    assert hooks[2] == ("booted", 1, BootInfo({"a": 1}, (), Quota(tokens=10), "root", 3))
    assert hooks[3:] == [("spawned", 2, "child"), ("checkpoint", 2), ("exited", 2, "killed(1)"),
                         ("exited", 1, "normal")]
    assert [e.data for e in k.events.events(kind="checkpoint")] == ["cp-2"]
    assert tape.batches >= 1
    assert ("event", "checkpoint") in tape.log


@pytest.mark.live_only(reason="observers label the checkpoint event: labels from outside the program, which no journal holds")
def test_the_checkpoint_label_is_the_first_an_observer_gives():
    class Quiet(Observer):
        def __init__(self):
            self.took = []

        def checkpoint(self, proc):
            self.took.append(proc.pid)  # takes it, gives no label

    quiet, tape = Quiet(), Tape()
    k, _ = run(quiet, tape)
    assert quiet.took == [2]
    assert [e.data for e in k.events.events(kind="checkpoint")] == ["cp-2"]
    k2, _ = run()
    assert [e.data for e in k2.events.events(kind="checkpoint")] == [None]


@pytest.mark.live_only(reason="an observer's failure is an event of the live run; the replay has no observer to fail")
def test_a_failing_observer_is_recorded_and_the_kernel_runs_on():
    class Broken(Observer):
        def spawned(self, proc):
            raise RuntimeError("spawn hook bug")

        def exited(self, proc, reason):
            raise ValueError("exit hook bug")

        def checkpoint(self, proc):
            raise KeyError("checkpoint hook bug")

    tape = Tape()
    k, res = run(Broken(), tape)
    assert res.reason == NORMAL and res.value == "done"
    errors = [e.data for e in k.events.events(kind="observer_error")]
    assert any("spawned: RuntimeError" in d for d in errors)
    assert any("exited: ValueError" in d for d in errors)
    assert any("checkpoint: KeyError" in d for d in errors)
    # the later observer still saw everything, and every process was torn down
    assert ("exited", 2, "killed(1)") in tape.log and ("exited", 1, "normal") in tape.log
    assert k.procs == {} and k.caps.live == 0


def test_a_booted_hook_that_raises_stops_the_run_before_init_runs():
    ran = []

    async def body(sys, _):
        ran.append(1)

    class Refuse(Observer):
        def booted(self, kernel, init, boot):
            raise KernelError("not this run")

    k = Kernel(policy=AllowAll(), deterministic=True)
    k.add_observer(Refuse())
    with pytest.raises(KernelError, match="not this run"):
        k.run(body)
    assert ran == [] and k.procs == {}


def test_only_overridden_hooks_are_wired():
    class JustExits(Observer):
        def exited(self, proc, reason):
            pass

    k = Kernel(policy=AllowAll(), deterministic=True)
    sinks = len(k.events.sinks)
    k.add_observer(JustExits())
    assert k._on_exit and not k._on_spawn and not k._on_checkpoint
    assert len(k.events.sinks) == sinks and not k.journal.sinks


def test_no_observer_means_no_hook_lists():
    k = Kernel(policy=AllowAll(), deterministic=True)
    assert k.observers == [] and k._on_spawn == [] and k._on_exit == [] and k._on_checkpoint == []


def test_add_observer_refuses_non_observers_and_duplicates():
    k = Kernel()
    with pytest.raises(KernelError, match="not an agentos Observer"):
        k.add_observer(object())  # type: ignore[arg-type]
    tape = Tape()
    k.add_observer(tape)
    with pytest.raises(KernelError, match="already attached"):
        k.add_observer(tape)


def test_the_recorder_is_an_observer_and_attaches_nothing_else():
    from agentos.store import MemoryStore, Recording, record_run

    k = Kernel(policy=AllowAll(), deterministic=True)
    rid = record_run(k, MemoryStore(), "obs")
    (rec,) = k.observers
    assert isinstance(rec, Recording) and rec.run_id == rid
    assert not hasattr(k, "recording") and not hasattr(k, "boot_hooks") and not hasattr(k, "checkpointer")


# -- senders for capabilities that are not processes -----------------------------------

def _remote_cap(k, proc, target="node-b/7"):
    from agentos.kernel.caps import REMOTE

    return k.caps.grant(proc, REMOTE, target, int(Right.SEND)).ref


@pytest.mark.live_only(reason="an observer grants a remote capability and a sender takes the send: operator actions no journal holds")
def test_a_send_on_a_remote_cap_goes_to_the_installed_sender():
    wire = []
    k = Kernel(policy=AllowAll(), deterministic=True)

    def sender(proc, cap, req):
        wire.append((proc.pid, cap.target, req.body))
        return None

    k.install_sender("remote", sender)

    refs = {}

    async def body(sys, _):
        await sys.send(refs["proxy"], {"hello": 1})
        return "sent"

    class Wire(Observer):  # stands in for `dial`, which hands out remote caps
        def booted(self, kernel, init, boot):
            refs["proxy"] = _remote_cap(kernel, init)

    k.add_observer(Wire())
    assert k.run(body).value == "sent"
    assert wire == [(1, "node-b/7", {"hello": 1})]


def test_a_remote_cap_on_a_kernel_on_no_network_is_no_route():
    from agentos.net import NoRoute, RemoteAddr

    k = Kernel(policy=AllowAll(), deterministic=True)

    async def body(sys, _):
        out = []
        for target in (RemoteAddr("node-b", 7), "node-b/7"):  # the second: not a remote address
            cap = _remote_cap(k, k.procs[1], target)
            try:
                await sys.send(cap, "x")
            except (NoRoute, CapError) as e:
                out.append(f"{type(e).__name__}: {e}")
        return out

    value = k.run(body).value
    assert value[0].startswith("NoRoute: send: this kernel is on no network") and "node-b/7" in value[0]
    assert value[1].startswith("CapError:")


def test_install_sender_refuses_process_and_unknown_kinds():
    k = Kernel()
    for bad in ("process", "carrier-pigeon", 2, None):
        with pytest.raises(KernelError, match="kind must be one of"):
            k.install_sender(bad, lambda p, c, r: None)  # type: ignore[arg-type]
    with pytest.raises(KernelError, match="must be callable"):
        k.install_sender("remote", "not a function")  # type: ignore[arg-type]


# -- operator grants and restore under a parent ----------------------------------------

@pytest.mark.live_only(reason="an observer grants a capability mid-run: an operator action no journal holds")
def test_grant_process_gives_a_working_capability():
    refs = {}

    async def b(sys, _):
        await sys.sleep(5)

    async def a(sys, _):
        await sys.sleep(1)
        return str(await sys.waitpid(refs["b"]))

    async def body(sys, _):
        _pa, ca = await sys.spawn(a)
        await sys.spawn(b)
        await sys.waitpid(ca)
        return "ok"

    k = Kernel(policy=AllowAll(), deterministic=True)

    class Wire(Observer):
        def spawned(self, proc):
            if proc.name == "b":  # a (pid 2) gets to watch b, which it was never given
                refs["b"] = k.grant_process(2, proc.pid, Right.MONITOR)

    k.add_observer(Wire())
    assert k.run(body).value == "ok"
    assert [e.data for e in k.events.events(kind="exit") if e.pid == 3] == ["normal"]
    assert [e.data[0] for e in k.events.events(kind="error")] == []


@pytest.mark.parametrize("rights", [Right.NONE, 0, "", "fly", 1 << 9, -1, True, 1.5, None])
def test_grant_process_refuses_bad_rights(rights):
    errors = []

    class Wire(Observer):
        def booted(self, kernel, init, boot):
            try:
                kernel.grant_process(init.pid, init.pid, rights)
            except KernelError as e:
                errors.append(str(e))

    async def body(sys, _):
        return None

    k = Kernel(policy=AllowAll(), deterministic=True)
    k.add_observer(Wire())
    k.run(body)
    assert len(errors) == 1 and "grant_process" in errors[0]


def test_grant_process_refuses_dead_or_unknown_pids():
    k = Kernel()
    with pytest.raises(KernelError, match="no live process 1"):
        k.grant_process(1, 1)


@pytest.mark.parametrize("pid", [[1], "1", None, 1.5, True, float("nan"), -1, 2**80])
def test_grant_process_and_restore_refuse_junk_pids(pid):
    got = []

    class Wire(Observer):
        def booted(self, kernel, init, boot):
            for call in (lambda: kernel.grant_process(pid, init.pid),
                         lambda: kernel.grant_process(init.pid, pid),
                         lambda: kernel.restore({}, init.image, parent=pid if pid is not None else [])):
                try:
                    call()
                except KernelError as e:
                    got.append(str(e))

    async def body(sys, _):
        return None

    k = Kernel(policy=AllowAll(), deterministic=True)
    k.add_observer(Wire())
    assert k.run(body).reason == NORMAL
    assert len(got) == 3 and all("no live" in g for g in got)


async def loop(sys, _):
    await sys.remember("kept")
    while True:
        await sys.recv()


@pytest.mark.live_only(reason="an observer restores a process at boot: an operator action no journal holds")
def test_restore_under_a_parent_carves_its_budget_from_it():
    k1 = Kernel(policy=AllowAll(), deterministic=True)
    snaps = {}

    async def keep(sys, _):
        pid, cap = await sys.spawn(loop, quota=Quota(tokens=50))
        await sys.sleep(1)
        snaps["s"] = k1.snapshot(pid)
        await sys.kill(cap)

    k1.run(keep)
    out = {}

    class RestoreAtBoot(Observer):
        def booted(self, kernel, init, boot):
            out["pid"] = kernel.restore(snaps["s"], loop, parent=init.pid)
            out["cap"] = kernel.grant_process(init.pid, out["pid"], Right.KILL | Right.MONITOR)

    async def parent(sys, _):
        left = (await sys.budget()).remaining["tokens"]
        await sys.kill(out["cap"])
        return left, str(await sys.waitpid(out["cap"])), (await sys.budget()).remaining["tokens"]

    k2 = Kernel(policy=AllowAll(), deterministic=True)
    k2.add_observer(RestoreAtBoot())
    left, reason, after = k2.run(parent, quota=Quota(tokens=100)).value
    assert (left, after) == (50, 100)  # the child's 50 came out of init's 100, and went back
    assert reason.startswith("killed")
    with pytest.raises(KernelError, match="no live parent process 99"):
        k2.restore(snaps["s"], loop, parent=99)
