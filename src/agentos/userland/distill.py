"""Distillation: turn a finished run into lessons, with one model call.

A `Distiller` reads a run from the store through the `runs` device (its steps, numbered
as in the PROV export, its log notes and its outcome), shows the model a digest and asks
for lessons as JSON under a schema (`response_format`), each naming the step it comes
from. `parse_lessons` checks the reply strictly: anything malformed is a
`ModelOutputError` that says what was wrong, never a silent empty list. `learn` runs the
distiller and stores the lessons in a long memory, where each keeps its source run and
step (so provenance can say which lesson came from which step).

A program marks a run's outcome with `report_outcome(sys, ok, detail)`; the distiller
reads it back from the run's log.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ..drivers.lesson_index import MAX_TAG
from ..kernel.recall import terms
from ..kernel.trap import Sys
from .long_memory import AddResult, LongMemory
from .structured import ModelOutputError, bounded_text, json_format, parse_json

SYSTEM = ("You review a finished run of an AI agent and write lessons for its next attempt. "
          "A lesson is one short, general, actionable sentence of advice. Each lesson names the "
          "step number it was learned from. Answer in JSON.")
CONFIDENCE = {"low": 0.3, "medium": 0.6, "high": 0.9}
MAX_LESSON_TEXT = 300


def lessons_schema(steps: Iterable[int], max_lessons: int) -> dict[str, Any]:
    """The reply's JSON schema; `step` is limited to the steps the model was shown."""
    step_enum = sorted(set(steps))
    item: dict[str, Any] = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 8, "maxLength": MAX_LESSON_TEXT},
            "step": {"type": "integer", "enum": step_enum} if step_enum else {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1, "maxLength": 24}},
            "confidence": {"enum": list(CONFIDENCE)},
        },
        "required": ["text", "step", "confidence"],
        "additionalProperties": False,
    }
    return {"type": "object", "properties": {"lessons": {"type": "array", "minItems": 1,
                                                          "maxItems": max_lessons, "items": item}},
            "required": ["lessons"], "additionalProperties": False}


def parse_lessons(text: Any, *, steps: Iterable[int] | None = None, run: str | None = None,
                  outcome: str = "unknown", max_lessons: int = 10,
                  truncated: bool = False) -> list[dict[str, Any]]:
    """The model's reply as lesson inputs for a long memory, or `ModelOutputError`.

    `steps`: the step numbers the model was shown (a lesson citing another is an error);
    `run`: the source run stamped on every lesson; `outcome`: that run's outcome."""
    allowed = None if steps is None else set(steps)
    data = parse_json(text, None, what="lessons", truncated=truncated)
    if not isinstance(data, dict) or not isinstance(data.get("lessons"), list):
        raise ModelOutputError(f"lessons: the reply must be an object with a 'lessons' list, "
                               f"got {type(data).__name__}{'' if not isinstance(data, dict) else ' with keys ' + str(sorted(data))[:80]}")
    extra = sorted(set(data) - {"lessons"})
    if extra:
        raise ModelOutputError(f"lessons: unexpected key(s) {extra} beside 'lessons'")
    items = data["lessons"]
    if not items:
        raise ModelOutputError("lessons: the reply holds no lessons")
    if len(items) > max_lessons:
        raise ModelOutputError(f"lessons: {len(items)} lessons, at most {max_lessons} were asked for")
    out: list[dict[str, Any]] = []
    for i, it in enumerate(items):
        where = f"lessons[{i}]"
        if not isinstance(it, dict):
            raise ModelOutputError(f"{where} must be an object, got {type(it).__name__}")
        extra = sorted(set(it) - {"text", "step", "tags", "confidence"})
        if extra:
            raise ModelOutputError(f"{where} has unexpected key(s) {extra}")
        text = bounded_text(it.get("text"), f"{where}.text", lo=8, hi=MAX_LESSON_TEXT)
        if not terms(text):
            raise ModelOutputError(f"{where}.text has no words")
        step = it.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ModelOutputError(f"{where}.step must be a non-negative integer, got {step!r:.40}")
        if allowed is not None and step not in allowed:
            raise ModelOutputError(f"{where}.step {step} is not a step of the run shown "
                                   f"({min(allowed) if allowed else '-'}..{max(allowed) if allowed else '-'})")
        conf = it.get("confidence", "medium")
        if conf not in CONFIDENCE:
            raise ModelOutputError(f"{where}.confidence must be one of {', '.join(CONFIDENCE)}, got {conf!r:.40}")
        tags = it.get("tags") or []
        if not isinstance(tags, list) or len(tags) > 4:
            raise ModelOutputError(f"{where}.tags must be a list of at most 4 strings")
        clean_tags = [bounded_text(t, f"{where}.tags[{j}]", hi=min(24, MAX_TAG)).lower() for j, t in enumerate(tags)]
        out.append({"text": text, "tags": list(dict.fromkeys(clean_tags)), "source_run": run,
                    "source_step": step, "outcome": outcome, "score": CONFIDENCE[conf]})
    return out


@dataclass
class Distillation:
    """A distiller's result: the run it read, the lessons (not yet stored) and the raw reply."""

    run: str
    outcome: str
    lessons: list[dict[str, Any]]
    digest: dict[str, Any] = field(repr=False, default_factory=dict)
    reply: dict[str, Any] = field(repr=False, default_factory=dict)


