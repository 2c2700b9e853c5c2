"""One hostile value must not disable auditing. Once, a single lone surrogate in a tool
argument failed to encode, stuck at the head of the commit queue, and every later audited
action of every process failed: the log ended with 0 records. Now encoding is total, and a
record that cannot be made refuses only its own action. Values arrive three ways here:
sandboxed code (over its pipe), tools called in the kernel, and the recorder's own API."""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos import Kernel
from agentos.audit import AuditUnavailable, FlightRecorder, verify_dir
from agentos.audit.logdir import read_records
from agentos.drivers.tools import Tool, ToolsDriver
from agentos.kernel.kernel import AllowAll

from sbx import run_sandboxed

KEY = b"P" * 32
encode_mod = importlib.import_module("agentos.audit.encode")
SURROGATES = st.sampled_from(["\ud800", "\udfff", "a\udc80b", "\udbff\udbff", "\ud83d"])
TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()), max_size=20)
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(10**40), 10**40) | st.floats(allow_nan=False, allow_infinity=False)
                | TEXT | SURROGATES)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(TEXT | SURROGATES, c, max_size=4),
                           max_leaves=12)


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    def __str__(self) -> str:
        raise RuntimeError("no str either")


def _deep(n: int) -> Any:
    v: Any = "bottom"
    for _ in range(n):
        v = [v]
    return v


def _cycle() -> Any:
    a: list[Any] = [1]
    a.append(a)
    d: dict[str, Any] = {}
    d["self"] = d
    return [a, d]


SPECIALS = [lambda: float("nan"), lambda: float("inf"), lambda: -float("inf"), lambda: 10**5000,
            lambda: -(10**9000), lambda: b"\xff" * 3, lambda: bytearray(b"\x00"), lambda: {1, 2},
            lambda: frozenset({"a"}), Hostile, object, lambda: _deep(10_000), _cycle, lambda: "x" * 3_000_000,
            lambda: math.pi, lambda: {"$bytes": "forged tag"}]
ANY_SCALARS = (JSON_SCALARS | st.floats() | st.integers() | st.binary(max_size=16)
               | st.integers(0, len(SPECIALS) - 1).map(lambda i: SPECIALS[i]()))
ANY_VALUES = st.recursive(ANY_SCALARS, lambda c: st.lists(c, max_size=4) | st.tuples(c, c)
                          | st.dictionaries(TEXT | st.integers() | st.tuples(st.integers(), TEXT), c, max_size=4),
                          max_leaves=12)


def echo(**kw: Any) -> str:
    return "ok"


def _kernel(rec: FlightRecorder) -> Kernel:
    k = Kernel(policy=AllowAll(), audit=rec)
    k.register_driver(ToolsDriver([Tool("echo", echo, schema={"type": "object"}, effect="read_only")]))
    return k


def _actions(rec: FlightRecorder) -> list[Any]:
    return [r for r in rec.records() if r.kind == "action"]


def _stored_actions(d: Path) -> list[Any]:
    return [r for r in read_records(d) if r.kind == "action"]


@settings(derandomize=True, max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=st.lists(ANY_VALUES, min_size=1, max_size=5))
def test_any_tool_argument_is_recorded_and_auditing_carries_on(tmp_path_factory: Any, values: list[Any]) -> None:
    d = tmp_path_factory.mktemp("audit")
    rec = FlightRecorder.open(d, key=KEY, sign=False)
    k = _kernel(rec)

    async def main(sys: Any, _: Any) -> Any:
        h = await sys.open("tools")
        out = []
        for v in values:
            try:
                out.append(await sys.read(h, {"tool": "echo", "args": {"v": v, "w": [v, {"k": v}]}}))
            except Exception as e:  # a typed refusal is fine; a dead recorder is not
                out.append(type(e).__name__)
        out.append(await sys.read(h, {"tool": "echo", "args": {"after": "the attack"}}))
        return out

    res = k.run(main, grant=["tools"])
    rec.close()
    assert str(res.reason) == "normal", res.reason
    assert res.value[-1] == "ok"                       # an ordinary call after the attack still runs
    assert len(_stored_actions(d)) == len(values) + 1  # and every call has its record
    report = verify_dir(d, KEY)
    assert report.ok and report.count == len(values) + 1, report.summary()


