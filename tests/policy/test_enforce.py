"""The kernel chokepoint with a real policy: kill, log, audit, check_policy, write-ahead."""
from __future__ import annotations

import json

import pytest

from agentos import Kernel
from agentos.abi.errors import PolicyDenied
from agentos.abi.types import ExitKind
from agentos.audit import FlightRecorder, SqliteAuditBackend
from agentos.drivers.kv import KVDriver
from agentos.drivers.tools import ToolsDriver, tool

from .helpers import make_kernel

POLICY = """
kernel: {version: "1.0", mode: %s}
policies:
  - name: calc-range
    action: calc
    effect: allow
    constraints:
      x: {min: 0, max: 10}
  - name: calc-rl
    action: calc
    effect: allow
    rate_limit: "2/minute"
"""


async def calls_calc(sys, xs):  # type: ignore[no-untyped-def]
    h = await sys.open("tools")
    out = []
    for x in xs:
        out.append(await sys.read(h, {"tool": "calc", "args": {"x": x}}))
    return out


def test_strict_violation_kills_with_sigpolicy_naming_the_rule(calls, recorder) -> None:  # type: ignore[no-untyped-def]
    k = make_kernel(POLICY % "strict", audit=recorder)
    res = k.run(calls_calc, args=[1, 50], grant=["tools"])
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "calc-range"
    assert calls == [("calc", 1)]            # the violating call never reached the tool
    kinds = [r.kind for r in recorder.records()]
    assert kinds == ["action", "decision", "signal"]
    assert json.loads(list(recorder.records())[2].data) == ["SIGPOLICY", 0]


def test_a_violation_cannot_be_caught(calls) -> None:  # type: ignore[no-untyped-def]
    async def catcher(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        try:
            await sys.read(h, {"tool": "calc", "args": {"x": 99}})
        except BaseException:  # noqa: BLE001 - the point: nothing to catch
            return "survived"
        return "survived"
    res = make_kernel(POLICY % "strict").run(catcher, grant=["tools"])
    assert res.reason.kind is ExitKind.POLICY and res.value is None


def test_rate_limit_violation_kills(calls) -> None:  # type: ignore[no-untyped-def]
    res = make_kernel(POLICY % "strict").run(calls_calc, args=[1, 2, 3], grant=["tools"])
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "calc-rl"
    assert len(calls) == 2


def test_permissive_logs_and_allows(calls, recorder) -> None:  # type: ignore[no-untyped-def]
    k = make_kernel(POLICY % "permissive", audit=recorder)
    res = k.run(calls_calc, args=[1, 50, 3, 4], grant=["tools"])
    assert res.reason.kind is ExitKind.NORMAL and res.value == [2, 100, 6, 8]
    recs = [json.loads(r.data) for r in recorder.records()]
    assert [r["effect"] for r in recs] == ["allow", "log", "allow", "log"]
    assert recs[1]["extra"]["violation"] == "calc-range"


def test_audit_mode_logs_only(calls, recorder) -> None:  # type: ignore[no-untyped-def]
    k = make_kernel(POLICY % "audit", audit=recorder)
    res = k.run(calls_calc, args=[50, 60, 70], grant=["tools"])
    assert res.value == [100, 120, 140]
    assert all(json.loads(r.data)["allowed"] for r in recorder.records())


def test_strict_kernel_without_policy_refuses_tools_and_says_so(calls) -> None:  # type: ignore[no-untyped-def]
    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        try:
            await sys.read(h, {"tool": "calc", "args": {"x": 1}})
        except PolicyDenied as e:
            return str(e)
    res = make_kernel(None).run(main, grant=["tools"])
    assert "no policy loaded" in res.value and calls == []


def test_check_policy_has_no_side_effect(calls, recorder) -> None:  # type: ignore[no-untyped-def]
    async def main(sys, args):  # type: ignore[no-untyped-def]
        answers = [await sys.check_policy("tools.calc", {"x": 1}) for _ in range(5)]
        bad = await sys.check_policy("tools.calc", {"x": 99})
        h = await sys.open("tools")
        ran = [await sys.read(h, {"tool": "calc", "args": {"x": 1}}) for _ in range(2)]
        return [a.allowed for a in answers], bad.allowed, bad.rule, ran
    k = make_kernel(POLICY % "strict", audit=recorder)
    res = k.run(main, grant=["tools"])
    # five dry runs took no rate slot: both real calls still fit in 2/minute
    assert res.value == ([True] * 5, False, "calc-range", [2, 2])
    assert res.reason.kind is ExitKind.NORMAL
    assert [r.kind for r in recorder.records()] == ["action", "action"]   # nothing for the dry runs


def test_action_record_is_durable_before_the_tool_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    seen: list[list[str]] = []

    @tool()
    def peek(x: int) -> int:
        # another connection, as a crash-recovery reader would see the log
        b = SqliteAuditBackend(tmp_path, "os")
        seen.append([json.loads(r.data).get("args", {}).get("x") for r in b.audit_records()])
        b.close()
        return x

    pol = 'kernel: {version: "1.0", mode: strict}\npolicies:\n  - {action: peek, effect: allow}'
    from .helpers import engine
    rec = FlightRecorder.open(tmp_path, key=b"s" * 32)
    k = Kernel(deterministic=True, policy=engine(pol), audit=rec)
    k.register_driver(ToolsDriver([peek]))

    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        return [await sys.read(h, {"tool": "peek", "args": {"x": i}}) for i in (7, 8)]
    assert k.run(main, grant=["tools"]).value == [7, 8]
    assert seen == [[7], [7, 8]]
    assert rec.verify().ok


def test_kv_actions_are_checked_too() -> None:
    pol = 'kernel: {version: "1.0", mode: strict}\npolicies:\n  - {action: kv.get, effect: allow}'
    from .helpers import engine
    k = Kernel(deterministic=True, policy=engine(pol))
    k.register_driver(KVDriver())

    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("kv")
        v = await sys.read(h, {"op": "get", "key": "a"})
        await sys.write(h, {"op": "set", "key": "a", "value": 1})
        return v
    res = k.run(main, grant=["kv"])
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "default-deny"


def test_other_processes_keep_running_after_a_kill(calls) -> None:  # type: ignore[no-untyped-def]
    async def bad(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        await sys.read(h, {"tool": "calc", "args": {"x": 1000}})

    async def init(sys, args):  # type: ignore[no-untyped-def]
        _, cap = await sys.spawn(bad, caps=["tools"])
        reason = await sys.waitpid(cap)
        h = await sys.open("tools")
        return str(reason), await sys.read(h, {"tool": "calc", "args": {"x": 2}})
    res = make_kernel(POLICY % "strict").run(init, grant=["tools"])
    assert res.value == ("policy(calc-range)", 4)


@pytest.mark.parametrize("mode", ["strict", "permissive", "audit"])
def test_every_decision_is_in_the_event_log(mode: str) -> None:
    k = make_kernel(POLICY % mode)
    k.run(calls_calc, args=[1], grant=["tools"])
    assert [e.data for e in k.events.events(kind="policy")] == [("tools.calc", True, "calc-range")]


def test_permissive_violation_is_an_event() -> None:
    k = make_kernel(POLICY % "permissive")
    k.run(calls_calc, args=[50], grant=["tools"])
    [ev] = k.events.events(kind="policy_violation")
    assert ev.data[0] == "tools.calc" and ev.data[1] == "calc-range" and "above the maximum" in ev.data[2]
