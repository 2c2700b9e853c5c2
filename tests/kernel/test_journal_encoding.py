"""Cheap recording and replay: journal entries written by a fixed layout (the same bytes as
the generic encoding), read back in batches, and compared on replay without building the
recorded request's canonical form again."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from agentos import AllowAll, Cost, Driver, DriverResult, Kernel
from agentos.abi.errors import RecordingFormatError
from agentos.kernel import journal as J
from agentos.kernel.journal import Journal, JournalEntry

TEXT = st.text(max_size=6)
VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXT | st.binary(max_size=3),
                     lambda c: st.lists(c, max_size=3) | st.tuples(c) | st.dictionaries(TEXT | st.integers(), c,
                                                                                        max_size=3),
                     max_leaves=8)
ENTRY = st.builds(JournalEntry, st.integers(0, 10**12), st.integers(0, 10**9), TEXT, TEXT, st.none() | TEXT,
                  VALUE, st.booleans(), VALUE, st.none() | TEXT, st.integers(0, 10**6), st.integers(0, 9),
                  st.floats(0, 1e6) | st.floats() | st.integers(0, 3), st.integers(0, 9),
                  st.none() | st.integers(0, 99),
                  st.none() | st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)))


@settings(derandomize=True, max_examples=500, deadline=None)
@given(ENTRY)
def test_the_fixed_layout_writes_the_generic_bytes(e: JournalEntry) -> None:
    assert e.to_json() == e._to_json_generic()


def test_the_usual_entry_takes_the_fixed_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    e = JournalEntry(3, 7, "read", "null", "null.read", 5, True, {"x": (1, b"\x00")}, None, 0, 1, 0.25, 1,
                     at=4, reserve=(0, 1, 0))
    expected = e._to_json_generic()
    monkeypatch.setattr(JournalEntry, "_to_json_generic", lambda self: pytest.fail("took the slow path"))
    assert e.to_json() == expected


def test_entries_are_read_back_in_batches_with_their_stored_text() -> None:
    entries = [JournalEntry(1, i, "read", "d", "d.read", [i, "x"], True, (i,)) for i in range(J._BATCH + 5)]
    texts = [e.to_json() for e in entries]
    back = JournalEntry.from_json_many(texts)
    assert [b.to_json() for b in back] == texts and back[3].value == (3,) and back[3].raw == texts[3]
    with pytest.raises(RecordingFormatError, match="not one of recording format"):
        JournalEntry.from_json_many(texts[:3] + ['{"pid": 1}'] + texts[3:6])
    with pytest.raises(RecordingFormatError):
        JournalEntry.from_json_many(texts[:3] + ['1,2'])  # one row must be one value


def test_replay_compares_a_stored_request_as_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    e = JournalEntry(1, 0, "read", "d", "d.read", {"q": [1, 2]}, True, 1)
    j = Journal(JournalEntry.from_json_many([e.to_json()]))
    calls: list[Any] = []
    real = J.canonical
    monkeypatch.setattr(J, "canonical", lambda v: calls.append(v) or real(v))
    assert j.replay(1, 0, "read", "d", {"q": (1, 2)}).value == 1
    assert calls == [{"q": (1, 2)}]  # only the replaying program's request is rendered
    live = Journal([e])  # recorded in this process: its request is the program's object
    calls.clear()
    live.replay(1, 0, "read", "d", {"q": (1, 2)})
    assert len(calls) == 2


class Plain(Driver):
    name = "plain"

    def read(self, handle: Any, req: Any) -> DriverResult:
        return DriverResult(req, Cost(reductions=1))


class Named(Plain):
    name = "named"
    asked = 0

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        Named.asked += 1
        return (f"named.{op}.custom", req)


class Seen:
    governs_kernel: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.actions: list[str] = []

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Any:
        self.actions.append(action)
        return AllowAll().check(pid, action, args, dry_run=dry_run)


def test_action_names_are_built_once_per_handle_for_the_default_naming() -> None:
    pol = Seen()
    k = Kernel(deterministic=True, policy=pol)
    k.register_driver(Plain())
    k.register_driver(Named())
    handles: list[Any] = []

    async def init(sys: Any, args: Any) -> None:
        for dev in ("plain", "named"):
            h = await sys.open(dev)
            for i in range(3):
                await sys.read(h, i)
        handles.extend(k.procs[1].handles.values())  # type: ignore[union-attr]

    Named.asked = 0
    k.run(init, grant=["plain", "named"])
    assert pol.actions == ["plain.read"] * 3 + ["named.read.custom"] * 3
    assert handles[0].actions == {"read": "plain.read", "write": "plain.write"}
    assert handles[1].actions is None and Named.asked == 3  # an overriding driver is asked every time


class Bounded(Plain):
    name = "bounded"
    asked = 0

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        Bounded.asked += 1
        return Cost(tool_calls=1)


def test_a_driver_that_declares_no_bound_is_not_asked_for_one() -> None:
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(Plain())
    k.register_driver(Bounded())
    handles: list[Any] = []

    async def init(sys: Any, args: Any) -> None:
        for dev in ("plain", "bounded"):
            h = await sys.open(dev)
            for i in range(3):
                await sys.read(h, i)
        handles.extend(k.procs[1].handles.values())  # type: ignore[union-attr]

    Bounded.asked = 0
    k.run(init, grant=["plain", "bounded"])
    assert [h.unbounded for h in handles] == [True, False] and Bounded.asked == 3
    assert sum(1 for e in k.events.events(kind="reserve")) == 3   # only the bounded reads reserve


AMOUNT = (st.integers(-3, 10**6) | st.integers(J.COST_MAX - 2, J.COST_MAX + 2) | st.booleans()
          | st.floats() | st.none() | TEXT)


def _amounts_refused(fields: dict[str, Any]) -> bool:
    """The amounts check written out plainly: the decoder's shortcut must agree with it."""
    for key in ("tokens", "tool_calls", "reductions"):
        v = fields.get(key, 0)
        if type(v) is not int or not 0 <= v <= J.COST_MAX:
            return True
    usd = fields.get("usd", 0.0)
    if type(usd) not in (int, float) or usd != usd or usd in (float("inf"), float("-inf")) \
            or not 0 <= usd <= J.COST_MAX:
        return True
    r = fields.get("reserve")
    return r is not None and (len(r) != 3 or any(type(v) is not int or not 0 <= v <= J.COST_MAX * J.USD_SCALE
                                                 for v in r))


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["tokens", "tool_calls", "reductions", "usd"]), AMOUNT),
       st.none() | st.tuples(st.integers(-1, 9), st.integers(0, 9), st.integers(0, 9)) | st.tuples(st.integers()))
