"""Probes of the hard-budget promises, each named for the attack it stops.

A hostile driver answering outside the ABI, a forged journal, a refused reservation that a
flight recorder might still call "about to run", an approval wait that might pin budget,
and an operator's careless price table or context setting. Effects are counted where they
happen (at the tool, at the driver), not in the kernel's table.
"""
from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from agentos import AllowAll, Cost, Driver, DriverError, DriverResult, Kernel, Quota
from agentos.abi.errors import BadArgument, RecordingFormatError
from agentos.audit import FlightRecorder
from agentos.drivers import ToolsDriver, tool
from agentos.drivers.scripted import ScriptedChat
from agentos.kernel.accounts import Accounts, BadAmount
from agentos.kernel.journal import JournalEntry
from agentos.policy import ApprovalChannel
from tests.policy.helpers import CALLS, engine


class OutsideTheABI(Driver):
    """Declares a bound of 100 tokens, acts, then answers with something that is not a
    DriverResult: what it consumed cannot be known."""

    name = "rogue"

    def __init__(self, answer: Any, asynchronous: bool) -> None:
        self.answer = answer
        self.asynchronous = asynchronous
        self.acted = 0

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        return Cost(tokens=100, tool_calls=1)

    def read(self, handle: Any, req: Any) -> Any:
        self.acted += 1
        if not self.asynchronous:
            return self.answer

        async def later() -> Any:
            await asyncio.sleep(0)
            return self.answer
        return later()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("answer", [42, None, "ok", {"value": 1, "cost": -5}, Cost(tokens=1)], ids=repr)
def test_a_driver_answering_outside_the_abi_is_charged_its_full_reservation(answer: Any, asynchronous: bool) -> None:
    drv = OutsideTheABI(answer, asynchronous)

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("rogue")
        try:
            await sys.read(h, "x")
        except DriverError as e:
            b = await sys.budget()
            return "DriverError", b.remaining["tokens"], b.remaining["tool_calls"], "DriverResult" in str(e)
        return "accepted"

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(drv)
    res = k.run(init, grant=["rogue"], quota=Quota(tokens=1000, tool_calls=10))
    assert res.value == ("DriverError", 900, 9, True)
    assert drv.acted == 1


@pytest.mark.parametrize("forged", [
    {"tokens": -1_000_000}, {"tokens": 2.5}, {"tokens": True}, {"usd": float("nan")}, {"usd": -1.0},
    {"usd": float("inf")}, {"tool_calls": "1"}, {"reserve": [float("nan"), 0, 0]}, {"reserve": [-5, 0, 0]},
    {"reserve": [1, 2]}, {"reserve": [1.5, 0, 0]},
], ids=repr)
def test_a_forged_journal_amount_is_refused_before_replay_charges_it(forged: dict[str, Any]) -> None:
    good = JournalEntry(2, 0, "read", "tools", "tools.act", {"x": 1}, True, 1, None, 5, 1, 0.5, 0,
                        reserve=(10, 1, 600_000_000))
    fields = json.loads(good.to_json())
    fields.update(forged)
    with pytest.raises(RecordingFormatError):
        JournalEntry.from_json(json.dumps(fields))
    assert JournalEntry.from_json(good.to_json()).reserve == (10, 1, 600_000_000)


@pytest.mark.parametrize("amounts", [(math.nan, 0, 0), (-1, 0, 0), (1.5, 0, 0), (True, 0, 0), [1, 0, 0], (1, 0)],
                         ids=repr)
def test_reserve_and_settle_refuse_every_amount_that_is_not_a_whole_number(amounts: Any) -> None:
    acc = Accounts()
    root = acc.open_root(1, Quota(tokens=100, tool_calls=10, usd=1.0))
    before = list(root.balance), list(root.used)
    with pytest.raises(BadAmount):
        acc.reserve(root, amounts)
    with pytest.raises(BadAmount):
        acc.settle(root, (0, 0, 0), amounts)
    with pytest.raises(BadAmount):
        acc.settle(root, amounts, (0, 0, 0))
    assert (list(root.balance), list(root.used)) == before
    assert issubclass(BadAmount, BadArgument)


