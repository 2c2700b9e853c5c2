"""Semantic memory hygiene: purge lessons from long memory that later evidence contradicts,
or that have gone stale, and say so with a failure event for each.

`hygiene(sys, evidence, options)` runs in a job carved from the caller's budget and holding
the memory's capability. For each piece of evidence (a sentence observed after the lesson
was learned: a tool result, a run's outcome, a correction) it recalls the lessons most
relevant to it and asks a detector whether the evidence contradicts each:

- ``rule:negation_conflict``: the lesson and the evidence share most of their content
  words (`overlap` of the smaller set) and exactly one of them is negated ("not",
  "never", "no longer", "must not", "forbidden", ...). A rule: it misses contradictions
  stated without a negation ("accepts" against "rejects");
- ``model:<device>``: a natural-language-inference call (one metered chat read under a
  JSON schema: contradicts, supports or unrelated).

A lesson is stale (``rule:stale``) when it has not been used (nor created) within
`max_age` of `now`, both in the memory device's own time; `now` defaults to the newest
activity in the memory, so no host clock is read.

Each purged lesson is forgotten through the device (a journaled write) and reported as a
failure: `hallucination` for a contradicted lesson (a claim evidence contradicts),
`stale_memory` for a stale one, with the lesson, the evidence and the detector.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..abi.errors import SyscallError
from ..abi.types import Quota
from ..kernel.args import shown
from ..kernel.process import ProcessImage
from ..kernel.trap import Sys
from .failures import Failure, FailureKind, Severity, failure_from_error, finite
from .jobs import run_job
from .long_memory import Lesson, LongMemory
from .structured import json_format, parse_json

SOURCE = "scak.hygiene"

_NEG = re.compile(r"\b(not|no|never|don'?t|doesn'?t|isn'?t|aren'?t|wasn'?t|mustn'?t|shouldn'?t|can'?t|cannot|"
                  r"won'?t|no\s+longer|forbidden|prohibited)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("""a an the and or of to in on for with at by from as is are was were be been it its this that
