"""Manifests are checked strictly: typed refusals naming the field, hostile schemas bounded."""
from __future__ import annotations

import time

import pytest

from agentos.abi.errors import BadArgument, ManifestError, ToolError
from agentos.services import Origin, Risk, Tier, parse_manifest
from agentos.services.manifest import SCHEMA_DEPTH, ArgsChecker, check_schema, choose_tier

from .tools import ADD, MUL, PY_PURE, TWO_INTS


def refused(obj, field: str) -> ManifestError:  # type: ignore[no-untyped-def]
    with pytest.raises(ManifestError) as ei:
        parse_manifest(obj)
    assert ei.value.field == field, (ei.value.field, str(ei.value))
    assert isinstance(ei.value, BadArgument) and isinstance(ei.value, ToolError)
    return ei.value


def schema(**props) -> dict:  # type: ignore[no-untyped-def]
    return {**ADD, "schema": {"type": "object", **props}}


def deep(n: int) -> dict:
    s: dict = {"type": "integer"}
    for _ in range(n):
        s = {"type": "object", "properties": {"x": s}}
    return s


def test_a_good_manifest_parses_into_frozen_typed_fields() -> None:
    m = parse_manifest(ADD)
    assert m.risk is Risk.PURE and m.name == "add" and m.capabilities == ("math",)
    assert choose_tier(m, Origin.HOST, True) is Tier.IN_KERNEL


@pytest.mark.parametrize("obj,field", [
    ({k: v for k, v in ADD.items() if k != "schema"}, "schema"),
    ({**ADD, "name": "Add!"}, "name"),
    ({**ADD, "name": "list"}, "name"),
    ({**ADD, "name": "x" * 65}, "name"),
    ({**ADD, "name": 7}, "name"),
    ({**ADD, "version": ""}, "version"),
    ({**ADD, "risk": "trusted"}, "risk"),
    ({**ADD, "effect": "destroys"}, "effect"),
    ({**ADD, "ontology_class": "a b"}, "ontology_class"),
    ({**ADD, "capabilities": ["ok"] * 17}, "capabilities"),
    ({**ADD, "capabilities": ["UPPER"]}, "capabilities[0]"),
    ({**ADD, "driver": "kernel"}, "driver"),
    ({**ADD, "tier": "in_kernel"}, "tier"),
    ({**ADD, "description": "x" * 1001}, "description"),
    ({**ADD, "name": "a\ud800"}, "(root)"),
    ({**MUL, "wasm": {**MUL["wasm"], "params": ["c"]}}, "wasm.params[0]"),
    ({**MUL, "source": {"code": "def run(a, b): return a"}}, "wasm"),
    ({**PY_PURE, "source": {"code": "x", "entry": "__import__"}}, "source.entry"),
    ("not a manifest", "(root)"),
])
def test_malformed_manifest_is_refused_naming_the_field(obj, field) -> None:  # type: ignore[no-untyped-def]
    refused(obj, field)


def test_ten_thousand_deep_schema_is_refused() -> None:
    e = refused(schema(properties={"x": deep(10_000)}), "(root)")
    assert "deeper" in str(e) or "1000" in str(e)
    with pytest.raises(ManifestError, match="nest|deep"):
        check_schema(deep(10_000))


def test_schema_just_past_the_depth_bound_is_refused_and_at_it_accepted() -> None:
    refused(schema(properties={"x": deep(SCHEMA_DEPTH)}), "schema.properties.x" + ".properties.x" * (SCHEMA_DEPTH - 1))
    parse_manifest(schema(properties={"x": deep(SCHEMA_DEPTH - 2)}))


def test_huge_schema_is_refused_by_size() -> None:
    props = {f"p{i}": {"type": "string", "description": "d" * 1000} for i in range(200)}
    e = refused(schema(properties=props), "schema")
    assert "bytes" in str(e)


def test_too_many_subschemas_are_refused() -> None:
    props = {f"p{i}": {"type": "integer"} for i in range(2100)}
    refused(schema(properties=props), "schema")


def test_recursive_ref_cycle_that_never_descends_is_refused() -> None:
    cyc = {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
           "properties": {"x": {"$ref": "#/$defs/a"}}}
    refused(schema(**cyc), "schema.$ref")
    refused(schema(**{"$defs": {"a": {"not": {"$ref": "#/$defs/a"}}}}), "schema.$ref")


