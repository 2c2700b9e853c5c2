"""Self-correction (SCAK): laziness detection and the differential audit.

Every detector is either a named *rule* (``rule:<name>``: a deterministic function of the
text, measured for precision and recall on a labelled fixture in `bench/bench_verify.py`)
or a named *model call* (``model:<device>``: a metered, journaled chat read whose reply is
parsed under a JSON schema), and every `Finding` says which.

Laziness (a non-answer) has three rules:
- ``rule:give_up``: the answer refuses or pleads inability ("I can't help with that",
  "I don't know", "left as an exercise") and says little else (fewer than
  `SUBSTANCE_WORDS` words outside the refusal), so a justified refusal that explains
  itself and offers an alternative is not lazy;
- ``rule:refused_without_tool``: a tool that could have answered was available, none was
  called, and the answer pleads no access or no ability, or hedges without a number;
- ``rule:placeholder``: a stub, template slot or filler (TODO, ``[insert ...]``,
  ``<answer>``, ``{{x}}``, lorem ipsum, ``NotImplementedError``, a bare ellipsis),
  unless the marker is what the task asked about.
`judge_laziness` is the model-call detector (``model:<device>``).

The differential audit re-checks an answer in a job carved from the caller's budget:
- by a second model (``model:<device>``): the auditor answers the task independently and
  the two answers are compared with an agreement measure; below `threshold` is a
  `disagreement` failure;
- by a tool (``tool:<name>`` with ``rule:grounded_number``): the tool's result is the
  evidence; an answer that states numbers, none of which is the tool's result (at the
  answer's own precision), is a `hallucination` failure; an answer with no number to check
  is inconclusive, not a failure.

Findings become failure events (`failures.py`) when emitted; `laziness_failures` and the
audit do that.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..abi.errors import SyscallError
from ..abi.types import Quota
from ..kernel.args import shown
from ..kernel.process import ProcessImage
from ..kernel.trap import Sys
from .agreement import _similarity, known_measure, measure
from .failures import Failure, FailureKind, Severity, failure_from_error, finite
from .jobs import run_job
from .structured import ModelOutputError, json_format, parse_json

SOURCE = "scak"
SUBSTANCE_WORDS = 12
MAX_TOOLS = 256        # tool names an AnswerContext holds
MAX_ANSWER = 100_000   # characters of an answer the rules read


@dataclass(frozen=True)
class AnswerContext:
    """What the answerer had: the task, the tools it could call, how many it called."""

    task: str = ""
    tools: tuple[str, ...] = ()
    tool_calls: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.task, str):
            raise TypeError("AnswerContext.task must be a str")
        if isinstance(self.tools, (str, bytes)):  # a common slip: "calc" is not ("c", "a", "l", "c")
            raise TypeError("AnswerContext.tools is a list of tool names, not one string")
        tools = tuple(itertools.islice(self.tools, MAX_TOOLS + 1))  # an endless iterable is not read to its end
        if len(tools) > MAX_TOOLS or not all(isinstance(t, str) and len(t) <= 128 for t in tools):
            raise ValueError(f"AnswerContext.tools is at most {MAX_TOOLS} tool names of at most 128 characters")
        object.__setattr__(self, "tools", tuple(str.__str__(t) for t in tools))
        if type(self.tool_calls) is not int or self.tool_calls < 0:
            raise ValueError(f"AnswerContext.tool_calls must be a non-negative int, got {self.tool_calls!r}")


@dataclass(frozen=True)
class Finding:
    """One detector's judgement that an answer is a failure of `kind`; `match` is the text
    that decided it (for a rule) or the model's reason (for a model call)."""

    detector: str
    kind: FailureKind
    why: str
    match: str = ""

    @property
    def is_rule(self) -> bool:
        return self.detector.startswith("rule:")

    def failure(self, subject: str = "", **evidence: Any) -> Failure:
        return Failure(self.kind, self.why, SOURCE, self.detector, subject=subject[:200],
                       evidence={"match": self.match[:200], **evidence})


# -- laziness rules --------------------------------------------------------------------

