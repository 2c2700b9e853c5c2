"""Cross-model verification (CMVK): ask several models the same question, measure how far
they agree, and track how far each drifts from its own stored answers.

A *panel* is a list of `Panelist`s: a chat device (any OpenAI-compatible endpoint through
the `llm` driver, the embedded `local` model, a scripted device) and optionally the model
to ask on it. `verify(sys, question, options)` runs one verification:

1. The caller spawns a verifier *job* whose budget (`options.quota`) is carved from the
   caller's account, all or nothing; the job can never spend more than that.
2. The job spawns one *asker* per device, drawing on the job's budget; each asker sends
   every request meant for its device in one `read_all` (concurrent, each metered and
   journaled), and askers on different devices run at the same time.
3. The job measures agreement (`agreement.py`: MiniLM embeddings for text, exact JSON
   equality for structured answers), picks the consensus (the answer most others are
   within `threshold` of) and the outliers, emits `disagreement` failures and the typed
   failure of every panelist that did not answer, and replies to the caller.

`set_baseline` stores each panelist's answers to a list of probe questions, and `drift`
asks the probes again: a panelist's drift is 1 − the mean similarity of its answers to its
baseline answers, appended to its history (both kept on a `kv` device through syscalls,
so a replay reads them from the journal). Drift above `drift_threshold` is a `drift`
failure.

Invariants: a panelist that errs, times out, returns something that is not text, or an
answer longer than `max_answer_chars`, is a typed failure of its own, never a crash of the
verifier or an empty consensus silently given; nothing in a `Verdict` is computed
anywhere but from the answers the models gave in this run.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..abi.errors import BadArgument, SyscallError
from ..abi.types import KERNEL_PID, Down, Quota
from ..kernel.args import shown, text
from ..kernel.process import ProcessImage
from ..kernel.trap import Sys
from .agreement import _similarity, canonical_json, known_measure, measure
from .jobs import run_job
from .failures import Failure, FailureKind, Severity, failure_from_error, finite
from .structured import json_format

SOURCE = "cmvk"
MAX_PANEL = 16
MAX_QUESTION = 32_000
HISTORY_KEEP = 500
MAX_TIMEOUT_MS = 1e12   # about 31 years: past it a deadline is not a deadline


@dataclass(frozen=True)
class Panelist:
    """One voice on the panel: a chat device and, optionally, the model to ask there."""

    device: str
    model: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        for what, v in (("device", self.device), ("label", self.label)):
            if not isinstance(v, str):
                raise TypeError(f"Panelist.{what} must be a str, got {type(v).__name__}")
            object.__setattr__(self, what, _plain_text(f"Panelist.{what}", v, 128))
        if not self.device.strip():
            raise ValueError("Panelist.device must name a device")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ValueError(f"Panelist.model must be a non-empty str or None, got {type(self.model).__name__}")
        if self.model is not None:
            object.__setattr__(self, "model", _plain_text("Panelist.model", self.model, 256))
        if not self.label:
            object.__setattr__(self, "label", f"{self.device}/{self.model}" if self.model else self.device)
        if len(self.label) > 80:
            raise ValueError(f"Panelist.label is {len(self.label)} characters; at most 80")


def _plain_text(what: str, v: str, limit: int) -> str:
    """`v` as a plain str of at most `limit` characters without a lone surrogate (which
    no message or journal entry can carry), or ValueError naming `what`."""
    try:
        return text(what, v, max_len=limit)
    except BadArgument as e:
        raise ValueError(str(e)) from None


def _panelist(p: Any) -> Panelist:
    if isinstance(p, Panelist):
        return p
    if isinstance(p, str):
        return Panelist(p)
    if isinstance(p, dict):
        return Panelist(**p)
    raise TypeError(f"a panelist is a Panelist, a device name or a dict, got {type(p).__name__}")


def _fraction(what: str, v: Any) -> float:
    if not finite(v) or not 0 <= v <= 1:
        raise ValueError(f"CmvkOptions.{what} must be a number in [0, 1], got {shown(v)}")
    return float(v)


@dataclass(frozen=True)
class CmvkOptions:
    """How to verify. `measure` is ``minilm`` (text), ``exact`` (structured: the default
    when `schema` is given) or ``lexical`` (word overlap, a rule; needs nothing installed).
    `threshold`: two answers agree when their similarity is at least this. `quota` is the
    whole budget of one verification (carved from the caller). `timeout_ms` (kernel time)
    bounds the wait for the askers; a device that has not answered by then is a timeout.
    It is off by default: under a virtual clock, kernel time jumps while a real endpoint is
    still working, so a wall-clock bound belongs to the driver (`LLMDriver(timeout=...)`,
    whose `DriverTimeout` is a `timeout` failure too)."""

    panel: tuple[Panelist, ...]
    measure: str = "minilm"
    threshold: float = 0.8
    schema: dict[str, Any] | None = None
    system: str = "Answer the question briefly and precisely."
    max_tokens: int = 256
    temperature: float = 0.0
    quota: Quota = field(default_factory=lambda: Quota(tokens=20_000))
    timeout_ms: float | None = None
    max_answer_chars: int = 20_000
    store: str = "kv"               # the device holding baselines and drift history
    namespace: str = "cmvk"
    drift_threshold: float = 0.3

    def __post_init__(self) -> None:
        given = self.panel if not isinstance(self.panel, (str, Panelist, dict)) else (self.panel,)
        try:  # one past the limit is enough to refuse: an endless iterable is not read to its end
            panel = tuple(_panelist(p) for p in itertools.islice(given, MAX_PANEL + 1))
        except TypeError as e:
            if "object is not iterable" in str(e):
                raise TypeError(f"CmvkOptions.panel is a list of panelists, got {type(self.panel).__name__}") from None
            raise
        if not 1 <= len(panel) <= MAX_PANEL:
            got = "none" if not panel else f"more than {MAX_PANEL}"
            raise ValueError(f"CmvkOptions.panel needs 1..{MAX_PANEL} panelists, got {got}")
        labels = [p.label for p in panel]
        if len(set(labels)) != len(labels):
            raise ValueError(f"CmvkOptions.panel labels must be unique, got {labels}")
        object.__setattr__(self, "panel", panel)
        if self.schema is not None and not isinstance(self.schema, dict):
            raise TypeError("CmvkOptions.schema must be a JSON schema dict or None")
        if self.schema is not None and self.measure == "minilm":
            object.__setattr__(self, "measure", "exact")
        if not known_measure(self.measure):
            raise ValueError(f"CmvkOptions.measure {self.measure!r} is not a known measure")
        object.__setattr__(self, "threshold", _fraction("threshold", self.threshold))
        object.__setattr__(self, "drift_threshold", _fraction("drift_threshold", self.drift_threshold))
        if type(self.max_tokens) is not int or not 1 <= self.max_tokens <= 32_768:
            raise ValueError(f"CmvkOptions.max_tokens must be an int in 1..32768, got {self.max_tokens!r}")
        if type(self.max_answer_chars) is not int or not 1 <= self.max_answer_chars <= 1 << 24:
            raise ValueError(f"CmvkOptions.max_answer_chars must be a positive int, got {self.max_answer_chars!r}")
        t = self.temperature
        if not finite(t) or not 0 <= t <= 2:
            raise ValueError(f"CmvkOptions.temperature must be in [0, 2], got {shown(t)}")
        if not isinstance(self.quota, Quota):
            raise TypeError("CmvkOptions.quota must be a Quota (the verification's whole budget)")
        tm = self.timeout_ms
        if tm is not None and (not finite(tm) or not 0 < tm <= MAX_TIMEOUT_MS):
            raise ValueError(f"CmvkOptions.timeout_ms must be positive ms (at most {MAX_TIMEOUT_MS:g}) or None, "
                             f"got {shown(tm)}")
        if tm is not None:
            object.__setattr__(self, "timeout_ms", float(tm))
        for what, limit in (("system", MAX_QUESTION), ("store", 128), ("namespace", 128)):
            if not isinstance(getattr(self, what), str):
                raise TypeError(f"CmvkOptions.{what} must be a str")
            object.__setattr__(self, what, _plain_text(f"CmvkOptions.{what}", getattr(self, what), limit))
        if not self.store.strip():
            raise ValueError("CmvkOptions.store must name a device")
        if self.schema is not None:
            try:
                size = len(json.dumps(self.schema, allow_nan=False))
            except (TypeError, ValueError, RecursionError) as e:
                raise ValueError(f"CmvkOptions.schema must be plain JSON: {type(e).__name__}: {str(e)[:100]}") from None
            if size > 64 * 1024:
                raise ValueError(f"CmvkOptions.schema is {size} bytes of JSON; at most 65536")

    def devices(self) -> list[str]:
        return list(dict.fromkeys(p.device for p in self.panel))


@dataclass(frozen=True)
class Answer:
    """One panelist's answer, or the failure that stood in for it."""

    label: str
    text: str | None
    tokens: int = 0
    failure: Failure | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "text": self.text, "tokens": self.tokens,
                "failure": self.failure.to_dict() if self.failure else None}


