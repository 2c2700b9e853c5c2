"""Self-correction: laziness rules and the model-call detector, the differential audit (by
a second model and by a tool), and memory hygiene, with precision and recall of each rule
on a labelled fixture."""
from __future__ import annotations

import ast
import json
import operator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos import AllowAll, Kernel, Quota
from agentos.drivers.lessons import InMemoryPersist, LongMemoryDriver
from agentos.drivers.scripted import ScriptedChat
from agentos.drivers.tools import ToolsDriver, tool
from agentos.userland.failures import FailureKind, failures_in
from agentos.userland.hygiene import HygieneOptions, HygieneReport, hygiene, rule_negation_conflict
from agentos.userland.long_memory import LongMemory
from agentos.userland.scak import (
    LAZINESS_RULES, AnswerContext, AuditOptions, AuditReport, ToolCheck, audit, detect_laziness, judge_laziness,
    laziness_failures, rule_grounded,
)
from agentos.userland.structured import ModelOutputError

FIXTURE = Path(__file__).parent / "fixtures" / "scak_answers.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg}


def _eval(node: Any) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ValueError("only arithmetic")


@tool(effect="read_only")
def calc(expr: str) -> float:
    """Evaluate an arithmetic expression."""
    return _eval(ast.parse(expr, mode="eval"))


@tool(effect="read_only")
def count(text: str) -> int:
    """Count the letters of a word."""
    return len(text)


def kernel(*drivers: Any) -> Kernel:
    k = Kernel(deterministic=True, policy=AllowAll())
    for d in drivers:
        k.register_driver(d)
    return k


def pr(pred: list[bool], gold: list[bool]) -> tuple[float, float]:
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


# -- the fixture ------------------------------------------------------------------------

def test_the_fixture_holds_fifty_labelled_answers_with_reasons() -> None:
    lazy = [r for r in ROWS if r["detector"] == "laziness"]
    assert len(lazy) >= 50
    assert {r["label"] for r in lazy} == {"lazy", "ok"}
    assert all(r["reason"].strip() and r["id"] for r in ROWS)
    assert len({r["id"] for r in ROWS}) == len(ROWS)
    assert {r["why"] for r in lazy if r["label"] == "lazy"} == {"give_up", "refused_without_tool", "placeholder"}


def test_each_laziness_rule_is_measured_on_the_fixture() -> None:
    lazy = [r for r in ROWS if r["detector"] == "laziness"]
    ctx = [AnswerContext(r["task"], tuple(r["tools"]), r["tool_calls"]) for r in lazy]
    for name in LAZINESS_RULES:
        pred = [bool(detect_laziness(r["answer"], c, [name])) for r, c in zip(lazy, ctx)]
        gold = [r["label"] == "lazy" and r["why"] == name.removeprefix("rule:") for r in lazy]
        p, _ = pr(pred, [r["label"] == "lazy" for r in lazy])  # a rule firing on a lazy answer is right
        _, rc = pr(pred, gold)
        assert p >= 0.9 and rc >= 0.8, (name, p, rc)
    combined = [bool(detect_laziness(r["answer"], c)) for r, c in zip(lazy, ctx)]
    p, rc = pr(combined, [r["label"] == "lazy" for r in lazy])
    assert p >= 0.9 and 0.8 <= rc < 1.0  # the fixture holds lazy answers no rule catches


def test_grounded_number_rule_on_the_fixture() -> None:
    rows = [r for r in ROWS if r["detector"] == "audit"]
    pred = []
    for r in rows:
        result = _eval(ast.parse(r["args"]["expr"], mode="eval")) if r["tool"] == "calc" else len(r["args"]["text"])
        ok, _ = rule_grounded(r["answer"], result, r["tool"])
        pred.append(ok is False)
    p, rc = pr(pred, [r["label"] == "contradicted" for r in rows])
    assert p >= 0.9 and rc >= 0.8


