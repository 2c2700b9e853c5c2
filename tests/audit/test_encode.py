"""The recorder's encoding: total, deterministic, ASCII, bounded, unforgeable tags."""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

E = importlib.import_module("agentos.audit.encode")
encode = E.encode

JSON = st.recursive(st.none() | st.booleans() | st.integers(-(10**30), 10**30)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
                    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5),
                    max_leaves=20)


def _no_dollar_keys(v: Any) -> bool:
    if isinstance(v, dict):
        return all(not k.startswith("$") and _no_dollar_keys(x) for k, x in v.items())
    if isinstance(v, list):
        return all(_no_dollar_keys(x) for x in v)
    return True


@settings(derandomize=True, max_examples=200, deadline=None)
@given(JSON)
def test_plain_json_round_trips_and_is_ascii(v: Any) -> None:
    text = encode(v)
    assert text.isascii()
    if _no_dollar_keys(v):
        assert json.loads(text) == v


def test_lone_surrogates_are_escaped_and_come_back() -> None:
    text = encode({"p": "a\ud800b", "q": ["\udfff"]})
    assert text == '{"p":"a\\ud800b","q":["\\udfff"]}'
    assert json.loads(text) == {"p": "a\ud800b", "q": ["\udfff"]}
    text.encode("utf-8")  # storable anywhere


def test_non_finite_floats_big_ints_and_bytes_are_tagged() -> None:
    assert json.loads(encode([float("nan"), float("inf"), -float("inf")])) == [
        {"$float": "nan"}, {"$float": "inf"}, {"$float": "-inf"}]
    big = json.loads(encode(10**5000))
    assert big["$int"] == "cut" and big["bits"] == (10**5000).bit_length()
    assert json.loads(encode(b"\x00\xff")) == {"$bytes": "AP8="}


def test_dollar_keys_cannot_forge_a_tag() -> None:
    assert json.loads(encode({"$bytes": "x"})) == {"$$bytes": "x"}
    assert json.loads(encode({"$$x": 1})) == {"$$$x": 1}


def test_non_string_keys_keep_every_entry() -> None:
    out = json.loads(encode({1: "a", "1": "b", (2, 3): "c"}))
    assert sorted(map(json.dumps, out["$dict"])) == sorted(map(json.dumps, [[1, "a"], ["1", "b"], [[2, 3], "c"]]))


def test_sets_are_order_free() -> None:
    assert encode({3, 1, 2}) == encode({2, 3, 1}) == '{"$set":[1,2,3]}'


def test_depth_nodes_strings_and_size_are_bounded() -> None:
    v: Any = 0
    for _ in range(10_000):
        v = [v]
    text = encode(v)
    assert '"$cut":"depth"' in text and len(text) < 1000
    wide = list(range(E.MAX_NODES * 2))
    assert '"$cut":"nodes"' in encode(wide)
    s = json.loads(encode("x" * (E.MAX_STR + 5)))
    assert s["len"] == E.MAX_STR + 5 and len(s["$str"]) == E.MAX_STR and len(s["sha256"]) == 64
    huge = encode(["y" * E.MAX_STR] * 40)
    assert len(huge) <= E.MAX_TEXT and json.loads(huge)["$cut"] == "size"


def test_cycles_are_named_not_followed() -> None:
    a: list[Any] = [1]
    a.append(a)
    assert json.loads(encode(a)) == [1, {"$cycle": "list"}]
    d: dict[str, Any] = {}
    d["me"] = d
    assert json.loads(encode(d)) == {"me": {"$cycle": "dict"}}


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no")


class BadIter(list):  # type: ignore[type-arg]
    def __iter__(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("no iterating")


@dataclass
class Point:
    x: int
    y: Any


def test_objects_dataclasses_and_hostile_values() -> None:
    assert json.loads(encode(Hostile())) == {"$object": "Hostile", "repr": "<repr raised RuntimeError>"}
    # a container subclass is read through its base type: its own __iter__ never runs
    assert json.loads(encode(BadIter([1]))) == [1]
    assert json.loads(encode(Point(1, "\ud800"))) == {"$type": "Point", "x": 1, "y": "\ud800"}
    obj = json.loads(encode(object()))
    assert obj["$object"] == "object" and "0x?" in obj["repr"]  # no address: deterministic


ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary()
    | st.integers(0, 2).map(lambda i: (lambda: 10**6000, Hostile, lambda: b"\xff")[i]()),
    lambda c: st.lists(c, max_size=4) | st.tuples(c, c) | st.frozensets(st.integers() | st.text(), max_size=3)
    | st.dictionaries(st.text() | st.integers() | st.tuples(st.integers()), c, max_size=4),
    max_leaves=15)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(ANY)
def test_encode_is_total_and_deterministic(v: Any) -> None:
    a, b = encode(v), encode(v)
    assert a == b and a.isascii() and len(a) <= E.MAX_TEXT
    json.loads(a)


PLAIN = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=4) | st.tuples(c, c)
                     | st.dictionaries(st.text(max_size=4) | st.sampled_from(["$x", "$"]), c, max_size=4),
                     max_leaves=25)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(PLAIN)
def test_plain_values_skip_the_walk_and_write_the_same_text(v: Any) -> None:
    # JSON-plain values are written as they are; the text must be what the walk writes
    assert encode(v) == E._dumps(E.to_tree(v))


def test_the_plain_shortcut_still_cuts_long_strings_and_deep_nesting() -> None:
    assert json.loads(encode({"s": "x" * (E.MAX_STR + 1)}))["s"]["len"] == E.MAX_STR + 1
    deep: Any = 1
    for _ in range(E.MAX_DEPTH + 3):
        deep = [deep]
    assert "$cut" in encode(deep)


def _plain_as_it_was(v: Any, depth: int, budget: list[int]) -> bool:
    """The walk `canon._plain` made before it judged strings, None and bools in place."""
    import math

    from agentos.kernel import canon as c
    t = type(v)
    if v is None or t is bool:
        return True
    if t is str:
        return len(v) <= c.AUDIT_MAX_STR
    if t is int:
        return v.bit_length() <= c.AUDIT_MAX_INT_BITS
    if t is float:
        return math.isfinite(v)
    if depth >= c.AUDIT_MAX_DEPTH - 1:
        return False
    budget[0] -= len(v) if (t is dict or t is list or t is tuple) else 0
    if budget[0] < 0:
        return False
    if t is dict:
        return all(type(k) is str and k[:1] != "$" and len(k) <= c.AUDIT_MAX_STR
                   and _plain_as_it_was(x, depth + 1, budget) for k, x in v.items())
    if t is list or t is tuple:
        return all(_plain_as_it_was(x, depth + 1, budget) for x in v)
    return False


_long = "y" * (64 * 1024 + 1)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
                     st.sampled_from([_long, "$x", 1 << 9000, b"b", 1.5j]))
_values = st.recursive(_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.lists(kids, max_size=3).map(tuple),
    st.dictionaries(st.one_of(st.text(max_size=3), st.sampled_from(["$a", _long]), st.integers()), kids,
                    max_size=3)), max_leaves=20)


@settings(max_examples=300)
@given(v=_values, budget=st.integers(0, 12), depth=st.integers(0, 70))
def test_the_plain_check_judges_every_value_as_it_always_did(v: Any, budget: int, depth: int) -> None:
    # a value judged plain is written as it is, so a different verdict changes the record
    from agentos.kernel.canon import _plain
    assert _plain(v, depth, [budget]) == _plain_as_it_was(v, depth, [budget])