def test_forged_amounts_are_refused_exactly_as_the_plain_check_refuses_them(fields: dict[str, Any],
                                                                            reserve: Any) -> None:
    if reserve is not None:
        fields["reserve"] = reserve
    refused = _amounts_refused(fields)
    try:
        J._check_amounts(dict(fields))
    except ValueError:
        assert refused, fields
    else:
        assert not refused, fields


def test_a_stored_entry_without_a_value_reads_as_null_and_a_forged_amount_is_refused() -> None:
    base = {"pid": 1, "index": 0, "op": "read", "device": "d", "action": None, "request": 1, "ok": True}
    e, = JournalEntry.from_json_many([J.json.dumps(base)])
    assert e.value is None
    for bad in ({"tokens": True}, {"usd": "NaN"}, {"tool_calls": -1}, {"reductions": 2.5},
                {"usd": 1e400}, {"reserve": [1, 2]}):
        with pytest.raises(RecordingFormatError):
            JournalEntry.from_json_many([J.json.dumps({**base, "value": 1, **bad})])


def test_decoding_a_journal_leaves_the_collector_as_it_found_it() -> None:
    import gc

    text = [J.json.dumps({"pid": 1, "index": i, "op": "read", "device": "d", "action": None, "request": i,
                          "ok": True, "value": [i]}) for i in range(10)]
    assert gc.isenabled()
    assert [e.value for e in JournalEntry.from_json_many(text)] == [[i] for i in range(10)]
    assert gc.isenabled()
    gc.disable()
    try:
        JournalEntry.from_json_many(text)
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RecordingFormatError):
        JournalEntry.from_json_many(text + ["{"])
    assert gc.isenabled()  # (also after a row that fails)
