"""The failure model: typed records, emitted as `log` events, counted by kind in metrics."""
from __future__ import annotations

import math

import pytest

from agentos import AllowAll, Kernel
from agentos.abi.errors import (
    BadArgument, DriverTimeout, PolicyDenied, QuotaExceeded, ToolError, UpstreamError,
)
from agentos.userland.failures import (
    FAILURE_MSG, Failure, FailureKind, Severity, failure_from_error, failures_in,
)


def test_every_kind_named_in_the_model_exists():
    names = {k.value for k in FailureKind}
    assert {"model_error", "tool_error", "timeout", "quota", "policy_refusal", "hallucination",
            "disagreement", "laziness", "drift", "unsafe_action"} <= names


def test_failure_is_validated_and_round_trips():
    f = Failure("drift", "moved", "cmvk", "rule:drift_threshold", evidence={"score": 0.4})
    assert f.kind is FailureKind.DRIFT and f.severity is Severity.WARNING
    assert Failure.from_dict(f.to_dict()) == f
    with pytest.raises(ValueError):
        Failure("not_a_kind", "x", "s", "d")
    with pytest.raises(TypeError):
        Failure(FailureKind.DRIFT, 3, "s", "d")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": "\ud800"}, {"x": "a" * 10_000}, {"x": object()}])
def test_hostile_evidence_is_refused(bad):
    with pytest.raises(ValueError):
        Failure(FailureKind.MODEL_ERROR, "x", "s", "d", evidence=bad)


def test_lone_surrogate_in_detail_is_refused():
    with pytest.raises(ValueError):
        Failure(FailureKind.MODEL_ERROR, "bad \udcff", "s", "d")


def test_long_detail_is_bounded():
    f = Failure(FailureKind.MODEL_ERROR, "y" * 100_000, "s", "d")
    assert len(f.detail) <= 400


@pytest.mark.parametrize("err,kind", [
    (DriverTimeout("t"), FailureKind.TIMEOUT), (QuotaExceeded("tokens", "q"), FailureKind.QUOTA),
    (PolicyDenied("r", "p"), FailureKind.POLICY_REFUSAL), (ToolError("x"), FailureKind.TOOL_ERROR),
    (UpstreamError("u"), FailureKind.MODEL_ERROR), (BadArgument("b"), FailureKind.MODEL_ERROR),
    (RuntimeError("r"), FailureKind.MODEL_ERROR),
])
def test_errors_map_to_kinds(err, kind):
    assert failure_from_error(err, source="t", detector="model:llm").kind is kind


def test_unprintable_error_is_still_a_failure():
    class Evil(Exception):
        def __str__(self):
            raise RuntimeError("no")
    f = failure_from_error(Evil(), source="t", detector="model:llm")
    assert f.kind is FailureKind.MODEL_ERROR and "unprintable" in f.detail


def test_emitted_failures_are_events_and_counted_by_kind():
    k = Kernel(deterministic=True, policy=AllowAll())

    async def init(sys, args):
        await Failure(FailureKind.DISAGREEMENT, "2 of 3 differ", "cmvk", "rule:agreement").emit(sys)
        await Failure(FailureKind.DISAGREEMENT, "again", "cmvk", "rule:agreement").emit(sys)
        await Failure(FailureKind.LAZINESS, "placeholder", "scak", "rule:placeholder").emit(sys)
        await sys.log("info", FAILURE_MSG, kind="Robert'); DROP")  # a forged label is not a new series
        await sys.log("info", "not a failure", kind="drift")
        return None

    k.run(init)
    m = k.metrics()
    assert m["failures"] == {"disagreement": 2, "laziness": 1, "other": 1}
    text = k.metrics_text()
    assert 'agentos_failures_total{kind="disagreement"} 2.0' in text or \
        'agentos_failures_total{kind="disagreement"} 2' in text
    got = failures_in(k.events.events(kind="log"))
    assert [f.kind for f in got] == [FailureKind.DISAGREEMENT, FailureKind.DISAGREEMENT, FailureKind.LAZINESS]
    assert "pid" not in text.split("agentos_failures_total")[1].split("\n")[0]


def test_failure_label_set_is_bounded():
    k = Kernel(deterministic=True, policy=AllowAll())

    async def init(sys, args):
        for i in range(100):
            await sys.log("info", FAILURE_MSG, kind="k" + "abcdefghij"[i % 10] * (1 + i // 10))
        return None

    k.run(init)
    assert len(k.metrics()["failures"]) <= 33
    assert sum(k.metrics()["failures"].values()) == 100


class _HostileValue:
    """A kind or severity whose hash and comparisons raise."""

    def __hash__(self) -> int:
        raise RuntimeError("hostile __hash__")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile __eq__")


class _HostileStr(str):
    def __str__(self) -> str:
        raise RuntimeError("hostile __str__")


@pytest.mark.parametrize("field,bad,err", [
    ("kind", _HostileValue(), TypeError), ("kind", ["drift"], TypeError), ("kind", 1, TypeError),
    ("kind", None, TypeError), ("kind", "fatal", ValueError), ("severity", _HostileValue(), TypeError),
    ("severity", True, TypeError), ("severity", [1], TypeError), ("severity", "fatal", ValueError),
])
def test_a_failure_with_a_hostile_or_unknown_kind_or_severity_is_a_typed_error(field, bad, err):
    kw = {"kind": "drift", "detail": "d", "source": "s", "detector": "rule:x", field: bad}
    with pytest.raises(err) as ei:
        Failure(**kw)
    assert f"Failure.{field}" in str(ei.value)
    assert failures_in([(0, 1, "log", ("error", FAILURE_MSG, {**kw, "kind": kw["kind"]}))]) == []


def test_a_str_subclass_field_is_read_without_running_its_code():
    f = Failure(_HostileStr("drift"), _HostileStr("moved"), _HostileStr("cmvk"), _HostileStr("rule:x"),
                severity=_HostileStr("error"))
    assert (f.kind, f.severity, f.detail, type(f.detail)) == (FailureKind.DRIFT, Severity.ERROR, "moved", str)