@dataclass(frozen=True)
class Verdict:
    """The result of one verification. `consensus` is the answer the majority stood behind
    (None when no strict majority of the panel agreed), `support` how many panelists did,
    `agreement` the mean pairwise similarity of the answers given, `outliers` the labels of
    panelists who answered but not with the consensus."""

    question: str
    answers: tuple[Answer, ...]
    consensus: str | None
    support: int
    agreement: float
    outliers: tuple[str, ...]
    measure: str
    failures: tuple[Failure, ...]
    similarity: tuple[tuple[float, ...], ...] = ()

    @property
    def agreed(self) -> bool:
        return self.consensus is not None

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answers": [a.to_dict() for a in self.answers],
                "consensus": self.consensus, "support": self.support, "agreement": self.agreement,
                "outliers": list(self.outliers), "measure": self.measure,
                "failures": [f.to_dict() for f in self.failures],
                "similarity": [list(r) for r in self.similarity]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Verdict":
        answers = tuple(Answer(a["label"], a["text"], a["tokens"],
                               Failure.from_dict(a["failure"]) if a["failure"] else None) for a in d["answers"])
        return cls(d["question"], answers, d["consensus"], d["support"], d["agreement"], tuple(d["outliers"]),
                   d["measure"], tuple(Failure.from_dict(f) for f in d["failures"]),
                   tuple(tuple(r) for r in d["similarity"]))


