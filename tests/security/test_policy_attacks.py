"""Adversarial cases for the policy engine, approvals and the flight recorder.

Each test is named for the attack it stops.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agentos.abi.errors import PolicyDenied
from agentos.abi.types import ExitKind
from agentos.audit import AuditUnavailable, FlightRecorder, SqliteAuditBackend, make_anchor, make_record, verify
from agentos.drivers.tools import ToolsDriver, tool
from agentos import RealClock
from agentos.policy import ApprovalChannel, PolicyLoadError, parse_policy
from agentos.policy.approval_io import ApprovalServer

from ..policy.helpers import TOOLS, _clear_calls, calls, engine, make_kernel, md  # noqa: F401 (fixtures)

POLICY = """
kernel: {version: "1.0", mode: strict}
policies:
  - name: sandbox-writes
    action: file_write
    effect: allow
    constraints:
      path: {path_under: /work/sandbox}
  - name: pay-gate
    action: pay
    effect: allow
    requires_approval: true
    approval_timeout: 2s
    constraints:
      amount: {min: 1, max: 100}
      to: {enum: [alice, bob]}
  - name: calc-rl
    action: calc
    effect: allow
    rate_limit: "3/minute"
  - name: sql-ro
    action: sql
    effect: allow
    mode: read_only
"""


async def pay_once(sys, args):  # type: ignore[no-untyped-def]
    h = await sys.open("tools")
    try:
        return await sys.read(h, {"tool": "pay", "args": args})
    except PolicyDenied as e:
        return f"denied: {e}"


@pytest.mark.parametrize("args", [
    {"amount": 5, "to": "bob", "approved": True},
    {"amount": 5, "to": "bob", "approval": "granted", "__approval__": {"id": "x", "approved": True}},
    {"amount": 5, "to": "bob", "approve": True, "by": "operator"},
])
def test_self_approval_through_arguments_is_ignored(args: dict[str, Any], calls) -> None:  # type: ignore[no-untyped-def]
    res = make_kernel(POLICY, approvals=ApprovalChannel(lambda r: None)).run(pay_once, args=args, grant=["tools"])
    # extra keys fail the tool's schema at best; the approval gate never opens on its own
    assert res.value.startswith("denied:") and "no approval within" in res.value
    assert calls == []


def test_self_approval_by_message_to_a_fake_approver(calls) -> None:  # type: ignore[no-untyped-def]
    async def fake_approver(sys, args):  # type: ignore[no-untyped-def]
        await sys.register("approvals")
        while True:
            msg = await sys.recv()
            await sys.send(msg.caps[0], {"approve": True, "id": msg.body})

    async def init(sys, args):  # type: ignore[no-untyped-def]
        await sys.spawn(fake_approver)
        await sys.sleep(1)
        cap = await sys.lookup("approvals")
        me = await sys.self_cap()
        await sys.send(cap, "whatever", caps=[me])
        await sys.recv()
        return await pay_once(sys, {"amount": 5, "to": "bob"})
    res = make_kernel(POLICY, approvals=ApprovalChannel(lambda r: None)).run(init, grant=["tools"])
    assert "no approval within" in res.value and calls == []


def test_agent_cannot_approve_itself_over_loopback_http(calls) -> None:  # type: ignore[no-untyped-def]
    """The agent has a tool that can make loopback HTTP requests; without the token it gets 401."""
    chan = ApprovalChannel(timeout_ms=300)
    box: dict[str, Any] = {}

    async def http_post(path: str) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", box["port"])
        body = b'{"approve": true}'
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{box['port']}\r\nAuthorization: Bearer agent-guess\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                     + body)
        await writer.drain()
        raw = await reader.read()
        writer.close()
        return int(raw.split()[1])

    net = tool("http_post")(http_post)
    k = make_kernel(policy=engine(POLICY.replace("policies:", "policies:\n  - {action: 'net.*', effect: allow}"),
                                  families=["net"]), approvals=chan, clock=RealClock())
    k.register_driver(ToolsDriver([net], name="net"))

    async def attacker(sys, args):  # type: ignore[no-untyped-def]
        _, cap = await sys.spawn(pay_once, args={"amount": 5, "to": "bob"}, caps=["tools"])
        while not chan.pending:
            await sys.sleep(1)
        h = await sys.open("net")
        statuses = [await sys.read(h, {"tool": "http_post", "args": {"path": f"/approvals/{rid}"}})
                    for rid in list(chan.pending)]  # even knowing the id
        return statuses, str(await sys.waitpid(cap))

    async def scenario() -> Any:
        server = await ApprovalServer(chan).start()
        box["port"] = server.port
        try:
            return await asyncio.wait_for(k.boot(attacker, grant=["tools", "net"]), 10)
        finally:
            await server.close()
    res = asyncio.run(scenario())
    assert res.value[0] == [401] and calls == []


def test_swapping_arguments_while_waiting_for_approval(calls) -> None:  # type: ignore[no-untyped-def]
    """A sibling mutates the shared args dict after the person approved amount 5."""
    shared: dict[str, Any] = {"amount": 5, "to": "bob"}
    seen: list[int] = []

    async def person(r):  # type: ignore[no-untyped-def]
        seen.append(r.args["amount"])
        for _ in range(3):
            await asyncio.sleep(0)
        return r.args["amount"] <= 10

    async def swapper(sys, args):  # type: ignore[no-untyped-def]
        await sys.sleep(0)
        shared["amount"] = 99

    async def init(sys, args):  # type: ignore[no-untyped-def]
        await sys.spawn(swapper)
        return await pay_once(sys, shared)
    res = make_kernel(POLICY, approvals=ApprovalChannel(person)).run(init, grant=["tools"])
    # the person was shown 5 (a snapshot) and approved it; the rerun saw 99, which needed
    # its own approval, shown as 99, and was refused
    assert seen == [5, 99]
    assert calls == [] and res.value.startswith("denied:") and "refused" in res.value


@pytest.mark.parametrize("path", [
    "/work/sandbox/../../etc/passwd", "/work/sandbox/./../sandbox2/x", "/work/sandboxevil/x",
    "../../etc/passwd", "/work/sandbox/a/../../../root/.ssh/id_rsa", "/work/sandbox\x00/../../etc",
    "//etc/passwd", "/etc/passwd",
])
def test_path_traversal_out_of_path_under(path: str) -> None:
    d = engine(POLICY).check(1, "tools.file_write", {"path": path})
    assert not d.allowed and d.rule == "sandbox-writes"


@pytest.mark.parametrize("value", [["/work/sandbox/a"], {"p": "/work/sandbox"}, None, 7])
def test_path_type_confusion(value: Any) -> None:
    assert not engine(POLICY).check(1, "tools.file_write", {"path": value}).allowed


@pytest.mark.parametrize("amount, to", [(True, "bob"), (1000, "bob"), (float("inf"), "bob"), (float("nan"), "bob"),
                                        ("5", "bob"), (5, "Bob"), (5, ["bob"]), (5, "bob\x00")])
def test_type_confusion_against_ranges_and_enums(amount: Any, to: Any) -> None:
    d = engine(POLICY).check(1, "tools.pay", {"amount": amount, "to": to})
    assert not d.allowed and d.effect == "kill" and d.rule == "pay-gate"


def test_enum_bool_is_not_one() -> None:
    e = engine('kernel: {version: "1.0", mode: strict}\npolicies:\n  - action: calc\n    effect: allow\n'
               '    constraints:\n      x: {enum: [1, 2]}')
    assert e.check(1, "tools.calc", {"x": 1}).allowed
    assert not e.check(1, "tools.calc", {"x": True}).allowed
    assert not e.check(1, "tools.calc", {"x": 1.0}).allowed


def test_rate_limit_evasion_by_spawning_children(calls) -> None:  # type: ignore[no-untyped-def]
    async def child(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        return await sys.read(h, {"tool": "calc", "args": {"x": 1}})

    async def init(sys, args):  # type: ignore[no-untyped-def]
        caps = [(await sys.spawn(child, caps=["tools"]))[1] for _ in range(6)]
        return [str(await sys.waitpid(c)) for c in caps]
    res = make_kernel(POLICY).run(init, grant=["tools"])
    assert res.value.count("normal") == 3 and res.value.count("policy(calc-rl)") == 3
    assert len(calls) == 3


def test_probing_with_check_policy_cannot_drain_anothers_rate_limit(calls) -> None:  # type: ignore[no-untyped-def]
    async def prober(sys, args):  # type: ignore[no-untyped-def]
        return [(await sys.check_policy("tools.calc", {"x": 1})).allowed for _ in range(50)]

    async def init(sys, args):  # type: ignore[no-untyped-def]
        _, cap = await sys.spawn(prober)
        await sys.waitpid(cap)
        h = await sys.open("tools")
        return [await sys.read(h, {"tool": "calc", "args": {"x": i}}) for i in range(3)]
    assert make_kernel(POLICY).run(init, grant=["tools"]).value == [0, 2, 4]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_swallowing_the_policy_kill_with_try_except(calls) -> None:  # type: ignore[no-untyped-def]
    async def stubborn(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        for _ in range(3):
            try:
                await sys.read(h, {"tool": "file_write", "args": {"path": "/etc/shadow"}})
            except BaseException:  # noqa: BLE001
                pass
        await sys.read(h, {"tool": "calc", "args": {"x": 1}})
        return "still here"
    res = make_kernel(POLICY).run(stubborn, grant=["tools"])
    assert res.reason.kind is ExitKind.POLICY and res.value is None and calls == []


def test_action_name_case_games_fall_to_default_deny() -> None:
    e = engine(POLICY)
    for action in ("tools.File_Write", "tools.file_write ", "tools.file_write\x00", "TOOLS.file_write"):
        d = e.check(1, action, {"path": "/work/sandbox/x"})
        assert not d.allowed and d.rule == "default-deny"


@pytest.mark.parametrize("q", ["SELECT 1; DROP TABLE users", "DELETE FROM users", "/* SELECT */ DELETE FROM t",
                               "", None])
def test_read_only_bypass_attempts(q: Any) -> None:
    k = make_kernel(POLICY)
    assert not k.policy.check(1, "tools.sql", {"q": q}).allowed


@pytest.mark.parametrize("typo", ["efect: deny", "actoin: file_write", "constraint:\n      path: {path_under: /x}"])
def test_typo_in_policy_cannot_silently_weaken_it(typo: str) -> None:
    text = md(POLICY + "  - name: extra\n    action: calc\n    " + typo + "\n")
    with pytest.raises(PolicyLoadError):
        parse_policy(text, path="security.md")


def test_rewriting_history_with_a_recomputed_chain(tmp_path: Path) -> None:
    """The attacker rewrites every record and the anchor, consistently, under a key of their own."""
    rec = FlightRecorder.open(tmp_path, key=b"R" * 32)
    for i in range(4):
        rec.write_ahead(1, "action", {"action": "tools.pay", "args": {"amount": i}})
    rec.close()
    b = SqliteAuditBackend(tmp_path, "os")
    evil = b"E" * 32
    prev = "0" * 64
    rows = []
    for r in list(b.audit_records()):
        data = r.data.replace('"amount":3', '"amount":0')
        fr = make_record(evil, r.seq, r.time, r.wall, r.pid, r.kind, data, prev)
        rows.append(fr)
        prev = fr.mac
    b.db.execute("DELETE FROM audit")
    b.append_audit(rows)
    b.write_anchor(make_anchor(evil, len(rows), prev))
    report = verify(b.audit_records(), b.read_anchor(), b"R" * 32)
    b.close()
    assert not report.ok and "anchor" in report.reason


def test_unaudited_action_is_impossible_when_the_log_cannot_be_written(tmp_path: Path, calls) -> None:  # type: ignore[no-untyped-def]
    """If the write-ahead record cannot be made durable, the action does not run."""
    class Broken:
        def append_audit(self, records: Any) -> None:
            raise OSError("disk full")

        def audit_records(self, start: int = 0) -> Any:
            return iter(())

        def read_anchor(self) -> None:
            return None

        def write_anchor(self, a: Any) -> None:
            raise OSError("disk full")

    rec = FlightRecorder(Broken(), b"B" * 32)

    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        try:
            return await sys.read(h, {"tool": "calc", "args": {"x": 1}})
        except AuditUnavailable as e:
            return e
    res = make_kernel(POLICY, audit=rec).run(main, grant=["tools"])
    assert isinstance(res.value, AuditUnavailable) and "disk full" in str(res.value) and calls == []
    assert json.loads(rec.pending[0].data)["action"] == "tools.calc"   # kept for a retry, not lost


def test_tools_list_is_not_a_backdoor() -> None:
    assert not engine(POLICY).check(1, "tools.list", {}).allowed
    assert TOOLS
