"""`dial` is an action on the world: policy decides before any route is looked at."""
from __future__ import annotations

import asyncio
from typing import Any

from agentos import Kernel, PolicyDenied
from agentos.abi.types import ExitKind
from agentos.net import Loopback
from agentos.policy import PolicyEngine

KEY = b"dial-policy-test-key-0123456789!"
HEAD = 'kernel: {version: "1.0", mode: strict}\npolicies:\n'


def node(policy: Any) -> tuple[Kernel, Kernel]:
    a = Kernel(deterministic=True, policy=policy)
    b = Kernel(deterministic=True)
    a.connect("*", Loopback(b), node="a", key=KEY)
    b.connect("a", Loopback(a), node="b", key=KEY)
    return a, b


def test_a_strict_kernel_with_no_policy_refuses_to_dial() -> None:
    async def init(sys: Any, args: Any) -> str:
        try:
            await sys.dial("b", 1)
        except PolicyDenied as e:
            return f"{e.rule}: {e}"
        return "dialled"

    a, _ = node(None)
    res = a.run(init)
    assert res.value.startswith("no-policy: strict kernel with no policy loaded refuses dial")


def test_a_policy_deny_of_dial_kills_the_dialler_and_sends_nothing() -> None:
    rules = ("  - {name: only-b, action: dial, effect: allow, constraints: {node: {enum: [b]}}}\n"
             "  - {name: never-pid-7, action: dial, effect: deny, constraints: {pid: {enum: [7]}}}\n")
    eng = PolicyEngine.from_text(HEAD + rules, path="security.yaml")

    async def init(sys: Any, args: Any) -> Any:
        ok = await sys.dial("b", 1)
        await sys.send(ok, "allowed")
        await sys.dial(args, 7 if args == "b" else 1)  # denied: another node, or pid 7 on b
        return "not reached"

    for target in ("c", "b"):
        a, b = node(eng)
        res = a.run(init, args=target)
        assert res.reason.kind is ExitKind.POLICY, res.reason
        assert res.reason.detail == ("only-b" if target == "c" else "never-pid-7")
        sent = [e.data for e in a.events.events() if e.kind == "remote_send"]
        assert [(n, p) for n, p, _ in sent] == [("b", 1)]  # the allowed one only
        assert [e.op for e in a.journal.entries if e.op.startswith("net.") and e.op != "net.sources"] == \
            ["net.dial", "net.send"]
