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
from agentos.userland.emk import (
    EmkDriver, Experience, Ledger, LedgerError, LedgerQueryError, content_id, derive, encode,
)


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
        with pytest.raises(LedgerQueryError):
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


def test_a_malformed_event_in_the_log_is_a_ledger_error_not_a_crash():
    store, rid, _ = recorded()
    rows = [(e.seq, e.time, e.pid, e.kind, e.raw) for e in store.events(rid)]
    bad = MemoryStore()
    rid2 = bad.create_run("bad", store.get_run(rid).meta)
    for seq, t, pid, kind, raw in rows:
        if kind == "charge":
            raw = json.dumps([seq, t, pid, kind, ["x", "many", None, 0]]).encode()
        bad.append_events(rid2, [(seq, t, pid, kind, raw)])
    with pytest.raises(LedgerError, match="not what the kernel writes"):
        Ledger(bad).experiences(rid2)


# -- the index is only a cache: its head is checked too --------------------------------------

def test_a_head_that_hides_an_experience_is_detected_and_the_index_rebuilt():
    store, rid, _ = recorded()
    ids = [e.id for e in Ledger(store).experiences(rid)]
    head = json.loads(store.kv_get(f"emk/{rid}/head"))
    head["ids"] = head["ids"][1:]                     # the entry stays; the head no longer lists it
    store.kv_put([(f"emk/{rid}/head", json.dumps(head).encode())])
    v = Ledger(store).verify(rid)
    assert not v.ok and "head" in v.head
    led = Ledger(store)
    assert [e.id for e in led.experiences(rid)] == ids and led.repaired == 1 and led.verify(rid).ok


def test_a_head_listing_an_experience_the_log_does_not_derive_fails_verify():
    store, rid, _ = recorded()
    Ledger(store).experiences(rid)
    head = json.loads(store.kv_get(f"emk/{rid}/head"))
    head["ids"].append("0" * 64)
    store.kv_put([(f"emk/{rid}/head", json.dumps(head).encode())])
    v = Ledger(store).verify(rid)
    assert not v.ok and v.head and (v.missing, v.extra, v.tampered) == ((), (), ())


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'"head"', b"[1, 2]", b'{"format": 2, "events": 5, "ids": "ab"}',
                                 b'{"format": 2, "events": true, "ids": []}', b"\xff\xfe", b"NaN"],
                         ids=["deep", "str", "list", "ids_str", "events_bool", "not_utf8", "nan"])
def test_a_malformed_head_is_rebuilt_from_the_log_never_a_crash(raw):
    store, rid, _ = recorded()
    ids = [e.id for e in Ledger(store).experiences(rid)]
    store.kv_put([(f"emk/{rid}/head", raw)])
    assert not Ledger(store).verify(rid).ok
    led = Ledger(store)
    assert [e.id for e in led.experiences(rid)] == ids and led.repaired == 1 and led.verify(rid).ok


def test_a_rehashed_entry_with_wrong_types_is_not_trusted():
    """Anyone can compute a SHA-256: an entry that hashes to its id is still checked field by field."""
    store, rid, _ = recorded()
    led = Ledger(store)
    real = by_agent(led.experiences(rid))["planner"]
    body = {**real.body(), "tokens": "lots", "at": float("nan")}
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    fid = hashlib.sha256(raw).hexdigest()
    head = json.loads(store.kv_get(f"emk/{rid}/head"))
    head["ids"] = [fid if i == real.id else i for i in head["ids"]]
    store.kv_delete([f"emk/{rid}/x/{real.id}"])
    store.kv_put([(f"emk/{rid}/x/{fid}", raw), (f"emk/{rid}/head", json.dumps(head).encode())])
    again = Ledger(store)
    assert by_agent(again.experiences(rid))["planner"].tokens == real.tokens and again.repaired == 1


# -- what the log holds is checked as it is folded ---------------------------------------------

