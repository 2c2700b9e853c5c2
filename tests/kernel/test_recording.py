"""The recording format: journal values survive a store with their Python types, and a
forged or corrupt journal row is a typed error, never a crash deep in replay."""
from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos.abi.errors import RecordingFormatError
from agentos.kernel.events import canonical, dumps_canonical
from agentos.kernel.journal import JournalEntry
from agentos.kernel.recording import RECORDING_FORMAT, decode_value, encode_value, upgrade_entry

keys = st.one_of(st.text(max_size=6), st.integers(), st.tuples(st.integers(), st.text(max_size=3)),
                 st.sampled_from(["@tuple", "@bytes", "@dict", "@float", "@"]))
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8),
                   st.binary(max_size=8))
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(keys, inner, max_size=4)), max_leaves=20)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(values)
def test_a_journaled_value_comes_back_from_json_as_the_same_python_value(v: Any) -> None:
    text = dumps_canonical(encode_value(v))
    assert same(decode_value(json.loads(text)), v)


@settings(max_examples=200, deadline=None)
@given(values)
def test_a_format_1_value_reads_back_as_the_plain_json_it_was_stored_as(v: Any) -> None:
    plain = json.loads(dumps_canonical(canonical(v)))  # what format 1 stored (and handed back)
    row = json.dumps({"pid": 1, "index": 0, "op": "read", "device": "d", "action": None, "request": None,
                      "ok": True, "value": plain})
    assert same(JournalEntry.from_json(row, 1).value, plain)


def test_a_live_entry_round_trips_through_its_stored_text() -> None:
    e = JournalEntry(3, 7, "read", "dev", "dev.read", {"q": (1, 2)}, True, ("ok", b"\x01", {2: None}),
                     tokens=5, usd=0.25, at=4)
    back = JournalEntry.from_json(e.to_json())
    assert back.value == ("ok", b"\x01", {2: None}) and back.at == 4 and back.usd == 0.25
    assert back.request == {"q": [1, 2]}  # requests are compared in canonical form, so stored so


@pytest.mark.parametrize("value", [{"@tuple": 5}, {"@bytes": "not hex"}, {"@float": "many"}, {"@dict": [[1]]},
                                   {"@dict": 3}], ids=["tuple-of-int", "bad-hex", "bad-float", "short-pair",
                                                       "dict-of-int"])
def test_a_forged_tagged_value_is_a_typed_error(value: Any) -> None:
    row = json.dumps({"pid": 1, "index": 0, "op": "read", "device": "d", "action": None, "request": None,
                      "ok": True, "value": value})
    with pytest.raises(RecordingFormatError, match=f"recording format {RECORDING_FORMAT}"):
        JournalEntry.from_json(row)


@pytest.mark.parametrize("row", ["not json", "[1, 2]", '{"pid": 1}', '{"pid": 1, "index": 0, "op": "read", '
                                 '"device": "d", "action": null, "request": null, "ok": true, "value": 1, '
                                 '"extra_field": 2}', "[" * 100_000],
                         ids=["garbage", "a-list", "missing-fields", "unknown-field", "100k-deep"])
def test_a_corrupt_journal_row_is_a_typed_one_line_error(row: str) -> None:
    with pytest.raises(RecordingFormatError) as err:
        JournalEntry.from_json(row)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_a_forged_non_string_key_that_is_a_list_stays_usable() -> None:
    assert decode_value({"@dict": [[[1, 2], "x"]]}) == {"[1, 2]": "x"}


def test_upgrading_the_current_format_changes_nothing() -> None:
    fields = {"value": {"@tuple": [1]}}
    assert upgrade_entry(dict(fields), RECORDING_FORMAT) == fields