_I = re.IGNORECASE
_GIVE_UP = [re.compile(p, _I) for p in (
    r"\b(i'?m|i am)\s+(so\s+)?(sorry,?\s+)?(but\s+)?(unable|not able)\s+to\b",
    r"\bi\s+(can'?t|cannot|can not|won'?t)\s+(help|assist|answer|do|provide|complete|write|perform|explain|say)\b",
    r"\b(unfortunately|sorry),?\s+i\s+(can'?t|cannot)\b",
    r"\bi'?m\s+afraid\s+i\s+(can'?t|cannot)\b",
    r"\bi\s+(do\s+not|don'?t)\s+know\b",
    r"\bi\s+have\s+no\s+idea\b",
    r"\bas\s+an\s+ai(\s+language\s+model)?,?\s+i\b",
    r"\bbeyond\s+(what\s+i\s+can|my\s+(abilities|capabilities))\b",
    r"\bleft\s+as\s+an\s+exercise\b",
    r"\byou\s+(could|should|can|might)\s+(look\s+(this|it)\s+up|ask\s+(a|an|someone)|search\s+for|consult)\b",
    r"\bi'?d\s+rather\s+not\b",
    r"\btoo\s+many\s+possibilities\b",
    r"^\s*it\s+depends\b",
)]

_NO_ACCESS = [re.compile(p, _I) for p in (
    r"\bi\s+(don'?t|do\s+not)\s+have\s+(access|information|the\s+ability|real-?time)\b",
    r"\b(can'?t|cannot|unable\s+to|not\s+able\s+to)\s+(browse|access|read|open|compute|calculate|check|look\s+up|"
    r"do\s+large|tell|know|query|search|see)\b",
    r"\bwithout\s+being\s+able\s+to\b",
    r"\bno\s+(access|way)\s+to\b",
)]
_HEDGE = re.compile(r"\b(probably|roughly|approximately|around|about|something\s+like|some\s*where)\b", _I)
_DIGIT = re.compile(r"\d")

_PLACEHOLDER = [re.compile(p, f) for p, f in (
    (r"\bTODO\b", 0), (r"\bFIXME\b", 0), (r"\bTBD\b", 0), (r"\bXXX\b", 0),
    (r"\[(insert|your|name|add|placeholder|todo)\b[^\]]{0,60}\]", _I),
    (r"<\s*(answer|placeholder|insert[^>]{0,40}|your[^>]{0,40}|todo)\s*>", _I),
    (r"\{\{[^{}]{0,60}\}\}", 0),
    (r"\blorem\s+ipsum\b", _I),
    (r"\byour\s+\w+\s+here\b", _I),
    (r"\b(goes|go)\s+here\b", _I),
    (r"\bfill\s+(this\s+)?in\s+(later|here)\b", _I),
    (r"\braise\s+NotImplementedError\b", 0),
    (r"^\s*(\.\.\.|…|n/?a|-+)\s*$", _I),
    (r"^\s*\.\.\.\s*(#.*)?$", re.MULTILINE),
)]


def _words(text: str) -> int:
    return len(re.findall(r"[A-Za-z0-9']+", text))


def _clip(answer: Any) -> str:
    if not isinstance(answer, str):
        raise TypeError(f"an answer is a str, got {type(answer).__name__}")
    return answer[:MAX_ANSWER].encode("utf-8", "replace").decode("utf-8")


def rule_give_up(answer: str, ctx: AnswerContext) -> Finding | None:
    """`rule:give_up`: a refusal or plea of inability with little else said."""
    text = _clip(answer)
    for p in _GIVE_UP:
        m = p.search(text)
        if m is None:
            continue
        # what is left once the sentence holding the refusal is removed
        start = max(text.rfind(".", 0, m.start()), text.rfind("\n", 0, m.start())) + 1
        ends = [i for i in (text.find(".", m.end()), text.find("\n", m.end())) if i != -1]
        rest = text[:start] + " " + text[(min(ends) + 1) if ends else len(text):]
        if _words(rest) < SUBSTANCE_WORDS:
            return Finding("rule:give_up", FailureKind.LAZINESS, "the answer gives up instead of answering",
                           m.group(0))
    return None


def rule_refused_without_tool(answer: str, ctx: AnswerContext) -> Finding | None:
    """`rule:refused_without_tool`: tools were there, none was called, and the answer pleads
    no access or ability, or hedges without giving a number."""
    if not ctx.tools or ctx.tool_calls > 0:
        return None
    text = _clip(answer)
    for p in _NO_ACCESS:
        m = p.search(text)
        if m is not None:
            return Finding("rule:refused_without_tool", FailureKind.LAZINESS,
                           f"refused without trying an available tool ({', '.join(ctx.tools)})", m.group(0))
    m2 = _HEDGE.search(text)
    if m2 is not None and not _DIGIT.search(text):
        return Finding("rule:refused_without_tool", FailureKind.LAZINESS,
                       f"a vague guess although a tool was available ({', '.join(ctx.tools)})", m2.group(0))
    return None


