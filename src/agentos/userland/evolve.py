"""Evolutionary search over prompts: tournaments, generations, and cost as part of fitness.

`tournament(sys, candidates, scorer, tasks)` runs every candidate as its own process with
its own budget (a `Quota` carved from the caller's account), all of a generation at
once, and ranks them. A candidate process runs each task (one chat call with the
candidate's prompt as the system prompt, or its persona's ReAct loop), reports after
each task how much its own account has used (read with `sys.budget()`, never
estimated), and sends its outputs back. One that overruns its budget is killed by the
kernel and scored as `overrun`, with the cost it had reported so far; one that crashes
is `fault`. Outputs are scored by the `Scorer` in the caller.

`evolve(sys, seeds, scorer, tasks)` runs generations: each is a tournament; the best
(`elite`) survive unchanged, and the rest of the next population is written by the
model, alternating mutation (rewrite one parent against the tasks it failed) and
crossover (merge two parents), each one metered model call asking for JSON. It stops
after `generations`, when a candidate reaches `target`, or before a generation the
caller's remaining budget could not pay for.

`metered_fitness(scorer)` makes cost part of fitness: score minus a price per thousand
tokens and per dollar, from the candidate's own account.

Ranking is deterministic: by fitness, then score, then fewer tokens, then candidate id;
so under a `VirtualClock` the same scores always give the same order, whichever process
finished first.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from ..abi.errors import SyscallError
from ..abi.types import Down, ExitKind, Quota
from ..kernel.process import ProcessImage
from ..kernel.trap import Sys
from .persona import Persona
from .structured import ModelOutputError, ask_json, bounded_text

STATUSES = ("ok", "overrun", "fault", "killed")
MUTATE_SYSTEM = ("You improve system prompts for AI agents. Given a prompt and the tasks it failed, "
                 "write a better prompt. Answer in JSON.")
CROSS_SYSTEM = ("You combine two system prompts for AI agents into one that keeps the strengths of "
                "both. Answer in JSON.")
MAX_PROMPT = 600
_PROMPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"prompt": {"type": "string", "minLength": 20, "maxLength": MAX_PROMPT}},
    "required": ["prompt"], "additionalProperties": False,
}


@dataclass(frozen=True)
class Task:
    """One input to run a candidate on, and what a good output looks like (for the scorer)."""

    input: str
    expected: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input, str) or not self.input.strip() or len(self.input) > 8000:
            raise ValueError("a task input is a non-empty string of at most 8000 characters")
        if self.expected is not None and (not isinstance(self.expected, str) or len(self.expected) > 8000):
            raise ValueError("a task's expected output is a string of at most 8000 characters, or None")


@dataclass(frozen=True)
class Candidate:
    """A prompt under test. With a persona, it runs as that persona with `prompt` as its system."""

    prompt: str
    id: str = ""
    generation: int = 0
    origin: str = "seed"                 # seed | mutation | crossover
    parents: tuple[str, ...] = ()
    persona: Persona | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip() or len(self.prompt) > 20_000:
            raise ValueError("a candidate's prompt is a non-empty string of at most 20000 characters")
        if not self.id:
            object.__setattr__(self, "id", "c-" + hashlib.sha256(self.prompt.encode("utf-8", "replace"))
                               .hexdigest()[:10])


@dataclass(frozen=True)
class Scored:
    """A candidate's result in one tournament."""

    candidate: Candidate
    fitness: float
    score: float                         # mean task score, 0..1 (0 when it did not finish)
    status: str                          # ok | overrun | fault | killed
    tokens: int                          # from the candidate's own account
    usd: float
    scores: tuple[float, ...] = ()
    outputs: tuple[str, ...] = ()
    pid: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.candidate.id, "prompt": self.candidate.prompt, "fitness": self.fitness,
                "score": self.score, "status": self.status, "tokens": self.tokens, "usd": self.usd,
                "scores": list(self.scores), "generation": self.candidate.generation,
                "origin": self.candidate.origin, "parents": list(self.candidate.parents), "detail": self.detail}


class Scorer:
    """Scores an output on a task (0..1) and turns a candidate's result into fitness.

    Subclass and override `score`; the default fitness is the mean score, and minus
    infinity for a candidate that did not finish (overrun, fault, killed)."""

    def score(self, task: Task, output: str) -> float:
        raise NotImplementedError

    def fitness(self, score: float, tokens: int, usd: float, status: str) -> float:
        return score if status == "ok" else -math.inf


