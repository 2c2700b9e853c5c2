"""Approvals: callback, async callback, HTTP on loopback, prompt; timeouts deny."""
from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from agentos.abi.errors import PolicyDenied
from agentos.abi.types import ExitKind
from agentos import RealClock
from agentos.policy import ApprovalChannel
from agentos.policy.approval_io import ApprovalServer, PromptApprover

from .helpers import engine, make_kernel

POLICY = """
kernel: {version: "1.0", mode: strict}
policies:
  - name: pay-gate
    action: pay
    effect: allow
    requires_approval: true
    approval_timeout: 5s
  - name: calc
    action: calc
    effect: allow
"""


async def pays(sys, amounts):  # type: ignore[no-untyped-def]
    h = await sys.open("tools")
    out: list[Any] = []
    for a in amounts:
        try:
            out.append(await sys.read(h, {"tool": "pay", "args": {"amount": a}}))
        except PolicyDenied as e:
            out.append(f"denied: {e}")
    return out


def test_callback_approves_and_refuses(calls, recorder) -> None:  # type: ignore[no-untyped-def]
    seen: list[Any] = []

    def cb(r):  # type: ignore[no-untyped-def]
        seen.append((r.pid, r.action, r.args))
        return r.args["amount"] < 100
    k = make_kernel(POLICY, approvals=ApprovalChannel(cb), audit=recorder)
    res = k.run(pays, args=[5, 500], grant=["tools"])
    assert res.value[0] == "paid 5 to bob"
    assert res.value[1].startswith("denied:") and "refused" in res.value[1]
    assert calls == [("pay", 5)]
    assert seen == [(1, "tools.pay", {"amount": 5}), (1, "tools.pay", {"amount": 500})]
    kinds = [r.kind for r in recorder.records()]
    assert kinds == ["decision", "approval_request", "approval", "action",
                     "decision", "approval_request", "approval"]
    assert recorder.verify().ok


def test_no_answer_times_out_and_denies_on_the_kernel_clock(calls) -> None:  # type: ignore[no-untyped-def]
    k = make_kernel(POLICY, approvals=ApprovalChannel(lambda r: None))

    async def main(sys, args):  # type: ignore[no-untyped-def]
        t0 = await sys.now()
        out = await pays(sys, [5])
        return out, await sys.now() - t0
    out, waited = k.run(main, grant=["tools"]).value
    assert "no approval within 5000 ms" in out[0] and waited == 5000.0   # virtual time: instant
    assert calls == []


def test_without_a_channel_an_approval_rule_denies(calls) -> None:  # type: ignore[no-untyped-def]
    res = make_kernel(POLICY).run(pays, args=[1], grant=["tools"])
    assert "no approval channel" in res.value[0] and calls == []


