"""The failure model: typed failures with a severity, visible in the event log and metrics.

Services that judge other agents' work (cross-model verification, self-correction, the
executor of a plan) report what went wrong as a `Failure`: a `FailureKind`, a `Severity`,
the service that saw it (`source`), the named rule or named model call that decided it
(`detector`, e.g. ``rule:placeholder`` or ``model:judge``), a bounded one-line `detail`
and a small JSON `evidence` dict.

A failure becomes an event through one syscall: `sys.log(severity, "failure", kind=...,
severity=..., source=..., detector=..., detail=..., subject=..., evidence=...)`. The
kernel's metrics fold counts these `log` events by kind (`metrics()["failures"]`,
`agentos_failures_total{kind=...}` in the Prometheus text); no label names a process.
`failures_in(events)` reads them back from any event list.

Invariants: a `Failure` is frozen and validated at construction (kind and severity are the
enums, text fields are bounded strings without lone surrogates, evidence is canonical
JSON-able and small), so emitting one never fails for its content. `failure_from_error`
maps any exception (a typed `SyscallError` from a driver, the kernel or policy) to a
failure of the right kind, so a hostile model reply is a typed failure, not a crash.
"""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..abi.errors import (
    BadRequest, DriverError, DriverTimeout, PolicyDenied, QuotaExceeded, RateLimited, SyscallError, ToolError,
    UpstreamError,
)
from ..kernel.trap import Sys

FAILURE_MSG = "failure"
"""The `msg` of the `log` event that carries a failure (the metrics fold keys on it)."""

MAX_DETAIL = 400
MAX_NAME = 64
MAX_EVIDENCE = 4096  # bytes of canonical JSON


class FailureKind(str, enum.Enum):
    """What went wrong. The values are the metric label and the event's `kind` field."""

    MODEL_ERROR = "model_error"          # the model endpoint failed or answered outside the contract
    TOOL_ERROR = "tool_error"            # a tool call failed
    TIMEOUT = "timeout"                  # no answer in time
    QUOTA = "quota"                      # a budget ran out
    POLICY_REFUSAL = "policy_refusal"    # policy refused the action
    HALLUCINATION = "hallucination"      # a claim contradicted by evidence (a tool, a second model)
    DISAGREEMENT = "disagreement"        # models asked the same question differ
    LAZINESS = "laziness"                # a non-answer: gave up, refused without trying, placeholder
    DRIFT = "drift"                      # behaviour moved away from a stored baseline
    UNSAFE_ACTION = "unsafe_action"      # an action outside declared constraints was attempted
    STALE_MEMORY = "stale_memory"        # a remembered lesson contradicted by evidence, or too old