def test_negation_conflict_rule_on_the_fixture() -> None:
    rows = [r for r in ROWS if r["detector"] == "hygiene"]
    pred = [rule_negation_conflict(r["lesson"], r["evidence"]) for r in rows]
    p, rc = pr(pred, [r["label"] == "contradicts" for r in rows])
    assert p >= 0.9 and 0.7 <= rc < 1.0  # a contradiction with no negation word is missed, as documented


# -- laziness --------------------------------------------------------------------------

def test_findings_name_their_rule() -> None:
    f = detect_laziness("def f():\n    # TODO: implement\n    pass", AnswerContext("Write f"))
    assert [x.detector for x in f] == ["rule:placeholder"] and all(x.is_rule for x in f)
    assert f[0].kind is FailureKind.LAZINESS and "TODO" in f[0].match


def test_a_placeholder_the_task_asked_about_is_not_lazy() -> None:
    assert detect_laziness("TBD stands for 'to be determined'.", AnswerContext("What does TBD stand for?")) == []


def test_refusal_counts_as_lazy_only_when_a_tool_was_available_and_unused() -> None:
    ans = "I don't have access to real-time data."
    assert detect_laziness(ans, AnswerContext("weather?", ("web_search",), 0))
    assert not detect_laziness(ans, AnswerContext("weather?", ("web_search",), 1))
    assert not detect_laziness(ans, AnswerContext("weather?", (), 0))


def test_laziness_failures_are_events_and_metrics() -> None:
    k = kernel()

    async def init(sys: Any, args: Any) -> Any:
        fs = await laziness_failures(sys, "I'm sorry, but I can't help with that.", AnswerContext("17*23?"))
        return [f.detector for f in fs]

    assert k.run(init).value == ["rule:give_up"]
    assert k.metrics()["failures"] == {"laziness": 1}
    assert failures_in(k.events.events(kind="log"))[0].subject == "17*23?"


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["list"]])
def test_an_answer_that_is_not_text_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError):
        detect_laziness(bad)


def test_a_huge_answer_is_read_only_up_to_the_bound() -> None:
    huge = "word " * 10_000_000 + "TODO"   # 50 MB; the marker lies past what the rules read
    assert detect_laziness(huge) == []


def test_a_lone_surrogate_does_not_break_the_rules() -> None:
    assert detect_laziness("I have no idea \ud800") != []


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=300), st.text(max_size=80), st.lists(st.text(max_size=10), max_size=3),
       st.integers(0, 3))
def test_rules_never_raise_on_any_text(answer: str, task: str, tools: list[str], calls: int) -> None:
    for f in detect_laziness(answer, AnswerContext(task, tuple(tools), calls)):
        assert f.detector in LAZINESS_RULES and f.kind is FailureKind.LAZINESS


def test_model_call_detector_is_metered_and_says_it_is_a_model() -> None:
    judge = ScriptedChat([json.dumps({"lazy": True, "reason": "it refuses a harmless question"}),
                          json.dumps({"lazy": False, "reason": "a real answer"}),
                          "not json at all"], name="judge")
    k = kernel(judge)

    async def init(sys: Any, args: Any) -> Any:
        a = await judge_laziness(sys, "Sorry, no.", AnswerContext("17*23?"), device="judge")
        b = await judge_laziness(sys, "391", AnswerContext("17*23?"), device="judge")
        try:
            await judge_laziness(sys, "391", device="judge")
        except ModelOutputError as e:
            c = f"ModelOutputError: {e}"[:40]
        return [a and (a.detector, a.match), b, c]

    out = k.run(init, grant=["judge"]).value
    assert out[0] == ("model:judge", "it refuses a harmless question") and out[1] is None
    assert out[2].startswith("ModelOutputError")
    assert judge.requests[0]["response_format"]["type"] == "json_schema"
    assert sum(1 for e in k.journal.entries if e.action == "judge.chat") == 3


# -- differential audit ------------------------------------------------------------------

