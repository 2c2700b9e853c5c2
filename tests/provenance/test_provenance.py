"""PROV-O export: the documents parse (pyoxigraph), carry the triples, and stream."""
from __future__ import annotations

import dataclasses
import io
import json
import tracemalloc
from typing import Any, Iterator

import pytest

pyoxigraph = pytest.importorskip("pyoxigraph")

from agentos import AllowAll, Kernel  # noqa: E402
from agentos.abi.driver import Driver, DriverResult  # noqa: E402
from agentos.abi.types import Cost, Quota  # noqa: E402
from agentos.drivers.kv import KVDriver  # noqa: E402
from agentos.provenance import (  # noqa: E402
    AOS, PROV, InteractionRecord, ReplayManifest, export, run_iri, vocabulary,
)
from agentos.store import MemoryStore, record_run  # noqa: E402

TYPES = ["prompt", "response", "tool_call", "memory_retrieval"]


def manifest(n: int = 4) -> ReplayManifest:
    steps = [InteractionRecord(f"s{i}", TYPES[i % 4], i, json.dumps({"i": i, "text": 'quote " back\\slash\nnew ü'}),
                               0.001 * i, 10 * i, 1.5 * i, 1 + i % 2, "agent") for i in range(n)]
    return ReplayManifest("run-1", 1, "planner", 1_700_000_000.0, 2.5, steps)


def load(text: str, fmt: str) -> Any:
    store = pyoxigraph.Store()
    f = pyoxigraph.RdfFormat.TURTLE if fmt == "turtle" else pyoxigraph.RdfFormat.JSON_LD
    store.load(text.encode(), format=f)
    return store


def q(store: Any, sparql: str) -> list[Any]:
    return list(store.query(f"PREFIX aos: <{AOS}> PREFIX prov: <{PROV}> " + sparql))


@pytest.mark.parametrize("fmt", ["turtle", "jsonld"])
def test_export_parses_and_carries_the_triples(fmt: str) -> None:
    store = load(export(manifest(), fmt), fmt)  # type: ignore[arg-type]
    run = run_iri("run-1")
    (row,) = q(store, f"SELECT ?id ?pid ?agent ?created ?budget WHERE {{ <{run}> a aos:ReplayManifest ; "
                      "aos:id ?id ; aos:process_id ?pid ; aos:agent_id ?agent ; aos:created_at ?created ; "
                      "aos:initial_budget_usd ?budget }")
    assert row["id"].value == "run-1" and row["pid"].value == "1" and row["agent"].value == "planner"
    assert row["created"].value.startswith("2023-11-14T22:13:20")
    assert float(row["budget"].value) == 2.5
    steps = q(store, f"SELECT ?s ?t ?i ?p ?c ?tok ?ms WHERE {{ <{run}> aos:HAS_STEP ?s . ?s a prov:Activity, "
                     "aos:InteractionRecord ; aos:step_type ?t ; aos:index ?i ; aos:payload_json ?p ; "
                     "aos:step_cost_usd ?c ; aos:step_tokens ?tok ; aos:elapsed_ms ?ms } ORDER BY ?i")
    assert [s["t"].value for s in steps] == TYPES
    assert json.loads(steps[3]["p"].value) == {"i": 3, "text": 'quote " back\\slash\nnew ü'}
    assert float(steps[2]["c"].value) == pytest.approx(0.002) and steps[2]["tok"].value == "20"
    assert float(steps[3]["ms"].value) == 4.5
    # the PROV chain: each step used what the one before generated and was informed by it
    chain = q(store, "SELECT ?a ?b WHERE { ?b prov:wasInformedBy ?a . ?b prov:used ?o . "
                     "?o prov:wasGeneratedBy ?a }")
    assert len(chain) == 3
    assoc = q(store, "SELECT ?s ?ag WHERE { ?s prov:wasAssociatedWith ?ag . ?ag a prov:SoftwareAgent }")
    assert len(assoc) == 4 and {a["ag"].value for a in assoc} == {f"{run}/agent/1", f"{run}/agent/2"}
    first = q(store, f"SELECT ?in WHERE {{ <{run}/step/0> prov:used ?in }}")
    assert first[0]["in"].value == f"{run}/input"


