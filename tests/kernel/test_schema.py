"""The typed-pipe schema validator agrees with the reference validator (jsonschema,
draft 2020-12) on the subset it supports, and stays bounded on hostile input."""
from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from agentos.kernel.schema import MAX_STEPS, SchemaInvalid, Violation, compile_schema

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-50, 50),
    st.floats(-100, 100, allow_nan=False, allow_infinity=False), st.sampled_from([0.0, 1.0, 2.5, -3.0]),
    st.text(alphabet="ab1 ", max_size=5),
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(st.sampled_from(["a", "b", "c", "tool"]), kids, max_size=4)),
    max_leaves=12,
)

types = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])
leaf_schemas = st.one_of(
    st.booleans(),
    st.fixed_dictionaries({"type": st.one_of(types, st.lists(types, min_size=1, max_size=3, unique=True))}),
    st.fixed_dictionaries({"enum": st.lists(json_scalars, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"const": json_scalars}),
    st.fixed_dictionaries({"minimum": st.integers(-20, 20)}),
    st.fixed_dictionaries({"exclusiveMaximum": st.floats(-20, 20, allow_nan=False)}),
    st.fixed_dictionaries({"multipleOf": st.sampled_from([1, 2, 3, 0.5, 2.5])}),
    st.fixed_dictionaries({"minLength": st.integers(0, 3), "maxLength": st.integers(0, 4)}),
    st.fixed_dictionaries({"pattern": st.sampled_from(["^a", "b$", "[0-9]", "^(a|b)*$", ""])}),
    st.fixed_dictionaries({"minItems": st.integers(0, 3)}, optional={"maxItems": st.integers(0, 3),
                                                                      "uniqueItems": st.booleans()}),
    st.fixed_dictionaries({"required": st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=2)},
                          optional={"minProperties": st.integers(0, 2), "maxProperties": st.integers(0, 3)}),
)
schemas = st.recursive(
    leaf_schemas,
    lambda kids: st.one_of(
        st.fixed_dictionaries({"items": kids}, optional={"prefixItems": st.lists(kids, min_size=1, max_size=2)}),
        st.fixed_dictionaries({"properties": st.dictionaries(st.sampled_from(["a", "b", "tool"]), kids, max_size=2)},
                              optional={"additionalProperties": kids, "propertyNames": kids}),
        st.fixed_dictionaries({"allOf": st.lists(kids, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"anyOf": st.lists(kids, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"oneOf": st.lists(kids, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"not": kids}),
        st.fixed_dictionaries({"if": kids}, optional={"then": kids, "else": kids}),
    ),
    max_leaves=6,
)


def ours(schema: Any, body: Any) -> bool:
    try:
        compile_schema(schema).validate(body)
        return True
    except Violation:
        return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas, json_values)
def test_random_bodies_agree_with_the_reference_validator(schema: Any, body: Any) -> None:
    expected = Draft202012Validator(schema).is_valid(body)
    assert ours(schema, body) == expected, (schema, body)


PLAN = {
    "$defs": {"step": {"type": "object", "properties": {
        "tool": {"enum": ["add", "lookup"]}, "args": {"type": "object", "maxProperties": 4},
        "why": {"type": "string", "maxLength": 80}}, "required": ["tool", "args"], "additionalProperties": False}},
    "type": "object", "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "maxItems": 5}},
    "required": ["steps"],
}


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.fixed_dictionaries(
    {"steps": st.lists(st.fixed_dictionaries({"tool": st.sampled_from(["add", "lookup", "wire_transfer"]),
                                              "args": st.dictionaries(st.text(max_size=2), json_scalars, max_size=5)},
                                             optional={"why": st.text(max_size=90)}), max_size=6)})))
def test_plan_bodies_agree_with_the_reference_validator(body: Any) -> None:
    assert ours(PLAN, body) == Draft202012Validator(PLAN).is_valid(body), body


def test_violation_names_the_body_path_and_the_schema_path() -> None:
    with pytest.raises(Violation) as e:
        compile_schema(PLAN).validate({"steps": [{"tool": "add", "args": {}}, {"tool": "wire_transfer", "args": {}}]})
    assert e.value.path == "/steps/1/tool"
    assert e.value.schema_path == "/$defs/step/properties/tool/enum"


def test_pointer_escapes_slash_and_tilde_in_keys() -> None:
    with pytest.raises(Violation) as e:
        compile_schema({"additionalProperties": False}).validate({"a/b~c": 1})
    assert e.value.path == "/a~1b~0c"


def test_json_equality_keeps_booleans_apart_from_numbers() -> None:
    s = compile_schema({"enum": [1, [0]]})
    s.validate(1.0)
    s.validate((0.0,))
    for bad in (True, [False]):
        with pytest.raises(Violation):
            s.validate(bad)


def test_tuples_are_arrays_and_non_json_values_fail() -> None:
    s = compile_schema({"type": "array", "items": {"type": "integer"}})
    s.validate((1, 2))
    for bad in ((1, b"x"), (1, float("nan")), {1, 2}, [object()]):
        with pytest.raises(Violation):
            s.validate(bad)


def test_a_non_string_key_fails_an_object_schema() -> None:
    with pytest.raises(Violation, match="JSON object keys are strings"):
        compile_schema({"type": "object"}).validate({1: "x"})
    with pytest.raises(Violation, match="JSON object keys are strings"):
        compile_schema({"properties": {"a": True}}).validate({"a": 1, 2: "x"})


