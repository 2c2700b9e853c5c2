"""Tools registered at run time as Python source run in the process sandbox, whatever
their manifest says: a child OS process with no syscalls, killed when the call ends."""
from __future__ import annotations

import os

import pytest

from agentos import AllowAll, Kernel
from agentos.abi.errors import DriverError, DriverTimeout
from agentos.services import ToolRegistry, install_registry

from .tools import ADD, PY_PURE, host_tools

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the process sandbox needs pidfds")


def run(init, registry=None):  # type: ignore[no-untyped-def]
    k = Kernel(deterministic=True, policy=AllowAll())
    reg = install_registry(k, registry if registry is not None else ToolRegistry(host_tools()))
    return k, reg, k.run(init, grant=["registry"])


def register_and_call(manifest, args):  # type: ignore[no-untyped-def]
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        desc = await sys.write(h, {"op": "register", "manifest": manifest})
        try:
            out = await sys.read(h, {"tool": manifest["name"], "args": args})
        except DriverError as e:  # ToolError, DriverTimeout
            out = f"{type(e).__name__}: {e}"
        return desc["tier"], out, (await sys.budget()).used["tool_calls"]
    return init


SNOOP = """
import os, sys

def run(a, b):
    return {"sum": a + b, "pid": os.getpid(), "kernel_loaded": "agentos" in sys.modules}
"""


def test_tool_registered_at_run_time_as_pure_runs_in_a_sandboxed_child_process() -> None:
    manifest = {**PY_PURE, "source": {"code": SNOOP, "entry": "run"}}  # risk pure, driver "tools"
    k, reg, res = run(register_and_call(manifest, {"a": 2, "b": 3}))
    tier, out, calls = res.value
    assert tier == "sandbox" and calls == 2  # the registration and the call
    assert out["sum"] == 5
    assert out["pid"] != os.getpid()          # not this (the kernel's) OS process
    assert out["kernel_loaded"] is False      # an interpreter that never imported agentos
    assert "pyadd" not in reg.in_kernel.tools
    owner, child_pid, _uid = reg.sandbox().history[-1]
    assert owner == 1 and child_pid != os.getpid()
    assert not reg.sandbox().live             # the child is gone once the call returned


REACH = """
import sys

async def run(a, b):
    frame = sys._getframe(1)
    while frame is not None and "sys" not in frame.f_locals:
        frame = frame.f_back
    ksys = frame.f_locals["sys"]
    try:
        await ksys.open("registry")
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
    return "opened the registry from inside a tool"
"""


def test_sandboxed_tool_reaching_for_syscalls_is_refused() -> None:
    manifest = {**PY_PURE, "name": "reach", "source": {"code": REACH, "entry": "run"}}
    _k, _reg, res = run(register_and_call(manifest, {"a": 1, "b": 1}))
    tier, out, _calls = res.value
    assert tier == "sandbox"
    assert out.startswith("SandboxViolation") and "no syscalls" in out


SPIN = """
def run(a, b):
    while True:
        pass
"""


@pytest.mark.live_only(reason="the sandbox timeout is wall-clock time; its outcome is journaled, "
                              "but the run waits on a real second")
def test_hung_sandboxed_tool_times_out_and_is_charged_its_reservation() -> None:
    manifest = {**PY_PURE, "name": "spin", "source": {"code": SPIN, "entry": "run"}}
    reg = ToolRegistry(host_tools(), sandbox_timeout_s=1.0)
    _k, reg, res = run(register_and_call(manifest, {"a": 1, "b": 1}), reg)
    tier, out, calls = res.value
    assert tier == "sandbox" and out.startswith(DriverTimeout.__name__) and calls == 2
    assert not reg.sandbox().live


def test_host_tool_of_risk_untrusted_code_runs_in_the_sandbox_too() -> None:
    code = {**ADD, "name": "hadd", "risk": "untrusted_code", "source": {"code": SNOOP, "entry": "run"}}
    from agentos.services import HostTool

    reg = ToolRegistry([*host_tools(), HostTool(code)])

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        return await sys.read(h, {"tool": "hadd", "args": {"a": 1, "b": 2}})

    _k, reg, res = run(init, reg)
    assert res.value["sum"] == 3 and res.value["kernel_loaded"] is False
    assert reg.entries["hadd"].tier.value == "sandbox"


def test_failing_sandboxed_tool_is_a_tool_error() -> None:
    bad = {**PY_PURE, "name": "boom", "source": {"code": "def run(a, b):\n    raise ValueError('no')\n",
                                                 "entry": "run"}}
    _k, _reg, res = run(register_and_call(bad, {"a": 1, "b": 1}))
    assert res.value[1].startswith("ToolError") and "ValueError" in res.value[1]


@pytest.mark.live_only(reason="the caller is killed while its tool runs in a child OS process: when the "
                              "kill lands relative to the child is wall-clock time")
def test_killing_the_caller_kills_its_tool_child() -> None:
    manifest = {**PY_PURE, "name": "spin", "source": {"code": SPIN, "entry": "run"}}

    async def caller(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        await sys.read(h, {"tool": "spin", "args": {"a": 1, "b": 1}})

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        await sys.write(h, {"op": "register", "manifest": manifest})
        _p, c = await sys.spawn(caller, caps=["registry"])
        await sys.sleep(200)
        await sys.kill(c)
        return str(await sys.waitpid(c))

    k = Kernel(policy=AllowAll())  # a real clock: the sleep lets the child start
    reg = install_registry(k, ToolRegistry(host_tools(), sandbox_timeout_s=60.0))
    res = k.run(init, grant=["registry"])
    assert "killed" in res.value, res.value
    owner, child_pid, _uid = reg.sandbox().history[-1]
    assert owner == 2 and not reg.sandbox().live
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)  # reaped: no such process


class _Said:
    def __init__(self, value: object) -> None:
        self.value = value


class _ScriptedChild:
    """A sandbox child whose channel carries whatever the tool's code wrote to it."""

    def __init__(self, *said: object) -> None:
        self._said = list(said)
        self.sent: list[object] = []

    async def next(self) -> _Said:
        return _Said(self._said.pop(0))

    def send(self, msg: object) -> None:
        self.sent.append(msg)


HELLO = {"t": "hello", "net": "private", "seccomp": "on", "fs": "ro"}


@pytest.mark.parametrize("said", [
    ["not a message"], [HELLO, ["exit", True]], [HELLO, 42], [{"t": "dead", "stderr": ["x"], "status": {"a": 1}}],
    [HELLO, {"t": "gone", "stderr": "x" * 10_000_000, "status": 7}],
])
def test_a_sandbox_child_that_breaks_the_protocol_is_a_tool_error(said: list) -> None:  # type: ignore[type-arg]
    import asyncio

    from agentos.abi.errors import ToolError
    from agentos.services.tiers import _converse

    with pytest.raises(ToolError) as ei:
        asyncio.run(_converse(_ScriptedChild(*said), "evil", True))
    assert "tool 'evil'" in str(ei.value) and len(str(ei.value)) < 700