def rule_placeholder(answer: str, ctx: AnswerContext) -> Finding | None:
    """`rule:placeholder`: a stub, template slot or filler in place of the content."""
    text = _clip(answer)
    task = ctx.task.lower()
    for p in _PLACEHOLDER:
        m = p.search(text)
        if m is not None and (m.group(0).strip().lower() not in task or not m.group(0).strip()):
            return Finding("rule:placeholder", FailureKind.LAZINESS, "the answer holds a placeholder, not content",
                           m.group(0))
    return None


Rule = Callable[[str, AnswerContext], "Finding | None"]
LAZINESS_RULES: dict[str, Rule] = {"rule:give_up": rule_give_up,
                                   "rule:refused_without_tool": rule_refused_without_tool,
                                   "rule:placeholder": rule_placeholder}


def detect_laziness(answer: str, ctx: AnswerContext | None = None,
                    rules: Sequence[str] | None = None) -> list[Finding]:
    """Every laziness rule that fires on `answer` (all rules, or those named)."""
    c = ctx or AnswerContext()
    names = list(LAZINESS_RULES) if rules is None else list(rules)
    out = []
    for name in names:
        rule = LAZINESS_RULES.get(name)
        if rule is None:
            raise ValueError(f"unknown laziness rule {name!r}: {', '.join(LAZINESS_RULES)}")
        f = rule(answer, c)
        if f is not None:
            out.append(f)
    return out


async def laziness_failures(sys: Sys, answer: str, ctx: AnswerContext | None = None) -> list[Failure]:
    """Run the laziness rules and emit a failure event for each that fires."""
    c = ctx or AnswerContext()
    out = [f.failure(c.task) for f in detect_laziness(answer, c)]
    for f in out:
        await f.emit(sys)
    return out


# -- the model-call detector for laziness ------------------------------------------------

LAZY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"lazy": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 200}},
    "required": ["lazy", "reason"], "additionalProperties": False,
}
LAZY_SYSTEM = ("You check whether an assistant's answer is a non-answer: it gives up, refuses a harmless "
               "request, refuses without using an available tool, or returns a placeholder instead of "
               "content. Reply in JSON: lazy true or false, and a short reason.")


async def judge_laziness(sys: Sys, answer: str, ctx: AnswerContext | None = None, *, device: str = "llm",
                         model: str | None = None, max_tokens: int = 96) -> Finding | None:
    """`model:<device>`: ask a model whether `answer` is lazy (one metered chat read under a
    JSON schema). A reply that does not parse raises `ModelOutputError`, never a silent
    "not lazy"."""
    c = ctx or AnswerContext()
    text = _clip(answer)[:4000]
    user = (f"Task: {c.task[:2000]}\nTools available: {', '.join(c.tools) or 'none'}\n"
            f"Tool calls made: {c.tool_calls}\nAnswer: {text}\nIs this answer lazy?")
    req: dict[str, Any] = {"messages": [{"role": "system", "content": LAZY_SYSTEM},
                                        {"role": "user", "content": user}],
                           "max_tokens": max_tokens, "temperature": 0.0,
                           "response_format": json_format("laziness", LAZY_SCHEMA)}
    if model:
        req["model"] = model
    h = await sys.open(device)
    try:
        reply = await sys.read(h, req)
    finally:
        await sys.close(h)
    content = reply.get("content") if isinstance(reply, dict) else None
    data = parse_json(content, LAZY_SCHEMA, what="laziness verdict",
                      truncated=isinstance(reply, dict) and reply.get("finish_reason") == "length")
    if not data["lazy"]:
        return None
    return Finding(f"model:{device}", FailureKind.LAZINESS, "the model judged the answer a non-answer",
                   str(data["reason"])[:200])


# -- the differential audit ----------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def numbers_in(text: str) -> list[tuple[float, int]]:
    """The numbers an answer states, each with its number of decimals (its precision)."""
    out = []
    for m in _NUMBER.finditer(text[:MAX_ANSWER]):
        raw = m.group(0).replace(",", "")
        try:
            v = float(raw)
        except ValueError:
            continue
        if math.isfinite(v):
            dec = len(raw.split(".", 1)[1]) if "." in raw and "e" not in raw.lower() else 0
            out.append((v, dec))
    return out


def _number_of(result: Any) -> float | None:
    if isinstance(result, bool):
        return None
    if isinstance(result, (int, float)):  # compared, not converted: float(10**400) raises
        return float(result) if -1e300 < result < 1e300 else None
    if isinstance(result, str):
        got = numbers_in(result)
        return got[0][0] if len(got) == 1 else None
    return None