class Contains(Scorer):
    """1 if the expected text occurs in the output (case-insensitive), else 0."""

    def score(self, task: Task, output: str) -> float:
        return 1.0 if task.expected is not None and task.expected.strip().lower() in output.lower() else 0.0


class ExactMatch(Scorer):
    """1 if the output, stripped, equals the expected text."""

    def score(self, task: Task, output: str) -> float:
        return 1.0 if task.expected is not None and output.strip() == task.expected.strip() else 0.0


class FunctionScorer(Scorer):
    """A scorer from a function `(task, output) -> float in 0..1`."""

    def __init__(self, fn: Callable[[Task, str], float]) -> None:
        if not callable(fn):
            raise TypeError("FunctionScorer needs a function (task, output) -> float")
        self.fn = fn

    def score(self, task: Task, output: str) -> float:
        return float(self.fn(task, output))


class MeteredFitness(Scorer):
    """`scorer`'s score, minus `per_1k_tokens` per thousand tokens and `per_usd` per dollar."""

    def __init__(self, scorer: Scorer, *, per_1k_tokens: float = 0.01, per_usd: float = 1.0) -> None:
        for name, v in (("per_1k_tokens", per_1k_tokens), ("per_usd", per_usd)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        self.inner = scorer
        self.per_1k_tokens = float(per_1k_tokens)
        self.per_usd = float(per_usd)

    def score(self, task: Task, output: str) -> float:
        return self.inner.score(task, output)

    def fitness(self, score: float, tokens: int, usd: float, status: str) -> float:
        base = self.inner.fitness(score, tokens, usd, status)
        if not math.isfinite(base):
            return base
        return base - self.per_1k_tokens * tokens / 1000.0 - self.per_usd * usd


def metered_fitness(scorer: Scorer, *, per_1k_tokens: float = 0.01, per_usd: float = 1.0) -> MeteredFitness:
    """Make cost part of fitness: what a candidate spent, read from its own account."""
    return MeteredFitness(scorer, per_1k_tokens=per_1k_tokens, per_usd=per_usd)


def rank(scored: Sequence[Scored]) -> list[Scored]:
    """Best first: fitness, then score, then fewer tokens, then candidate id."""
    return sorted(scored, key=lambda s: (-s.fitness, -s.score, s.tokens, s.candidate.id))


def _check_score(v: Any, scorer: Scorer) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
        raise ValueError(f"{type(scorer).__name__}.score returned {v!r}; a score is a number in 0..1")
    return float(v)


# -- the candidate process ---------------------------------------------------------------

async def _used(sys: Sys) -> tuple[int, float]:
    b = await sys.budget()
    return int(b.used.get("tokens") or 0), float(b.used.get("usd") or 0.0)


async def candidate_main(sys: Sys, args: dict[str, Any]) -> dict[str, Any]:
    """Run one candidate on every task; report to the parent after each task and at the end."""
    from .react import react_agent

    cand: Candidate = args["candidate"]
    parent = sys.caps[args["reply_index"]]
    corr = args["corr"]
    outputs: list[str] = []
    h = None if cand.persona is not None else await sys.open(args["llm"])
    for i, task in enumerate(args["tasks"]):
        if cand.persona is not None:
            p = cand.persona
            res = await react_agent(sys, task.input, list(p.tools), llm=p.llm, tools_device=p.tools_device,
                                    max_steps=p.max_steps, system=cand.prompt, max_tokens=p.max_tokens,
                                    model=p.model, temperature=p.temperature)
            out = res.answer or ""
        else:
            req: dict[str, Any] = {"messages": [{"role": "system", "content": cand.prompt},
                                                {"role": "user", "content": task.input}],
                                   "max_tokens": args["max_tokens"], "temperature": 0.0}
            if args.get("model"):
                req["model"] = args["model"]
            try:
                reply = await sys.read(h, req)  # type: ignore[arg-type]
                out = reply.get("content") or ""
            except SyscallError as e:
                out = f"error: {e}"
        outputs.append(out)
        tokens, usd = await _used(sys)
        await sys.send(parent, {"progress": i + 1, "tokens": tokens, "usd": usd}, corr=corr)
    tokens, usd = await _used(sys)
    await sys.send(parent, {"outputs": outputs, "tokens": tokens, "usd": usd}, corr=corr)
    return {"tasks": len(outputs), "tokens": tokens}


CANDIDATE = ProcessImage("candidate", candidate_main)


def _status(reason: Any) -> str:
    kind = getattr(reason, "kind", None)
    if kind is ExitKind.QUOTA or kind is ExitKind.DEADLINE:
        return "overrun"
    if kind is ExitKind.KILLED or kind is ExitKind.SHUTDOWN:
        return "killed"
    return "fault"


async def tournament(sys: Sys, candidates: Sequence[Candidate | str], scorer: Scorer,
                     tasks: Sequence[Task | str | tuple[str, str]], *, llm: str = "llm",
                     quota: Quota = Quota(tokens=4000), max_tokens: int = 128,
                     model: str | None = None, deadline_ms: float | None = None) -> list[Scored]:
    """Run every candidate as its own process (budget `quota` each, concurrently), score
    their outputs, and return them ranked best first. `deadline_ms` (kernel time) bounds
    each candidate's run: one still running then is killed and scored as an overrun."""
    cands = [c if isinstance(c, Candidate) else Candidate(c) for c in candidates]
    if not cands:
        raise ValueError("tournament: no candidates")
    ids = [c.id for c in cands]
    if len(set(ids)) != len(ids):
        raise ValueError(f"tournament: candidate ids must be unique, got {ids}")
    task_list = [_task(t) for t in tasks]
    if not task_list:
        raise ValueError("tournament: no tasks")
    if not isinstance(scorer, Scorer):
        raise TypeError(f"tournament: scorer must be a Scorer, got {type(scorer).__name__}")
    if not isinstance(quota, Quota):
        raise TypeError("tournament: quota must be a Quota")
    if deadline_ms is not None and (isinstance(deadline_ms, bool) or not isinstance(deadline_ms, (int, float))
                                    or not math.isfinite(deadline_ms) or deadline_ms <= 0):
        raise ValueError(f"tournament: deadline_ms must be a positive number of ms, got {deadline_ms!r}")
    me = await sys.self_cap()
    corr = ("tournament", await sys.pid(), sys.next_corr())
    pending: dict[int, Candidate] = {}
    reports: dict[int, dict[str, Any]] = {}
    results: dict[int, dict[str, Any]] = {}
    for c in cands:
        devices = list(c.persona.device_names()) if c.persona is not None else [llm]
        pid, cap = await sys.spawn(CANDIDATE, name=f"candidate:{c.id}", quota=quota, caps=[*devices, me],
                                   deadline=deadline_ms,
                                   args={"candidate": c, "tasks": task_list, "llm": llm, "corr": corr,
                                         "reply_index": len(devices), "max_tokens": max_tokens, "model": model})
        await sys.monitor(cap)
        pending[pid] = c
    await sys.log("info", "evolve.tournament", candidates=ids, tasks=len(task_list))
    downs: dict[int, Any] = {}
    while len(downs) < len(pending):
        msg = await sys.recv(match=lambda m: (m.corr == corr and isinstance(m.body, dict))
                             or (isinstance(m.body, Down) and m.body.pid in pending))
        assert msg is not None
        body = msg.body
        if isinstance(body, Down):
            downs[body.pid] = body.reason
        elif "outputs" in body:
            results[msg.sender] = body
        else:
            reports[msg.sender] = body
    scored = []
    for pid, c in pending.items():
        res = results.get(pid)
        if res is not None and len(res.get("outputs") or ()) == len(task_list):
            outs = tuple(str(o) for o in res["outputs"])
            per = tuple(_check_score(scorer.score(t, o), scorer) for t, o in zip(task_list, outs))
            mean = sum(per) / len(per)
            tokens, usd, status, detail = int(res["tokens"]), float(res["usd"]), "ok", ""
        else:
            last = reports.get(pid, {"progress": 0, "tokens": 0, "usd": 0.0})
            outs, per, mean = (), (), 0.0
            tokens, usd = int(last["tokens"]), float(last["usd"])
            status = _status(downs[pid])
            detail = f"{downs[pid]} after {last['progress']} of {len(task_list)} tasks"
        fit = scorer.fitness(mean, tokens, usd, status)
        if not isinstance(fit, (int, float)) or math.isnan(fit):
            raise ValueError(f"{type(scorer).__name__}.fitness returned {fit!r}")
        scored.append(Scored(c, float(fit), mean, status, tokens, usd, per, outs, pid, detail))
    ranked = rank(scored)
    await sys.log("info", "evolve.ranked", ranking=[[s.candidate.id, s.status, round(s.fitness, 6)]
                                                    for s in ranked])
    return ranked


def _task(t: Task | str | tuple[str, str]) -> Task:
    if isinstance(t, Task):
        return t
    if isinstance(t, str):
        return Task(t)
    if isinstance(t, (tuple, list)) and len(t) == 2:
        return Task(t[0], t[1])
    raise ValueError(f"a task is a Task, a string or an (input, expected) pair, got {t!r:.60}")


# -- generations ------------------------------------------------------------------------

@dataclass
class EvolveResult:
    best: Scored
    generations: list[list[Scored]] = field(default_factory=list)
    stop: str = "generations"           # generations | target | budget | stalled
    model_calls: int = 0                # mutations and crossovers asked for
    candidate_tokens: int = 0           # what every candidate run used, from their own accounts
    candidate_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.best.to_dict(), "stop": self.stop, "model_calls": self.model_calls,
                "candidate_tokens": self.candidate_tokens, "candidate_usd": self.candidate_usd,
                "generations": [[s.to_dict() for s in g] for g in self.generations]}