def test_tool_grounded_audit_flags_a_wrong_number_as_hallucination() -> None:
    k = kernel(ToolsDriver([calc, count]))
    opts = AuditOptions(tools=(ToolCheck("calc", {"expr": "17*23"}),), quota=Quota(tool_calls=3))

    async def init(sys: Any, args: Any) -> Any:
        bad = await audit(sys, "What is 17 * 23?", "17 * 23 = 381.", opts)
        good = await audit(sys, "What is 17 * 23?", "It is 391.", opts)
        vague = await audit(sys, "What is 17 * 23?", "A few hundred.", opts)
        return [r.to_dict() for r in (bad, good, vague)]

    bad, good, vague = (AuditReport.from_dict(d) for d in k.run(init, grant=["tools"]).value)
    assert bad.checks[0][:2] == ("tool:calc", "contradicted") and not bad.passed
    assert bad.failures[0].kind is FailureKind.HALLUCINATION and "391" in bad.failures[0].detail
    assert good.checks[0][1] == "consistent" and good.passed
    assert vague.checks[0][1] == "inconclusive" and vague.passed
    assert k.metrics()["failures"] == {"hallucination": 1}
    assert k.metrics()["tool_calls"] == 3


def test_a_tool_that_fails_is_a_tool_error() -> None:
    k = kernel(ToolsDriver([calc]))
    opts = AuditOptions(tools=(ToolCheck("calc", {"expr": "__import__('os')"}),), quota=Quota(tool_calls=2))

    async def init(sys: Any, args: Any) -> Any:
        return (await audit(sys, "t?", "1", opts)).to_dict()

    r = AuditReport.from_dict(k.run(init, grant=["tools"]).value)
    assert r.checks[0][1] == "failed" and r.failures[0].kind is FailureKind.TOOL_ERROR


def test_second_model_audit_disagreement_is_a_failure_event() -> None:
    k = kernel(ScriptedChat(["The capital of Australia is Canberra."], name="agree"),
               ScriptedChat(["Sydney."], name="other"))
    opts = AuditOptions(auditors=("agree", "other"), measure="lexical", threshold=0.5)

    async def init(sys: Any, args: Any) -> Any:
        return (await audit(sys, "Capital of Australia?", "The capital of Australia is Canberra.", opts)).to_dict()

    r = AuditReport.from_dict(k.run(init, grant=["agree", "other"]).value)
    assert [c[:2] for c in r.checks] == [("model:agree", "agree"), ("model:other", "disagree")]
    assert [(f.kind, f.detector) for f in r.failures] == [(FailureKind.DISAGREEMENT, "model:other")]
    assert [f.detector for f in failures_in(k.events.events(kind="log"))] == ["model:other"]


def test_an_auditor_whose_budget_runs_out_spends_no_more_than_its_carve() -> None:
    k = kernel(ScriptedChat(["Canberra"] * 2, name="auditor"))
    carve = 120
    opts = AuditOptions(auditors=("auditor",), quota=Quota(tokens=carve), max_tokens=500)

    async def init(sys: Any, args: Any) -> Any:
        before = (await sys.budget()).remaining["tokens"]
        r = await audit(sys, "Capital of Australia?", "Canberra", opts)
        after = (await sys.budget()).remaining["tokens"]
        return {"report": r.to_dict(), "spent": after - before}

    out = k.run(init, grant=["auditor"], quota=Quota(tokens=50_000)).value
    r = AuditReport.from_dict(out["report"])
    assert out["spent"] <= carve
    assert r.failures and r.failures[0].kind is FailureKind.QUOTA and not r.passed


@pytest.mark.parametrize("kw", [{}, {"threshold": float("nan")}, {"auditors": ("a",), "measure": "vibes"},
                                {"auditors": ("a",), "quota": 5}, {"tools": ("calc",)}])
def test_bad_audit_options_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        AuditOptions(**kw)


# -- memory hygiene --------------------------------------------------------------------

LESSONS = [{"text": "Use the calculator tool for arithmetic.", "tags": ["math"]},
           {"text": "Retry the search API on HTTP 429.", "tags": ["search"]},
           {"text": "Ask for the user's timezone before scheduling.", "tags": ["calendar"]}]


