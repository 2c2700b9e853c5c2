"""Supervisors: one_for_one, one_for_all, rest_for_one, restart kinds and intensity."""
from __future__ import annotations

import pytest

from agentos.userland import ChildSpec, SupervisorSpec, supervisor, which_children
from tests.support.boot import boot

starts: list[str] = []


async def crashes_once(sys, args):
    starts.append(args)
    if starts.count(args) == 1:
        await sys.sleep(10)
        raise RuntimeError(f"{args} fails on its first run")
    await sys.recv()


async def steady(sys, args):
    starts.append(args)
    await sys.recv()


async def always_crash(sys, args):
    starts.append(args)
    await sys.sleep(1)
    raise RuntimeError("again")


def _run(spec, wait=100):
    starts.clear()
    out = {}

    async def init(sys, args):
        _, sup = await sys.spawn(supervisor, args=spec, caps=["spawn"])
        await sys.sleep(wait)
        out["children"] = await which_children(sys, sup)
        await sys.term(sup)
        out["sup"] = str(await sys.waitpid(sup))

    k, res = boot(init)
    return k, out


@pytest.mark.parametrize("strategy,expected", [
    ("one_for_one", ["a", "b", "c", "b"]),
    ("one_for_all", ["a", "b", "c", "a", "b", "c"]),
    ("rest_for_one", ["a", "b", "c", "b", "c"]),
])
def test_strategies_restart_the_right_children(strategy, expected):
    spec = SupervisorSpec([ChildSpec("a", steady, args="a"), ChildSpec("b", crashes_once, args="b"),
                           ChildSpec("c", steady, args="c")], strategy=strategy)
    k, out = _run(spec)
    assert starts == expected
    assert [name for name, _ in out["children"]] == ["a", "b", "c"]
    assert all(pid is not None for _, pid in out["children"])
    assert out["sup"] == "normal"
    restarts = [e for e in k.events.events() if e.kind == "log" and e.data[1].startswith("restarting")]
    assert len(restarts) == 1


def test_restart_intensity_makes_the_supervisor_give_up_and_take_children_down():
    spec = SupervisorSpec([ChildSpec("ok", steady, args="ok"), ChildSpec("bad", always_crash, args="bad")],
                          intensity=3, period_ms=1000)
    starts.clear()
    out = {}

    async def init(sys, args):
        _, sup = await sys.spawn(supervisor, args=spec, caps=["spawn"])
        out["sup"] = str(await sys.waitpid(sup))

    k, _ = boot(init)
    assert starts.count("bad") == 4  # first run + 3 restarts, then the 4th failure is one too many
    assert out["sup"].startswith("fault(restart intensity exceeded")
    assert not k.procs


def test_transient_and_temporary_children():
    async def finishes(sys, args):
        starts.append(args)

    spec = SupervisorSpec([ChildSpec("t", finishes, args="transient", restart="transient"),
                           ChildSpec("x", always_crash, args="temporary", restart="temporary")])
    _run(spec, wait=50)
    assert starts.count("transient") == 1 and starts.count("temporary") == 1


def test_bad_specs_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="strategy must be one of"):
        SupervisorSpec([], strategy="all_for_none")
    with pytest.raises(ValueError, match="restart must be one of"):
        ChildSpec("a", steady, restart="sometimes")
    with pytest.raises(ValueError, match="names must be unique"):
        SupervisorSpec([ChildSpec("a", steady), ChildSpec("a", steady)])
