"""An agent that learns across runs: it fails, the failure becomes a lesson, the next run
recalls the lesson and its prompt changes.

    agentctl run examples/learning.py     # run 1: the agent tries the task (and fails)
    agentctl run examples/learning.py     # run 2: distil run 1, recall, try again
    agentctl runs                         # both runs are in the store ...
    agentctl replay <run>                 # ... and each replays from its journal
    agentctl export prov <run>            # a lesson is a prov:Entity derived from its step

Each run: (1) finds the earlier runs of this program that no lesson was learned from,
and distils the newest into lessons with one model call (the `runs` device reads it back
from the store; each lesson names the step it came from); (2) recalls the lessons
relevant to the task from long memory (the `lessons` device, persisted in the same
store, so lessons outlive the kernel); (3) starts a ReAct worker whose system prompt is
the base prompt plus those lessons, in a process of its own with its own budget; (4)
checks the answer and records the outcome for the next run to learn from.

The model: an OpenAI-compatible endpoint when AGENTOS_LLM_BASE_URL is set (model name in
AGENTOS_LLM_MODEL), else the embedded model, else (or with AGENTOS_LEARNING_MODEL=scripted)
a deterministic stand-in that guesses until a lesson tells it to use the calculator. The
embedded model is small: what it learns is up to it; what the system does (metering,
persistence, recall, provenance, replay) is the same whichever model runs.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

from agentos import Down, Quota
from agentos.drivers.chat import ChatReply, ToolCall
from agentos.userland.distill import Distiller, learn, report_outcome, unlearned_runs
from agentos.userland.long_memory import LongMemory
from agentos.userland.promptsmith import fold_lessons
from agentos.userland.react import react_agent
from agentos.userland.structured import ModelOutputError

NAME = "learning"
TASK = "A notebook costs 3.75 EUR. How much do 17 notebooks cost, in EUR?"
EXPECTED = "63.75"
BASE_SYSTEM = "You are a shop assistant. Answer the customer's question with the amount only."

GRANT = ["llm", "tools", "lessons", "runs"]
QUOTA = Quota(tokens=60_000, tool_calls=20, children=4)
POLICY_TEXT = """
kernel: {version: 1, mode: strict}
policies:
  - {name: model, action: llm.chat, effect: allow}
  - {name: tool-list, action: tools.list, effect: allow}
  - {name: calculator, action: tools.calculator, effect: allow}
  - {name: memory, actions: [lessons.recall, lessons.add, lessons.list], effect: allow}
  - {name: history, actions: [runs.list, runs.digest], effect: allow}
"""


def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression such as 17 * 3.75 (numbers and + - * / only)."""
    if not re.fullmatch(r"[0-9.+\-*/() ]{1,100}", expression.strip()):
        raise ValueError("only numbers and + - * / ( ) are allowed")
    return round(float(eval(expression, {"__builtins__": {}})), 6)  # noqa: S307 - checked above


def _policy() -> Any:
    from agentos.policy import PolicyEngine

    return PolicyEngine.from_text("```yaml\n" + POLICY_TEXT + "\n```", path="examples/learning.py")


def __getattr__(name: str) -> Any:   # POLICY is built on first use: importing this file stays cheap
    if name == "POLICY":
        return _policy()
    raise AttributeError(name)


# -- the processes ------------------------------------------------------------------------

