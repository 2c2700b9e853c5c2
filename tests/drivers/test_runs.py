"""The `runs` device: finished runs read back from the store, numbered like the PROV export."""
from __future__ import annotations

import json

import pytest

from agentos import AllowAll, DriverError, Kernel
from agentos.drivers.chat import ChatReply
from agentos.drivers.runs import RunsDriver
from agentos.drivers.scripted import ScriptedChat, call
from agentos.drivers.tools import ToolsDriver, tool
from agentos.provenance import manifest_from_store
from agentos.store import MemoryStore, record_run
from agentos.userland.distill import report_outcome
from agentos.userland.react import react_agent


@tool(effect="read_only")
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def recorded_run(store, name="task", answer="41"):
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([ChatReply("", [call("add", {"a": 2, "b": 40})]), answer]))
    k.register_driver(ToolsDriver([add]))
    rid = record_run(k, store, name)

    async def init(sys, args):
        r = await react_agent(sys, "What is 2 + 40?", ["add"])
        await report_outcome(sys, r.answer == "42", f"answered {r.answer!r}, expected '42'")
        return r.answer

    k.run(init, grant=["llm", "tools"])
    return rid


def read(store, req):
    d = RunsDriver(store)
    return d.read(d.open(1, None), req).value


def test_digest_numbers_steps_as_provenance_does_and_reads_the_outcome():
    store = MemoryStore()
    rid = recorded_run(store)
    dig = read(store, {"op": "digest", "run": rid})
    prov = list(manifest_from_store(store, rid).steps)
    assert [s["step"] for s in dig["steps"]] == [s.index for s in prov]
    assert [s["type"] for s in dig["steps"]] == [s.step_type for s in prov] == \
        ["tool_call", "prompt", "response", "tool_call", "prompt", "response"]
    texts = [s["text"] for s in dig["steps"]]
    assert texts[2] == 'model called add({"a": 2, "b": 40})'
    assert texts[3].startswith('tools.add {"a": 2, "b": 40} → 42')
    assert texts[5] == "model answered: 41"
    assert dig["outcome"] == {"ok": False, "detail": "answered '41', expected '42'"}
    assert dig["exit"] == "normal" and dig["omitted"] == 0
    assert any(n["msg"] == "react.answer" for n in dig["notes"])


def test_digest_keeps_head_and_tail_and_cuts_long_text():
    store = MemoryStore()
    rid = recorded_run(store, answer="x" * 1000)
    dig = read(store, {"op": "digest", "run": rid, "max_steps": 6, "max_chars": 40})
    assert len(dig["steps"]) == 6 and all(len(s["text"]) <= 40 for s in dig["steps"])
    dig = read(store, {"op": "digest", "run": "task", "max_steps": 6})   # by name
    assert dig["run"] == rid


def test_list_is_newest_first_and_by_name():
    store = MemoryStore()
    a = recorded_run(store, "alpha")
    b = recorded_run(store, "beta")
    c = recorded_run(store, "alpha")
    assert [r["run"] for r in read(store, {"op": "list", "name": "alpha"})] == [c, a]
    assert {r["run"] for r in read(store, {"op": "list"})} == {a, b, c}
    assert read(store, {"op": "list", "limit": 1})[0]["run"] == c


@pytest.mark.parametrize("req,needle", [
    ({"op": "digest", "run": "nope"}, "no run 'nope'"),
    ({"op": "digest"}, "digest needs 'run'"),
    ({"op": "digest", "run": "x" * 500}, "digest needs 'run'"),
    ({"op": "digest", "run": "task", "max_steps": 10**9}, "max_steps must be"),
    ({"op": "digest", "run": "task", "max_chars": -1}, "max_chars must be"),
    ({"op": "digest", "run": "task", "extra": 1}, "unknown digest field"),
    ({"op": "list", "limit": "ten"}, "limit must be"),
    ({"op": "delete", "run": "task"}, "a read is"),
    ("list", "a read is"),
])
def test_bad_requests_are_typed_errors(req, needle):
    store = MemoryStore()
    recorded_run(store)
    with pytest.raises(DriverError, match=needle):
        read(store, req)


def test_a_running_run_is_refused_and_writes_are_refused():
    store = MemoryStore()
    rid = store.create_run("live", {})
    with pytest.raises(DriverError, match="has not finished"):
        read(store, {"op": "digest", "run": rid})
    d = RunsDriver(store)
    with pytest.raises(DriverError, match="read-only"):
        d.action("write", None, {"op": "list"})


def test_a_digest_read_through_the_kernel_is_journaled_and_replays():
    store = MemoryStore()
    rid = recorded_run(store)

    async def init(sys, args):
        h = await sys.open("runs")
        return (await sys.read(h, {"op": "digest", "run": args}))["outcome"]

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(RunsDriver(store))
    rid2 = record_run(k, store, "reader")
    assert k.run(init, grant=["runs"], args=rid).value["ok"] is False
    rep = Kernel.replay_from(store, rid2, image=init)
    assert rep.identical, str(rep)
    assert json.dumps(rep.result.value, sort_keys=True) == json.dumps({"detail": "answered '41', expected '42'",
                                                                        "ok": False}, sort_keys=True)


def test_by_default_the_device_reads_the_store_the_run_is_recorded_to():
    store = MemoryStore()
    rid = recorded_run(store)

    async def init(sys, args):
        try:
            h = await sys.open("runs")
        except DriverError as e:
            return str(e)
        return [r["run"] for r in await sys.read(h, {"op": "list"})]

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(RunsDriver())
    record_run(k, store, "reader")
    assert k.run(init, grant=["runs"]).value == [rid]
    k2 = Kernel(deterministic=True, policy=AllowAll())
    k2.register_driver(RunsDriver())
    assert "no store to read runs from" in k2.run(init, grant=["runs"]).value
