"""Reflection: a second look at an agent's answer before it is given.

After the ReAct loop produces an answer, a reflection step (the same model or another
device) judges it and returns a `ReflectVerdict`: accept, or retry with a critique. The
verdict is asked for as JSON under a schema and parsed strictly; a reply that does not
parse counts as a failed reflection (`ModelOutputError`), never as a silent accept.
Retries are bounded (`Reflect.max_retries`) and every reflection is a metered, journaled
model call. With `learn_to`, the critique of a rejected answer is stored as a lesson in
that long memory, so the next run can recall it.

A custom judge is any `async def judge(sys, task, answer, messages) -> ReflectVerdict`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ..kernel.recall import terms
from ..kernel.trap import Sys
from .structured import ModelOutputError, bounded_text, json_format, parse_json

SYSTEM = ("You check an assistant's answer to a task. Reply in JSON: verdict \"accept\" if the answer "
          "is correct and complete, else \"retry\" with a short critique saying what is wrong and how "
          "to fix it.")
MAX_CRITIQUE = 400
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdict": {"enum": ["accept", "retry"]},
                   "critique": {"type": "string", "maxLength": MAX_CRITIQUE}},
    "required": ["verdict", "critique"],
    "additionalProperties": False,
}

Judge = Callable[[Sys, str, str, list[dict[str, Any]]], Awaitable["ReflectVerdict"]]


@dataclass(frozen=True)
class ReflectVerdict:
    """Accept the answer, or retry with a critique (required when retrying)."""

    accept: bool
    critique: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.accept, bool):
            raise TypeError(f"ReflectVerdict.accept must be a bool, got {type(self.accept).__name__}")
        if not self.accept and not self.critique.strip():
            raise ValueError("a retry verdict needs a critique saying what to fix")

    def to_dict(self) -> dict[str, Any]:
        return {"accept": self.accept, "critique": self.critique}


def parse_verdict(text: Any, *, truncated: bool = False) -> ReflectVerdict:
    """The reflection model's reply as a verdict, or `ModelOutputError` saying what is wrong."""
    data = parse_json(text, VERDICT_SCHEMA, what="verdict", truncated=truncated)
    critique = data["critique"].strip()
    if data["verdict"] == "retry":
        return ReflectVerdict(False, bounded_text(critique, "verdict.critique", lo=3, hi=MAX_CRITIQUE))
    return ReflectVerdict(True, critique[:MAX_CRITIQUE])


@dataclass(frozen=True)
class Reflect:
    """How `react_agent` reflects. `llm=None`: the agent's own model device."""

    llm: str | None = None
    model: str | None = None
    max_retries: int = 1
    max_tokens: int = 160
    system: str = SYSTEM
    learn_to: Any = None           # a lessons device: store critiques of rejected answers there
    judge: Judge | None = None     # a custom judge instead of a model call

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) \
                or not 0 <= self.max_retries <= 10:
            raise ValueError(f"max_retries must be an int in 0..10, got {self.max_retries!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 16:
            raise ValueError(f"max_tokens must be an int >= 16, got {self.max_tokens!r}")


def reflect_messages(system: str, task: str, answer: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the judge sees: the task, the tool results the agent saw, and its answer."""
    seen = [f"- {m.get('name')}: {str(m.get('content'))[:300]}" for m in messages if m.get("role") == "tool"][-6:]
    body = [f"Task: {task}"]
    if seen:
        body += ["Tool results the assistant saw:", *seen]
    body += [f"Proposed answer: {answer}", "Is this answer correct and complete?"]
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(body)}]


async def reflect_once(sys: Sys, handle: int | None, cfg: Reflect, task: str, answer: str,
                       messages: list[dict[str, Any]]) -> ReflectVerdict:
    """One reflection: the custom judge, or one model call under the verdict schema."""
    if cfg.judge is not None:
        v = await cfg.judge(sys, task, answer, messages)
        if not isinstance(v, ReflectVerdict):
            raise ModelOutputError(f"the judge returned {type(v).__name__}, not a ReflectVerdict")
        return v
    assert handle is not None
    req: dict[str, Any] = {"messages": reflect_messages(cfg.system, task, answer, messages),
                           "max_tokens": cfg.max_tokens, "temperature": 0.0,
                           "response_format": json_format("verdict", VERDICT_SCHEMA)}
    if cfg.model:
        req["model"] = cfg.model
    reply = await sys.read(handle, req)
    return parse_verdict(reply.get("content"), truncated=reply.get("finish_reason") == "length")


async def learn_from_rejection(sys: Sys, memory: Any, task: str, verdict: ReflectVerdict) -> str | None:
    """Store a rejected answer's critique as a lesson; returns its id (None if the critique
    is too short to be a lesson)."""
    from .long_memory import LongMemory

    text = verdict.critique.strip()[:300]
    if len(text) < 8 or not terms(text):
        return None
    tags = ["reflection"] + [t for t in dict.fromkeys(terms(task)) if 3 < len(t) <= 24][:3]
    mem = await LongMemory.open(sys, memory)
    try:
        res = await mem.add([{"text": text, "tags": tags, "outcome": "failure", "score": 0.6}])
    finally:
        await mem.close()
    return res.ids[0] if res.ids else None


__all__ = ["Judge", "MAX_CRITIQUE", "Reflect", "ReflectVerdict", "SYSTEM", "VERDICT_SCHEMA",
           "learn_from_rejection", "parse_verdict", "reflect_messages", "reflect_once"]
