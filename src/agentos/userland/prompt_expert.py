"""PromptExpert: a long-running service that writes prompts for other agents, at their cost.

The service (`prompt_expert_main`, registered by name) holds a long memory and its
expertise (`ExpertOptions`). A caller asks with `ask_expert(sys, brief, examples,
quota=...)`: the caller starts an *expert job*, its own child, whose budget is carved
from the caller's account, so the caller pays for every model call and candidate made
for it. The job asks the service for a plan (the lessons the service recalls for the
brief, and how to search), forges a seed prompt from the brief and those lessons,
evolves it against the caller's examples (each candidate a process of its own, carved
from the job's budget), answers the caller with the winner and its scores, and tells the
service how it went; the service stores that as a lesson, so later requests start from
what worked. The job never holds the memory's capability: lessons reach it as data.

Protocol with the service (replies go to `msg.caps[0]` with the same `corr`):
`{"op": "plan", "brief": {...}}` → `{"lessons": [...], "options": {...}}`;
`{"op": "done", "brief": {...}, "best": {...}}` (no reply); `{"op": "stats"}` →
`{"plans": n, "done": n, "learned": n}`; `{"op": "stop"}` or SIGTERM ends the service.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from ..abi.errors import SyscallError
from ..abi.types import KERNEL_PID, Down, Quota, Signal, SignalMessage
from ..kernel.process import ProcessImage
from ..kernel.trap import Sys
from .evolve import Candidate, Contains, ExactMatch, Task, evolve, metered_fitness
from .long_memory import Lesson, LongMemory
from .promptsmith import ForgeBrief, fold_lessons, forge_prompt
from .rpc import call
from .structured import ModelOutputError


@dataclass(frozen=True)
class ExpertOptions:
    """How the service searches. Budgets here are per candidate; the job's whole budget is
    the `quota` the caller gives `ask_expert`."""

    name: str = "prompt_expert"
    memory: str | None = "lessons"        # a lessons device the service holds (None: no memory)
    recall_k: int = 3
    generations: int = 2
    population: int = 3
    elite: int = 1
    candidate_quota: Quota = Quota(tokens=3000)
    max_tokens: int = 128                 # per candidate answer
    forge_tokens: int = 320
    model: str | None = None
    scorer: str = "contains"              # contains | exact
    per_1k_tokens: float = 0.0            # cost in fitness (0: score only)
    learn: bool = True                    # store each job's winner as a lesson
    max_jobs: int | None = None           # end after this many finished jobs (None: serve on)

    def __post_init__(self) -> None:
        if self.scorer not in ("contains", "exact"):
            raise ValueError(f"scorer must be 'contains' or 'exact', got {self.scorer!r}")
        if not 0 <= self.recall_k <= 20:
            raise ValueError("recall_k must be in 0..20")
        if not isinstance(self.candidate_quota, Quota):
            raise ValueError("candidate_quota must be a Quota")

    def search(self) -> dict[str, Any]:
        return {"generations": self.generations, "population": self.population, "elite": self.elite,
                "candidate_quota": {k: v for k, v in dataclasses.asdict(self.candidate_quota).items()
                                    if v is not None},
                "max_tokens": self.max_tokens, "forge_tokens": self.forge_tokens, "model": self.model,
                "scorer": self.scorer, "per_1k_tokens": self.per_1k_tokens}


@dataclass(frozen=True)
class ExpertAnswer:
    """The winning prompt, its scores, and what the job spent (read from accounts)."""

    prompt: str
    score: float
    fitness: float
    scores: tuple[float, ...]
    lessons: tuple[str, ...]
    tokens: int
    generations: int
    stop: str
    ranking: tuple[dict[str, Any], ...] = ()


def _brief_dict(b: ForgeBrief) -> dict[str, Any]:
    return {"role": b.role, "goal": b.goal, "constraints": list(b.constraints), "tools": list(b.tools),
            "examples": [list(e) for e in b.examples]}


def _brief(d: Any) -> ForgeBrief:
    if not isinstance(d, dict):
        raise ValueError("a brief is a dict with role and goal")
    try:
        return ForgeBrief(d.get("role"), d.get("goal"), tuple(d.get("constraints") or ()),  # type: ignore[arg-type]
                          tuple(d.get("tools") or ()), tuple(tuple(e) for e in d.get("examples") or ()))
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad brief: {e}") from None


# -- the service ------------------------------------------------------------------------

async def prompt_expert_main(sys: Sys, args: Any) -> dict[str, Any]:
    """The service process: answers plans from its memory, learns from finished jobs."""
    opts = args if isinstance(args, ExpertOptions) else ExpertOptions(**(args or {}))
    await sys.register(opts.name)
    mem = await LongMemory.open(sys, opts.memory) if opts.memory else None
    stats = {"plans": 0, "done": 0, "learned": 0}
    while opts.max_jobs is None or stats["done"] < opts.max_jobs:
        msg = await sys.recv()
        assert msg is not None
        body = msg.body
        if isinstance(body, SignalMessage):
            if body.signal is Signal.SIGTERM:
                break
            continue
        if isinstance(body, Down) or not isinstance(body, dict):
            continue
        op = body.get("op")
        if op == "stop":
            break
        if op == "stats":
            if msg.caps:
                await sys.send(msg.caps[0], dict(stats), corr=msg.corr)
            continue
        try:
            brief = _brief(body.get("brief"))
        except ValueError as e:
            if msg.caps:
                await sys.send(msg.caps[0], {"error": str(e)}, corr=msg.corr)
            continue
        if op == "plan":
            stats["plans"] += 1
            lessons: list[Lesson] = []
            if mem is not None and opts.recall_k:
                lessons = await mem.recall(brief.query(), opts.recall_k)
            await sys.log("info", "expert.plan", role=brief.role, lessons=[l.id for l in lessons])
            if msg.caps:
                await sys.send(msg.caps[0], {"lessons": [l.to_dict() for l in lessons],
                                             "options": opts.search()}, corr=msg.corr)
        elif op == "done":
            stats["done"] += 1
            best: dict[str, Any] = body["best"] if isinstance(body.get("best"), dict) else {}
            if opts.learn and mem is not None and best.get("status") == "ok" and isinstance(best.get("prompt"), str):
                text = (f"For the goal '{brief.goal[:120]}', a prompt that scored {float(best.get('score', 0)):.0%} "
                        f"on the examples began: {best['prompt'][:150]}")
                try:
                    res = await mem.add([{"text": text, "tags": ["prompt_expert"], "outcome": "success",
                                          "score": max(0.0, min(1.0, float(best.get("score", 0))))}])
                    stats["learned"] += len(res.added)
                except SyscallError as e:
                    await sys.log("warn", "expert.learn_failed", error=str(e))
            await sys.log("info", "expert.done", role=brief.role, score=best.get("score"))
    return stats


EXPERT = ProcessImage("prompt_expert", prompt_expert_main)


# -- the job (runs as the caller's child, on the caller's budget) -------------------------

def template_prompt(brief: ForgeBrief) -> str:
    """A plain prompt from the brief alone: a seed that needs no model call."""
    lines = [f"You are {brief.role}. Your goal: {brief.goal}"]
    lines += [f"- {c}" for c in brief.constraints]
    if brief.tools:
        lines.append("Use these tools when they help: " + ", ".join(brief.tools) + ".")
    lines.append("Answer with the result only.")
    return "\n".join(lines)


async def expert_job_main(sys: Sys, args: dict[str, Any]) -> dict[str, Any]:
    llm, expert, caller = args["llm"], sys.caps[1], sys.caps[2]
    corr = args["corr"]
    brief = _brief(args["brief"])
    plan = await call(sys, expert, {"op": "plan", "brief": _brief_dict(brief)}, timeout=args.get("timeout_ms"))
    if not isinstance(plan, dict) or "error" in plan:
        raise SyscallError(f"the prompt expert refused the plan: {plan!r:.200}")
    opts = plan["options"]
    lessons = [Lesson.from_dict(d) for d in plan.get("lessons") or []]
    seeds = [template_prompt(brief)]
    try:
        forged = await forge_prompt(sys, brief.with_constraints([l.text for l in lessons]), llm=llm,
                                    model=opts["model"], max_tokens=opts["forge_tokens"])
        seeds.insert(0, fold_lessons(forged.prompt, lessons))
    except ModelOutputError as e:
        await sys.log("warn", "expert.forge_failed", error=str(e))
    seeds = [fold_lessons(s, lessons) for s in dict.fromkeys(seeds)]
    base = Contains() if opts["scorer"] == "contains" else ExactMatch()
    scorer = metered_fitness(base, per_1k_tokens=opts["per_1k_tokens"])
    tasks = [Task(a, b) for a, b in args["examples"]]
    res = await evolve(sys, [Candidate(s) for s in seeds], scorer, tasks, generations=opts["generations"],
                       population=opts["population"], elite=opts["elite"], llm=llm,
                       quota=Quota(**opts["candidate_quota"]), max_tokens=opts["max_tokens"],
                       model=opts["model"], target=1.0, fold=lambda p: fold_lessons(p, lessons))
    best = res.best
    b = await sys.budget()
    spent = int(b.used.get("tokens") or 0) + res.candidate_tokens   # its own calls + its candidates'

    answer = {"prompt": best.candidate.prompt, "score": best.score, "fitness": best.fitness,
              "scores": list(best.scores), "lessons": [l.id for l in lessons], "tokens": spent,
              "generations": len(res.generations), "stop": res.stop,
              "ranking": [s.to_dict() for s in res.generations[-1]]}
    await sys.send(expert, {"op": "done", "brief": _brief_dict(brief), "best": best.to_dict()})
    await sys.send(caller, answer, corr=corr)
    return {"score": best.score, "stop": res.stop}


EXPERT_JOB = ProcessImage("expert_job", expert_job_main)


async def ask_expert(sys: Sys, brief: ForgeBrief, examples: Sequence[tuple[str, str]], *, quota: Quota,
                     llm: str = "llm", expert: str = "prompt_expert",
                     timeout_ms: float | None = 60_000.0) -> ExpertAnswer:
    """Ask the prompt expert for a prompt for `brief`, evolved against `examples`, paid for
    from this process's account (at most `quota`). Raises `SyscallError` if there is no
    such service, it does not answer the job within `timeout_ms` (kernel time), or the
    job ends without an answer (e.g. its budget ran out)."""
    if not isinstance(brief, ForgeBrief):
        raise TypeError(f"ask_expert needs a ForgeBrief, got {type(brief).__name__}")
    ex = [(str(a), str(b)) for a, b in examples]
    if not ex:
        raise ValueError("ask_expert: give at least one (input, expected output) example")
    if not isinstance(quota, Quota):
        raise TypeError("ask_expert: quota must be a Quota (the job's whole budget)")
    svc = await sys.lookup(expert)
    if svc is None:
        raise SyscallError(f"no prompt expert is registered as {expert!r}")
    me = await sys.self_cap()
    corr = ("expert", await sys.pid(), sys.next_corr())
    # the job spawns one process per candidate: it needs the caller's spawn right
    pid, cap = await sys.spawn(EXPERT_JOB, name="expert_job", quota=quota, caps=[llm, svc, me, "spawn"],
                               args={"brief": _brief_dict(brief), "examples": ex, "llm": llm, "corr": corr,
                                     "timeout_ms": timeout_ms})
    await sys.monitor(cap)
    # only the job answers (a correlation id is guessable), only the kernel says it ended
    msg = await sys.recv(match=lambda m: (m.corr == corr and m.sender == pid) or _down(m, pid))
    assert msg is not None
    if isinstance(msg.body, Down):
        raise SyscallError(f"the expert job ended without an answer: {msg.body.reason}")
    await sys.recv(match=lambda m: _down(m, pid))  # it ends after answering
    a = msg.body
    return ExpertAnswer(a["prompt"], a["score"], a["fitness"], tuple(a["scores"]), tuple(a["lessons"]),
                        a["tokens"], a["generations"], a["stop"], tuple(a["ranking"]))


class PromptExpert:
    """A handle on a running prompt expert service.

        expert = await PromptExpert.start(sys, ExpertOptions(memory="lessons"))
        answer = await expert.ask(sys, brief, examples, quota=Quota(tokens=20_000))
    """

    def __init__(self, name: str, pid: int, cap: int) -> None:
        self.name, self.pid, self.cap = name, pid, cap

    @classmethod
    async def start(cls, sys: Sys, options: ExpertOptions | None = None, *,
                    quota: Quota | None = None) -> "PromptExpert":
        """Spawn the service (holding `options.memory`, if any) as a child of this process.
        Its own account pays only for what it does itself: recalls and lesson writes."""
        opts = options or ExpertOptions()
        caps = [opts.memory] if opts.memory else []
        pid, cap = await sys.spawn(EXPERT, name=opts.name, args=opts, caps=caps, quota=quota)
        await sys.yield_()   # let it register its name before anyone looks it up
        return cls(opts.name, pid, cap)

    async def ask(self, sys: Sys, brief: ForgeBrief, examples: Sequence[tuple[str, str]], *, quota: Quota,
                  llm: str = "llm") -> ExpertAnswer:
        return await ask_expert(sys, brief, examples, quota=quota, llm=llm, expert=self.name)

    async def kill(self, sys: Sys) -> None:
        await sys.kill(self.cap)

    async def stats(self, sys: Sys) -> dict[str, Any]:
        out: dict[str, Any] = await call(sys, self.cap, {"op": "stats"})
        return out

    async def stop(self, sys: Sys) -> Any:
        await sys.send(self.cap, {"op": "stop"})
        return await sys.waitpid(self.cap)


def _down(m: Any, pid: int) -> bool:
    """The kernel's notice that `pid` ended (a Down passed on by another process is not)."""
    return isinstance(m.body, Down) and m.sender == KERNEL_PID and m.body.pid == pid


__all__ = ["EXPERT", "EXPERT_JOB", "ExpertAnswer", "ExpertOptions", "PromptExpert", "ask_expert", "expert_job_main",
           "prompt_expert_main", "template_prompt"]
