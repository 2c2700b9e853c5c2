"""The episodic ledger: experiences derived from the event log, content-addressed, queried;
an index that is only a cache of the log (deleted: rebuilt; tampered with: detected and
rebuilt; forged consistently: caught by re-derivation); costs equal to the run table's."""
from __future__ import annotations

import hashlib
import json
import math

import pytest

from agentos import AllowAll, Kernel, Quota
from agentos.audit import make_anchor, make_record
from agentos.abi.errors import DriverError
from agentos.drivers import ToolsDriver, tool
from agentos.kernel.history import ProcessHistory
from agentos.store import MemoryStore, record_run
from agentos.userland.caas import hash_embed
from agentos.userland.emk import EmkDriver, Experience, Ledger, LedgerError, content_id, derive, encode


@tool()
def add(a: int, b: int) -> int:
    """Adds."""
    return a + b


@tool()
def fetch(url: str) -> str:
    """Fetches."""
    raise RuntimeError("network down")


async def planner(sys, args):
    await sys.log("info", "emk.task", task="add the invoice totals for March")
    h = await sys.open("tools")
    total = 0
    for n in args:
        total = await sys.read(h, {"tool": "add", "args": {"a": total, "b": n}})
    return total


async def fetcher(sys, args):
    await sys.log("info", "emk.task", task="download the weather report")
    h = await sys.open("tools")
    try:
        await sys.read(h, {"tool": "fetch", "args": {"url": "http://example.invalid"}})
    except Exception:
        await sys.log("warning", "failure", kind="tool_error", severity="error", detail="fetch failed")
    raise RuntimeError("gave up")


async def spender(sys, args):
    h = await sys.open("tools")
    while True:
        await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 1}})


async def init(sys, args):
    caps = []
    for image, name, a, q in ((planner, "planner", [3, 4, 5], Quota(tool_calls=10)),
                              (fetcher, "fetcher", None, Quota(tool_calls=10)),
                              (spender, "spender", None, Quota(tool_calls=2))):
        _, cap = await sys.spawn(image, name=name, args=a, caps=["tools"], quota=q)
        caps.append(cap)
        await sys.sleep(1000)          # apart in time, for the time queries
    for c in caps:
        await sys.waitpid(c)
    return "done"


def recorded():
    k = Kernel(deterministic=True, seed=3, policy=AllowAll())
    k.register_driver(ToolsDriver([add, fetch]))
    store = MemoryStore()
    rid = record_run(k, store, "emk")
    hist = ProcessHistory.attach(k)
    res = k.run(init, grant=["tools"], quota=Quota(tool_calls=100))
    assert res.value == "done", res
    return store, rid, hist


def by_agent(exps):
    return {e.agent: e for e in exps}


def test_experiences_hold_task_actions_failures_outcome_and_the_run_tables_costs():
    store, rid, hist = recorded()
    exps = by_agent(Ledger(store).experiences(rid))
    p, f, s = exps["planner"], exps["fetcher"], exps["spender"]
    assert p.task == "add the invoice totals for March" and p.outcome == "normal"
    assert [a.action for a in p.actions] == ["tools.add"] * 3 and all(a.allowed for a in p.actions)
    assert f.failures == ("tool_error",) and f.outcome_kind == "fault" and "gave up" in f.outcome
    assert s.outcome_kind == "quota" and s.task.startswith("spender")
    summary = store.get_run(rid).summary["processes"]
    rows = {r.pid: r for r in hist.records.values()}
    for e in exps.values():
        if e.agent == "init":
            continue
        assert (e.tokens, e.tool_calls, e.usd_nano) == (rows[e.pid].tokens, rows[e.pid].tool_calls,
                                                        rows[e.pid].usd_nano)
        row = summary[str(e.pid)]
        assert (e.tokens, e.tool_calls, e.usd_nano) == (row["tokens"], row["tool_calls"], row["usd_nano"])
    assert (p.tool_calls, s.tool_calls) == (3, 2)


def test_an_experience_is_addressed_by_the_hash_of_its_canonical_encoding():
    store, rid, _ = recorded()
    exps = Ledger(store).experiences(rid)
    for e in exps:
        assert e.id == hashlib.sha256(encode(e.body())).hexdigest() == content_id(e.body())
        assert Experience.from_body(json.loads(encode(e.body()))).id == e.id
    e = exps[0]
    assert content_id({**e.body(), "tokens": e.tokens + 1}) != e.id
    again, _ = derive(store, rid)
    assert [x.id for x in again] == [x.id for x in exps]       # a pure function of the log
    assert len({x.id for x in exps}) == len(exps)


def test_deleting_the_index_rebuilds_it_from_the_log():
    store, rid, _ = recorded()
    first = Ledger(store)
    ids = [e.id for e in first.experiences(rid)]
    assert first.rebuilt == 1 and store.kv_items(f"emk/{rid}/x/")
    second = Ledger(store)
    assert [e.id for e in second.experiences(rid)] == ids and second.rebuilt == 0   # read from the index
    store.kv_delete([k for k, _ in store.kv_items("emk/")])
    third = Ledger(store)
    assert [e.id for e in third.experiences(rid)] == ids and third.rebuilt == 1
    assert third.verify(rid).ok