def test_an_overrun_never_takes_more_than_the_childs_budget_from_its_siblings() -> None:
    """A hostile driver reporting a cost far past its bound: charged as far as the child's
    own budget can pay, the rest is an `overrun` event; the parent's pool is untouched."""
    class Liar(Driver):
        name = "liar"

        def bound(self, op: str, handle: Any, req: Any) -> Cost:
            return Cost(tokens=10)

        def read(self, handle: Any, req: Any) -> DriverResult:
            return DriverResult("x", Cost(tokens=1 << 40))

    async def child(sys: Any, args: Any) -> None:
        await sys.read(await sys.open("liar"), "x")

    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(child, caps=["liar"], quota=Quota(tokens=50))
        reason = str(await sys.waitpid(c))
        return reason, (await sys.budget()).remaining["tokens"]

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(Liar())
    res = k.run(init, grant=["liar"], quota=Quota(tokens=1000))
    assert res.value == ("quota(tokens)", 950)
    charged = sum(e.data[1] for e in k.events.events() if e.kind == "charge")
    assert charged == 50
    (over,) = [e.data for e in k.events.events() if e.kind == "overrun"]
    assert over[3][0] == 1 << 40 and over[4] == (1 << 40) - 50


def test_a_refused_reservation_is_audited_and_never_recorded_as_about_to_run() -> None:
    @tool()
    def act(n: int) -> int:
        """Acts."""
        CALLS.append(("act", n))
        return n

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("tools")
        for i in range(3):
            await sys.read(h, {"tool": "act", "args": {"n": i}})

    rec = FlightRecorder.in_memory(b"k" * 32)
    CALLS.clear()
    k = Kernel(deterministic=True, policy=AllowAll(), audit=rec)
    k.register_driver(ToolsDriver([act]))
    res = k.run(init, grant=["tools"], quota=Quota(tool_calls=2))
    rec.commit()
    assert str(res.reason) == "quota(tool_calls)"
    assert CALLS == [("act", 0), ("act", 1)]
    records = [(r.kind, json.loads(r.data)) for r in rec.records()]
    ran = [d for kind, d in records if kind == "action"]
    assert [d["args"]["n"] for d in ran] == [0, 1]     # no record says the third will run
    refused = [d for kind, d in records if kind == "reservation_refused"]
    assert len(refused) == 1 and refused[0]["resource"] == "tool_calls" and refused[0]["tool_calls"] == 1


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


def test_waiting_for_an_approval_holds_no_reservation() -> None:
    """While one process waits for a person, a sibling on the same budget can spend it: the
    waiter reserved nothing. Once approved, its call must find room of its own or die."""
    CALLS.clear()
    holder: list[Kernel] = []
    sibling_done: list[str] = []

    async def person(r: Any) -> bool:
        for _ in range(500):   # answers once the sibling has ended
            if sibling_done:
                break
            await asyncio.sleep(0)
        return True

    async def payer(sys: Any, args: Any) -> Any:
        h = await sys.open("tools")
        return await sys.read(h, {"tool": "pay", "args": {"amount": 5}})

    async def calculator(sys: Any, args: Any) -> Any:
        h = await sys.open("tools")
        return await sys.read(h, {"tool": "calc", "args": {"x": 1}})

    async def init(sys: Any, args: Any) -> Any:
        _, p = await sys.spawn(payer, caps=["tools"])       # runs first, asks, waits
        _, c = await sys.spawn(calculator, caps=["tools"])
        first = str(await sys.waitpid(c))
        sibling_done.append(first)
        return first, str(await sys.waitpid(p))

    from agentos.drivers import ToolsDriver
    from tests.policy.helpers import TOOLS

    k = Kernel(deterministic=True, policy=engine(POLICY), approvals=ApprovalChannel(person))
    holder.append(k)
    k.register_driver(ToolsDriver(TOOLS))
    res = k.run(init, grant=["tools"], quota=Quota(tool_calls=1))
    kinds = [e.kind for e in k.events.events() if e.pid == 2 and e.kind in ("approval_request", "approval", "reserve")]
    assert kinds == ["approval_request", "approval"]   # asking reserved nothing; approved, it found no room
    assert res.value == ("normal", "quota(tool_calls)")
    assert CALLS == [("calc", 1)]                  # the approved pay found no room, and never ran