def rewritten(store, rid, change):
    """A copy of the run whose rows `change(kind, data)` may replace (None: keep)."""
    out = MemoryStore()
    rid2 = out.create_run("copy", store.get_run(rid).meta)
    done = False
    for e in store.events(rid):
        raw = e.raw
        if not done:
            new = change(e.kind, e.data)
            if new is not None:
                kind, data, t = new
                raw = json.dumps([e.seq, t, e.pid, kind, data]).encode()
                out.append_events(rid2, [(e.seq, t, e.pid, kind, raw)])
                done = True
                continue
        out.append_events(rid2, [(e.seq, e.time, e.pid, e.kind, raw)])
    assert done
    return out, rid2


BAD_CHARGES = [math.inf, -math.inf, math.nan, -5, True, 1.5, "7", None, 10**400]


@pytest.mark.parametrize("value", BAD_CHARGES, ids=["inf", "-inf", "nan", "neg", "bool", "float", "str", "none",
                                                  "huge"])
def test_a_cost_that_is_not_a_non_negative_int_is_a_ledger_error(value):
    store, rid, _ = recorded()
    try:
        bad, rid2 = rewritten(store, rid, lambda k, d: ("charge", [d[0], value, d[2], d[3]], 0.0)
                              if k == "charge" else None)
    except ValueError:            # 10**400 does not even print as JSON: nothing to store
        pytest.skip("not storable")
    with pytest.raises(LedgerError, match="not what the kernel writes"):
        Ledger(bad).experiences(rid2)


@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0, True, "0"], ids=repr)
def test_a_time_that_is_not_finite_and_non_negative_is_a_ledger_error(value):
    store, rid, _ = recorded()
    bad, rid2 = rewritten(store, rid, lambda k, d: ("spawn", d, value) if k == "spawn" and d[1] == "planner"
                          else None)
    with pytest.raises(LedgerError, match="not what the kernel writes"):
        Ledger(bad).experiences(rid2)


def test_an_event_nested_too_deep_to_decode_is_a_ledger_error():
    store, rid, _ = recorded()
    bad = MemoryStore()
    rid2 = bad.create_run("deep", store.get_run(rid).meta)
    for e in store.events(rid):
        raw = e.raw
        if e.kind == "sys" and isinstance(e.data, dict) and e.data.get("@") == "Spawn":
            raw = raw.replace(b'"args":[3,4,5]', b'"args":' + b"[" * 50_000 + b"]" * 50_000)
        bad.append_events(rid2, [(e.seq, e.time, e.pid, e.kind, raw)])
    with pytest.raises(LedgerError, match="not what the kernel writes"):
        Ledger(bad).experiences(rid2)


# -- bounded rendering --------------------------------------------------------------------------

def nested(n):
    v = []
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize("value", [nested(10_000), ["x" * 5_000_000], {f"k{i}": i for i in range(200_000)},
                                   list(range(1_000_000)), {"a": nested(5_000), "b": "é" * 3000}],
                         ids=["deep", "50MB-ish", "wide-dict", "long-list", "mixed"])
def test_spawn_arguments_are_rendered_bounded_whatever_their_size_or_depth(value):
    from agentos.userland.emk import MAX_TASK, _short
    s = _short(value, MAX_TASK)
    assert 0 < len(s) <= MAX_TASK
    s.encode("utf-8")


from hypothesis import given, settings, strategies as st  # noqa: E402

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(), lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=5), c,
                                                                                     max_size=5), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(value=JSON, limit=st.integers(2, 300))
def test_rendering_is_the_json_text_or_its_cut_prefix(value, limit):
    from agentos.userland.emk import _short
    full = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    s = _short(value, limit)
    assert len(s) <= limit
    if len(full) <= limit:
        assert s == full                 # ids of ordinary entries do not change
    else:
        assert s.endswith("…") and full.startswith(s[:-1])


# -- hostile queries ------------------------------------------------------------------------------

class Sly(str):
    def __eq__(self, other):
        raise RuntimeError("ran the caller's __eq__")

    __hash__ = str.__hash__


def endless():
    while True:
        yield "run"