def test_the_original_attack_one_lone_surrogate(tmp_path: Path) -> None:
    rec = FlightRecorder.open(tmp_path, key=KEY, sign=False)
    k = _kernel(rec)

    async def main(sys: Any, _: Any) -> Any:
        h = await sys.open("tools")
        first = await sys.read(h, {"tool": "echo", "args": {"path": "\ud800"}})
        later = [await sys.read(h, {"tool": "echo", "args": {"i": i}}) for i in range(5)]
        return first, later

    res = k.run(main, grant=["tools"])
    rec.close()
    assert res.value == ("ok", ["ok"] * 5), res
    records = list(read_records(tmp_path))
    assert len(records) == 6
    assert records[0].fields()["data"]["args"] == {"path": "\ud800"}   # escaped, stored, and read back
    assert verify_dir(tmp_path, KEY).ok


def test_a_record_that_cannot_be_made_refuses_only_its_own_action(tmp_path: Path, monkeypatch: Any) -> None:
    real = encode_mod.encode

    def fussy(value: Any) -> str:
        if "poison" in repr(value):
            raise MemoryError("cannot encode this one")
        return real(value)

    monkeypatch.setattr("agentos.audit.recorder.encode", fussy)
    rec = FlightRecorder.open(tmp_path, key=KEY, sign=False)
    k = _kernel(rec)

    async def main(sys: Any, _: Any) -> Any:
        h = await sys.open("tools")
        out = []
        for args in ({"a": 1}, {"a": "poison"}, {"a": 2}):
            try:
                out.append(await sys.read(h, {"tool": "echo", "args": args}))
            except AuditUnavailable as e:
                out.append("refused: " + str(e)[:60])
        return out

    res = k.run(main, grant=["tools"])
    rec.close()
    assert res.value[0] == "ok" and res.value[2] == "ok", res.value
    assert res.value[1].startswith("refused"), res.value
    assert [r.fields()["data"]["args"] for r in _stored_actions(tmp_path)] == [{"a": 1}, {"a": 2}]
    assert verify_dir(tmp_path, KEY).ok


@settings(derandomize=True, max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=st.lists(ANY_VALUES, min_size=1, max_size=6))
def test_the_recorder_api_takes_any_value(values: list[Any]) -> None:
    rec = FlightRecorder.in_memory(KEY)
    for i, v in enumerate(values):
        rec.append(i, "note", v)
        rec.append(i, "note", {"k": v, "t": (v, v)})
    rec.commit()
    assert rec.verify().ok
    for r in rec.records():
        assert r.data.isascii() and len(r.data) <= encode_mod.MAX_TEXT
        r.fields()  # always parses back


SANDBOXED = r'''
async def main(sys, values):
    h = await sys.open("tools")
    out = []
    for v in values:
        try:
            out.append(await sys.read(h, {"tool": "echo", "args": {"v": v}}))
        except Exception as e:
            out.append(type(e).__name__)
    out.append(await sys.read(h, {"tool": "echo", "args": {"after": "the attack"}}))
    await sys.log("info", "result", out=out)
'''


@settings(derandomize=True, max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=st.lists(JSON_VALUES, min_size=1, max_size=6))
def test_any_value_sandboxed_code_sends_is_recorded_and_auditing_carries_on(tmp_path_factory: Any,
                                                                           values: list[Any]) -> None:
    d = tmp_path_factory.mktemp("audit")
    rec = FlightRecorder.open(d, key=KEY, sign=False)

    def setup(k: Kernel) -> None:
        k.register_driver(ToolsDriver([Tool("echo", echo, schema={"type": "object"}, effect="read_only")]))

    out = run_sandboxed(SANDBOXED, args=values, audit=rec, setup=setup, grant=("tools",))
    rec.close()
    assert out.reason == "normal", out.reason
    assert out.result["out"][-1] == "ok"
    assert len(_stored_actions(d)) == len(values) + 1
    assert verify_dir(d, KEY).ok
