"""One source of truth: every view of a run shows the same cost for every process.

The views: the run table (`ProcessHistory`, what `agentctl run` prints, and the stored run
summary `agentctl runs` reads), `ps` (the kernel's rows, whose last state a process shows
as it exits), the metrics (the kernel's totals and Prometheus text, the daemon's figures by
process name) and the PROV export (each step's tokens, tool calls and dollars, parsed back
from Turtle). The run covers every way a call can end: it succeeds; its reservation does
not fit (a quota kill before it starts); the tool acts and then raises; the endpoint
fails; the model answers outside the reply contract; the driver reports more than it
reserved (an overrun, charged as far as the budget can pay); it times out (usage unknown);
it is cancelled in flight by a kill, a SIGINT or the kernel's shutdown after init has
ended (the stored summary is written after that), alone or as part of a `read_all`; a
driver with no bound reports a cost that does not fit. Each process's figures are also
checked against what it must have cost, so the views cannot agree on a wrong number.
"""
from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pytest

from agentos import AllowAll, Cost, Driver, DriverError, DriverResult, Kernel, Quota, Signal
from agentos.abi.errors import DriverTimeout, UpstreamError
from agentos.abi.types import USD_SCALE
from agentos.drivers import ToolsDriver, tool
from agentos.drivers.chat import ChatReply, Price, bad_reply
from agentos.drivers.scripted import ScriptedChat
from agentos.kernel.events import canonical
from agentos.kernel.history import ProcessHistory
from agentos.provenance import export
from agentos.server.metrics import Folder
from agentos.store import MemoryStore, record_run

pyoxigraph = pytest.importorskip("pyoxigraph")


class Effects:
    def __init__(self) -> None:
        self.tool = 0
        self.meter = 0


def tools(effects: Effects) -> ToolsDriver:
    @tool()
    def act(n: int) -> int:
        """Acts."""
        effects.tool += 1
        return n

    @tool()
    def act_then_raise(n: int) -> int:
        """Acts, then raises."""
        effects.tool += 1
        raise RuntimeError("after the effect")

    return ToolsDriver([act, act_then_raise])


class Meter(Driver):
    """Bound: 100 tokens and $0.001. Each request names how the call ends."""

    name = "meter"

    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    def bound(self, op: str, handle: Any, req: Any) -> Cost | None:
        return None if req in ("nobound", "nobound-hang") else Cost(tokens=100, usd=0.001)

    def read(self, handle: Any, req: Any) -> Any:
        self.effects.meter += 1
        if req == "ok":
            return DriverResult("ok", Cost(tokens=40, usd=0.0004))
        if req == "over":
            return DriverResult("over", Cost(tokens=5000, usd=0.05))
        if req == "upstream":
            raise UpstreamError("meter: endpoint failed (HTTP 500)")
        if req == "contract":
            raise bad_reply("meter: the endpoint's content is int 42, not a string or null")
        if req == "nobound":
            return DriverResult("nb", Cost(tokens=700))

        async def later() -> DriverResult:
            if req == "timeout":
                raise DriverTimeout("meter: no answer in time")
            await asyncio.sleep(3600)   # "hang": in flight until cancelled
            return DriverResult("never")
        return later()


LLM_SCRIPT = [
    ChatReply("fine", prompt_tokens=30, completion_tokens=5),
    ChatReply("verbose", prompt_tokens=30, completion_tokens=9_000),   # past max_tokens: an overrun
]
ASK = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}