async def worker(sys: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The agent: a ReAct loop with the calculator, under the prompt it was given; it
    reports its answer to the capability it was started with last."""
    res = await react_agent(sys, args["task"], ["calculator"], system=args["system"], max_steps=4,
                            max_tokens=96)
    await sys.send(sys.caps[-1], {"answer": res.answer, "stop": res.stop})
    return res.to_dict()


async def init(sys: Any, args: Any) -> dict[str, Any]:
    # 1. learn from the newest earlier run nothing was learned from yet
    learned_from, learned = None, []
    pending = await unlearned_runs(sys, NAME)
    if pending:
        learned_from = pending[-1]
        try:
            res = await learn(sys, learned_from, distiller=Distiller(max_lessons=2, max_tokens=300))
            learned = [l.text for l in res.stored.added]
        except ModelOutputError as e:   # a small model may not manage: say so, carry on
            await sys.log("warn", "learn.failed", run=learned_from, error=str(e))
    # 2. recall what is relevant to the task (or, if no lesson shares a word with it, the
    #    strongest lessons there are); the prompt carries them
    mem = await LongMemory.open(sys, "lessons")
    lessons = await mem.recall(TASK, 3) or await mem.recall("", 3)
    await mem.close()
    system = fold_lessons(BASE_SYSTEM, lessons)
    await sys.log("info", "learning.prompt", lessons=[l.id for l in lessons], prompt=system)
    # 3. the agent, as a process with its own budget
    me = await sys.self_cap()
    pid, cap = await sys.spawn(worker, name="worker", caps=["llm", "tools", me],
                               quota=Quota(tokens=20_000, tool_calls=4), args={"task": TASK, "system": system})
    await sys.monitor(cap)
    msg = await sys.recv(match=lambda m: (isinstance(m.body, dict) and "answer" in m.body)
                         or (isinstance(m.body, Down) and m.body.pid == pid))
    reason = await sys.waitpid(cap)
    # 4. check the answer and record the outcome, for the next run to learn from
    answer = msg.body.get("answer") if msg is not None and isinstance(msg.body, dict) else None
    ok = isinstance(answer, str) and EXPECTED in answer.replace(",", "")
    await report_outcome(sys, ok, f"answered {answer!r} (worker {reason}); the right answer is {EXPECTED} EUR")
    return {"learned_from": learned_from, "learned": learned, "recalled": [l.text for l in lessons],
            "prompt": system, "answer": answer, "ok": ok}


# -- setup: the devices -------------------------------------------------------------------

def setup(kernel: Any) -> None:
    """The devices. Long memory and run history both live in the store the run is recorded
    to ($AGENTOS_HOME/store.db with agentctl run): lessons under `lessons/learning/`."""
    from agentos.drivers.lessons import LongMemoryDriver
    from agentos.drivers.runs import RunsDriver
    from agentos.drivers.tools import Tool, ToolsDriver

    kernel.register_driver(choose_model())
    kernel.register_driver(ToolsDriver([Tool("calculator", calculator, effect="read_only")]))
    kernel.register_driver(LongMemoryDriver(namespace=NAME))
    kernel.register_driver(RunsDriver())


def choose_model() -> Any:
    """The `llm` device: an endpoint, the embedded model, or the scripted stand-in."""
    if os.environ.get("AGENTOS_LEARNING_MODEL") != "scripted":
        base = os.environ.get("AGENTOS_LLM_BASE_URL")
        if base:
            from agentos.drivers.llm import LLMDriver

            return LLMDriver(base_url=base, model=os.environ.get("AGENTOS_LLM_MODEL") or "gpt-4o-mini")
        try:
            from agentos.drivers.local import LocalDriver, default_model_path

            default_model_path()
            return LocalDriver(name="llm", max_tokens=256, answer_chars=60)
        except Exception:  # no embedded model here: the stand-in keeps the example runnable
            pass
    from agentos.drivers.scripted import ScriptedChat

    return ScriptedChat([stand_in] * 64, name="llm")


def stand_in(req: dict[str, Any]) -> Any:
    """A deterministic model: guesses, unless a lesson in its prompt says to use the calculator."""
    msgs = req["messages"]
    rf = req.get("response_format")
    if rf is not None:   # the distiller: one lesson, from the step where the guess was answered
        shown = msgs[-1]["content"]
        steps = [int(n) for n in re.findall(r"^\[(\d+)\] response: model answered", shown, re.M)]
        allowed = rf["json_schema"]["schema"]["properties"]["lessons"]["items"]["properties"]["step"].get("enum")
        step = steps[-1] if steps else (allowed[-1] if allowed else 0)
        return json.dumps({"lessons": [{"text": "To find what several items cost, use the calculator; never guess.",
                                        "step": step, "confidence": "high", "tags": ["arithmetic"]}]})
    system = msgs[0]["content"]
    results = [m for m in msgs if m["role"] == "tool"]
    if "calculator" in system and not results:
        return ChatReply("", [ToolCall("call_1", "calculator", {"expression": "17 * 3.75"})])
    if results:
        return f"{results[-1]['content']} EUR"
    return "60 EUR"
