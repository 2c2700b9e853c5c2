"""The reference monitor: a sandboxed agent's syscalls go through the real kernel dispatch."""
from __future__ import annotations

import pytest

from agentos import AllowAll, Decision, Journal, Kernel
from agentos.abi.types import Quota
from agentos.drivers.tools import ToolsDriver, tool
from agentos.sandbox import SandboxLimits, install, sandbox, to_wire

from sbx import run_sandboxed


@tool()
def add(a: int, b: int) -> int:
    return a + b


def test_round_trip_of_every_common_syscall_shape():
    code = '''
async def main(sys, args):
    me = await sys.pid()
    cap = await sys.self_cap()
    await sys.send(cap, {"n": args["n"]}, corr="c1")
    msg = await sys.recv(timeout=100)
    seg = await sys.remember("the sky is blue", tokens=4)
    found = await sys.recall("sky", 1)
    b = await sys.budget()
    await sys.log("info", "result", me=me, body=msg["body"], corr=msg["corr"], seg=seg,
                  found=found[0]["body"], has_budget="remaining" in b)
    return "ok"
'''
    out = run_sandboxed(code, args={"n": 7})
    assert out.reason == "normal", out.reason
    r = out.result
    assert r["me"] == 2 and r["body"] == {"n": 7} and r["corr"] == "c1"
    assert r["found"] == "the sky is blue" and r["has_budget"]


def test_syscall_outside_the_allow_list_is_refused_with_a_typed_error():
    code = '''
async def main(sys, args):
    async def other(s, a):
        pass
    try:
        await sys.spawn("anything")
    except Exception as e:
        await sys.log("info", "result", type=type(e).__name__, text=str(e))
'''
    out = run_sandboxed(code)
    assert out.result["type"] == "SandboxViolation", out.result
    assert "'spawn' is not on this sandbox's allow-list" in out.result["text"]
    refused = [e for e in out.kernel.events.events(kind="log") if "allow-list" in e.data[1]]
    assert refused


def test_forged_capability_refs_are_cap_errors():
    code = '''
async def main(sys, args):
    errs = []
    for ref in (1, 2, 12345678901234, -1):
        try:
            await sys.send(ref, "hi")
        except Exception as e:
            errs.append(type(e).__name__)
    await sys.log("info", "result", errs=errs)
'''
    out = run_sandboxed(code)
    assert out.result["errs"] == ["CapError"] * 4


def test_device_calls_need_the_device_capability():
    code = '''
async def main(sys, args):
    try:
        await sys.open("tools")
    except Exception as e:
        await sys.log("info", "result", type=type(e).__name__)
'''
    k = Kernel(policy=AllowAll())
    out = run_sandboxed(code)
    assert out.result["type"] == "CapError"


def _tool_kernel(policy=None):
    k = Kernel(policy=policy or AllowAll())
    install(k)
    k.register_driver(ToolsDriver([add]))
    return k


TOOL_LOOP = '''
async def main(sys, args):
    h = await sys.open("tools")
    total = 0
    for i in range(args):
        total = await sys.read(h, {"tool": "add", "args": {"a": total, "b": 1}})
        await sys.log("info", "result", total=total)
    return total
'''


def test_forwarded_tool_calls_are_charged_and_a_quota_kill_ends_the_child():
    k = _tool_kernel()

    async def init(sys, _):
        _p, cap = await sys.spawn(sandbox(TOOL_LOOP), args=10, caps=["sandbox", "tools"],
                                  quota=Quota(tool_calls=3))
        return str(await sys.waitpid(cap))
    res = k.run(init, grant=["sandbox", "tools"])
    assert res.value == "quota(tool_calls)"
    totals = [e.data[2]["total"] for e in k.events.events(kind="log") if e.data[1] == "result"]
    assert totals == [1, 2, 3]


class DenyTools:
    def __init__(self, effect):
        self.effect = effect

    def check(self, pid, action, args, *, dry_run=False):
        if action.startswith("tools."):
            return Decision(False, "no-tools", "tools are off", effect=self.effect)
        return Decision(True, "allow")


def test_policy_deny_reaches_the_child_as_policy_denied():
    k = _tool_kernel(DenyTools("raise"))
    code = '''
async def main(sys, args):
    h = await sys.open("tools")
    try:
        await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 2}})
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
'''
    async def init(sys, _):
        _p, cap = await sys.spawn(sandbox(code), caps=["sandbox", "tools"])
        return str(await sys.waitpid(cap))
    assert k.run(init, grant=["sandbox", "tools"]).value == "normal"
    pol = [e for e in k.events.events(kind="policy") if e.data[0] == "tools.add"]
    assert pol and pol[0].data[1] is False


def test_sigpolicy_kills_the_monitor_and_its_child():
    k = _tool_kernel(DenyTools("kill"))
    async def init(sys, _):
        _p, cap = await sys.spawn(sandbox(TOOL_LOOP), args=1, caps=["sandbox", "tools"])
        return str(await sys.waitpid(cap))
    assert k.run(init, grant=["sandbox", "tools"]).value == "policy(no-tools)"
    drv = k.drivers["sandbox"]
    assert not drv.live