@pytest.mark.parametrize("bad", [
    {"since": 10**400}, {"until": -(10**400)}, {"since": 5.0, "until": 4.0}, {"since": -1}, {"k": 10**400},
    {"k": True}, {"k": MAX_K_PLUS}, {"similar": "\udc80"}, {"outcome": b"normal"}, {"agent": ["planner"]},
    {"runs": "run"}, {"runs": endless()}, {"runs": ["r"] * 1001}, {"runs": [5]}, {"runs": [""]},
    {"since": "yesterday"},
] if (MAX_K_PLUS := 1001) else [], ids=lambda b: next(iter(b)))
def test_hostile_query_arguments_are_refused_with_a_typed_error(bad):
    from agentos.abi.errors import BadArgument
    store, rid, _ = recorded()
    with pytest.raises(LedgerQueryError) as ei:
        Ledger(store).query(**bad)
    assert isinstance(ei.value, BadArgument) and str(ei.value).startswith("emk: ")


def test_a_str_subclass_query_is_compared_as_a_plain_str():
    store, rid, _ = recorded()
    assert [e.agent for e in Ledger(store).query(agent=Sly("planner"))] == ["planner"]


@pytest.mark.parametrize("eid", [None, 5, "abc", "G" * 64, "\ud800" * 64],
                         ids=["none", "int", "short", "not_hex", "surrogates"])
def test_get_refuses_what_is_not_an_experience_id(eid):
    store, _, _ = recorded()
    with pytest.raises(LedgerQueryError):
        Ledger(store).get(eid)


@pytest.mark.parametrize("reply", ["nan", "short", "mixed", "not_a_list", "bools", "wrong_count", "raises"])
def test_an_embedders_bad_reply_is_a_ledger_error_and_ranks_nothing(reply):
    def embed(texts):
        if reply == "nan":
            return [[math.nan, 1.0] for _ in texts]
        if reply == "short":
            return [[1.0, 0.0] for _ in texts] if len(texts) > 1 else [[1.0]]
        if reply == "mixed":
            return [[1.0] * (2 + i % 2) for i, _ in enumerate(texts)]
        if reply == "not_a_list":
            return "vectors"
        if reply == "bools":
            return [[True, False] for _ in texts]
        if reply == "raises":
            raise RuntimeError("model server gone")
        return [[1.0, 0.0]]

    store, rid, _ = recorded()
    with pytest.raises(LedgerError, match="embedder"):
        Ledger(store, embed=embed).query(similar="invoice")


def test_the_emk_device_refuses_unknown_fields_on_every_op():
    store, rid, _ = recorded()
    drv = EmkDriver(Ledger(store))
    for req in ({"op": "get", "id": "0" * 64, "x": 1}, {"op": "verify", "run": rid, 3: 4},
                {"op": "query", "runs": "abc"}, {"op": "query", 1: 2, "b": 3}):
        with pytest.raises(DriverError, match="emk: "):
            drv.read(None, req)


@pytest.mark.parametrize("run", [None, 5, "", "r" * 500, ["run"]], ids=["none", "int", "empty", "long", "list"])
def test_a_run_id_that_is_not_one_is_refused_typed(run):
    store, _, _ = recorded()
    led = Ledger(store)
    for call in (led.experiences, led.rebuild, led.verify):
        with pytest.raises(LedgerQueryError, match="run id"):
            call(run)


def test_an_index_written_in_an_older_format_is_derived_again_not_counted_as_a_repair():
    store, rid, _ = recorded()
    ids = [e.id for e in Ledger(store).experiences(rid)]
    head = json.loads(store.kv_get(f"emk/{rid}/head"))
    store.kv_put([(f"emk/{rid}/head", json.dumps({**head, "format": 1}).encode())])
    led = Ledger(store)
    assert [e.id for e in led.experiences(rid)] == ids and led.rebuilt == 1 and led.repaired == 0


def test_a_run_named_twice_in_a_query_is_searched_once():
    store, rid, _ = recorded()
    led = Ledger(store)
    assert len(led.query(runs=[rid, rid, rid], k=100)) == len(led.query(runs=[rid], k=100))
