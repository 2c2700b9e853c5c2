"""The prompt expert service on the scripted chat device: memory, evolution, and who pays."""
from __future__ import annotations

import json

from agentos import AllowAll, Kernel, Quota, SyscallError
from agentos.drivers.lessons import LongMemoryDriver
from agentos.drivers.scripted import ScriptedChat
from agentos.userland.evolve import MUTATE_SYSTEM
from agentos.userland.long_memory import Lesson, LongMemory
from agentos.userland.prompt_expert import ExpertOptions, PromptExpert, ask_expert, template_prompt
from agentos.userland.promptsmith import ForgeBrief

BRIEF = ForgeBrief("a math assistant", "answer arithmetic questions with the number only")
EXAMPLES = [("What is 17 * 23 + 4?", "395"), ("What is 6 * 7?", "42")]
ANSWERS = dict(EXAMPLES)


def model(req):
    msgs = req["messages"]
    if "response_format" in req:
        if msgs[0]["content"] == MUTATE_SYSTEM:
            return json.dumps({"prompt": "You are a math assistant. Work it out with a calculator."})
        if "Write the system prompt" in msgs[1]["content"]:
            return json.dumps({"prompt": "You are a math assistant."})
        return json.dumps({"prompt": "You are a math assistant who uses a calculator."})
    system, task = msgs[0]["content"], msgs[1]["content"]
    return ANSWERS[task] if "calculator" in system else "about 40"


def kernel(memory=None):
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([model] * 200))
    k.register_driver(memory or LongMemoryDriver(clock=lambda: 1.0))
    return k


def test_the_expert_evolves_a_prompt_from_memory_and_the_caller_pays():
    mem = LongMemoryDriver(clock=lambda: 1.0)

    async def caller(sys, args):
        expert = args
        before = (await sys.budget()).remaining["tokens"]
        ans = await expert.ask(sys, BRIEF, EXAMPLES, quota=Quota(tokens=20_000))
        after = (await sys.budget()).remaining["tokens"]
        return ans, before - after

    k = kernel(mem)
    results = {}

    async def caller_wrap(sys, args):
        results["caller"] = await caller(sys, args)

    async def init2(sys, args):
        m = await LongMemory.open(sys)
        await m.add([Lesson("For arithmetic questions answer with the number only.", tags=("math",))])
        expert = await PromptExpert.start(sys, ExpertOptions(generations=2, population=2,
                                                             candidate_quota=Quota(tokens=2000)),
                                          quota=Quota(tokens=100))
        _, ccap = await sys.spawn(caller_wrap, args=expert, caps=["llm", "spawn"], quota=Quota(tokens=30_000))
        await sys.waitpid(ccap)
        stats = await expert.stats(sys)
        await expert.stop(sys)
        return expert.pid, stats

    res = k.run(init2, grant=["llm", "lessons"])
    assert res.reason.normal, res.reason
    expert_pid, stats = res.value
    ans, paid = results["caller"]
    assert ans.score == 1.0 and "calculator" in ans.prompt and ans.stop == "target"
    assert ans.scores == (1.0, 1.0) and len(ans.lessons) == 1
    assert "For arithmetic questions answer with the number only." in ans.prompt   # forged from memory
    # the caller paid for everything done for it, exactly what the job and its candidates used
    assert paid == ans.tokens > 0
    expert_charges = [e for e in k.events.events(kind="charge") if e.pid == expert_pid]
    assert sum(e.data[1] for e in expert_charges) == 0                               # the service paid nothing
    job = next(e.pid for e in k.events.events(kind="spawn") if e.data[1] == "expert_job")
    cands = {e.pid for e in k.events.events(kind="spawn") if e.data[1].startswith("candidate:")}
    assert all(next(e.data[0] for e in k.events.events(kind="spawn") if e.pid == c) in {job} for c in cands)
    # the service learned from the job
    assert stats == {"plans": 1, "done": 1, "learned": 1}
    learned = [l for l in mem.index.lessons.values() if "prompt_expert" in l.tags]
    assert len(learned) == 1 and "scored 100%" in learned[0].text


def test_a_job_that_runs_out_of_budget_is_an_error_for_the_caller():
    async def init(sys, args):
        expert = await PromptExpert.start(sys, ExpertOptions(memory=None, candidate_quota=Quota(tokens=2000)))
        errs = []
        for tokens in (20, 3000):  # too little for the first model call; too little for one generation
            try:
                await ask_expert(sys, BRIEF, EXAMPLES, quota=Quota(tokens=tokens))
            except SyscallError as e:
                errs.append(str(e))
        try:
            await ask_expert(sys, BRIEF, EXAMPLES, quota=Quota(tokens=150), expert="nobody")
        except SyscallError as e:
            err2 = str(e)
        await expert.stop(sys)
        return errs, err2

    errs, err2 = kernel().run(init, grant=["llm", "lessons"]).value
    assert errs[0] == "the expert job ended without an answer: quota(tokens)"
    assert "the budget cannot pay for one generation of 2 candidates" in errs[1]
    assert "no prompt expert is registered as 'nobody'" in err2


def test_a_second_request_starts_from_what_the_first_one_learned():
    async def init(sys, args):
        expert = await PromptExpert.start(sys, ExpertOptions(generations=2, population=2))
        a = await expert.ask(sys, BRIEF, EXAMPLES, quota=Quota(tokens=20_000))
        b = await expert.ask(sys, BRIEF, EXAMPLES, quota=Quota(tokens=20_000))
        await expert.stop(sys)
        return a, b

    a, b = kernel().run(init, grant=["llm", "lessons"]).value
    assert a.lessons == () and len(b.lessons) == 1


def test_template_prompt_needs_no_model():
    text = template_prompt(ForgeBrief("a clerk", "file the forms", ("be exact",), ("stamp",)))
    assert text == ("You are a clerk. Your goal: file the forms\n- be exact\n"
                    "Use these tools when they help: stamp.\nAnswer with the result only.")


_FORGED = {"prompt": "FORGED", "score": 1.0, "fitness": 1.0, "scores": [1.0], "lessons": [], "tokens": 0,
           "generations": 0, "stop": "target", "ranking": []}


async def _forger(sys, args):
    caller = args
    for n in range(1, 8):  # the job's correlation id is ("expert", caller's pid, a counter)
        await sys.send(sys.caps[0], _FORGED, corr=("expert", caller, n))


def test_a_peer_guessing_the_jobs_correlation_id_cannot_answer_for_the_expert():
    async def init(sys, args):
        expert = await PromptExpert.start(sys, ExpertOptions(memory=None, generations=1, population=2,
                                                             candidate_quota=Quota(tokens=2000)))
        me = await sys.self_cap()
        _, f = await sys.spawn(_forger, args=await sys.pid(), caps=[me])
        await sys.waitpid(f)
        ans = await ask_expert(sys, BRIEF, EXAMPLES, quota=Quota(tokens=20_000))
        await expert.stop(sys)
        return ans.prompt

    prompt = kernel().run(init, grant=["llm", "lessons"]).value
    assert prompt != "FORGED" and "math assistant" in prompt