# name -> (plan, quota, what it must cost: tokens, tool_calls, usd_nano)
PLANS: dict[str, tuple[list[Any], Quota, tuple[int, int, int]]] = {
    "ok": (["act", "ok"], Quota(tool_calls=5, tokens=1000), (40, 1, 400_000)),
    "refused": (["act", "ok", "ok", "act"], Quota(tool_calls=5, tokens=130), (40, 1, 400_000)),
    "tool-raises": (["act_then_raise", "act"], Quota(tool_calls=5), (0, 2, 0)),
    "endpoint-fails": (["upstream", "ok"], Quota(tokens=1000), (40, 0, 400_000)),
    "bad-reply": (["contract"], Quota(tokens=1000), (100, 0, 1_000_000)),
    "overrun": (["ok", "over", "ok"], Quota(tokens=1000, usd=0.01), (1000, 0, 10_000_000)),
    "timeout": (["timeout", "ok"], Quota(tokens=1000), (140, 0, 1_400_000)),
    "killed-in-flight": (["ok", "hang"], Quota(tokens=1000), (140, 0, 1_400_000)),
    "in-flight-at-shutdown": (["ok", "hang"], Quota(tokens=1000), (140, 0, 1_400_000)),
    "read-all-killed": (["ok", ("all", ["hang", "hang"])], Quota(tokens=1000), (240, 0, 2_400_000)),
    # the overrun kills, but only once the request beside it has settled: 40 + (100 + the 760
    # left then) + 40; the 60 it released goes back with the closed account
    "read-all-overrun": (["ok", ("all", ["over", "ok"])], Quota(tokens=1000, usd=0.01), (940, 0, 9_400_000)),
    "interrupted": (["ok", "hang", "ok"], Quota(tokens=1000), (180, 0, 1_800_000)),
    "interrupted-unbounded": (["ok", "nobound-hang", "ok"], Quota(tokens=1000), (80, 0, 800_000)),
    "no-bound": (["ok", "nobound", "ok"], Quota(tokens=300), (40, 0, 400_000)),
    "llm": (["chat", "chat"], Quota(tokens=100_000), (35 + 9030, 0, 40_000 + 18_030_000)),
}
KILLED_IN_FLIGHT = ("killed-in-flight", "read-all-killed")


async def worker(sys: Any, plan: list[Any]) -> None:
    h = await sys.open("tools")
    m = await sys.open("meter")
    chat = await sys.open("llm")
    for what in plan:
        try:
            if isinstance(what, tuple):
                await sys.read_all(m, what[1])
            elif what in ("act", "act_then_raise"):
                await sys.read(h, {"tool": what, "args": {"n": 1}})
            elif what == "chat":
                await sys.read(chat, ASK)
            else:
                await sys.read(m, what)
        except DriverError:
            pass
        except Exception as e:  # Interrupted: the SIGINT ended the op in flight, go on
            await sys.log("info", type(e).__name__)
    await sys.recv(match=lambda msg: msg.body == "never")


def run_everything(ps_at_exit: dict[int, dict[str, Any]], k_ref: list[Kernel],
                   effects: Effects | None = None) -> tuple[Kernel, Any, Any, str, Folder]:
    effects = effects or Effects()

    def record_ps(reason: Any) -> None:
        ps_at_exit.update({r["pid"]: r for r in k_ref[0].ps() if r["state"] == "exited"})

    async def main(sys: Any, plan: Any) -> None:
        await sys.on_cleanup(record_ps)
        await worker(sys, plan)

    async def init(sys: Any, args: Any) -> Any:
        await sys.on_cleanup(record_ps)
        pids: dict[str, Any] = {}
        for name, (plan, q, _) in PLANS.items():
            _, cap = await sys.spawn(main, args=plan, caps=["tools", "meter", "llm"], quota=q, name=name)
            pids[name] = cap
        await sys.sleep(500)   # every worker has done its calls, or is parked in one
        await sys.signal(pids["interrupted"], Signal.SIGINT)
        await sys.signal(pids["interrupted-unbounded"], Signal.SIGINT)
        await sys.sleep(500)
        for name, cap in pids.items():
            if name != "in-flight-at-shutdown":   # left to the kernel's shutdown, after init ends
                await sys.kill(cap)
                await sys.waitpid(cap)
        return "done"

    k = Kernel(deterministic=True, seed=5, policy=AllowAll())
    k_ref.append(k)
    k.register_driver(tools(effects))
    k.register_driver(Meter(effects))
    k.register_driver(ScriptedChat(list(LLM_SCRIPT) * 2, name="llm", price=Price(1.0, 2.0)))
    store = MemoryStore()
    run_id = record_run(k, store, "one-truth")
    history = ProcessHistory.attach(k)
    folder = Folder()
    k.events.add_raw_sink(lambda batch, first=0: folder(
        [{"pid": pid, "kind": kind, "data": canonical(data)} for _, pid, kind, data in batch]))
    res = k.run(init, grant=["tools", "meter", "llm"], quota=Quota(tokens=1_000_000, tool_calls=100, usd=10.0))
    assert res.value == "done", res
    return k, store, history, run_id, folder


