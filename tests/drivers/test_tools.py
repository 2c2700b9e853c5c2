"""The tools driver: schema-checked arguments, typed errors, async tools, specs."""
from __future__ import annotations

import asyncio

import pytest

from agentos import Quota, ToolError
from agentos.drivers import Tool, ToolsDriver, tool
from tests.support.boot import boot


@tool()
def add(a: int, b: int = 0) -> int:
    """Add two integers."""
    return a + b


@tool(effect="read_only")
async def fetch(key: str) -> str:
    """Look something up."""
    await asyncio.sleep(0)
    return key.upper()


@tool()
def explode() -> None:
    raise RuntimeError("tool bug")


def test_schema_is_inferred_from_annotations():
    assert add.schema == {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                          "required": ["a"], "additionalProperties": False}
    assert add.spec()["function"]["description"] == "Add two integers."
    assert fetch.classify({}) == "read_only" and add.classify({}) == "read_write"


def test_calls_validate_and_charge_one_tool_call_each():
    async def init(sys, args):
        h = await sys.open("tools")
        out = [await sys.read(h, {"tool": "add", "args": {"a": 2, "b": 3}}),
               await sys.read(h, ("fetch", {"key": "x"}))]
        for bad in ({"tool": "add", "args": {"a": "two"}}, {"tool": "add", "args": {"a": 1, "c": 2}},
                    {"tool": "nope"}, {"tool": "explode"}, "garbage"):
            try:
                await sys.read(h, bad)
            except ToolError as e:
                out.append(str(e))
        return out, (await sys.budget()).used["tool_calls"]

    _, res = boot(init, drivers=[ToolsDriver([add, fetch, explode])], grant=["tools"])
    out, calls = res.value
    assert out[:2] == [5, "X"]
    assert "a: 'two' is not of type 'integer'" in out[2]
    assert "Additional properties are not allowed ('c' was unexpected)" in out[3]
    assert "unknown tool 'nope' (known: add, explode, fetch)" in out[4]
    assert out[5] == "tool 'explode' failed: RuntimeError: tool bug"
    assert "a request is" in out[6]
    # charged: the two that worked and the one that raised after it ran (a call is a call);
    # malformed requests are refused before anything is reserved, and cost nothing
    assert calls == 3


def test_tool_calls_quota_kills_the_caller():
    async def caller(sys, args):
        h = await sys.open("tools")
        for i in range(10):
            await sys.read(h, {"tool": "add", "args": {"a": i}})

    async def init(sys, args):
        _, c = await sys.spawn(caller, caps=["tools"], quota=Quota(tool_calls=3))
        return str(await sys.waitpid(c))

    k, res = boot(init, drivers=[ToolsDriver([add])], grant=["tools"])
    assert res.value == "quota(tool_calls)"
    assert k.metrics()["tool_calls"] == 3


def test_bad_tool_definitions_fail_at_registration():
    with pytest.raises(ValueError, match="effect must be one of"):
        Tool("x", lambda: 1, effect="maybe")
    with pytest.raises(ValueError, match="registered twice"):
        ToolsDriver([add, add])
    from jsonschema.exceptions import SchemaError
    with pytest.raises(SchemaError):
        Tool("y", lambda: 1, schema={"type": "not-a-type"})
