"""Tournaments and evolution on the scripted chat device: processes, budgets, ranking, cost."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from agentos import AllowAll, Kernel, Quota
from agentos.drivers.chat import ChatReply
from agentos.drivers.chat import prompt_bound
from agentos.drivers.scripted import ScriptedChat
from agentos.userland.evolve import (
    MUTATE_SYSTEM, Candidate, Contains, ExactMatch, FunctionScorer, Scored, Task, evolve, metered_fitness, rank,
    tournament,
)

TASKS = [Task("What is 17 * 23 + 4?", "395"), Task("What is 6 * 7?", "42")]
ANSWERS = {"What is 17 * 23 + 4?": "395", "What is 6 * 7?": "42"}


def model(req):
    """Candidates: right when their prompt says 'calculator'; 'verbose' ones burn tokens.
    Mutations and crossovers: add the word 'calculator'."""
    msgs = req["messages"]
    if "response_format" in req:
        if msgs[0]["content"] == MUTATE_SYSTEM:
            return json.dumps({"prompt": "You are exact. Always use a calculator in your head."})
        return json.dumps({"prompt": "You are exact and brief; think like a calculator."})
    system, task = msgs[0]["content"], msgs[1]["content"]
    if "verbose" in system:
        return ChatReply("well, " * 50, prompt_tokens=3000, completion_tokens=500)
    if "padded" in system:  # as many prompt tokens as its reservation allows: the costliest honest reply
        return ChatReply(ANSWERS[task], prompt_tokens=prompt_bound(req), completion_tokens=10)
    return ANSWERS[task] if "calculator" in system else "I think 7."


def run(body, *, quota=None, chat=None, args=None):
    k = Kernel(deterministic=True, policy=AllowAll())
    chat = chat or ScriptedChat([model] * 200)
    k.register_driver(chat)
    res = k.run(body, grant=["llm"], quota=quota, args=args)
    assert res.reason.normal, res.reason
    return k, chat, res.value


def test_a_tournament_runs_each_candidate_as_its_own_process_and_ranks_by_score():
    cands = [Candidate("You guess.", "guess"), Candidate("Use a calculator.", "calc"),
             Candidate("Be verbose and use a calculator.", "verbose")]

    async def body(sys, args):
        return await tournament(sys, cands, Contains(), TASKS, quota=Quota(tokens=2000))

    k, chat, ranked = run(body)
    assert [s.candidate.id for s in ranked] == ["calc", "guess", "verbose"]
    calc, guess, verbose = ranked
    assert (calc.status, calc.score, calc.scores) == ("ok", 1.0, (1.0, 1.0))
    assert (guess.status, guess.score, guess.fitness) == ("ok", 0.0, 0.0)
    assert verbose.status == "overrun" and verbose.fitness == -math.inf and verbose.outputs == ()
    assert verbose.detail.startswith("quota(tokens) after 0 of 2 tasks")
    spawns = [e for e in k.events.events(kind="spawn") if e.data[1].startswith("candidate:")]
    assert [e.data[2] for e in spawns] == [Quota(tokens=2000)] * 3      # each its own carved budget
    # all of a generation is started before any candidate makes its first call (they run concurrently)
    first_call = min(e.seq for e in k.events.events(kind="policy") if e.data[0] == "llm.chat")
    assert max(e.seq for e in spawns) < first_call
    # the cost a candidate reports is its own account's, exactly the kernel's charges for its pid
    for s in (calc, guess):
        charged = sum(e.data[1] for e in k.events.events(kind="charge") if e.pid == s.pid)
        assert s.tokens == charged > 0
    kills = [e for e in k.events.events(kind="exit") if e.pid == verbose.pid]
    assert kills[0].data == "quota(tokens)"


def test_metered_fitness_prefers_the_cheaper_of_two_equally_good_prompts():
    cands = [Candidate("Use a calculator, padded with context.", "padded"), Candidate("Use a calculator.", "lean")]

    async def body(sys, args):
        plain = await tournament(sys, cands, Contains(), TASKS)
        metered = await tournament(sys, cands, metered_fitness(Contains(), per_1k_tokens=0.1), TASKS)
        return plain, metered

    k, chat, (plain, metered) = run(body)
    assert {s.score for s in plain} == {1.0}
    assert [s.candidate.id for s in plain] == ["lean", "padded"]       # equal fitness: fewer tokens first
    padded = next(s for s in metered if s.candidate.id == "padded")
    lean = next(s for s in metered if s.candidate.id == "lean")
    asked = [r for r in chat.requests if "padded" in r["messages"][0]["content"]]
    spent = sum(prompt_bound(r) + 10 for r in asked[len(asked) // 2:])   # the metered tournament's calls
    assert padded.tokens == spent and padded.fitness == pytest.approx(1.0 - 0.1 * spent / 1000)
    assert lean.fitness == pytest.approx(1.0 - 0.1 * lean.tokens / 1000) and lean.fitness > padded.fitness


def test_the_caller_pays_for_every_candidate():
    async def body(sys, args):
        before = (await sys.budget()).remaining["tokens"]
        ranked = await tournament(sys, ["Use a calculator.", "You guess."], Contains(), TASKS,
                                  quota=Quota(tokens=1000))
        after = (await sys.budget()).remaining["tokens"]
        return before, after, sum(s.tokens for s in ranked)

    _, _, (before, after, spent) = run(body, quota=Quota(tokens=50_000))
    assert before - after == spent > 0


def test_a_candidate_that_crashes_is_a_fault_and_scorer_bugs_are_caught():
    from agentos.userland.persona import Persona

    broken = Candidate("Use a calculator.", "broken", persona=Persona("p", "x", tools=("missing_tool",)))

    async def body(sys, args):
        ranked = await tournament(sys, [broken, Candidate("Use a calculator.", "ok")], Contains(), TASKS)
        try:
            await tournament(sys, ["Use a calculator."], FunctionScorer(lambda t, o: 7.0), TASKS)
        except ValueError as e:
            return ranked, str(e)

    from agentos.drivers.tools import ToolsDriver

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([model] * 50))
    k.register_driver(ToolsDriver([]))
    ranked, err = k.run(body, grant=["llm", "tools"]).value
    assert [(s.candidate.id, s.status) for s in ranked] == [("ok", "ok"), ("broken", "fault")]
    assert ranked[1].detail.startswith("fault(ValueError: react_agent: no tool named missing_tool")
    assert "a score is a number in 0..1" in err


def test_evolve_mutates_and_crosses_over_until_a_candidate_reaches_the_target():
    async def body(sys, args):
        return await evolve(sys, ["You guess.", "You are careful."], ExactMatch(), TASKS, generations=3,
                            population=3, quota=Quota(tokens=2000), target=1.0)

    k, chat, res = run(body)
    assert res.stop == "target" and res.best.score == 1.0 and res.best.candidate.generation == 1
    assert res.best.candidate.origin in ("mutation", "crossover") and res.best.candidate.parents
    assert len(res.generations) == 2 and res.model_calls >= 1
    g0 = [s.candidate.id for s in res.generations[0]]
    assert sorted(g0) == ["g0-0", "g0-1"]
    mutations = [r for r in chat.requests if "response_format" in r]
    assert len(mutations) == res.model_calls
    assert "Tasks it failed" in mutations[0]["messages"][1]["content"]
    # what the candidates used is accounted for, each run once (from its own account)
    runs = {s.pid: s.tokens for g in res.generations for s in g}
    charged = sum(e.data[1] for e in k.events.events(kind="charge") if e.pid in runs)
    assert res.candidate_tokens == sum(runs.values()) == charged


def test_an_unchanged_elite_is_not_run_again():
    async def body(sys, args):
        return await evolve(sys, ["Use a calculator.", "You guess."], Contains(), TASKS, generations=2,
                            population=2, elite=1)

    k, _, res = run(body)
    g0 = {s.candidate.id: s for s in res.generations[0]}
    g1 = {s.candidate.id: s for s in res.generations[1]}
    assert g1["g0-0"].pid == g0["g0-0"].pid                       # carried over, not rerun
    spawned = [e.data[1] for e in k.events.events(kind="spawn")]
    assert spawned.count("candidate:g0-0") == 1


def test_evolve_stops_before_a_generation_the_budget_cannot_pay_for():
    n = [0]

    def fresh_children(req):  # every mutation is a new prompt, so every generation costs
        if "response_format" in req:
            n[0] += 1
            return json.dumps({"prompt": f"Variant number {n[0]} of a careful prompt."})
        return model(req)

    async def body(sys, args):
        res = await evolve(sys, ["You guess.", "You are careful."], ExactMatch(), TASKS, generations=5,
                           population=3, quota=Quota(tokens=1500), mutation_reserve=100)
        try:
            await evolve(sys, ["a", "b"], ExactMatch(), TASKS, quota=Quota(tokens=10**9))
        except Exception as e:
            return res, f"{type(e).__name__}: {e}"

    # 3100 tokens pay for the first generation (2 × 1500), not for a second one of 2 new children
    _, _, (res, err) = run(body, quota=Quota(tokens=3100), chat=ScriptedChat([fresh_children] * 100))
    assert res.stop == "budget" and len(res.generations) == 1
    assert "cannot pay for one generation" in err


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, -math.inf]), st.integers(0, 3)),
                min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_property_ranking_is_a_function_of_the_scores_alone(rows, rnd):
    scored = [Scored(Candidate(f"prompt {i}", f"c{i}"), fit, max(fit, 0.0) if math.isfinite(fit) else 0.0,
                     "ok" if math.isfinite(fit) else "overrun", tokens, 0.0) for i, (fit, tokens) in enumerate(rows)]
    shuffled = list(scored)
    rnd.shuffle(shuffled)
    a, b = rank(scored), rank(shuffled)
    assert [s.candidate.id for s in a] == [s.candidate.id for s in b]
    for x, y in zip(a, a[1:]):
        assert (x.fitness, -x.tokens) >= (y.fitness, -y.tokens)


def test_a_tournament_under_a_virtual_clock_ranks_the_same_whichever_order_candidates_are_given():
    cands = [Candidate("Use a calculator.", "a"), Candidate("You guess.", "b"), Candidate("Use a calculator!", "c")]

    async def body(sys, args):
        return [s.candidate.id for s in await tournament(sys, args, Contains(), TASKS)]

    orders = {tuple(run(body, args=c)[2]) for c in (cands, cands[::-1], cands[1:] + cands[:1])}
    assert orders == {("a", "c", "b")}


@pytest.mark.parametrize("kw", [{"candidates": []}, {"tasks": []}, {"candidates": ["same", "same"]},
                                {"scorer": object()}])
def test_a_tournament_checks_its_inputs(kw):
    args = {"candidates": ["p1"], "tasks": TASKS, "scorer": Contains(), **kw}

    async def body(sys, a):
        try:
            await tournament(sys, args["candidates"], args["scorer"], args["tasks"])
        except (ValueError, TypeError) as e:
            return type(e).__name__

    assert run(body)[2] in ("ValueError", "TypeError")


@pytest.mark.live_only(reason="a candidate hangs on real I/O and is killed by a wall-clock deadline")
def test_a_candidate_past_its_deadline_is_killed_and_scored_as_an_overrun():
    """A model that never answers: the candidate is killed at its deadline (real clock, 200 ms)
    and the tournament goes on with the others."""
    import asyncio

    from agentos.abi.driver import Driver, DriverResult
    from agentos.abi.types import Cost

    class Hangs(Driver):
        name = "llm"

        def read(self, handle, req):
            if "hang" not in req["messages"][0]["content"]:
                return DriverResult({"content": ANSWERS[req["messages"][1]["content"]], "tool_calls": []},
                                    Cost(tokens=10))
            return asyncio.Event().wait()     # never set

    async def body(sys, args):
        ranked = await tournament(sys, [Candidate("Use a calculator.", "fast"), Candidate("hang forever", "stuck")],
                                  Contains(), TASKS[:1], deadline_ms=200)
        try:
            await tournament(sys, ["x"], Contains(), TASKS, deadline_ms=float("nan"))
        except ValueError as e:
            return ranked, str(e)

    k = Kernel(policy=AllowAll())
    k.register_driver(Hangs())
    res = k.run(body, grant=["llm"])
    ranked, err = res.value
    assert [(s.candidate.id, s.status) for s in ranked] == [("fast", "ok"), ("stuck", "overrun")]
    assert ranked[1].detail.startswith("deadline after 0 of 1 tasks")
    assert "deadline_ms must be a positive number" in err
