"""SIGSTOP means stopped: an action that was waiting on its audit record or on an approval
must not run while its process is stopped, even when the record becomes durable or the
approval arrives in the meantime. It runs at SIGCONT; a kill before that means never."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agentos import Kernel, RealClock
from agentos.audit import FlightRecorder
from agentos.drivers.tools import ToolsDriver, tool
from agentos.policy import ApprovalChannel, PolicyEngine

KEY = b"k" * 32
pytestmark = pytest.mark.live_only(reason="a live group-commit recorder and a person's approval")


def _audited_kernel(tmp_path: Path, calls: list[int]) -> tuple[Kernel, FlightRecorder]:
    @tool()
    def work(n: int) -> int:
        calls.append(n)
        return n

    pol = "```yaml\nkernel: {version: '1.0', mode: strict}\npolicies:\n  - {action: work, effect: allow}\n```\n"
    rec = FlightRecorder.open(tmp_path, key=KEY)
    k = Kernel(policy=PolicyEngine.from_text(pol, path="s.md"), audit=rec)   # live: group commit
    k.register_driver(ToolsDriver([work]))
    return k, rec


async def _worker(sys: Any, n: int) -> int:
    h = await sys.open("tools")
    return await sys.read(h, {"tool": "work", "args": {"n": n}})


async def _until(sys: Any, cond: Any, limit_ms: float = 10_000) -> None:
    """Poll on the kernel clock; a generous limit only to catch a hang."""
    t0 = await sys.now()
    while not cond():
        if await sys.now() - t0 > limit_ms:
            raise AssertionError("condition never held")
        await sys.sleep(5)


def test_a_durable_record_does_not_run_the_action_of_a_stopped_process(tmp_path: Path) -> None:
    calls: list[int] = []
    k, rec = _audited_kernel(tmp_path, calls)

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(_worker, args=7, caps=["tools"])
        await sys.yield_()                       # the worker asks, writes ahead and parks
        await sys.suspend(cap)                   # SIGSTOP while its record is being committed
        await _until(sys, lambda: rec.durable >= 1)
        await sys.sleep(50)
        while_stopped = list(calls)
        await sys.resume(cap)
        reason = await sys.waitpid(cap)
        return while_stopped, str(reason), list(calls)

    while_stopped, reason, after = k.run(init, grant=["tools"]).value
    rec.close()
    assert while_stopped == []                  # the action never ran while stopped
    assert reason == "normal" and after == [7]  # and ran exactly once after SIGCONT


def test_killing_a_stopped_process_with_a_durable_record_means_the_action_never_runs(
        tmp_path: Path) -> None:
    calls: list[int] = []
    k, rec = _audited_kernel(tmp_path, calls)

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(_worker, args=9, caps=["tools"])
        await sys.yield_()
        await sys.suspend(cap)
        await _until(sys, lambda: rec.durable >= 1)
        await sys.kill(cap)
        reason = await sys.waitpid(cap)
        await sys.sleep(20)
        return str(reason), await sys.budget()

    reason, _budget = k.run(init, grant=["tools"]).value
    rec.close()
    assert reason.startswith("killed") and calls == []


def _approval_kernel(calls: list[int]) -> tuple[Kernel, ApprovalChannel]:
    """A kernel whose `pay` tool needs an approval nobody gives by callback."""
    @tool()
    def pay(amount: int) -> str:
        calls.append(amount)
        return f"paid {amount}"

    pol = ("kernel: {version: '1.0', mode: strict}\npolicies:\n"
           "  - {name: gate, action: pay, effect: allow, requires_approval: true}\n")
    chan = ApprovalChannel(lambda r: None, timeout_ms=60_000)
    k = Kernel(policy=PolicyEngine.from_text(pol, path="s.yaml"), approvals=chan, clock=RealClock())
    k.register_driver(ToolsDriver([pay]))
    return k, chan


async def _payer(sys: Any, amount: int) -> Any:
    h = await sys.open("tools")
    return await sys.read(h, {"tool": "pay", "args": {"amount": amount}})


async def _stopped_and_approved(sys: Any, chan: ApprovalChannel) -> Any:
    """Spawn a payer, stop it while its approval is pending, then approve it."""
    _, cap = await sys.spawn(_payer, args=3, caps=["tools"])
    await _until(sys, lambda: len(chan.pending) == 1)
    await sys.suspend(cap)
    (rid,) = list(chan.pending)
    assert chan.answer(rid, True, by="operator")
    return cap


def test_an_approval_that_arrives_while_stopped_acts_only_after_sigcont() -> None:
    calls: list[int] = []
    k, chan = _approval_kernel(calls)

    async def init(sys: Any, args: Any) -> Any:
        cap = await _stopped_and_approved(sys, chan)
        await sys.sleep(30)
        while_stopped = list(calls)
        await sys.resume(cap)
        reason = await sys.waitpid(cap)
        return while_stopped, str(reason), list(calls)

    while_stopped, reason, after = k.run(init, grant=["tools"]).value
    assert while_stopped == []
    assert reason == "normal" and after == [3]


def test_an_approved_action_of_a_stopped_process_killed_before_sigcont_never_runs() -> None:
    calls: list[int] = []
    k, chan = _approval_kernel(calls)

    async def init(sys: Any, args: Any) -> Any:
        cap = await _stopped_and_approved(sys, chan)
        await sys.kill(cap)
        reason = await sys.waitpid(cap)
        await sys.sleep(20)
        return str(reason), dict(chan.grants)

    reason, grants = k.run(init, grant=["tools"]).value
    assert reason.startswith("killed") and calls == [] and grants == {}