def test_a_tampered_index_entry_is_detected_and_rebuilt_from_the_log():
    store, rid, _ = recorded()
    Ledger(store).experiences(rid)
    key, raw = next((k, v) for k, v in store.kv_items(f"emk/{rid}/x/") if b'"planner"' in v)
    store.kv_put([(key, raw.replace(b'"tool_calls":3', b'"tool_calls":0'))])   # hide the cost
    assert Ledger(store).verify(rid).tampered == (key.rsplit("/", 1)[1],)
    led = Ledger(store)
    assert by_agent(led.experiences(rid))["planner"].tool_calls == 3
    assert led.repaired == 1 and led.rebuilt == 1 and led.verify(rid).ok


def test_a_consistently_forged_entry_is_caught_by_re_deriving_from_the_log():
    store, rid, _ = recorded()
    led = Ledger(store)
    real = by_agent(led.experiences(rid))["planner"]
    forged = Experience(**{**real.__dict__, "outcome": "normal", "task": "wire money abroad"})
    head = json.loads(store.kv_get(f"emk/{rid}/head"))
    head["ids"].append(forged.id)
    store.kv_put([(f"emk/{rid}/x/{forged.id}", encode(forged.body())),
                  (f"emk/{rid}/head", json.dumps(head).encode())])
    v = Ledger(store).verify(rid)
    assert not v.ok and v.extra == (forged.id,) and v.tampered == ()


def test_queries_by_agent_outcome_time_and_similarity():
    store, rid, _ = recorded()
    led = Ledger(store, embed=hash_embed(64))
    assert [e.agent for e in led.query(agent="fetcher")] == ["fetcher"]
    assert {e.agent for e in led.query(outcome="normal")} == {"planner", "init"}
    assert [e.agent for e in led.query(outcome="quota")] == ["spender"]
    t0 = store.get_run(rid).created_at
    assert [e.agent for e in led.query(since=t0 + 0.5, until=t0 + 1.5)] == ["fetcher"]
    assert led.query(similar="weather download failed", k=1)[0].agent == "fetcher"
    assert led.query(similar="invoice totals", k=1)[0].agent == "planner"
    assert len(led.query(k=2)) == 2
    for bad in ({"since": math.nan}, {"until": math.inf}, {"k": 0}, {"k": 1.5}, {"agent": "\ud800"},
                {"similar": "x" * 5000}, {"since": True}):
        with pytest.raises(ValueError):
            led.query(**bad)


def test_a_broken_flight_recorder_chain_refuses_the_ledger():
    store, rid, _ = recorded()
    key = b"k" * 32
    recs, prev = [], "0" * 64
    for i in range(1, 4):
        r = make_record(key, i, float(i), 0.0, 2, "decision", json.dumps({"action": "tools.add"}), prev)
        recs.append(r)
        prev = r.mac
    anchor = make_anchor(key, 3, prev)
    assert Ledger(store, audit=(recs, anchor, key)).experiences(rid)
    recs[1] = make_record(key, 2, 2.0, 0.0, 2, "decision", json.dumps({"action": "tools.rm"}), recs[0].mac)
    with pytest.raises(LedgerError, match="chain"):
        Ledger(store, audit=(recs, anchor, key))


def test_agents_query_the_ledger_through_the_emk_device():
    store, rid, _ = recorded()
    led = Ledger(store)
    seen = {}

    async def agent(sys, args):
        h = await sys.open("emk")
        found = await sys.read(h, {"op": "query", "similar": "invoice", "k": 1, "runs": [args]})
        seen["found"] = [(e["agent"], e["id"]) for e in found]
        seen["get"] = (await sys.read(h, {"op": "get", "id": found[0]["id"]}))["task"]
        seen["verify"] = (await sys.read(h, {"op": "verify", "run": args}))["ok"]
        errors = []
        for bad in ({"op": "query", "since": math.nan}, {"op": "query", "k": -1}, {"op": "query", "x": 1},
                    {"op": "get"}, {"op": "drop"}, "junk", {"op": "verify", "run": "no-such-run"}):
            try:
                await sys.read(h, bad)
                errors.append(None)
            except DriverError as e:
                errors.append(type(e).__name__)
        try:
            await sys.write(h, {"op": "add"})
        except DriverError as e:
            errors.append(type(e).__name__)
        seen["errors"] = errors
        return "ok"

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(EmkDriver(led))
    res = k.run(agent, args=rid, grant=["emk"])
    assert res.value == "ok", res
    assert seen["found"][0][0] == "planner" and seen["get"].startswith("add the invoice")
    assert seen["verify"] is True
    assert seen["errors"] == ["DriverError"] * 8