def rule_grounded(answer: str, result: Any, tool: str) -> tuple[bool | None, Finding | None]:
    """`rule:grounded_number`: (consistent?, finding). None when the answer states nothing
    the tool's result can check (inconclusive, not a failure)."""
    text = _clip(answer)
    target = _number_of(result)
    if target is None:  # a text result: the answer must contain it
        if not isinstance(result, str) or not result.strip():
            return None, None
        ok = result.strip().lower() in text.lower()
        return ok, None if ok else Finding(f"tool:{tool}", FailureKind.HALLUCINATION,
                                           f"the answer does not contain what {tool} returned",
                                           result.strip()[:200])
    stated = numbers_in(text)
    if not stated:
        return None, None
    for v, dec in stated:
        if v == target or round(target, dec) == v or abs(v - target) <= 1e-9 * max(1.0, abs(target)):
            return True, None
    return False, Finding(f"tool:{tool}", FailureKind.HALLUCINATION,
                          f"the answer states {', '.join(f'{v:g}' for v, _ in stated[:5])}; {tool} returned {target:g}",
                          f"rule:grounded_number {target:g}")


@dataclass(frozen=True)
class ToolCheck:
    """Ground an answer in a tool's result: call `tool` on `device` with `args`."""

    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    device: str = "tools"


@dataclass(frozen=True)
class AuditOptions:
    """Who re-checks: `auditors` (chat devices that answer the task independently) and/or
    `tools` (tool checks). `threshold` is the agreement below which an auditor disagrees.
    `quota` is the whole audit's budget, carved from the caller."""

    auditors: tuple[str, ...] = ()
    tools: tuple[ToolCheck, ...] = ()
    measure: str = "lexical"
    threshold: float = 0.5
    max_tokens: int = 256
    quota: Quota = field(default_factory=lambda: Quota(tokens=10_000, tool_calls=10))

    def __post_init__(self) -> None:
        for what in ("auditors", "tools"):
            v = getattr(self, what)
            if isinstance(v, (str, bytes, ToolCheck)):
                raise TypeError(f"AuditOptions.{what} is a list, not one {type(v).__name__}")
            object.__setattr__(self, what, tuple(itertools.islice(v, 17)))  # never read to the end of an endless one
        if not self.auditors and not self.tools:
            raise ValueError("AuditOptions needs at least one auditor or tool check")
        if len(self.auditors) + len(self.tools) > 16:
            raise ValueError("AuditOptions: at most 16 auditors and tool checks")
        if not all(isinstance(a, str) and a for a in self.auditors):
            raise TypeError("AuditOptions.auditors are device names")
        if len(set(self.auditors)) != len(self.auditors):  # one answer per device: a second would be paid twice
            raise ValueError("AuditOptions.auditors names a device twice")
        if not all(isinstance(t, ToolCheck) for t in self.tools):
            raise TypeError("AuditOptions.tools are ToolChecks")
        if not known_measure(self.measure):
            raise ValueError(f"AuditOptions.measure {self.measure!r} is not a known measure")
        t = self.threshold
        if not finite(t) or not 0 <= t <= 1:
            raise ValueError(f"AuditOptions.threshold must be in [0, 1], got {shown(t)}")
        if type(self.max_tokens) is not int or not 1 <= self.max_tokens <= 32_768:
            raise ValueError(f"AuditOptions.max_tokens must be an int in 1..32768, got {self.max_tokens!r}")
        if not isinstance(self.quota, Quota):
            raise TypeError("AuditOptions.quota must be a Quota")