def test_recursive_ref_through_properties_is_accepted_and_arguments_bounded() -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {"kid": {"$ref": "#/$defs/node"}}}},
            "properties": {"root": {"$ref": "#/$defs/node"}}}
    m = parse_manifest(schema(**tree))
    check = ArgsChecker("t", m.schema)
    ok: dict = {}
    for _ in range(20):
        ok = {"kid": ok}
    check({"root": ok})
    for _ in range(100):
        ok = {"kid": ok}
    with pytest.raises(ToolError, match="deeper"):
        check({"root": ok})


def test_exponential_anyof_fan_out_through_refs_is_refused() -> None:
    defs = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 4} for i in range(12)}
    defs["d12"] = {"type": "integer"}
    refused(schema(**{"$defs": defs, "properties": {"x": {"$ref": "#/$defs/d0"}}}), "schema")


@pytest.mark.parametrize("bad,field", [
    ({"properties": {"x": {"$ref": "https://evil.example/schema.json"}}}, "schema.properties.x.$ref"),
    ({"properties": {"x": {"$ref": "#/$defs/missing"}}}, "schema.properties.x.$ref"),
    ({"patternProperties": {"(a+)+$": {}}}, "schema.patternProperties"),
    ({"properties": {"x": {"type": "string", "pattern": "(a)\\1"}}}, "schema.properties.x.pattern"),
    ({"properties": {"x": {"type": "array", "uniqueItems": True}}}, "schema.properties.x.uniqueItems"),
    ({"properties": {"x": {"type": "number", "maximum": float("nan")}}}, "schema.properties.x.maximum"),
    ({"properties": {"x": {"type": "number", "maximum": float("inf")}}}, "schema.properties.x.maximum"),
    ({"properties": {"x": {"type": "integer", "maximum": 2 ** 80}}}, "schema.properties.x.maximum"),
    ({"properties": {"x": {"type": "teapot"}}}, "schema.properties.x.type"),
    ({"$id": "urn:x"}, "schema.$id"),
    ({"$schema": "http://json-schema.org/draft-04/schema#"}, "schema.$schema"),
    ({"properties": {"x": {"if": {}, "then": {}}}}, "schema.properties.x.if"),
    ({"properties": {"x": {"minimum": "zero"}}}, "schema.properties.x.minimum"),
])
def test_hostile_schema_keyword_is_refused(bad, field) -> None:  # type: ignore[no-untyped-def]
    refused(schema(**bad), field)


def test_non_object_argument_schema_is_refused() -> None:
    refused({**ADD, "schema": {"type": "array"}}, "schema.type")
    refused({**ADD, "schema": True}, "schema")


def test_backtracking_pattern_is_matched_in_linear_time() -> None:
    m = parse_manifest(schema(properties={"s": {"type": "string", "pattern": "^(a+)+$"}}))
    check = ArgsChecker("t", m.schema)
    t0 = time.perf_counter()
    with pytest.raises(ToolError, match="does not match"):
        check({"s": "a" * 5000 + "b"})
    assert time.perf_counter() - t0 < 5  # Python's re would take longer than the universe


def test_oversized_arguments_are_refused_before_the_schema_runs() -> None:
    check = ArgsChecker("t", {"type": "object"})
    with pytest.raises(ToolError, match="bytes"):
        check({"s": "x" * 100_000})


def test_run_time_tool_never_gets_the_in_kernel_tier() -> None:
    m = parse_manifest(PY_PURE)
    assert m.driver == "tools"  # what it declares
    assert choose_tier(m, Origin.RUNTIME, False) is Tier.SANDBOX
    assert choose_tier(parse_manifest(MUL), Origin.RUNTIME, False) is Tier.WASM
    with pytest.raises(ManifestError, match="never runs in the kernel"):
        choose_tier(parse_manifest(ADD), Origin.RUNTIME, True)
    code = parse_manifest({**MUL, "risk": "untrusted_code"})
    with pytest.raises(ManifestError, match="process sandbox"):
        choose_tier(code, Origin.HOST, False)  # wasm is not the tier untrusted code needs


def test_two_ints_schema_used_by_the_tests_is_itself_valid() -> None:
    assert check_schema(dict(TWO_INTS)) == TWO_INTS