class Severity(str, enum.Enum):
    """How bad. The value is also the `log` event's level."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}

DEFAULT_SEVERITY: dict[FailureKind, Severity] = {
    FailureKind.MODEL_ERROR: Severity.ERROR,
    FailureKind.TOOL_ERROR: Severity.ERROR,
    FailureKind.TIMEOUT: Severity.WARNING,
    FailureKind.QUOTA: Severity.ERROR,
    FailureKind.POLICY_REFUSAL: Severity.WARNING,
    FailureKind.HALLUCINATION: Severity.ERROR,
    FailureKind.DISAGREEMENT: Severity.WARNING,
    FailureKind.LAZINESS: Severity.WARNING,
    FailureKind.DRIFT: Severity.WARNING,
    FailureKind.UNSAFE_ACTION: Severity.CRITICAL,
    FailureKind.STALE_MEMORY: Severity.INFO,
}


def _name(what: str, v: Any, *, empty: bool = False, hi: int = MAX_NAME) -> str:
    if not isinstance(v, str):
        raise TypeError(f"Failure.{what} must be a str, got {type(v).__name__}")
    v = str.__str__(v)  # a subclass's own __str__ never runs
    if not empty and not v.strip():
        raise ValueError(f"Failure.{what} must not be empty")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"Failure.{what} holds a lone surrogate") from None
    return v if len(v) <= hi else v[: hi - 1] + "…"


def _member(what: str, enum_: Any, v: Any) -> Any:
    """`v` as a member of `enum_`: a member, or its value as a plain str. The type is
    checked before the enum looks the value up, so a value whose __hash__ or __eq__
    raises is a TypeError here, not its own exception."""
    if isinstance(v, enum_):
        return v
    if not isinstance(v, str):
        raise TypeError(f"Failure.{what} must be a {enum_.__name__} or its value as a str, got {type(v).__name__}")
    v = str.__str__(v)
    try:
        return enum_(v)
    except ValueError:
        raise ValueError(f"Failure.{what} {v[:40]!r} is not one of: {', '.join(m.value for m in enum_)}") from None


def _evidence(v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise TypeError(f"Failure.evidence must be a dict, got {type(v).__name__}")
    try:
        text = json.dumps(dict(v), sort_keys=True, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as e:
        raise ValueError(f"Failure.evidence must be small plain JSON: {type(e).__name__}: {str(e)[:120]}") from None
    if len(text) > MAX_EVIDENCE:
        raise ValueError(f"Failure.evidence is {len(text)} characters of JSON; at most {MAX_EVIDENCE}")
    out: dict[str, Any] = json.loads(text)
    return out


@dataclass(frozen=True)
class Failure:
    """One typed failure. `detector` names the rule (``rule:<name>``) or model call
    (``model:<device>``) that decided it, so a reader knows which kind of judgement it was."""

    kind: FailureKind
    detail: str
    source: str
    detector: str
    severity: Severity | None = None
    subject: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kind = _member("kind", FailureKind, self.kind)  # a str value is accepted; an unknown one is ValueError
        object.__setattr__(self, "kind", kind)
        sev = DEFAULT_SEVERITY[kind] if self.severity is None else _member("severity", Severity, self.severity)
        object.__setattr__(self, "severity", sev)
        object.__setattr__(self, "detail", _name("detail", self.detail, empty=True, hi=MAX_DETAIL))
        object.__setattr__(self, "source", _name("source", self.source))
        object.__setattr__(self, "detector", _name("detector", self.detector))
        object.__setattr__(self, "subject", _name("subject", self.subject, empty=True, hi=200))
        object.__setattr__(self, "evidence", _evidence(self.evidence))

    @property
    def sev(self) -> Severity:
        assert self.severity is not None
        return self.severity

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "severity": self.sev.value, "source": self.source,
                "detector": self.detector, "detail": self.detail, "subject": self.subject,
                "evidence": dict(self.evidence)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Failure":
        if not isinstance(d, Mapping):
            raise TypeError(f"a failure is a dict, got {type(d).__name__}")
        return cls(d["kind"], d.get("detail", ""), d["source"], d["detector"], d.get("severity"),
                   d.get("subject", ""), d.get("evidence") or {})

    async def emit(self, sys: Sys) -> None:
        """Write this failure into the event log (one `log` syscall)."""
        await sys.log(self.sev.value, FAILURE_MSG, **self.to_dict())


async def emit(sys: Sys, failures: Iterable[Failure]) -> int:
    """Emit each failure; returns how many."""
    n = 0
    for f in failures:
        await f.emit(sys)
        n += 1
    return n


def failures_in(events: Iterable[Any]) -> list[Failure]:
    """The failures carried by an event list (`Event`s or raw `(time, pid, kind, data)`
    tuples). A `log` event that claims to be a failure but does not parse is skipped."""
    out: list[Failure] = []
    for e in events:
        kind = getattr(e, "kind", None)
        data = getattr(e, "data", None)
        if kind is None and isinstance(e, tuple) and len(e) == 4:
            kind, data = e[2], e[3]
        if kind != "log" or not isinstance(data, (tuple, list)) or len(data) != 3 or data[1] != FAILURE_MSG:
            continue
        try:
            out.append(Failure.from_dict(data[2]))
        except (TypeError, ValueError, KeyError):
            continue
    return out


def failure_from_error(err: BaseException, *, source: str, detector: str, subject: str = "") -> Failure:
    """The failure an exception stands for: a driver timeout is `timeout`, an exhausted
    budget `quota`, a policy refusal `policy_refusal`, a tool's error `tool_error`, and any
    other driver or model error (an endpoint's 5xx, a reply that breaks the chat contract,
    NaN usage) `model_error`. Anything else is a `model_error` too: the call did not give
    an answer, and the caller is told so, never crashed."""
    if isinstance(err, DriverTimeout):
        kind = FailureKind.TIMEOUT
    elif isinstance(err, QuotaExceeded):
        kind = FailureKind.QUOTA
    elif isinstance(err, PolicyDenied):
        kind = FailureKind.POLICY_REFUSAL
    elif isinstance(err, ToolError):
        kind = FailureKind.TOOL_ERROR
    else:
        kind = FailureKind.MODEL_ERROR
    detail = f"{type(err).__name__}: {_safe_str(err)}"
    ev: dict[str, Any] = {"error": type(err).__name__}
    if isinstance(err, (RateLimited, BadRequest, UpstreamError)) or not isinstance(err, SyscallError):
        ev["typed"] = isinstance(err, SyscallError)
    if isinstance(err, DriverError) and getattr(err, "usage_unknown", False):
        ev["usage_unknown"] = True
    return Failure(kind, detail, source, detector, subject=subject, evidence=ev)


def _safe_str(err: BaseException) -> str:
    try:
        s = str(err)
    except Exception:  # a hostile exception whose __str__ raises
        return "(unprintable)"
    s = s.encode("utf-8", "replace").decode("utf-8")
    return s[:MAX_DETAIL - 40]


def finite(x: Any) -> bool:
    """A real number (not a bool) within ±1e300: compared, never converted, so NaN, an
    infinity and 10**400 are all "not finite" here (math.isfinite(10**400) raises
    OverflowError), and float(x) of one that is cannot overflow."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and -1e300 < x < 1e300


__all__ = ["DEFAULT_SEVERITY", "FAILURE_MSG", "Failure", "FailureKind", "Severity", "emit", "failure_from_error",
           "failures_in"]