def test_turtle_and_jsonld_are_the_same_graph() -> None:
    a = load(export(manifest(12), "turtle"), "turtle")  # type: ignore[arg-type]
    b = load(export(manifest(12), "jsonld"), "jsonld")  # type: ignore[arg-type]
    sa, sb = {str(x) for x in a}, {str(x) for x in b}
    assert sa == sb and len(sa) > 100


def test_vocabulary_declares_every_term_the_export_uses() -> None:
    voc = pyoxigraph.Store()
    voc.load(vocabulary().encode(), format=pyoxigraph.RdfFormat.TURTLE)
    declared = {r["t"].value for r in voc.query("SELECT ?t WHERE { ?t a ?k }")}
    from agentos.provenance import LessonRecord

    m = manifest()
    steps = list(m.steps)
    steps[2] = dataclasses.replace(steps[2], lessons=(LessonRecord("ab12", "a lesson", "run-0", 3),
                                                      LessonRecord("cd34", "merged one", "run-0", 4, True)))
    m.steps = steps
    data = load(export(m, "turtle"), "turtle")  # type: ignore[arg-type]
    used = {x.predicate.value for x in data if x.predicate.value.startswith(AOS)}
    used |= {x.object.value for x in data if str(x.object).startswith(f"<{AOS}")}
    assert used and used <= declared, used - declared
    assert f"{AOS}HAS_STEP" in declared and f"{AOS}Lesson" in used and f"{AOS}lesson_text" in used


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown provenance format"):
        export(manifest(), "xml")
    with pytest.raises(ValueError, match="step_type must be one of"):
        InteractionRecord("x", "thinking", 0, "{}")
    with pytest.raises(TypeError, match="ReplayManifest"):
        export({"id": 1})


def test_export_streams_in_constant_memory() -> None:
    def gen(n: int) -> Iterator[InteractionRecord]:
        for i in range(n):
            yield InteractionRecord(f"s{i}", TYPES[i % 4], i, '{"k": "' + "x" * 50 + '"}', 0.0001, 3, 0.5, 1)

    def peak(n: int) -> tuple[int, int]:
        sink = _CountingSink()
        tracemalloc.start()
        written = export(ReplayManifest("big", 1, "a", 0.0, None, gen(n)), "turtle", sink)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert written == n
        return top, sink.chars

    small, chars_small = peak(2_000)
    big, chars_big = peak(20_000)
    assert chars_big > 9 * chars_small          # the output grew tenfold ...
    assert big < small + 256 * 1024             # ... the memory did not


class _CountingSink(io.TextIOBase):
    def __init__(self) -> None:
        self.chars = 0

    def write(self, s: str) -> int:  # type: ignore[override]
        self.chars += len(s)
        return len(s)


class FakeChat(Driver):
    """A chat-shaped device: requests carry "messages", replies cost tokens and dollars."""

    name = "llm"

    def open(self, owner: int, params: Any) -> int:
        return owner

    def action(self, op: str, h: Any, req: Any) -> tuple[str, Any]:
        return ("llm.chat", req)

    def read(self, h: Any, req: Any) -> DriverResult:
        return DriverResult({"role": "assistant", "content": "42"}, Cost(tokens=12, usd=0.003))

    def write(self, h: Any, d: Any) -> DriverResult:
        raise NotImplementedError


async def agent(sys: Any, args: Any) -> None:
    llm = await sys.open("llm")
    kv = await sys.open("kv")
    await sys.remember("the answer is 42")
    await sys.read(llm, {"messages": [{"role": "user", "content": "question?"}]})
    await sys.write(kv, {"op": "set", "key": "answer", "value": 42})
    await sys.recall("answer", 2)
    await sys.sleep(5)
    await sys.read(llm, {"messages": [{"role": "user", "content": "again"}]})