these those do does did must should can will would may might has have had always use using since after before
than then now any all some""".split())


def content_words(text: str) -> set[str]:
    words = _WORD.findall(_NEG.sub(" ", text.lower()))
    return {w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words if w not in _STOP and len(w) > 1}


def negated(text: str) -> bool:
    return _NEG.search(text) is not None


def rule_negation_conflict(lesson: str, evidence: str, overlap: float = 0.6) -> bool:
    """`rule:negation_conflict`: most content words shared, and exactly one side negated."""
    a, b = content_words(lesson), content_words(evidence)
    if not a or not b:
        return False
    shared = len(a & b) / min(len(a), len(b))
    return shared >= overlap and negated(lesson) != negated(evidence)


NLI_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"relation": {"enum": ["contradicts", "supports", "unrelated"]},
                   "reason": {"type": "string", "maxLength": 200}},
    "required": ["relation", "reason"], "additionalProperties": False,
}
NLI_SYSTEM = ("Decide whether the evidence contradicts the lesson, supports it, or is unrelated. "
              "Reply in JSON: relation and a short reason.")


async def judge_contradiction(sys: Sys, handle: int, lesson: str, evidence: str, *, model: str | None = None,
                              max_tokens: int = 96) -> tuple[bool, str]:
    """`model:<device>`: one chat read on an open handle; (contradicts?, reason)."""
    req: dict[str, Any] = {"messages": [{"role": "system", "content": NLI_SYSTEM},
                                        {"role": "user", "content": f"Lesson: {lesson}\nEvidence: {evidence}"}],
                           "max_tokens": max_tokens, "temperature": 0.0,
                           "response_format": json_format("relation", NLI_SCHEMA)}
    if model:
        req["model"] = model
    reply = await sys.read(handle, req)
    content = reply.get("content") if isinstance(reply, dict) else None
    data = parse_json(content, NLI_SCHEMA, what="contradiction verdict",
                      truncated=isinstance(reply, dict) and reply.get("finish_reason") == "length")
    return data["relation"] == "contradicts", str(data["reason"])


@dataclass(frozen=True)
class HygieneOptions:
    """`memory`: the lessons device. `judge`: a chat device for the model-call detector
    (None: the rule). `k`: lessons recalled per piece of evidence. `max_age` (the memory's
    time units) and `now` for staleness (None: no staleness check / the newest activity).
    `dry_run`: report, forget nothing."""

    memory: str = "lessons"
    judge: str | None = None
    model: str | None = None
    k: int = 5
    overlap: float = 0.6
    max_age: float | None = None
    now: float | None = None
    dry_run: bool = False
    quota: Quota = field(default_factory=lambda: Quota(tokens=10_000))

    def __post_init__(self) -> None:
        if not isinstance(self.memory, str) or not self.memory:
            raise TypeError("HygieneOptions.memory must name a lessons device")
        if self.judge is not None and (not isinstance(self.judge, str) or not self.judge):
            raise TypeError("HygieneOptions.judge must name a chat device or be None")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()
                                       or len(self.model) > 256):
            raise TypeError("HygieneOptions.model must be a model name (1-256 characters) or None")
        if type(self.k) is not int or not 1 <= self.k <= 100:
            raise ValueError(f"HygieneOptions.k must be an int in 1..100, got {self.k!r}")
        for what in ("overlap",):
            v = getattr(self, what)
            if not finite(v) or not 0 < v <= 1:
                raise ValueError(f"HygieneOptions.{what} must be in (0, 1], got {shown(v)}")
        for what in ("max_age", "now"):
            v = getattr(self, what)
            if v is not None and (not finite(v) or v < 0):
                raise ValueError(f"HygieneOptions.{what} must be a finite non-negative number or None, "
                                 f"got {shown(v)}")
        if not isinstance(self.dry_run, bool):
            raise TypeError("HygieneOptions.dry_run must be a bool")
        if not isinstance(self.quota, Quota):
            raise TypeError("HygieneOptions.quota must be a Quota")


@dataclass(frozen=True)
class HygieneReport:
    """Lessons purged (or, in a dry run, that would be), each with its failure."""

    contradicted: tuple[str, ...]
    stale: tuple[str, ...]
    failures: tuple[Failure, ...]
    checked: int

    def to_dict(self) -> dict[str, Any]:
        return {"contradicted": list(self.contradicted), "stale": list(self.stale),
                "failures": [f.to_dict() for f in self.failures], "checked": self.checked}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HygieneReport":
        return cls(tuple(d["contradicted"]), tuple(d["stale"]), tuple(Failure.from_dict(f) for f in d["failures"]),
                   int(d["checked"]))


async def _all_lessons(mem: LongMemory, cap: int = 10_000) -> list[Lesson]:
    out: list[Lesson] = []
    while len(out) < cap:
        page = await mem.list(offset=len(out), limit=100)
        out += page
        if len(page) < 100:
            break
    return out


async def hygiene_main(sys: Sys, args: dict[str, Any]) -> dict[str, Any]:
    caller = sys.caps[args["reply_index"]]
    o = args["options"]
    mem = await LongMemory.open(sys, sys.caps[0])
    judge_h = await sys.open(sys.caps[1]) if o["judge"] else None
    detector = f"model:{o['judge']}" if o["judge"] else "rule:negation_conflict"
    contradicted: dict[str, Failure] = {}
    errors: list[Failure] = []
    checked = 0
    for ev in args["evidence"]:
        for lesson, _rel in await mem.recall_scored(ev, o["k"], touch=False):
            if lesson.id in contradicted:
                continue
            checked += 1
            if judge_h is not None:
                try:
                    hit, reason = await judge_contradiction(sys, judge_h, lesson.text, ev, model=o["model"])
                except SyscallError as e:  # no verdict: keep the lesson, report the failed call
                    errors.append(failure_from_error(e, source=SOURCE, detector=detector, subject=lesson.id))
                    continue
            else:
                hit, reason = rule_negation_conflict(lesson.text, ev, o["overlap"]), "one side negates the other"
            if hit:
                contradicted[lesson.id] = Failure(
                    FailureKind.HALLUCINATION, f"lesson {lesson.id} is contradicted by later evidence: {reason}",
                    SOURCE, detector, severity=Severity.WARNING, subject=lesson.id,
                    evidence={"lesson": lesson.text[:300], "evidence": ev[:300], "purged": not o["dry_run"]})
    stale: dict[str, Failure] = {}
    if o["max_age"] is not None:
        lessons = await _all_lessons(mem)
        now = o["now"] if o["now"] is not None else max((max(l.created, l.last_used) for l in lessons), default=0.0)
        for l in lessons:
            seen = max(l.created, l.last_used)
            if l.id not in contradicted and now - seen > o["max_age"]:
                stale[l.id] = Failure(FailureKind.STALE_MEMORY, f"lesson {l.id} unused for {now - seen:g} "
                                      f"(max age {o['max_age']:g})", SOURCE, f"rule:stale(age>{o['max_age']:g})",
                                      subject=l.id, evidence={"lesson": l.text[:300], "age": now - seen,
                                                              "purged": not o["dry_run"]})
    purge = [*contradicted, *stale]
    if purge and not o["dry_run"]:
        await mem.forget(purge)
    fails = [*contradicted.values(), *stale.values(), *errors]
    for f in fails:
        await f.emit(sys)
    report = HygieneReport(tuple(contradicted), tuple(stale), tuple(fails), checked)
    await sys.send(caller, report.to_dict(), corr=args["corr"])
    return {"purged": len(purge)}


HYGIENE = ProcessImage("scak_hygiene", hygiene_main)


async def hygiene(sys: Sys, evidence: Sequence[str], options: HygieneOptions | None = None) -> HygieneReport:
    """Purge lessons contradicted by `evidence` or stale (see the module doc), in a job paid
    from this process's account (at most `options.quota`)."""
    o = options or HygieneOptions()
    if not isinstance(o, HygieneOptions):
        raise TypeError("hygiene: options must be HygieneOptions")
    if isinstance(evidence, str) or not isinstance(evidence, Sequence):
        raise TypeError("hygiene: evidence is a list of sentences")
    if len(evidence) > 1000:  # before reading any of it
        raise ValueError("hygiene: at most 1000 pieces of evidence at once")
    ev = []
    for e in evidence:
        if not isinstance(e, str) or not e.strip() or len(e) > 4000:
            raise ValueError("hygiene: each piece of evidence is a sentence of 1..4000 characters")
        try:
            e.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("hygiene: evidence holds a lone surrogate") from None
        ev.append(str(e))
    if len(ev) > 1000:
        raise ValueError("hygiene: at most 1000 pieces of evidence at once")
    caps = [o.memory] + ([o.judge] if o.judge else [])
    args = {"evidence": ev, "options": {"judge": o.judge, "model": o.model, "k": o.k, "overlap": o.overlap,
                                        "max_age": o.max_age, "now": o.now, "dry_run": o.dry_run}}
    body, reason = await run_job(sys, HYGIENE, args=args, caps=caps, quota=o.quota, name="scak_hygiene",
                                 spawn=False)
    if body is None:
        text = str(reason)
        f = Failure(FailureKind.QUOTA if text.startswith("quota") else FailureKind.MODEL_ERROR,
                    f"memory hygiene ended without a report: {text}", SOURCE, "rule:job_exit",
                    severity=Severity.ERROR, evidence={"exit": text[:200]})
        await f.emit(sys)
        return HygieneReport((), (), (f,), 0)
    return HygieneReport.from_dict(body)


__all__ = ["HYGIENE", "HygieneOptions", "HygieneReport", "NLI_SCHEMA", "content_words", "hygiene",
           "judge_contradiction", "negated", "rule_negation_conflict"]
