"""The `mcp` driver: the tools of one MCP server (stdio transport) as a metered device.

One driver instance is one server, so a capability names exactly one server: granting a
process `mcp_fs` does not let it reach `mcp_github`. The tool list, schemas and effects
come from the server's `tools/list`: arguments are checked against each tool's input
schema before the call leaves the kernel, a tool annotated `readOnlyHint` is classified
`read_only` (what policy's `mode: read_only` asks), anything else `read_write` unless
the driver is told otherwise.

Requests: `{"tool": name, "args": {...}}` (one tool call each, charged `tool_calls=1`),
or `{"op": "list"}` → the tools as OpenAI function specs, ready for an LLM request.
The value of a call is the server's structured content when it gives one, else its text.
A tool that reports an error, bad arguments and unknown tools are `ToolError`s in the
calling process; a server that dies or stops answering is an `UpstreamError` or
`DriverTimeout` (with the tail of its stderr), and the next call starts it again.

The MCP session lives on its own event loop in a background thread: it then outlives any
one kernel run (`Kernel.run` makes a fresh loop each time) and keeps the SDK's anyio task
groups in the task that opened them. A call crosses over with `run_coroutine_threadsafe`;
cancelling the caller (its process was killed) cancels the call in the session's loop.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from concurrent.futures import Future as CFuture
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, Mapping, Sequence

from ..abi.driver import Driver, DriverHost, DriverResult
from ..abi.errors import DriverError, DriverTimeout, ToolError, UpstreamError
from ..abi.types import Cost
from .tools import EFFECTS, ServedTool, Tool, check_class


def anyio_closed() -> type[BaseException]:
    import anyio

    return anyio.ClosedResourceError


def _unused(**_: Any) -> None:  # tools here run on the server, never locally
    raise RuntimeError("an MCP tool runs on its server")


class MCPDriver(Driver):
    name = "mcp"

    def __init__(self, command: str, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, timeout: float = 30.0, start_timeout: float = 60.0,
                 effects: Mapping[str, str] | None = None, cost: Cost | None = None,
                 name: str = "mcp", classes: Mapping[str, str] | None = None) -> None:
        """`classes` types the server's tools by ontology class (tool name → class); the
        class goes with the tool, so a rule on the class governs it here as anywhere."""
        if not command:
            raise ValueError("an MCP server needs a command to start it")
        for tool_name, eff in (effects or {}).items():
            if eff not in EFFECTS:
                raise ValueError(f"effect for {tool_name!r} must be one of {EFFECTS}, got {eff!r}")
        self.name = name
        self.command = command
        self.args = list(args)
        self.env = dict(env) if env else None
        self.cwd = cwd
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.effects = dict(effects or {})
        self.classes = dict(classes or {})
        for tool_name, cls in self.classes.items():
            check_class(name, tool_name, cls)
        self.cost = cost or Cost(tool_calls=1)
        self.tools: dict[str, Tool] = {}
        self.server_name = ""
        self.starts = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: CFuture[Any] | None = None     # resolves to the connected client
        self._stop: asyncio.Event | None = None
        self._errlog: Any = None

    # -- ABI ----------------------------------------------------------------------------
    def on_register(self, host: DriverHost) -> None:
        super().on_register(host)
        self.name = host.name

    def open(self, owner: int, params: Any) -> int:
        if params not in (None, {}):
            raise DriverError(f"{self.name}: open takes no params, got {params!r}")
        return owner

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        if isinstance(req, dict) and req.get("op") == "list":
            return (f"{self.name}.list", {})
        if isinstance(req, dict) and isinstance(req.get("tool"), str):
            return (f"{self.name}.{req['tool']}", req.get("args") or {})
        return (f"{self.name}.invalid", {})

    serves_tools = True

    def tool_names(self) -> list[str] | None:
        """The server's tools once it has been listed; None before (they are not known)."""
        return sorted(set(self.tools) | set(self.classes) | set(self.effects)) if self.tools else None

    def tool_info(self, tool: str) -> Any:
        t = self.tools.get(tool)
        if t is not None:
            return t
        if tool in self.classes or tool in self.effects:  # before the server is listed
            return ServedTool(tool, self.classes.get(tool), self.effects.get(tool, "unknown"))
        return None

    def tool_classes(self) -> dict[str, str]:
        return dict(self.classes)

    def classify(self, tool: str, args: dict[str, Any]) -> str:
        """The effect of a call, for policy's read_only mode ("unknown" before the list)."""
        t = self.tools.get(tool)
        return t.classify(args) if t is not None else "unknown"

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        """One tool call (this server's declared cost); listing is free. A request that is
        malformed, or names a tool the server does not have, or arguments its schema
        refuses, is refused here, before anything is reserved or sent."""
        if isinstance(req, dict) and req.get("op") == "list":
            return Cost()
        tool, args = self._shape(req)
        t = self.tools.get(tool) if self.tools else None
        if self.tools and t is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ToolError(f"{self.name}: unknown tool {tool!r} (server {self.server_name!r} has: {known})")
        if t is not None:
            self._check_args(tool, t, args)
        return self.cost

    def _check_args(self, tool: str, t: Any, args: dict[str, Any]) -> None:
        errors = sorted(t._validator.iter_errors(args), key=lambda e: list(e.path))
        if errors:
            detail = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:3])
            raise ToolError(f"{self.name}.{tool}: bad arguments: {detail}")

    def _shape(self, req: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(req, dict) or not isinstance(req.get("tool"), str):
            raise ToolError(f"{self.name}: a request is {{'tool': name, 'args': {{...}}}} or {{'op': 'list'}}, "
                            f"got {req!r:.80}")
        extra = sorted(k for k in req if k not in ("tool", "args"))
        if extra:
            raise ToolError(f"{self.name}: unknown request key(s) {extra} (tool, args)")
        args = req.get("args") or {}
        if not isinstance(args, dict):
            raise ToolError(f"{self.name}.{req['tool']}: arguments must be an object, got {type(args).__name__}")
        return req["tool"], args

    def read(self, handle: Any, req: Any) -> Any:
        if isinstance(req, dict) and req.get("op") == "list":
            return self._list()
        tool, args = self._shape(req)
        return self._call(tool, args)

    def write(self, handle: Any, data: Any) -> Any:
        return self.read(handle, data)

    # -- calls ----------------------------------------------------------------------------
    async def _list(self) -> DriverResult:
        await self._connected()
        return DriverResult([t.spec() for t in self.tools.values()], Cost())

    async def _call(self, tool: str, args: dict[str, Any]) -> DriverResult:
        client = await self._connected()
        t = self.tools.get(tool)
        if t is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ToolError(f"{self.name}: unknown tool {tool!r} (server {self.server_name!r} has: {known})")
        self._check_args(tool, t, args)
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._remote_call(client, tool, args), self._loop)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(fut), self.timeout)
        except asyncio.TimeoutError:
            raise DriverTimeout(f"{self.name}.{tool}: no answer within {self.timeout:g}s") from None
        return DriverResult(self._value(tool, result), self.cost)

    async def _remote_call(self, client: Any, tool: str, args: dict[str, Any]) -> Any:
        from mcp import MCPError

        from mcp_types import CONNECTION_CLOSED

        try:
            return await client.call_tool(tool, args)
        except MCPError as e:
            if e.code != CONNECTION_CLOSED:
                raise ToolError(f"{self.name}.{tool}: the server refused the call: {e.error.message}") from None
            err = f"{e.error.message}"
        except (OSError, EOFError, anyio_closed()) as e:
            err = f"{type(e).__name__}: {e}"
        self._lost(client)
        raise UpstreamError(f"{self.name}.{tool}: lost the MCP server ({err}); the next call restarts it"
                            f"{self._stderr_tail()}")

    def _lost(self, client: Any) -> None:
        """The server is gone: end its session (the owner task exits) so the next call restarts."""
        with self._lock:
            sess = self._session
            if sess is not None and sess.done() and not sess.cancelled() and sess.exception() is None \
                    and sess.result() is client:
                dead: CFuture[Any] = CFuture()
                dead.set_exception(UpstreamError(f"{self.name}: the MCP server stopped"))
                self._session = dead
        if self._stop is not None:
            self._stop.set()

    def _value(self, tool: str, result: Any) -> Any:
        texts = [getattr(c, "text", None) for c in result.content]
        if result.is_error:
            msg = "; ".join(t for t in texts if t) or "the tool reported an error"
            raise ToolError(f"{self.name}.{tool} failed: {msg}")
        if result.structured_content is not None:
            return result.structured_content
        if all(t is not None for t in texts):
            return "\n".join(texts)  # type: ignore[arg-type]
        return [c.model_dump(mode="json", exclude_none=True) for c in result.content]

    def connect(self) -> list[str]:
        """Start the server now (if it is not running) and wait for its tool list, from a
        thread that is not the session's: what a policy loader calls to check rules and
        effects against the real tools before any process runs. Returns the tool names."""
        with self._lock:
            if self._session is None or (self._session.done() and self._session.exception() is not None):
                self._start()
            sess = self._session
        assert sess is not None
        try:
            sess.result(self.start_timeout)
        except FuturesTimeout:
            raise DriverTimeout(f"{self.name}: the MCP server did not start within {self.start_timeout:g}s"
                                f"{self._stderr_tail()}") from None
        except Exception as e:
            raise UpstreamError(f"{self.name}: cannot start MCP server {self.command!r}: "
                                f"{type(e).__name__}: {e}{self._stderr_tail()}") from None
        return sorted(self.tools)

    # -- the session ----------------------------------------------------------------------
    async def _connected(self) -> Any:
        """The live client, starting (or restarting) the server if needed."""
        with self._lock:
            if self._session is None or (self._session.done() and self._session.exception() is not None):
                self._start()
            sess = self._session
        assert sess is not None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(sess), self.start_timeout)
        except asyncio.TimeoutError:
            raise DriverTimeout(f"{self.name}: the MCP server did not start within {self.start_timeout:g}s"
                                f"{self._stderr_tail()}") from None
        except (DriverError, ToolError):
            raise
        except Exception as e:
            raise UpstreamError(f"{self.name}: cannot start MCP server {self.command!r}: "
                                f"{type(e).__name__}: {e}{self._stderr_tail()}") from None

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=loop.run_forever, name=f"agentos-{self.name}", daemon=True)
            self._thread.start()
        if self._errlog is None:
            self._errlog = tempfile.TemporaryFile(mode="w+", prefix="agentos-mcp-")
        self.starts += 1
        assert self._loop is not None
        ready: CFuture[Any] = CFuture()
        self._session = ready
        asyncio.run_coroutine_threadsafe(self._serve(ready), self._loop)

    async def _serve(self, ready: CFuture[Any]) -> None:
        """Owns the session for its whole life (anyio needs enter and exit in one task)."""
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client

        self._stop = asyncio.Event()
        params = StdioServerParameters(command=self.command, args=self.args, env=self.env, cwd=self.cwd)
        try:
            async with Client(stdio_client(params, errlog=self._errlog)) as client:
                await self._load_tools(client)
                ready.set_result(client)
                await self._stop.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e if isinstance(e, Exception) else RuntimeError(repr(e)))
            else:  # the server went away after start: the next call restarts it
                failed: CFuture[Any] = CFuture()
                failed.set_exception(UpstreamError(f"{self.name}: the MCP server stopped: {e!r}"))
                if self._session is ready:
                    self._session = failed
            if isinstance(e, asyncio.CancelledError):
                raise

    async def _load_tools(self, client: Any) -> None:
        tools: dict[str, Tool] = {}
        cursor = None
        for _ in range(100):  # a server that pages forever cannot hang the start
            page = await client.list_tools(cursor=cursor)
            for t in page.tools:
                ann = t.annotations
                effect = self.effects.get(t.name) or ("read_only" if ann is not None and ann.read_only_hint
                                                      else "read_write")
                schema = t.input_schema or {"type": "object"}
                tools[t.name] = Tool(t.name, _unused, schema, t.description or t.title or t.name, effect,
                                     ontology_class=self.classes.get(t.name))
            cursor = page.next_cursor
            if cursor is None:
                break
        self.tools = tools
        info = client.server_info
        self.server_name = info.name if info is not None else ""

    def _stderr_tail(self) -> str:
        f = self._errlog
        if f is None:
            return ""
        try:
            f.flush()
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 600))
            tail = f.read().strip()
        except (OSError, ValueError):
            return ""
        return f" (server stderr: ...{tail[-600:]})" if tail else ""

    def shutdown(self) -> None:
        """Stop the server and the session's thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)

        async def drain() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            await asyncio.wait(tasks, timeout=5) if tasks else None

        try:
            asyncio.run_coroutine_threadsafe(drain(), loop).result(10)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        self._loop = self._thread = self._session = None
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None


__all__ = ["MCPDriver"]