def test_export_of_a_recorded_run() -> None:
    store = MemoryStore()
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(FakeChat())
    k.register_driver(KVDriver())
    rid = record_run(k, store, "prov-run")
    k.run(agent, grant=["llm", "kv"], quota=Quota(usd=1.0))
    out = io.StringIO()
    n = export((store, rid), "turtle", out)
    g = load(out.getvalue(), "turtle")
    rows = q(g, "SELECT ?t ?c ?tok WHERE { ?m aos:HAS_STEP ?s . ?s aos:step_type ?t ; aos:index ?i ; "
                "aos:step_cost_usd ?c ; aos:step_tokens ?tok } ORDER BY ?i")
    assert n == len(rows) == 6
    assert [r["t"].value for r in rows] == ["prompt", "response", "tool_call", "memory_retrieval",
                                            "prompt", "response"]
    assert sum(int(r["tok"].value) for r in rows) == 24
    assert sum(float(r["c"].value) for r in rows) == pytest.approx(0.006)
    (b,) = q(g, "SELECT ?b WHERE { ?m aos:initial_budget_usd ?b }")
    assert float(b["b"].value) == 1.0
    jl = load(export((store, rid), "jsonld"), "jsonld")  # type: ignore[arg-type]
    assert {str(x) for x in jl} == {str(x) for x in g}


def test_a_lesson_is_an_entity_derived_from_the_step_it_was_learned_from() -> None:
    """Run 1 fails; run 2 distils it and stores a lesson: the PROV export of run 2 says the
    lesson was generated by run 2's add step and derived from the cited step of run 1. A
    critique stored by reflection derives from the judging response of its own run."""
    from agentos.drivers.lessons import LongMemoryDriver
    from agentos.drivers.runs import RunsDriver
    from agentos.drivers.scripted import ScriptedChat
    from agentos.userland.distill import learn, report_outcome
    from agentos.userland.react import react_agent
    from agentos.userland.reflect import Reflect

    store = MemoryStore()
    k1 = Kernel(deterministic=True, policy=AllowAll())
    k1.register_driver(ScriptedChat(["41"]))
    run1 = record_run(k1, store, "first")

    async def attempt(sys: Any, args: Any) -> None:
        h = await sys.open("llm")
        r = await sys.read(h, {"messages": [{"role": "user", "content": "What is 2 + 40?"}]})
        await report_outcome(sys, False, f"answered {r['content']}")

    k1.run(attempt, grant=["llm"])
    lesson = {"text": "Add the numbers exactly before answering.", "step": 1, "confidence": "high"}
    k2 = Kernel(deterministic=True, policy=AllowAll())
    k2.register_driver(ScriptedChat([json.dumps({"lessons": [lesson]}), "41",
                                     json.dumps({"verdict": "retry", "critique": "Check the sum: it is 42."}),
                                     "42", json.dumps({"verdict": "accept", "critique": ""})]))
    k2.register_driver(LongMemoryDriver(clock=lambda: 1.0))
    k2.register_driver(RunsDriver(store))
    run2 = record_run(k2, store, "second")

    async def learner(sys: Any, args: Any) -> Any:
        res = await learn(sys, run1)
        r = await react_agent(sys, "What is 2 + 40?", [], reflect=Reflect(learn_to="lessons"))
        return [l.id for l in res.stored.added], r.lessons

    (distilled,), (critique,) = k2.run(learner, grant=["llm", "lessons", "runs"]).value
    for fmt in ("turtle", "jsonld"):
        g = load(export((store, run2), fmt), fmt)  # type: ignore[arg-type]
        rows = q(g, "SELECT ?l ?text ?src ?gen ?type WHERE { ?l a aos:Lesson, prov:Entity ; aos:lesson_text ?text ; "
                    "prov:wasDerivedFrom ?src ; prov:wasGeneratedBy ?gen . ?gen aos:step_type ?type }")
        by_id = {r["l"].value.rsplit(":", 1)[1]: r for r in rows}
        assert set(by_id) == {distilled, critique}
        d = by_id[distilled]
        assert d["src"].value == f"{run_iri(run1)}/step/1"                        # run 1's response step
        assert d["text"].value == lesson["text"] and d["type"].value == "tool_call"
        assert d["gen"].value.startswith(run_iri(run2) + "/step/")
        c = by_id[critique]
        judged = q(g, f"SELECT ?t ?p WHERE {{ <{c['src'].value}> aos:step_type ?t ; aos:payload_json ?p }}")
        assert c["src"].value.startswith(run_iri(run2)) and judged[0]["t"].value == "response"
        assert "Check the sum" in judged[0]["p"].value                            # the verdict that rejected