def test_contradicted_lessons_are_purged_with_an_event() -> None:
    mem = LongMemoryDriver(InMemoryPersist(), clock=lambda: 100.0)
    k = kernel(mem)

    async def init(sys: Any, args: Any) -> Any:
        m = await LongMemory.open(sys, "lessons")
        ids = (await m.add(LESSONS)).ids
        r = await hygiene(sys, ["Never retry the search API on HTTP 429; it bans the key.",
                                "The calculator tool handles big integers correctly."])
        left = [l.text for l in await m.list()]
        return ids, r.to_dict(), left

    ids, rep, left = k.run(init, grant=["lessons"]).value
    r = HygieneReport.from_dict(rep)
    assert r.contradicted == (ids[1],) and r.stale == ()
    assert "Retry the search API on HTTP 429." not in left and len(left) == 2
    f = r.failures[0]
    assert f.kind is FailureKind.HALLUCINATION and f.detector == "rule:negation_conflict"
    assert f.evidence["purged"] is True
    assert k.metrics()["failures"] == {"hallucination": 1}


def test_stale_lessons_are_purged_relative_to_the_memorys_own_time() -> None:
    t = [100.0]
    k = kernel(LongMemoryDriver(InMemoryPersist(), clock=lambda: t[0]))

    async def init(sys: Any, args: Any) -> Any:
        m = await LongMemory.open(sys, "lessons")
        old = (await m.add(LESSONS[:1])).ids
        t[0] = 500.0
        new = (await m.add(LESSONS[2:])).ids
        r = await hygiene(sys, [], HygieneOptions(max_age=300))
        return old, new, r.to_dict(), [l.id for l in await m.list()]

    old, new, rep, left = k.run(init, grant=["lessons"]).value
    r = HygieneReport.from_dict(rep)
    assert r.stale == tuple(old) and left == list(new)
    assert r.failures[0].kind is FailureKind.STALE_MEMORY and r.failures[0].detector == "rule:stale(age>300)"


def test_a_dry_run_reports_and_keeps_everything() -> None:
    k = kernel(LongMemoryDriver(InMemoryPersist(), clock=lambda: 100.0))

    async def init(sys: Any, args: Any) -> Any:
        m = await LongMemory.open(sys, "lessons")
        await m.add(LESSONS)
        r = await hygiene(sys, ["Do not use the calculator tool for arithmetic: it rounds."],
                          HygieneOptions(dry_run=True))
        return r.to_dict(), len(await m.list())

    rep, n = k.run(init, grant=["lessons"]).value
    assert len(rep["contradicted"]) == 1 and n == 3 and rep["failures"][0]["evidence"]["purged"] is False


def test_model_judged_hygiene_keeps_a_lesson_when_the_judge_answers_badly() -> None:
    judge = ScriptedChat([json.dumps({"relation": "contradicts", "reason": "the evidence says never"}),
                          "{{{ not json"] + [json.dumps({"relation": "unrelated", "reason": "-"})] * 8, name="nli")
    k = kernel(LongMemoryDriver(InMemoryPersist(), clock=lambda: 100.0), judge)

    async def init(sys: Any, args: Any) -> Any:
        m = await LongMemory.open(sys, "lessons")
        await m.add(LESSONS)
        r = await hygiene(sys, ["Never retry the search API on HTTP 429."], HygieneOptions(judge="nli", k=2))
        return r.to_dict(), len(await m.list())

    rep, n = k.run(init, grant=["lessons", "nli"]).value
    r = HygieneReport.from_dict(rep)
    assert len(r.contradicted) == 1 and n == 2
    assert [f.detector for f in r.failures] == ["model:nli", "model:nli"]
    assert [f.kind for f in r.failures] == [FailureKind.HALLUCINATION, FailureKind.MODEL_ERROR]


@pytest.mark.parametrize("bad", ["one string", [""], ["x" * 5000], ["\ud800"], [None]])
def test_bad_evidence_is_refused(bad: Any) -> None:
    k = kernel(LongMemoryDriver(InMemoryPersist()))

    async def init(sys: Any, args: Any) -> Any:
        try:
            await hygiene(sys, bad)
        except (TypeError, ValueError) as e:
            return type(e).__name__
        return "ran"

    assert k.run(init, grant=["lessons"]).value in ("TypeError", "ValueError")