def run_outcome(digest: dict[str, Any]) -> str:
    """success / failure from the run's own `outcome` note, else from how init ended."""
    oc = digest.get("outcome")
    if isinstance(oc, dict):
        return "success" if oc.get("ok") else "failure"
    exit_ = str(digest.get("exit") or "")
    if exit_ and not exit_.startswith("normal"):
        return "failure"
    return "unknown"


@dataclass
class Distiller:
    """Turns a finished run into lessons through one LLM call (devices named by the caller)."""

    llm: str = "llm"
    runs: str = "runs"
    model: str | None = None
    max_tokens: int = 400
    max_lessons: int = 3
    max_steps: int = 40
    max_chars: int = 240
    system: str = SYSTEM

    def __post_init__(self) -> None:
        if not 1 <= self.max_lessons <= 20:
            raise ValueError(f"max_lessons must be in 1..20, got {self.max_lessons}")

    def prompt(self, digest: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages the model sees for a run's digest."""
        oc = digest.get("outcome")
        if isinstance(oc, dict):
            verdict = ("SUCCEEDED" if oc.get("ok") else "FAILED") + (f": {oc['detail']}" if oc.get("detail") else "")
        else:
            verdict = f"ended {digest.get('exit') or 'unknown'}"
        lines = [f"Run {digest.get('run')} ({digest.get('name')}) {verdict}.", "Steps:"]
        for s in digest.get("steps") or []:
            lines.append(f"[{s['step']}] {s['type']}: {s['text']}")
        if digest.get("omitted"):
            lines.append(f"({digest['omitted']} middle steps omitted)")
        notes = [n for n in digest.get("notes") or [] if n.get("msg") not in ("react.task",)][-8:]
        if notes:
            lines.append("Notes:")
            lines += [f"- {n['msg']}: {n['fields']}" for n in notes]
        lines.append(f"Write at most {self.max_lessons} lessons that would make the next attempt succeed.")
        return [{"role": "system", "content": self.system}, {"role": "user", "content": "\n".join(lines)}]

    async def digest(self, sys: Sys, run: str) -> dict[str, Any]:
        h = await sys.open(self.runs)
        try:
            out: dict[str, Any] = await sys.read(h, {"op": "digest", "run": run, "max_steps": self.max_steps,
                                                     "max_chars": self.max_chars})
        finally:
            await sys.close(h)
        return out

    async def distill(self, sys: Sys, run: str) -> Distillation:
        """Read `run` and ask the model for lessons; raises `ModelOutputError` on a bad reply."""
        digest = await self.digest(sys, run)
        steps = [s["step"] for s in digest.get("steps") or []]
        outcome = run_outcome(digest)
        req: dict[str, Any] = {"messages": self.prompt(digest), "max_tokens": self.max_tokens,
                               "temperature": 0.0,
                               "response_format": json_format("lessons", lessons_schema(steps, self.max_lessons))}
        if self.model:
            req["model"] = self.model
        h = await sys.open(self.llm)
        try:
            reply = await sys.read(h, req)
        finally:
            await sys.close(h)
        lessons = parse_lessons(reply.get("content"), steps=steps, run=digest["run"], outcome=outcome,
                                max_lessons=self.max_lessons, truncated=reply.get("finish_reason") == "length")
        await sys.log("info", "distill.lessons", run=digest["run"], outcome=outcome, count=len(lessons))
        return Distillation(digest["run"], outcome, lessons, digest, reply)


@dataclass(frozen=True)
class Learned:
    run: str
    outcome: str
    stored: AddResult


async def learn(sys: Sys, run: str, *, distiller: Distiller | None = None,
                memory: Any = "lessons") -> Learned:
    """Distil `run` and store its lessons in the long memory behind `memory`."""
    d = await (distiller or Distiller()).distill(sys, run)
    mem = await LongMemory.open(sys, memory)
    try:
        stored = await mem.add(d.lessons)
    finally:
        await mem.close()
    await sys.log("info", "learn.stored", run=d.run, lessons=list(stored.ids))
    return Learned(d.run, d.outcome, stored)


async def report_outcome(sys: Sys, ok: bool, detail: str = "") -> None:
    """Mark how this run's task went, for the distiller (an `outcome` log event)."""
    await sys.log("info" if ok else "warn", "outcome", ok=bool(ok), detail=str(detail)[:2000])


async def unlearned_runs(sys: Sys, name: str, *, memory: Any = "lessons", runs: str = "runs",
                         limit: int = 20) -> list[str]:
    """Finished runs named `name` that no lesson in `memory` was learned from, oldest first."""
    h = await sys.open(runs)
    try:
        rows = await sys.read(h, {"op": "list", "name": name, "limit": limit})
    finally:
        await sys.close(h)
    mem = await LongMemory.open(sys, memory)
    try:
        known: set[str] = set()
        offset = 0
        while True:
            page = await mem.list(offset=offset, limit=1000)
            known |= {l.source_run for l in page if l.source_run}
            if len(page) < 1000:
                break
            offset += 1000
    finally:
        await mem.close()
    return [r["run"] for r in reversed(rows) if r["run"] not in known]


__all__ = ["CONFIDENCE", "Distillation", "Distiller", "Learned", "SYSTEM", "learn", "lessons_schema",
           "parse_lessons", "report_outcome", "run_outcome", "unlearned_runs"]