def prov_by_pid(store: Any, run_id: str) -> dict[int, tuple[int, int, int]]:
    """Each agent's steps' tokens, tool calls and nano-dollars, read back from the Turtle."""
    out = io.StringIO()
    export((store, run_id), "turtle", out)
    g = pyoxigraph.Store()
    g.load(out.getvalue().encode(), format=pyoxigraph.RdfFormat.TURTLE)
    rows = g.query("PREFIX aos: <https://agentos.dev/ns/prov#> PREFIX prov: <http://www.w3.org/ns/prov#> "
                   "SELECT ?pid ?tok ?calls ?usd WHERE { ?s a aos:InteractionRecord ; aos:step_tokens ?tok ; "
                   "aos:step_tool_calls ?calls ; aos:step_cost_usd ?usd ; prov:wasAssociatedWith ?a . "
                   "?a aos:process_id ?pid }")
    acc: dict[int, list[int]] = {}
    for r in rows:
        a = acc.setdefault(int(r["pid"].value), [0, 0, 0])
        a[0] += int(r["tok"].value)
        a[1] += int(r["calls"].value)
        a[2] += round(float(r["usd"].value) * USD_SCALE)
    return {pid: (a[0], a[1], a[2]) for pid, a in acc.items()}


def prometheus_totals(text: str) -> tuple[int, int, int]:
    def value(name: str) -> float:
        m = re.search(rf"^agentos_{name}_total (\S+)$", text, re.M)
        assert m, name
        return float(m.group(1))
    return int(value("tokens")), int(value("tool_calls")), round(value("usd") * USD_SCALE)


def test_run_table_ps_metrics_and_prov_show_the_same_cost_for_every_process() -> None:
    ps_at_exit: dict[int, dict[str, Any]] = {}
    effects = Effects()
    k, store, history, run_id, folder = run_everything(ps_at_exit, [], effects)
    summary = store.get_run(run_id).summary
    prov = prov_by_pid(store, run_id)
    rows = {r.pid: r for r in history.rows()}
    names = {r.name: r.pid for r in rows.values()}
    assert set(PLANS) <= set(names)
    total = [0, 0, 0]
    for pid, r in rows.items():
        table = (r.tokens, r.tool_calls, r.usd_nano)
        used = ps_at_exit[pid]["used"] if pid in ps_at_exit else None
        ps = (used["tokens"], used["tool_calls"], round(used["usd"] * USD_SCALE)) if used else None
        stored = summary["processes"].get(str(pid), {"tokens": 0, "tool_calls": 0, "usd_nano": 0})
        row = (stored["tokens"], stored["tool_calls"], stored["usd_nano"])
        by_name = (folder.tokens_by_name.get(r.name, 0), folder.tool_calls_by_name.get(r.name, 0),
                   folder.usd_nano_by_name.get(r.name, 0))
        views = {"run table": table, "ps": ps, "run summary": row, "PROV": prov.get(pid, (0, 0, 0)),
                 "metrics by name": by_name}
        assert len(set(views.values())) == 1, (r.name, views)
        want = PLANS[r.name][2] if r.name in PLANS else (0, 0, 0)
        assert table == want, (r.name, table, want)
        total = [a + b for a, b in zip(total, table)]
    m = k.metrics()
    assert (m["tokens"], m["tool_calls"], round(m["usd"] * USD_SCALE)) == tuple(total)
    assert prometheus_totals(k.metrics_text()) == tuple(total)
    assert (summary["tokens"], summary["tool_calls"]) == (total[0], total[1])
    assert round(summary["usd"] * USD_SCALE) == total[2]
    # counted at the tool: every tool call charged happened, and none happened uncharged
    assert effects.tool == total[1] == 4
    # counted at the meter: 27 of the plans' 30 meter requests reached it (one was refused
    # before it started; two came after their process was killed)
    assert effects.meter == 27
    assert k.accounts.open_count == 0


def test_every_exit_shows_the_kill_it_died_of() -> None:
    ps_at_exit: dict[int, dict[str, Any]] = {}
    k, store, history, run_id, folder = run_everything(ps_at_exit, [])
    exits = {r.name: r.exit for r in history.rows()}
    assert exits["refused"] == "quota(tokens)"
    assert exits["overrun"] == "quota(tokens)"
    assert exits["no-bound"] == "quota(tokens)"
    assert exits["llm"] == "quota(tokens)"   # the second reply overran max_tokens
    over = [e.data for e in k.events.events() if e.kind == "overrun"]
    # the overrun event keeps what was reported and what the budget could not pay
    assert any(d[0] == "tokens" and d[3][0] == 5000 and d[4] == 5000 - 100 - 860 for d in over), over
