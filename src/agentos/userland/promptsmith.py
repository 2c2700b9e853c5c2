"""Promptsmith: write, refine and remember system prompts with a model.

`forge_prompt(sys, brief)` asks the model for a system prompt from a `ForgeBrief` (role,
goal, constraints, tools, examples); `refine_prompt(sys, prompt, feedback)` rewrites one
against feedback; `forge_from_memory(sys, brief, memory)` recalls the lessons relevant
to the brief from a long memory, folds them into the brief as constraints, and appends
any the model left out verbatim, so a lesson is never silently dropped. Each is one
metered, journaled model call asking for `{"prompt": ...}` under a JSON schema; a reply
that does not parse is a `ModelOutputError`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from ..kernel.trap import Sys
from .long_memory import Lesson, LongMemory, lessons_section
from .structured import ModelOutputError, ask_json, bounded_text

SYSTEM = ("You write system prompts for AI agents. A good system prompt says who the agent is, "
          "what it must achieve, the rules it follows and how it uses its tools, in a few plain "
          "sentences addressed to the agent as \"you\". Answer in JSON.")
MAX_PROMPT = 600
MIN_PROMPT = 20
PROMPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"prompt": {"type": "string", "minLength": MIN_PROMPT, "maxLength": MAX_PROMPT}},
    "required": ["prompt"],
    "additionalProperties": False,
}


def _field(v: Any, what: str, hi: int) -> str:
    try:
        return bounded_text(v, what, hi=hi)
    except ModelOutputError as e:
        raise ValueError(str(e)) from None


@dataclass(frozen=True)
class ForgeBrief:
    """What the prompt is for. `examples` are (input, good output) pairs."""

    role: str
    goal: str
    constraints: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    examples: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", _field(self.role, "brief role", 500))
        object.__setattr__(self, "goal", _field(self.goal, "brief goal", 1000))
        for name, limit, hi in (("constraints", 20, 400), ("tools", 32, 64)):
            v = getattr(self, name)
            if isinstance(v, str) or not isinstance(v, (list, tuple)) or len(v) > limit:
                raise ValueError(f"brief {name} must be a list of at most {limit} strings")
            object.__setattr__(self, name, tuple(_field(x, f"brief {name} item", hi) for x in v))
        ex = self.examples
        if isinstance(ex, str) or not isinstance(ex, (list, tuple)) or len(ex) > 8:
            raise ValueError("brief examples must be a list of at most 8 (input, output) pairs")
        pairs = []
        for e in ex:
            if not isinstance(e, (list, tuple)) or len(e) != 2:
                raise ValueError(f"a brief example is an (input, output) pair, got {e!r:.60}")
            pairs.append((_field(e[0], "example input", 1000), _field(e[1], "example output", 1000)))
        object.__setattr__(self, "examples", tuple(pairs))

    def render(self) -> str:
        lines = [f"Role: {self.role}", f"Goal: {self.goal}"]
        if self.constraints:
            lines += ["Rules:"] + [f"- {c}" for c in self.constraints]
        if self.tools:
            lines.append("Tools: " + ", ".join(self.tools))
        for i, (a, b) in enumerate(self.examples, 1):
            lines.append(f"Example {i}: input {a!r} → output {b!r}")
        return "\n".join(lines)

    def query(self) -> str:
        """What to recall lessons by."""
        return " ".join([self.role, self.goal, *self.constraints, *self.tools])

    def with_constraints(self, more: Sequence[str]) -> "ForgeBrief":
        room = max(0, 20 - len(self.constraints))
        return dataclasses.replace(self, constraints=self.constraints + tuple(more)[:room])


@dataclass(frozen=True)
class Forged:
    """A written prompt, and the ids of the lessons folded into it."""

    prompt: str
    lessons: tuple[str, ...] = ()


async def _ask(sys: Sys, llm: Any, messages: list[dict[str, Any]], *, model: str | None,
               max_tokens: int, what: str) -> str:
    h = await sys.open(llm)
    try:
        data, _reply = await ask_json(sys, h, messages, PROMPT_SCHEMA, name=what, max_tokens=max_tokens,
                                      model=model)
    finally:
        await sys.close(h)
    return bounded_text(data["prompt"], f"{what}.prompt", lo=MIN_PROMPT, hi=MAX_PROMPT)


async def forge_prompt(sys: Sys, brief: ForgeBrief, *, llm: Any = "llm", model: str | None = None,
                       max_tokens: int = 320, system: str = SYSTEM) -> Forged:
    """A system prompt written by the model from `brief`."""
    if not isinstance(brief, ForgeBrief):
        raise TypeError(f"forge_prompt needs a ForgeBrief, got {type(brief).__name__}")
    msgs = [{"role": "system", "content": system},
            {"role": "user", "content": "Write the system prompt for this agent.\n" + brief.render()}]
    text = await _ask(sys, llm, msgs, model=model, max_tokens=max_tokens, what="forge")
    await sys.log("info", "promptsmith.forge", role=brief.role, chars=len(text))
    return Forged(text)


async def refine_prompt(sys: Sys, prompt: str, feedback: str, *, llm: Any = "llm", model: str | None = None,
                        max_tokens: int = 320, system: str = SYSTEM) -> Forged:
    """`prompt` rewritten by the model to answer `feedback`."""
    prompt = _field(prompt, "prompt", 20_000)
    feedback = _field(feedback, "feedback", 4000)
    msgs = [{"role": "system", "content": system},
            {"role": "user", "content": f"Improve this system prompt.\nPrompt: {prompt}\n"
                                        f"Feedback on how agents did with it: {feedback}\n"
                                        f"Write the improved system prompt."}]
    text = await _ask(sys, llm, msgs, model=model, max_tokens=max_tokens, what="refine")
    await sys.log("info", "promptsmith.refine", chars=len(text))
    return Forged(text)


def fold_lessons(prompt: str, lessons: Sequence[Lesson]) -> str:
    """`prompt` with every lesson the model left out appended verbatim."""
    missing = [l for l in lessons if l.text not in prompt]
    section = lessons_section(missing)
    return prompt if not section else f"{prompt.rstrip()}\n\n{section}"


async def forge_from_memory(sys: Sys, brief: ForgeBrief, memory: Any = "lessons", *, k: int = 3,
                            llm: Any = "llm", model: str | None = None, max_tokens: int = 320,
                            system: str = SYSTEM) -> Forged:
    """Forge a prompt for `brief` that carries the lessons a long memory holds for it.

    `memory` is a `LongMemory` or a lessons device (name or capability)."""
    if isinstance(memory, LongMemory):
        lessons = await memory.recall(brief.query(), k)
    else:
        mem = await LongMemory.open(sys, memory)
        try:
            lessons = await mem.recall(brief.query(), k)
        finally:
            await mem.close()
    forged = await forge_prompt(sys, brief.with_constraints([l.text for l in lessons]), llm=llm, model=model,
                                max_tokens=max_tokens, system=system)
    text = fold_lessons(forged.prompt, lessons)
    await sys.log("info", "promptsmith.from_memory", lessons=[l.id for l in lessons])
    return Forged(text, tuple(l.id for l in lessons))


__all__ = ["Forged", "ForgeBrief", "MAX_PROMPT", "PROMPT_SCHEMA", "SYSTEM", "fold_lessons",
           "forge_from_memory", "forge_prompt", "refine_prompt"]