async def _write(sys: Sys, h: int, system: str, user: str, *, max_tokens: int, model: str | None) -> str:
    data, _ = await ask_json(sys, h, [{"role": "system", "content": system}, {"role": "user", "content": user}],
                             _PROMPT_SCHEMA, name="prompt", max_tokens=max_tokens, model=model)
    return bounded_text(data["prompt"], "prompt", lo=20, hi=MAX_PROMPT)


def _failures(s: Scored, tasks: list[Task], n: int = 3) -> str:
    lines: list[str] = []
    for t, out, sc in zip(tasks, s.outputs, s.scores):
        if sc < 1.0 and len(lines) < n:
            want = f"; expected {t.expected!r}" if t.expected is not None else ""
            lines.append(f"- input {t.input[:200]!r}: got {out[:200]!r}{want}")
    if not s.outputs:
        lines.append(f"- it did not finish: {s.detail}")
    return "\n".join(lines) or "- none failed outright; make it more reliable"


def _affordable(budget: Any, need: Quota) -> bool:
    rem = budget.remaining
    for name in ("tokens", "usd", "tool_calls"):
        want = getattr(need, name)
        have = rem.get(name)
        if want is not None and have is not None and have < want:
            return False
    return True


async def evolve(sys: Sys, seeds: Sequence[Candidate | str], scorer: Scorer,
                 tasks: Sequence[Task | str | tuple[str, str]], *, generations: int = 3, population: int = 4,
                 elite: int = 1, llm: str = "llm", mutate_llm: str | None = None,
                 quota: Quota = Quota(tokens=4000), max_tokens: int = 128, model: str | None = None,
                 mutate_tokens: int = 320, target: float | None = None,
                 mutation_reserve: int = 600, fold: Callable[[str], str] | None = None) -> EvolveResult:
    """Evolve prompts from `seeds` against `tasks` (see the module docstring).

    A generation starts only if the caller's remaining budget covers `population`
    candidate quotas plus `mutation_reserve` tokens per child to write. `fold`, if given,
    is applied to every prompt the model writes (to keep lessons a child must carry)."""
    if not 1 <= generations <= 100 or not 1 <= population <= 64 or not 0 <= elite < max(population, 1) + 1:
        raise ValueError("evolve: generations in 1..100, population in 1..64, elite in 0..population")
    task_list = [_task(t) for t in tasks]
    pop = [c if isinstance(c, Candidate) else Candidate(c) for c in seeds][:population]
    if not pop:
        raise ValueError("evolve: no seed candidates")
    pop = [replace(c, id=f"g0-{i}", generation=0) if c.id.startswith("c-") else c for i, c in enumerate(pop)]
    result: EvolveResult | None = None
    calls = 0
    mh = await sys.open(mutate_llm or llm)
    seen: dict[str, Scored] = {}        # prompt -> its result, so an unchanged elite is not rerun
    spent_tokens, spent_usd = 0, 0.0
    for gen in range(generations):
        n_new = len([c for c in pop if c.prompt not in seen])
        need = Quota(tokens=None if quota.tokens is None else quota.tokens * n_new,
                     usd=None if quota.usd is None else quota.usd * n_new,
                     tool_calls=None if quota.tool_calls is None else quota.tool_calls * n_new)
        if not _affordable(await sys.budget(), need):
            await sys.log("warn", "evolve.budget", generation=gen)
            if result is None:
                raise SyscallError(f"evolve: the budget cannot pay for one generation of {len(pop)} candidates "
                                   f"at {quota}")
            result.stop = "budget"
            break
        fresh = [c for c in pop if c.prompt not in seen]
        ranked = await tournament(sys, fresh, scorer, task_list, llm=llm, quota=quota, max_tokens=max_tokens,
                                  model=model) if fresh else []
        for s in ranked:
            seen[s.candidate.prompt] = s
        spent_tokens += sum(s.tokens for s in ranked)
        spent_usd += sum(s.usd for s in ranked)
        kept = [replace(seen[c.prompt], candidate=c) for c in pop if c not in fresh]
        gen_ranked = rank([*ranked, *kept])
        best = gen_ranked[0]
        if result is None:
            result = EvolveResult(best, [gen_ranked])
        else:
            result.generations.append(gen_ranked)
            if rank([best, result.best])[0] is best:
                result.best = best
        await sys.log("info", "evolve.generation", generation=gen, best=best.candidate.id,
                      fitness=best.fitness if math.isfinite(best.fitness) else str(best.fitness))
        if target is not None and best.status == "ok" and best.score >= target:
            result.stop = "target"
            break
        if gen == generations - 1:
            break
        ok = [s for s in gen_ranked if s.status == "ok"] or gen_ranked
        nxt = [s.candidate for s in ok[:elite]]
        parents = ok[: max(2, (len(ok) + 1) // 2)]
        child = 0
        prompts = {c.prompt for c in nxt}
        while len(nxt) < population and child < 2 * population:
            i = child
            child += 1
            rem = (await sys.budget()).remaining.get("tokens")
            if rem is not None and rem < mutation_reserve:
                break
            try:
                if i % 2 == 1 and len(parents) >= 2:
                    a, b = parents[i // 2 % len(parents)], parents[(i // 2 + 1) % len(parents)]
                    text = await _write(sys, mh, CROSS_SYSTEM, f"Prompt A: {a.candidate.prompt}\n"
                                        f"Prompt B: {b.candidate.prompt}\nWrite the combined prompt.",
                                        max_tokens=mutate_tokens, model=model)
                    origin, pids = "crossover", (a.candidate.id, b.candidate.id)  # type: tuple[str, tuple[str, ...]]
                else:
                    a = parents[i // 2 % len(parents)]
                    text = await _write(sys, mh, MUTATE_SYSTEM, f"Prompt: {a.candidate.prompt}\n"
                                        f"Tasks it failed:\n{_failures(a, task_list)}\nWrite the improved prompt.",
                                        max_tokens=mutate_tokens, model=model)
                    origin, pids = "mutation", (a.candidate.id,)
            except ModelOutputError as e:
                calls += 1
                await sys.log("warn", "evolve.bad_child", generation=gen + 1, error=str(e))
                continue
            calls += 1
            if fold is not None:
                text = fold(text)
            if text in prompts:
                continue
            prompts.add(text)
            nxt.append(Candidate(text, f"g{gen + 1}-{len(nxt)}", gen + 1, origin, pids, a.candidate.persona))
        if len(nxt) <= len(ok[:elite]) and all(c.prompt in seen for c in nxt):
            result.stop = "stalled"
            break
        pop = nxt
    await sys.close(mh)
    assert result is not None
    result.model_calls = calls
    result.candidate_tokens, result.candidate_usd = spent_tokens, spent_usd
    return result


__all__ = ["CANDIDATE", "Candidate", "Contains", "EvolveResult", "ExactMatch", "FunctionScorer",
           "MeteredFitness", "STATUSES", "Scored", "Scorer", "Task", "candidate_main", "evolve",
           "metered_fitness", "rank", "tournament"]