class _NanMeasure:
    name = "test.scak.nan"

    def matrix(self, texts: Any) -> Any:
        return [[float("nan")] * len(texts) for _ in texts]


def test_an_auditor_measure_answering_nan_is_disagreement_not_agreement() -> None:
    from agentos.userland.agreement import register_measure

    register_measure("test.scak.nan", _NanMeasure)
    k = kernel(ScriptedChat(["Canberra"], name="auditor"))
    opts = AuditOptions(auditors=("auditor",), measure="test.scak.nan", threshold=0.5)

    async def init(sys: Any, args: Any) -> Any:
        return (await audit(sys, "Capital of Australia?", "Canberra", opts)).to_dict()

    r = AuditReport.from_dict(k.run(init, grant=["auditor"]).value)
    assert [c[:2] for c in r.checks] == [("model:auditor", "disagree")] and not r.passed


@tool(effect="read_only")
def enormous(x: int) -> int:
    """A tool whose answer is past float's range."""
    return 10 ** 400


def test_a_tool_answering_an_integer_past_floats_range_is_inconclusive_not_a_crash() -> None:
    k = kernel(ToolsDriver([enormous]))
    opts = AuditOptions(tools=(ToolCheck("enormous", {"x": 1}),), quota=Quota(tool_calls=2))

    async def init(sys: Any, args: Any) -> Any:
        return (await audit(sys, "How big?", "It is 42.", opts)).to_dict()

    r = AuditReport.from_dict(k.run(init, grant=["tools"]).value)
    assert r.checks == (("tool:enormous", "inconclusive", "the answer states nothing the result can check"),)


def test_endless_or_duplicated_auditors_and_tools_are_refused_without_reading_them_to_the_end() -> None:
    import itertools

    with pytest.raises(ValueError, match="at most 16"):
        AuditOptions(auditors=itertools.repeat("a"))
    with pytest.raises(ValueError, match="at most 16"):
        AuditOptions(tools=itertools.repeat(ToolCheck("calc")))
    with pytest.raises(ValueError, match="twice"):
        AuditOptions(auditors=("a", "a"))  # two answers from one device, each paid
    with pytest.raises(TypeError):
        AuditOptions(auditors="auditor")
    with pytest.raises(ValueError):
        AnswerContext("t", itertools.repeat("calc"))
    with pytest.raises(TypeError):
        AnswerContext("t", "calc")  # type: ignore[arg-type]


class _CountingEvidence(list):  # type: ignore[type-arg]
    """Evidence that counts how far it was read."""

    read = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for x in super().__iter__():
            type(self).read += 1
            yield x


def test_too_much_evidence_is_refused_before_any_of_it_is_read() -> None:
    k = kernel(LongMemoryDriver(InMemoryPersist()))
    _CountingEvidence.read = 0
    many = _CountingEvidence(["the sky is blue"] * 100_000)

    async def init(sys: Any, args: Any) -> Any:
        _CountingEvidence.read = 0
        try:
            await hygiene(sys, many)
        except ValueError as e:
            return str(e), _CountingEvidence.read
        return "ran", _CountingEvidence.read

    msg, read = k.run(init, grant=["lessons"]).value
    assert "at most 1000" in msg and read == 0


@pytest.mark.parametrize("model", [5, "", "m" * 300])
def test_a_hygiene_model_that_is_not_a_name_is_refused(model: Any) -> None:
    with pytest.raises(TypeError):
        HygieneOptions(judge="judge", model=model)


@pytest.mark.parametrize("make", [lambda: AuditOptions(auditors=("a",), threshold=10 ** 400),
                                  lambda: HygieneOptions(overlap=10 ** 400), lambda: HygieneOptions(max_age=10 ** 400),
                                  lambda: HygieneOptions(now=10 ** 5000)])
def test_numbers_past_floats_range_in_options_are_value_errors_not_overflow_errors(make: Any) -> None:
    with pytest.raises(ValueError, match="must be"):
        make()