def test_protocol_forgery_on_the_private_fd_kills_the_child():
    code = '''
import os
async def main(sys, args):
    await sys.pid()
    os.write(4, b"this is not json\\n")
    await sys.pid()
'''
    out = run_sandboxed(code)
    assert "protocol violation (a frame that is not JSON" in out.reason, out.reason
    assert out.sibling == "normal"


def test_oversize_request_line_kills_the_child():
    code = '''
async def main(sys, args):
    await sys.log("info", "x" * 200000)
'''
    out = run_sandboxed(code, limits=SandboxLimits(max_line=65536))
    assert "request line over 65536 bytes" in out.reason, out.reason


def test_print_does_not_corrupt_the_protocol():
    code = '''
async def main(sys, args):
    print("hello on stdout")
    return await sys.pid()
'''
    assert run_sandboxed(code).reason == "normal"


def test_exception_in_sandboxed_code_is_a_fault_naming_it():
    out = run_sandboxed("async def main(sys, args):\n    raise KeyError('boom')\n")
    assert out.reason == "fault(sandboxed code raised KeyError: 'boom')"


def test_awaiting_a_non_syscall_is_an_error_in_the_child():
    code = '''
import types

@types.coroutine
def bare_yield():
    yield            # what asyncio.sleep(0) does

async def main(sys, args):
    await bare_yield()
'''
    out = run_sandboxed(code)
    assert "awaits only `sys` calls" in out.reason


def test_isolation_is_required_by_default():
    out = run_sandboxed("async def main(sys, args):\n    return 1\n", namespaces=False)
    assert "refusing to run it" in out.reason


def test_isolation_can_be_waived_explicitly():
    out = run_sandboxed("async def main(sys, args):\n    return 1\n", namespaces=False,
                        require_isolation=False)
    assert out.reason == "normal"


def test_bad_sandbox_arguments_are_refused_at_construction():
    with pytest.raises(ValueError, match="unknown syscalls"):
        sandbox("async def main(s, a): pass", allow={"pid", "format_disk"})
    with pytest.raises(SyntaxError):
        sandbox("def (:")
    with pytest.raises(ValueError, match="positive int"):
        SandboxLimits(cpu_s=0)


def test_sandboxed_run_replays_from_the_journal_without_a_child():
    code = '''
import random
async def main(sys, args):
    return await sys.send(sys.caps[1], random.random())
'''
    img = sandbox(code)

    async def init(sys, _):
        me = await sys.self_cap()
        _p, cap = await sys.spawn(img, caps=["sandbox", me])
        msg = await sys.recv()
        await sys.waitpid(cap)
        return msg.body

    k = Kernel(policy=AllowAll(), deterministic=True)
    drv = install(k)
    live = k.run(init, grant=["sandbox"]).value
    k2 = Kernel(policy=AllowAll(), deterministic=True, mode="replay", journal=Journal(k.journal.entries))
    drv2 = install(k2)
    assert k2.run(init, grant=["sandbox"]).value == live
    assert drv.started == 1 and drv2.started == 0


def test_to_wire_renders_kernel_types():
    from agentos.abi.types import Message, NORMAL, Signal
    assert to_wire(Message(3, b"\x00", (5,), "c")) == {"sender": 3, "body": {"$bytes": "AA=="}, "caps": [5],
                                                       "corr": "c", "deadline": None}
    assert to_wire(NORMAL) == "normal" and to_wire(Signal.SIGKILL) == 9
    assert to_wire((1, {2})) == [1, [2]]


def test_sandboxed_agent_uses_the_vfs_and_a_wasm_device_through_the_monitor():
    pytest.importorskip("wasmtime")
    from agentos.drivers.wasm import WasmDriver

    code = '''
async def main(sys, args):
    me = await sys.pid()
    await sys.vfs_write(f"/agent/{me}/mem/semantic/plan", {"step": 1})
    plan = await sys.vfs_read(f"/agent/{me}/mem/semantic/plan")
    try:
        await sys.vfs_read("/agent/1/mem/working")        # its parent's tree: no capability
        other = "read"
    except Exception as e:
        other = type(e).__name__
    h = await sys.open("wasm", {"wat": args})
    total = await sys.read(h, {"call": "add", "args": [40, 2]})
    await sys.log("info", "result", plan=plan, other=other, total=total)
'''
    k = Kernel(policy=AllowAll())
    install(k)
    k.register_driver(WasmDriver())
    wat = '(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))'

    async def init(sys, _):
        _p, cap = await sys.spawn(sandbox(code), args=wat, caps=["sandbox", "wasm"])
        return str(await sys.waitpid(cap))
    assert k.run(init, grant=["sandbox", "wasm"]).value == "normal"
    res = [e.data[2] for e in k.events.events(kind="log") if e.data[1] == "result"][0]
    assert res == {"plan": {"step": 1}, "other": "AccessDenied", "total": 42}