def test_ten_thousand_deep_schema_is_refused_without_recursion() -> None:
    deep: Any = True
    for _ in range(10_000):
        deep = {"not": deep}
    with pytest.raises(SchemaInvalid, match="nested deeper than 64"):
        compile_schema(deep)
    deep_list: Any = []
    for _ in range(10_000):
        deep_list = [deep_list]
    with pytest.raises(SchemaInvalid):
        compile_schema({"enum": deep_list})


def test_exponential_anyof_is_cut_off_by_the_step_budget() -> None:
    branchy = {"anyOf": [{"type": "array", "items": {"$ref": "#"}}, {"type": "array", "items": {"$ref": "#"}},
                         {"type": "integer"}]}
    body: Any = "leaf"
    for _ in range(30):  # a failing leaf 30 deep: 2^30 visits for a naive search
        body = [body]
    compiled = compile_schema(branchy)
    t0 = time.perf_counter()
    with pytest.raises(Violation, match=f"more than {MAX_STEPS} steps"):
        compiled.validate(body)
    assert time.perf_counter() - t0 < 30  # a gross bound only: the budget is counted in steps


def test_shared_subschemas_that_expand_exponentially_are_refused_at_creation() -> None:
    s: Any = {"type": "integer"}
    for _ in range(20):  # one Python object used twice per level: 2^20 values as JSON
        s = {"anyOf": [{"items": s}, {"items": s}]}
    with pytest.raises(SchemaInvalid, match="more than 10000 values"):
        compile_schema(s)


def test_unique_items_counts_steps() -> None:
    s = compile_schema({"uniqueItems": True})
    with pytest.raises(Violation, match="steps"):
        s.validate([[i, [i]] for i in range(60_000)])
    with pytest.raises(Violation, match="uniqueItems"):
        s.validate([1, 2, 1.0])


def test_a_huge_integer_against_a_float_multiple_of_is_answered_not_an_overflow() -> None:
    half = compile_schema({"multipleOf": 0.5})
    half.validate(10**400)            # exactly a multiple: no OverflowError
    half.validate(-(10**400))
    with pytest.raises(Violation, match="not a multiple of 0.5"):
        half.validate(0.25)
    tenth = compile_schema({"multipleOf": 0.1})
    with pytest.raises(Violation, match="not a multiple"):
        tenth.validate(10**400)       # 0.1 is not exactly a tenth: exact arithmetic says no, never raises
    compile_schema({"multipleOf": 3}).validate(3 * 10**400)


def test_a_long_chain_of_refs_is_checked_for_cycles_in_linear_time() -> None:
    n = 4000
    defs = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(n)}
    defs[f"d{n}"] = {"type": "integer"}
    t0 = time.perf_counter()
    s = compile_schema({"$defs": defs, "$ref": "#/$defs/d0"})
    assert time.perf_counter() - t0 < 1.0   # was quadratic: seconds for this chain
    with pytest.raises(Violation):
        s.validate("x")                      # (deeper than the validation bound: refused, not run)
    defs[f"d{n}"] = {"$ref": "#/$defs/d0"}  # close the chain into a cycle
    with pytest.raises(SchemaInvalid, match="refers back to itself"):
        compile_schema({"$defs": defs, "$ref": "#/$defs/d0"})


def test_a_fifty_megabyte_value_makes_a_short_error_in_bounded_work() -> None:
    big = "x" * (50 << 20)
    t0 = time.perf_counter()
    for schema, body in (({"enum": ["a"]}, big), ({"const": 1}, [big]), ({"enum": [1]}, {big: big}),
                         ({"type": "object", "additionalProperties": False}, {big: 1})):
        with pytest.raises(Violation) as e:
            compile_schema(schema).validate(body)
        assert len(str(e.value)) < 1000 and len(e.value.path) < 400
    assert time.perf_counter() - t0 < 5.0


def test_a_huge_class_name_in_a_body_makes_a_short_error() -> None:
    class Odd:
        pass

    Odd.__name__ = "O" * 1_000_000
    with pytest.raises(Violation) as e:
        compile_schema({"type": "object"}).validate(Odd())
    assert len(str(e.value)) < 1000
    with pytest.raises(Violation) as e:
        compile_schema({"enum": [1]}).validate([Odd()])
    assert len(str(e.value)) < 1000


class _HostileKey:
    ran = 0

    def __hash__(self) -> int:
        _HostileKey.ran += 1
        return hash("a")   # collides with the schema's key "a"

    def __eq__(self, other: Any) -> bool:
        _HostileKey.ran += 1
        return True


def test_a_non_string_key_with_its_own_hash_and_eq_never_runs_them_in_the_check() -> None:
    d = {"x": 1}
    d[_HostileKey()] = 1   # (hashed here, by its author, not by the kernel)
    _HostileKey.ran = 0
    for schema, body in (({"const": {"a": 1, "x": 1}}, d), ({"enum": [{"a": 1, "x": 1}]}, d),
                         ({"uniqueItems": True}, [d, {"x": 1}]), ({"required": ["a"]}, d)):
        try:
            compile_schema(schema).validate(body)
        except Violation:
            pass
    assert _HostileKey.ran == 0