def test_waiting_for_approval_does_not_block_other_processes(calls) -> None:  # type: ignore[no-untyped-def]
    order: list[str] = []

    async def slow_person(r):  # type: ignore[no-untyped-def]
        for _ in range(5):
            await asyncio.sleep(0)
        order.append("approved")
        return True

    async def busy(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        for i in range(3):
            await sys.read(h, {"tool": "calc", "args": {"x": i}})
            order.append(f"calc{i}")

    async def init(sys, args):  # type: ignore[no-untyped-def]
        _, cap = await sys.spawn(busy, caps=["tools"])
        out = await pays(sys, [7])
        await sys.waitpid(cap)
        return out
    k = make_kernel(POLICY, approvals=ApprovalChannel(slow_person))
    assert k.run(init, grant=["tools"]).value == ["paid 7 to bob"]
    assert order.index("calc2") < order.index("approved")


def test_changed_arguments_need_a_new_approval(calls) -> None:  # type: ignore[no-untyped-def]
    asked: list[int] = []

    def cb(r):  # type: ignore[no-untyped-def]
        asked.append(r.args["amount"])
        return True
    k = make_kernel(POLICY, approvals=ApprovalChannel(cb))
    assert k.run(pays, args=[1, 1, 2], grant=["tools"]).value == ["paid 1 to bob"] * 2 + ["paid 2 to bob"]
    assert asked == [1, 1, 2]          # each call asks: a grant is spent by the call it approved


def test_read_all_cannot_smuggle_an_approval_gated_call(calls) -> None:  # type: ignore[no-untyped-def]
    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        try:
            await sys.read_all(h, [{"tool": "calc", "args": {"x": 1}}, {"tool": "pay", "args": {"amount": 1}}])
        except PolicyDenied as e:
            return str(e)
    k = make_kernel(POLICY, approvals=ApprovalChannel(lambda r: True))
    assert "read_all cannot wait" in k.run(main, grant=["tools"]).value
    assert calls == []


def test_killed_while_waiting_drops_the_request(calls) -> None:  # type: ignore[no-untyped-def]
    chan = ApprovalChannel(lambda r: None, timeout_ms=60_000)

    async def waiter(sys, args):  # type: ignore[no-untyped-def]
        await pays(sys, [3])

    async def init(sys, args):  # type: ignore[no-untyped-def]
        _, cap = await sys.spawn(waiter, caps=["tools"])
        await sys.sleep(10)
        pending = len(chan.pending)
        await sys.kill(cap)
        return pending, str(await sys.waitpid(cap)), len(chan.pending), await sys.now()
    res = make_kernel(POLICY, approvals=chan).run(init, grant=["tools"])
    assert res.value[0] == 1 and res.value[1].startswith("killed") and res.value[2] == 0
    assert res.value[3] < 60_000 and calls == []


async def _http(port: int, method: str, path: str, token: str | None, body: Any = None,
                host: str | None = None) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"" if body is None else json.dumps(body).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n{auth}"
                 f"Content-Type: application/json\r\nConnection: close\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_http_endpoint_approves_with_the_operator_token(calls, recorder) -> None:  # type: ignore[no-untyped-def]
    chan = ApprovalChannel(timeout_ms=20_000)
    k = make_kernel(POLICY, approvals=chan, audit=recorder, clock=RealClock())

    async def scenario() -> tuple[Any, ...]:
        server = await ApprovalServer(chan).start()
        run = asyncio.ensure_future(k.boot(pays, args=[9], grant=["tools"]))
        while not chan.pending:
            await asyncio.sleep(0.001)
        no_token = await _http(server.port, "GET", "/approvals", None)
        wrong = await _http(server.port, "POST", f"/approvals/{next(iter(chan.pending))}", "guess", {"approve": True})
        rebound = await _http(server.port, "GET", "/approvals", server.token, host="evil.example")
        assert rebound[0] == 421
        listed = await _http(server.port, "GET", "/approvals", server.token)
        rid = listed[1]["pending"][0]["id"]
        bad_id = await _http(server.port, "POST", "/approvals/nope", server.token, {"approve": True})
        ok = await _http(server.port, "POST", f"/approvals/{rid}", server.token, {"approve": True})
        res = await asyncio.wait_for(run, 10)
        await server.close()
        return no_token[0], wrong[0], listed[1]["pending"][0]["action"], bad_id[0], ok[0], res
    no_token, wrong, action, bad_id, ok, res = asyncio.run(scenario())
    assert (no_token, wrong, bad_id, ok) == (401, 401, 404, 200)
    assert action == "tools.pay" and res.value == ["paid 9 to bob"] and calls == [("pay", 9)]
    approvals = [json.loads(r.data) for r in recorder.records() if r.kind == "approval"]
    assert approvals[0]["by"] == "http" and approvals[0]["approved"] is True


def test_http_server_refuses_a_non_loopback_address() -> None:
    import pytest
    with pytest.raises(ValueError, match="loopback"):
        ApprovalServer(ApprovalChannel(), host="0.0.0.0")


def test_prompt_approver_asks_a_person(calls) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    answers = iter(["y", "no"])
    chan = ApprovalChannel(PromptApprover(read=lambda prompt: next(answers), out=out))
    k = make_kernel(POLICY, approvals=chan, clock=RealClock())
    res = k.run(pays, args=[4, 6], grant=["tools"])
    assert res.value[0] == "paid 4 to bob" and "refused" in res.value[1]
    assert "wants tools.pay" in out.getvalue() and "pay-gate" in out.getvalue()


def test_approval_of_a_dead_request_is_refused() -> None:
    chan = ApprovalChannel()
    make_kernel(POLICY, approvals=chan)
    assert chan.answer("no-such-id", True) is False


def test_engine_decision_for_an_approval_rule() -> None:
    d = engine(POLICY).check(1, "tools.pay", {"amount": 1})
    assert not d.allowed and d.effect == "approve" and d.extra["timeout_ms"] == 5000.0


def test_sigint_withdraws_an_approval_wait(calls) -> None:  # type: ignore[no-untyped-def]
    """The approval wait goes through the kernel's park: SIGINT aborts it like any other
    wait, the request is withdrawn and audited, and the loop holds nothing for it."""
    from agentos.abi.errors import Interrupted
    from agentos.abi.types import Signal

    chan = ApprovalChannel(lambda r: None, timeout_ms=60_000)
    chan.outside = 1  # as if a person could answer: the loop would keep listening for it

    async def waiter(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        try:
            await sys.read(h, {"tool": "pay", "args": {"amount": 3}})
        except Interrupted:
            return "interrupted"
        return "paid"

    async def init(sys, args):  # type: ignore[no-untyped-def]
        _, cap = await sys.spawn(waiter, caps=["tools"])
        while not chan.pending:  # (virtual time stands still while a person may answer)
            await sys.yield_()
        pending = len(chan.pending)
        await sys.signal(cap, Signal.SIGINT)
        return pending, str(await sys.waitpid(cap)), len(chan.pending)

    k = make_kernel(POLICY, approvals=chan)
    res = k.run(init, grant=["tools"])
    assert res.value == (1, "normal", 0)
    assert calls == [] and k._held_waits == 0