@dataclass(frozen=True)
class AuditReport:
    """Per check: (detector, verdict: agree | disagree | contradicted | consistent |
    inconclusive | failed, detail); and the failures emitted."""

    checks: tuple[tuple[str, str, str], ...]
    failures: tuple[Failure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [list(c) for c in self.checks], "failures": [f.to_dict() for f in self.failures]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditReport":
        return cls(tuple((str(a), str(b), str(c)) for a, b, c in d["checks"]),
                   tuple(Failure.from_dict(f) for f in d["failures"]))


async def audit_main(sys: Sys, args: dict[str, Any]) -> dict[str, Any]:
    from .cmvk import _ask

    caller = sys.caps[args["reply_index"]]
    task, answer, o = args["task"], args["answer"], args["options"]
    checks: list[tuple[str, str, str]] = []
    fails: list[Failure] = []
    if o["auditors"]:
        ask_opts = {"panel": [{"device": d, "model": None, "label": d} for d in o["auditors"]],
                    "system": "Answer the task briefly and precisely.", "max_tokens": o["max_tokens"],
                    "temperature": 0.0, "schema": None, "timeout_ms": None, "max_answer_chars": 20_000}
        got = (await _ask(sys, ask_opts, [task]))[0]
        m = measure(o["measure"])
        for d in o["auditors"]:
            a = got[d]
            det = f"model:{d}"
            if a.text is None:
                assert a.failure is not None
                fails.append(a.failure)
                checks.append((det, "failed", a.failure.detail))
                continue
            try:
                s = _similarity(m.matrix([answer, a.text])[0][1])
            except Exception as e:  # a registered measure that breaks its contract: no judgement
                f = Failure(FailureKind.MODEL_ERROR, f"the {o['measure']} measure failed: {type(e).__name__}: "
                            f"{str(e)[:200]}", SOURCE, f"rule:measure({o['measure']})", subject=task[:200])
                fails.append(f)
                checks.append((det, "failed", f.detail))
                continue
            if s < o["threshold"]:
                checks.append((det, "disagree", f"similarity {s:.3f} < {o['threshold']:g}"))
                fails.append(Failure(FailureKind.DISAGREEMENT, f"{d} answered the task differently (similarity "
                                     f"{s:.3f} under {o['measure']})", SOURCE, det, subject=task[:200],
                                     evidence={"auditor_answer": a.text[:300], "similarity": round(s, 4)}))
            else:
                checks.append((det, "agree", f"similarity {s:.3f}"))
    for t in o["tools"]:
        det = f"tool:{t['tool']}"
        try:
            h = await sys.open(t["device"])
            result = await sys.read(h, {"tool": t["tool"], "args": t["args"]})
        except SyscallError as e:
            f = failure_from_error(e, source=SOURCE, detector=det, subject=task)
            fails.append(f)
            checks.append((det, "failed", f.detail))
            continue
        ok, finding = rule_grounded(answer, result, t["tool"])
        if ok is None:
            checks.append((det, "inconclusive", "the answer states nothing the result can check"))
        elif ok:
            checks.append((det, "consistent", f"{t['tool']} agrees"))
        else:
            assert finding is not None
            checks.append((det, "contradicted", finding.why))
            fails.append(Failure(FailureKind.HALLUCINATION, finding.why, SOURCE, det, subject=task[:200],
                                 evidence={"rule": "rule:grounded_number", "tool_result": str(result)[:200]}))
    for f in fails:
        await f.emit(sys)
    await sys.send(caller, AuditReport(tuple(checks), tuple(fails)).to_dict(), corr=args["corr"])
    return {"failures": len(fails)}


AUDIT = ProcessImage("scak_audit", audit_main)


async def audit(sys: Sys, task: str, answer: str, options: AuditOptions) -> AuditReport:
    """Re-check `answer` to `task` with a second model and/or a tool, in a job paid from
    this process's account (at most `options.quota`); disagreements and contradictions are
    failure events."""
    for what, v in (("task", task), ("answer", answer)):
        if not isinstance(v, str):
            raise TypeError(f"audit: {what} must be a str, got {type(v).__name__}")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"audit: {what} holds a lone surrogate") from None
    if not task.strip() or len(task) > 32_000:
        raise ValueError("audit: the task must be 1..32000 characters")
    if not isinstance(options, AuditOptions):
        raise TypeError("audit: options must be AuditOptions")
    measure(options.measure)  # a missing optional embedder is an ImportError here, before anything runs
    devices = list(dict.fromkeys([*options.auditors, *(t.device for t in options.tools)]))
    args = {"task": task, "answer": answer[:MAX_ANSWER], "options": {
        "auditors": list(options.auditors), "measure": options.measure, "threshold": options.threshold,
        "max_tokens": options.max_tokens,
        "tools": [{"tool": t.tool, "args": dict(t.args), "device": t.device} for t in options.tools]}}
    body, reason = await run_job(sys, AUDIT, args=args, caps=devices, quota=options.quota, name="scak_audit")
    if body is None:
        text = str(reason)
        kind = FailureKind.QUOTA if text.startswith("quota") else FailureKind.MODEL_ERROR
        f = Failure(kind, f"the audit ended without a report: {text}", SOURCE, "rule:job_exit",
                    severity=Severity.ERROR, subject=task[:200], evidence={"exit": text[:200]})
        await f.emit(sys)
        return AuditReport((("rule:job_exit", "failed", text),), (f,))
    return AuditReport.from_dict(body)


__all__ = ["AUDIT", "AnswerContext", "AuditOptions", "AuditReport", "Finding", "LAZINESS_RULES", "LAZY_SCHEMA",
           "ToolCheck", "audit", "detect_laziness", "judge_laziness", "laziness_failures", "numbers_in",
           "rule_give_up", "rule_grounded", "rule_placeholder", "rule_refused_without_tool"]
