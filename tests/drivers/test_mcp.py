"""The `mcp` driver against a real MCP server over stdio (tests/drivers/mcp_server.py)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from agentos import AllowAll, Decision, Kernel, Quota, ToolError
from agentos.abi.errors import DriverTimeout, UpstreamError
from agentos.drivers.mcp import MCPDriver

SERVER = str(Path(__file__).with_name("mcp_server.py"))


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "notes.txt"


@pytest.fixture(scope="module")
def mcp(notes: Path) -> Any:
    d = MCPDriver(sys.executable, [SERVER], env={"MCP_TEST_NOTES": str(notes)}, name="calc")
    yield d
    d.shutdown()


def run(d: MCPDriver, init: Any, policy: Any = None, real_clock: bool = False, **kw: Any) -> Any:
    k = Kernel(deterministic=not real_clock, policy=policy or AllowAll())
    k.register_driver(d, d.name)
    return k.run(init, grant=[d.name], **kw)


def test_tools_and_schemas_come_from_the_server(mcp: MCPDriver) -> None:
    async def init(sys: Any, args: Any) -> Any:
        return await sys.read(await sys.open("calc"), {"op": "list"})

    specs = {s["function"]["name"]: s["function"] for s in run(mcp, init).value}
    assert set(specs) == {"add", "shout", "write_note", "fail", "slow", "crash"}
    add = specs["add"]
    assert add["description"] == "Add two integers."
    assert add["parameters"]["properties"]["a"]["type"] == "integer"
    assert add["parameters"]["required"] == ["a", "b"]
    # effects from the server's annotations, for policy's read_only mode
    assert mcp.classify("add", {}) == "read_only" and mcp.classify("write_note", {}) == "read_write"
    assert mcp.classify("nope", {}) == "unknown"


def test_calls_are_metered_and_reach_the_server(mcp: MCPDriver, notes: Path) -> None:
    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("calc")
        a = await sys.read(h, {"tool": "add", "args": {"a": 2, "b": 40}})
        s = await sys.read(h, {"tool": "shout", "args": {"text": "hi"}})
        w = await sys.read(h, {"tool": "write_note", "args": {"text": "from agentos"}})
        many = await sys.read_all(h, [{"tool": "add", "args": {"a": i, "b": i}} for i in range(4)])
        return a, s, w, many, (await sys.budget()).used["tool_calls"]

    a, s, w, many, calls = run(mcp, init).value
    assert a == {"result": 42} and s == {"result": "HI"} and w == {"result": "wrote 12 chars"}
    assert [m["result"] for m in many] == [0, 2, 4, 6]
    assert calls == 7
    assert "from agentos" in notes.read_text()


def test_errors_are_typed_and_checked_before_the_call(mcp: MCPDriver) -> None:
    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("calc")
        errs = []
        for req in ({"tool": "fail", "args": {"reason": "nope"}},
                    {"tool": "add", "args": {"a": "two", "b": 1}},
                    {"tool": "add", "args": {"a": 1}},
                    {"tool": "missing", "args": {}},
                    {"tool": "add", "args": [1, 2]},
                    {"tool": "add", "argz": {}},
                    "add"):
            try:
                await sys.read(h, req)
            except ToolError as e:
                errs.append(str(e))
        return errs, (await sys.budget()).used["tool_calls"], await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 1}})

    errs, calls, ok = run(mcp, init).value
    assert len(errs) == 7
    assert "calc.fail failed" in errs[0]
    assert "bad arguments" in errs[1] and "'two' is not of type 'integer'" in errs[1]
    assert "'b' is a required property" in errs[2]
    assert "unknown tool 'missing'" in errs[3] and "add" in errs[3]
    assert "must be an object" in errs[4] and "unknown request key" in errs[5] and "a request is" in errs[6]
    # the call the server failed is a call (charged); malformed ones are refused before anything
    # is reserved or sent, and cost nothing
    assert calls == 1
    assert ok == {"result": 2}


def test_action_names_device_and_tool_for_policy(mcp: MCPDriver, notes: Path) -> None:
    seen: list[str] = []

    class ReadOnly:
        """Allow what the server declares read-only: the classifier comes from tools/list."""

        def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
            seen.append(action)
            tool = action.split(".", 1)[1]
            ok = tool == "list" or mcp.classify(tool, args) == "read_only"
            return Decision(ok, "read-only", effect="raise")

    before = notes.read_text() if notes.exists() else ""

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("calc")
        await sys.read(h, {"op": "list"})
        r = await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 2}})
        try:
            await sys.read(h, {"tool": "write_note", "args": {"text": "should not land"}})
        except Exception as e:
            return r, type(e).__name__

    assert run(mcp, init, policy=ReadOnly()).value == ({"result": 3}, "PolicyDenied")
    assert seen == ["calc.list", "calc.add", "calc.write_note"]
    assert (notes.read_text() if notes.exists() else "") == before


def test_quota_on_tool_calls(mcp: MCPDriver) -> None:
    async def looper(sys: Any, args: Any) -> Any:
        h = await sys.open("calc")
        while True:
            await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 1}})

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(looper, caps=["calc"], quota=Quota(tool_calls=3))
        return str(await sys.waitpid(cap))

    assert run(mcp, init).value == "quota(tool_calls)"


@pytest.mark.live_only(reason="real time: the program waits in wall time for the outside world (the server, the model) before it kills, which a virtual clock cannot do while I/O is in flight")
def test_kill_cancels_a_call_in_flight(mcp: MCPDriver, notes: Path) -> None:
    async def sleeper(sys: Any, args: Any) -> Any:
        return await sys.read(await sys.open("calc"), {"tool": "slow", "args": {"seconds": 30}})

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(sleeper, caps=["calc"])
        for _ in range(2000):
            if "slow started" in (notes.read_text() if notes.exists() else ""):
                break
            await sys.sleep(5)
        await sys.kill(cap)
        return str(await sys.waitpid(cap))

    t0 = time.monotonic()
    assert run(mcp, init, real_clock=True).value.startswith("killed")
    assert time.monotonic() - t0 < 20


def test_a_crashed_server_is_an_upstream_error_and_restarts(tmp_path: Path) -> None:
    d = MCPDriver(sys.executable, [SERVER], env={"MCP_TEST_NOTES": str(tmp_path / "n")}, name="calc", timeout=20)
    try:
        async def init(sys: Any, args: Any) -> Any:
            h = await sys.open("calc")
            first = await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 1}})
            try:
                await sys.read(h, {"tool": "crash"})
            except (UpstreamError, ToolError, DriverTimeout) as e:
                err = f"{type(e).__name__}: {e}"
            return first, err, await sys.read(h, {"tool": "add", "args": {"a": 2, "b": 2}})

        first, err, again = run(d, init).value
        assert first == {"result": 2} and again == {"result": 4}
        assert d.starts == 2
        assert err.startswith("UpstreamError: calc.crash: lost the MCP server")
        assert "crashing on purpose" in err          # the server's stderr explains it
    finally:
        d.shutdown()


def test_a_server_that_cannot_start_is_a_typed_error() -> None:
    d = MCPDriver(sys.executable, ["-c", "import sys; sys.stderr.write('no such server\\n'); sys.exit(3)"],
                  name="broken", start_timeout=20)
    try:
        async def init(sys: Any, args: Any) -> Any:
            try:
                await sys.read(await sys.open("broken"), {"op": "list"})
            except UpstreamError as e:
                return str(e)

        msg = run(d, init).value
        assert "cannot start MCP server" in msg and "no such server" in msg
    finally:
        d.shutdown()


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        MCPDriver("")
    with pytest.raises(ValueError):
        MCPDriver("x", effects={"t": "harmless"})
    assert os.path.exists(SERVER)