@dataclass(frozen=True)
class DriftReport:
    """Each panelist's drift on the probes (None: no baseline or no answer to compare),
    and its recent history as (kernel time ms, drift) pairs, oldest first."""

    drift: dict[str, float | None]
    history: dict[str, tuple[tuple[float, float], ...]]
    compared: dict[str, int]
    failures: tuple[Failure, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"drift": dict(self.drift), "history": {k: [list(p) for p in v] for k, v in self.history.items()},
                "compared": dict(self.compared), "failures": [f.to_dict() for f in self.failures]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DriftReport":
        return cls(dict(d["drift"]), {k: tuple((float(a), float(b)) for a, b in v) for k, v in d["history"].items()},
                   dict(d["compared"]), tuple(Failure.from_dict(f) for f in d["failures"]))


# -- the consensus rule -------------------------------------------------------------------

def consensus(labels: Sequence[str], sim: Sequence[Sequence[float]], threshold: float,
              panel_size: int) -> tuple[int | None, list[int], float]:
    """(index of the consensus answer or None, indices agreeing with it, mean pairwise
    similarity). The candidate is the answer with the most others within `threshold` of
    it (ties: higher mean similarity to them, then panel order); it is a consensus only
    when a strict majority of the whole panel (failed panelists count against) agrees."""
    m = len(labels)
    if m == 0:
        return None, [], 0.0
    if len(sim) != m or any(len(row) != m for row in sim):
        raise ValueError(f"consensus: the similarity matrix is not {m}x{m} for {m} answers")
    # a NaN or out-of-range value is no agreement (a NaN row would leave every group empty)
    sim = [[1.0 if i == j else _similarity(sim[i][j]) for j in range(m)] for i in range(m)]
    pairs = [sim[i][j] for i in range(m) for j in range(i + 1, m)]
    mean = sum(pairs) / len(pairs) if pairs else 1.0
    best: tuple[int, float, int] | None = None
    members: list[int] = []
    for i in range(m):
        group = [j for j in range(m) if sim[i][j] >= threshold]
        score = sum(sim[i][j] for j in group) / len(group)
        key = (len(group), score, -i)
        if best is None or key > best:
            best, members = key, group
    assert best is not None
    idx = -best[2]
    return (idx if len(members) * 2 > panel_size else None), members, mean


# -- the asker: one device, every request for it in one read_all ----------------------------

async def asker_main(sys: Sys, args: dict[str, Any]) -> dict[str, Any]:
    parent = sys.caps[args["reply_index"]]
    corr = args["corr"]
    labels: list[str] = args["labels"]
    device: str = args["device"]
    limit: int = args["max_chars"]
    out: list[dict[str, Any]] = []
    try:
        h = await sys.open(sys.caps[0])
        results = await sys.read_all(h, args["reqs"])  # errors come back as values, in order
    except SyscallError as e:
        f = failure_from_error(e, source=SOURCE, detector=f"model:{device}")
        results = [f] * len(labels)
    for label, r in zip(labels, results):
        out.append(_answer(label, device, r, limit).to_dict())
    await sys.send(parent, {"answers": out}, corr=corr)
    return {"answers": len(out)}


def _answer(label: str, device: str, r: Any, limit: int) -> Answer:
    det = f"model:{device}"
    if isinstance(r, Failure):
        return Answer(label, None, 0, r)
    if isinstance(r, BaseException):
        return Answer(label, None, 0, failure_from_error(r, source=SOURCE, detector=det, subject=label))
    content = r.get("content") if isinstance(r, dict) else None
    tokens = 0
    usage = r.get("usage") if isinstance(r, dict) else None
    if isinstance(usage, dict):
        tokens = sum(x for x in (usage.get("prompt_tokens"), usage.get("completion_tokens"))
                     if type(x) is int and x >= 0)
    if not isinstance(content, str):
        return Answer(label, None, tokens, Failure(
            FailureKind.MODEL_ERROR, f"{label} answered with {type(content).__name__}, not text", SOURCE, det,
            subject=label, evidence={"type": type(content).__name__}))
    if len(content) > limit:
        return Answer(label, None, tokens, Failure(
            FailureKind.MODEL_ERROR, f"{label} answered {len(content)} characters; at most {limit} are read",
            SOURCE, det, subject=label, evidence={"chars": len(content), "limit": limit}))
    text = content.encode("utf-8", "replace").decode("utf-8").strip()
    if not text:
        return Answer(label, None, tokens, Failure(
            FailureKind.LAZINESS, f"{label} gave an empty answer", SOURCE, "rule:empty_answer", subject=label))
    return Answer(label, text, tokens)


ASKER = ProcessImage("cmvk_asker", asker_main)


# -- the job -------------------------------------------------------------------------------

def _request(opts: dict[str, Any], question: str, model: str | None) -> dict[str, Any]:
    msgs = [{"role": "system", "content": opts["system"]}] if opts["system"] else []
    req: dict[str, Any] = {"messages": msgs + [{"role": "user", "content": question}],
                           "max_tokens": opts["max_tokens"], "temperature": opts["temperature"]}
    if model:
        req["model"] = model
    if opts["schema"] is not None:
        req["response_format"] = json_format("answer", opts["schema"])
    return req


async def _ask(sys: Sys, opts: dict[str, Any], questions: list[str]) -> list[dict[str, Answer]]:
    """Ask every panelist every question; one asker per device, all at once. Returns, per
    question, the answers by label."""
    panel = [Panelist(**p) for p in opts["panel"]]
    me = await sys.self_cap()
    corr = ("cmvk.ask", await sys.pid(), sys.next_corr())
    by_device: dict[str, list[Panelist]] = {}
    for p in panel:
        by_device.setdefault(p.device, []).append(p)
    asked: dict[int, tuple[str, list[str]]] = {}
    caps: dict[int, Any] = {}
    for device, members in by_device.items():
        labels = [f"{qi}\x00{p.label}" for qi in range(len(questions)) for p in members]
        reqs = [_request(opts, q, p.model) for q in questions for p in members]
        pid, cap = await sys.spawn(ASKER, name=f"cmvk_asker:{device}", caps=[device, me],
                                   args={"device": device, "reqs": reqs, "labels": labels, "corr": corr,
                                         "reply_index": 1, "max_chars": opts["max_answer_chars"]})
        await sys.monitor(cap)
        asked[pid], caps[pid] = (device, labels), cap
    got: dict[str, Answer] = {}
    left = set(asked)
    deadline = None if opts["timeout_ms"] is None else await sys.now() + opts["timeout_ms"]
    while left:
        wait = None if deadline is None else max(0.0, deadline - await sys.now())
        msg = await sys.recv(timeout=wait, match=lambda m: (m.corr == corr and m.sender in left)
                             or (isinstance(m.body, Down) and m.sender == KERNEL_PID and m.body.pid in left))
        if msg is None:  # the deadline passed: whoever has not answered timed out
            for pid in sorted(left):
                await sys.kill(caps[pid])
                device, labels = asked[pid]
                for key in labels:
                    got[key] = Answer(key.split("\x00", 1)[1], None, 0, Failure(
                        FailureKind.TIMEOUT, f"{device} did not answer within {opts['timeout_ms']:g} ms",
                        SOURCE, f"model:{device}", subject=key.split("\x00", 1)[1]))
            break
        if isinstance(msg.body, Down):
            pid = msg.body.pid
            left.discard(pid)
            device, labels = asked[pid]
            for key in labels:
                if key not in got:
                    got[key] = Answer(key.split("\x00", 1)[1], None, 0, _down_failure(device, msg.body.reason,
                                                                                   key.split("\x00", 1)[1]))
            continue
        left.discard(msg.sender)
        for a in msg.body["answers"]:
            fl = Failure.from_dict(a["failure"]) if a["failure"] else None
            qi, label = a["label"].split("\x00", 1)
            got[a["label"]] = Answer(label, a["text"], a["tokens"], fl)
    return [{p.label: got[f"{qi}\x00{p.label}"] for p in panel} for qi in range(len(questions))]


def _down_failure(device: str, reason: Any, label: str) -> Failure:
    text = str(reason)
    kind = FailureKind.QUOTA if text.startswith("quota") else (
        FailureKind.POLICY_REFUSAL if text.startswith("policy") else FailureKind.MODEL_ERROR)
    return Failure(kind, f"the asker for {device} ended without answering: {text}", SOURCE, f"model:{device}",
                   subject=label, evidence={"exit": text[:200]})


def _judge(opts: dict[str, Any], question: str, answers: dict[str, Answer]) -> Verdict:
    panel_size = len(opts["panel"])
    ok = [a for a in answers.values() if a.text is not None]
    fails = [a.failure for a in answers.values() if a.failure is not None]
    texts = [a.text for a in ok if a.text is not None]
    name = opts["measure"]
    try:
        sim = measure(name).matrix(texts) if texts else []
        idx, members, mean = consensus([a.label for a in ok], sim, opts["threshold"], panel_size)
    except Exception as e:  # a registered measure that breaks its contract: no verdict, said so
        fails.append(_measure_failure(name, e, question))
        return Verdict(question, tuple(answers.values()), None, 0, 0.0, (), name, tuple(fails))
    if idx is None:
        outliers: tuple[str, ...] = tuple(a.label for a in ok) if len(ok) > 1 else ()
    else:
        outliers = tuple(a.label for i, a in enumerate(ok) if i not in members)
    rule = f"rule:consensus({name}>={opts['threshold']:g})"
    if idx is None and len(ok) >= 1:
        fails.append(Failure(FailureKind.DISAGREEMENT, f"no strict majority of {panel_size} panelists agreed "
                             f"(best group {len(members)}, mean similarity {mean:.3f})", SOURCE, rule,
                             severity=Severity.ERROR, subject=question[:200],
                             evidence={"answered": len(ok), "best_group": len(members), "agreement": round(mean, 4)}))
    elif outliers:
        fails.append(Failure(FailureKind.DISAGREEMENT, f"{len(outliers)} of {len(ok)} answers differ from the "
                             f"consensus: {', '.join(outliers)}", SOURCE, rule, subject=question[:200],
                             evidence={"outliers": list(outliers), "agreement": round(mean, 4)}))
    return Verdict(question, tuple(answers.values()), texts[idx] if idx is not None else None,
                   len(members) if idx is not None else 0, round(mean, 6), outliers, name, tuple(fails),
                   tuple(tuple(round(x, 6) for x in row) for row in sim))


def _measure_failure(name: str, e: BaseException, subject: str) -> Failure:
    return Failure(FailureKind.MODEL_ERROR, f"the {name} measure failed: {type(e).__name__}: {str(e)[:200]}",
                   SOURCE, f"rule:measure({name})", severity=Severity.ERROR, subject=subject[:200],
                   evidence={"error": type(e).__name__})


def _baseline(value: Any) -> dict[str, dict[str, str]]:
    """A stored baseline, keeping only well-formed entries: the store is a shared device,
    and what another writer put there must not end the drift job."""
    if type(value) is not dict:
        return {}
    return {k: v for k, v in value.items() if type(k) is str and type(v) is dict and type(v.get("a")) is str
            and type(v.get("q")) is str}


def _history(value: Any) -> list[list[float]]:
    """A stored drift history, keeping only [time, drift] pairs of finite numbers."""
    if type(value) is not list:
        return []
    return [[float(p[0]), float(p[1])] for p in value
            if type(p) is list and len(p) == 2 and all(type(x) in (int, float) and -1e300 < x < 1e300 for x in p)]


def probe_id(question: str) -> str:
    return hashlib.sha256(question.encode("utf-8")).hexdigest()[:16]


async def job_main(sys: Sys, args: dict[str, Any]) -> dict[str, Any]:
    caller = sys.caps[args["reply_index"]]
    opts = args["options"]
    op = args["op"]
    questions: list[str] = args["questions"]
    per_q = await _ask(sys, opts, questions)
    if op == "verify":
        v = _judge(opts, questions[0], per_q[0])
        for f in v.failures:
            await f.emit(sys)
        await sys.send(caller, {"verdict": v.to_dict()}, corr=args["corr"])
        return {"consensus": v.consensus is not None}
    store = await sys.open(opts["store"], {"ns": opts["namespace"]})
    labels = [p["label"] for p in opts["panel"]]
    fails: list[Failure] = [a.failure for q in per_q for a in q.values() if a.failure is not None]
    if op == "baseline":
        for label in labels:
            base = _baseline(await sys.read(store, {"op": "get", "key": f"baseline/{label}", "default": {}}))
            for q, answers in zip(questions, per_q):
                a = answers[label]
                if a.text is not None:
                    base[probe_id(q)] = {"q": q, "a": a.text}
            await sys.write(store, {"op": "set", "key": f"baseline/{label}", "value": base})
        for f in fails:
            await f.emit(sys)
        counts = {label: sum(1 for q in per_q if q[label].text is not None) for label in labels}
        await sys.send(caller, {"baseline": counts, "failures": [f.to_dict() for f in fails]}, corr=args["corr"])
        return {"baseline": counts}
    now = await sys.now()
    m = measure(opts["measure"])
    drift: dict[str, float | None] = {}
    history: dict[str, Any] = {}
    compared: dict[str, int] = {}
    for label in labels:
        base = _baseline(await sys.read(store, {"op": "get", "key": f"baseline/{label}", "default": {}}))
        sims = []
        for q, answers in zip(questions, per_q):
            b, a = base.get(probe_id(q)), answers[label]
            if b is not None and a.text is not None:
                try:
                    sims.append(_similarity(m.matrix([b["a"], a.text])[0][1]))
                except Exception as e:  # a registered measure that breaks its contract
                    fails.append(_measure_failure(opts["measure"], e, label))
                    break
        compared[label] = len(sims)
        hist = _history(await sys.read(store, {"op": "get", "key": f"history/{label}", "default": []}))
        if sims:
            d = round(1.0 - sum(sims) / len(sims), 6)
            drift[label] = d
            hist = (hist + [[now, d]])[-HISTORY_KEEP:]
            await sys.write(store, {"op": "set", "key": f"history/{label}", "value": hist})
            if d > opts["drift_threshold"]:
                fails.append(Failure(FailureKind.DRIFT, f"{label} drifted {d:.3f} from its baseline on "
                                     f"{len(sims)} probe(s) (threshold {opts['drift_threshold']:g})", SOURCE,
                                     f"rule:drift({opts['measure']}>{opts['drift_threshold']:g})", subject=label,
                                     evidence={"drift": d, "probes": len(sims)}))
        else:
            drift[label] = None
        history[label] = hist[-20:]
    for f in fails:
        await f.emit(sys)
    report = DriftReport(drift, {k: tuple((float(a), float(b)) for a, b in v) for k, v in history.items()},
                         compared, tuple(fails))
    await sys.send(caller, {"drift": report.to_dict()}, corr=args["corr"])
    return {"drift": drift}


JOB = ProcessImage("cmvk_job", job_main)


# -- the caller's side -----------------------------------------------------------------------

def _question(q: Any) -> str:
    if not isinstance(q, str):
        raise TypeError(f"a question is a str, got {type(q).__name__}")
    if not q.strip():
        raise ValueError("a question must not be empty")
    if len(q) > MAX_QUESTION:
        raise ValueError(f"a question is at most {MAX_QUESTION} characters, got {len(q)}")
    try:
        q.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a question must not hold a lone surrogate") from None
    return str(q)


def _opts_args(o: CmvkOptions) -> dict[str, Any]:
    return {"panel": [{"device": p.device, "model": p.model, "label": p.label} for p in o.panel],
            "measure": o.measure, "threshold": o.threshold, "schema": o.schema, "system": o.system,
            "max_tokens": o.max_tokens, "temperature": o.temperature, "timeout_ms": o.timeout_ms,
            "max_answer_chars": o.max_answer_chars, "store": o.store, "namespace": o.namespace,
            "drift_threshold": o.drift_threshold}


async def _run(sys: Sys, op: str, questions: list[str], options: CmvkOptions) -> tuple[dict[str, Any] | None, Any]:
    if not isinstance(options, CmvkOptions):
        raise TypeError(f"options must be CmvkOptions, got {type(options).__name__}")
    measure(options.measure)  # a missing optional embedder is an ImportError here, before anything runs
    caps: list[Any] = [*options.devices()] + ([options.store] if op != "verify" else [])
    return await run_job(sys, JOB, args={"op": op, "questions": questions, "options": _opts_args(options)},
                         caps=caps, quota=options.quota, name=f"cmvk_{op}")


async def _job_failed(sys: Sys, what: str, reason: Any, subject: str) -> Failure:
    text = str(reason)
    kind = FailureKind.QUOTA if text.startswith("quota") else (
        FailureKind.POLICY_REFUSAL if text.startswith("policy") else FailureKind.MODEL_ERROR)
    f = Failure(kind, f"the {what} job ended without an answer: {text}", SOURCE, "rule:job_exit",
                severity=Severity.ERROR, subject=subject[:200], evidence={"exit": text[:200]})
    await f.emit(sys)
    return f


async def verify(sys: Sys, question: str, options: CmvkOptions) -> Verdict:
    """Ask the panel `question` and judge the answers (see the module doc). Paid from this
    process's account, at most `options.quota`. A job that ends without answering (its
    budget ran out, policy killed it) gives a verdict with no consensus and that failure."""
    q = _question(question)
    body, reason = await _run(sys, "verify", [q], options)
    if body is None:
        f = await _job_failed(sys, "verification", reason, q)
        return Verdict(q, (), None, 0, 0.0, (), options.measure, (f,))
    return Verdict.from_dict(body["verdict"])


def _probes(probes: Sequence[str]) -> list[str]:
    if isinstance(probes, str) or not isinstance(probes, Sequence):
        raise TypeError("probes are a list of questions")
    qs = [_question(p) for p in probes]
    if not 1 <= len(qs) <= 256:
        raise ValueError(f"give 1..256 probe questions, got {len(qs)}")
    return list(dict.fromkeys(qs))


async def set_baseline(sys: Sys, probes: Sequence[str], options: CmvkOptions) -> dict[str, int]:
    """Ask the panel the probe questions and store the answers as each panelist's baseline
    (replacing earlier answers to the same probes). Returns how many each answered."""
    qs = _probes(probes)
    body, reason = await _run(sys, "baseline", qs, options)
    if body is None:
        f = await _job_failed(sys, "baseline", reason, qs[0])
        raise SyscallError(f.detail)
    return dict(body["baseline"])


async def drift(sys: Sys, probes: Sequence[str], options: CmvkOptions) -> DriftReport:
    """Ask the panel the probe questions again and measure each panelist's drift from its
    baseline; the score is appended to the panelist's history."""
    qs = _probes(probes)
    body, reason = await _run(sys, "drift", qs, options)
    if body is None:
        f = await _job_failed(sys, "drift", reason, qs[0])
        return DriftReport({p.label: None for p in options.panel}, {}, {}, (f,))
    return DriftReport.from_dict(body["drift"])


__all__ = ["ASKER", "Answer", "CmvkOptions", "DriftReport", "JOB", "Panelist", "Verdict", "consensus", "drift",
           "probe_id", "set_baseline", "verify"]