@pytest.mark.parametrize("price", [(math.nan, 1.0), (1.0, math.inf), (-1.0, 1.0), {"prompt": math.nan, "completion": 0}],
                         ids=repr)
def test_a_price_table_with_a_non_finite_price_is_refused_when_built(price: Any) -> None:
    from agentos.drivers.prices import PriceTable

    with pytest.raises(ValueError):
        PriceTable({"m": price})
    with pytest.raises(ValueError):
        PriceTable({}, default=price)


@pytest.mark.parametrize("context", [0, -1, math.nan, 2.5, "8192", True, 1 << 40])
def test_an_llm_context_that_cannot_bound_a_call_is_refused_when_built(context: Any) -> None:
    pytest.importorskip("openai")
    from agentos.drivers.llm import LLMDriver

    with pytest.raises(ValueError):
        LLMDriver(base_url="http://127.0.0.1:9/v1", api_key="k", context=context)


def test_an_unpriced_scripted_model_under_a_usd_budget_is_refused_at_open() -> None:
    chat = ScriptedChat(["hi"])

    async def init(sys: Any, args: Any) -> Any:
        try:
            await sys.open("llm")
        except DriverError as e:
            return str(e)
        return "opened"

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(chat)
    res = k.run(init, grant=["llm"], quota=Quota(usd=1.0))
    assert "no price" in res.value and chat.requests == []
    k2 = Kernel(deterministic=True, policy=AllowAll())
    k2.register_driver(ScriptedChat(["hi"]))
    assert k2.run(init, grant=["llm"], quota=Quota(tokens=1000)).value == "opened"


@pytest.mark.parametrize("where", ["device default", "open param", "request", "inherited usd budget"])
def test_an_unpriced_llm_model_under_a_usd_budget_never_reaches_the_endpoint(where: str) -> None:
    """Its dollars could not be bounded: refused at open (or, for a model named per
    request, when the call is bounded), before anything is sent."""
    pytest.importorskip("openai")
    from agentos.drivers.llm import LLMDriver

    d = LLMDriver(base_url="http://127.0.0.1:9/v1", api_key="k", prices={"priced": (1.0, 1.0)},
                  model="priced" if where in ("open param", "request") else "unpriced", max_retries=0)
    params = {"model": "unpriced"} if where == "open param" else None
    req: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    if where == "request":
        req["model"] = "unpriced"

    async def caller(sys: Any, args: Any) -> Any:
        try:
            h = await sys.open("llm", params)
        except DriverError as e:
            return "open", "no price" in str(e)
        try:
            await sys.read(h, req)
        except DriverError as e:
            return "read", "no price" in str(e)
        return "sent", False

    seen: list[Any] = []

    async def child(sys: Any, args: Any) -> None:
        seen.append(await caller(sys, None))

    async def init(sys: Any, args: Any) -> Any:
        if where != "inherited usd budget":
            return await caller(sys, None)
        _, c = await sys.spawn(child, caps=["llm"])   # no quota of its own: draws on init's usd
        await sys.waitpid(c)
        return seen[0]

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(d)
    res = k.run(init, grant=["llm"], quota=Quota(usd=1.0))
    want = "read" if where == "request" else "open"
    assert res.value == (want, True)
    assert d.calls == 0
