"""The two isolated tiers a registry tool can run in: WebAssembly and the process sandbox.

Each runner takes a tool and checked arguments and returns an awaitable of the
`DriverResult` (or raises): the registry hands it to the kernel as the operation's I/O, so
the caller is parked, the result journaled and the cost settled like any device call.

WASM: a fresh handle of the registry's own `WasmDriver` per call (the compiled module is
cached by hash; no instance state survives from one caller to the next), arguments passed
as numbers in the manifest's `params` order, closed whatever happens.

Sandbox: a child OS process of the registry's own `SandboxDriver`, one per call, running
the tool's source under a small wrapper that calls `entry(**args)`. The registry is its
monitor: the tool gets no syscalls (any it asks for is refused), its answer is the child's
exit value, the child is killed when the call ends or the caller goes away. The private
driver's cage registry is its own, so using a tool never makes the *caller* count as
sandboxed code to the kernel's `sandbox` device.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Callable

from ..abi.driver import DriverResult
from ..abi.errors import DriverError, DriverTimeout, ToolError
from ..abi.types import Cost

if TYPE_CHECKING:
    from ..drivers.wasm import WasmDriver
    from ..sandbox.driver import SandboxDriver, SandboxLimits
    from .manifest import SourceArtifact, WasmArtifact

ENTRY = "_agentos_registry_tool"
WRAPPER = '''

async def _agentos_registry_tool(sys, args):
    result = {entry}(**args)
    if hasattr(result, "__await__"):
        result = await result
    return result
'''


def _plus_call(c: Cost) -> Cost:
    return Cost(tokens=c.tokens, tool_calls=c.tool_calls + 1, usd=c.usd, reductions=c.reductions)


async def run_wasm(driver: "WasmDriver", owner: int, tool: str, art: "WasmArtifact",
                   args: dict[str, Any]) -> DriverResult:
    key = "wat" if isinstance(art.module, str) else "wasm"
    h = driver.open(owner, {key: art.module})
    try:
        res = driver.read(h, {"call": art.export, "args": [args[p] for p in art.params]})
        if inspect.isawaitable(res):
            res = await res
    finally:
        driver.close(h)
    return DriverResult(res.value, _plus_call(res.cost))


def wasm_bound(driver: "WasmDriver") -> Cost:
    return _plus_call(driver.max_cost(None))


class _PrivateHost:
    """The host a registry's own sandbox driver sees: the kernel's liveness and clock, but
    its own cage registry, and no power to end the caller (the registry reads the child's
    death itself and turns it into the call's error)."""

    def __init__(self, host: Any) -> None:
        self._host = host
        self._shared: dict[str, Any] = {}
        self.name = host.name if host is not None else "registry"

    def now(self) -> float:
        return float(self._host.now()) if self._host is not None else 0.0

    def alive(self, pid: int) -> bool:
        return bool(self._host.alive(pid)) if self._host is not None else True

    def priority(self, pid: int) -> int:
        return int(self._host.priority(pid)) if self._host is not None else 0

    def keep_alive(self, delta: int) -> None:
        if self._host is not None:
            self._host.keep_alive(delta)

    def fail(self, pid: int, why: str) -> bool:
        return False  # a dead child ends the call, not the caller

    def emit(self, pid: int, kind: str, data: Any = None) -> None:
        return None  # the call's journaled error says what happened (replay has no driver)

    def record(self, pid: int, kind: str, data: Any) -> None:
        return None

    def lineage(self, pid: int) -> tuple[int, ...]:
        return (pid,)

    def live_pids(self) -> tuple[int, ...]:
        return tuple(self._host.live_pids()) if self._host is not None else ()

    def shared(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self._shared:
            self._shared[key] = factory()
        return self._shared[key]

    def limited(self, pid: int, resource: str) -> bool:
        return bool(self._host.limited(pid, resource)) if self._host is not None else False


async def run_sandboxed(driver: "SandboxDriver", owner: int, tool: str, art: "SourceArtifact",
                        args: dict[str, Any], limits: "SandboxLimits", timeout_s: float,
                        require_isolation: bool) -> DriverResult:
    code = art.code + WRAPPER.format(entry=art.entry)
    try:
        child = driver.open(owner, {"code": code, "entry": ENTRY, "args": args, "limits": limits})
    except DriverError as e:
        raise ToolError(f"tool {tool!r}: the sandbox did not start: {e}") from None
    try:
        try:
            value = await asyncio.wait_for(_converse(child, tool, require_isolation), timeout_s)
        except asyncio.TimeoutError:
            raise DriverTimeout(f"tool {tool!r}: no answer from its sandbox within {timeout_s} s") from None
    finally:
        child.close()
        driver.confined.pop(owner, None)  # each call is a fresh, trusted cage
    return DriverResult(value, Cost(tool_calls=1))


async def _next(child: Any, tool: str) -> dict[str, Any]:
    """The child's next protocol message. The tool's own code runs in that process and can
    write anything to the channel: what is not a message is the call's `ToolError`."""
    msg = (await child.next()).value
    if type(msg) is not dict:
        raise ToolError(f"tool {tool!r}: its sandbox broke the protocol (sent a {type(msg).__name__}, "
                        f"not a message)")
    return msg


async def _converse(child: Any, tool: str, require_isolation: bool) -> Any:
    hello = await _next(child, tool)
    if hello.get("t") != "hello":
        raise ToolError(f"tool {tool!r}: its sandbox died before it started: {_status(hello)}")
    isolated = (hello.get("net") == "private" or hello.get("seccomp") == "on") and hello.get("fs") != "shared" \
        and hello.get("seccomp") == "on"
    if require_isolation and not isolated:
        raise ToolError(f"tool {tool!r}: the OS gave its sandbox no private network, read-only file system or "
                        f"seccomp filter; refusing to run it")
    while True:
        msg = await _next(child, tool)
        t = msg.get("t")
        if t == "call":  # a tool makes no syscalls: it computes from its arguments
            sent = child.send({"ok": False, "call": str(msg.get("name"))[:64], "error": "SandboxViolation",
                               "msg": "a registry tool makes no syscalls"})
            if inspect.isawaitable(sent):
                await sent
        elif t == "exit":
            if msg.get("ok"):
                return msg.get("value")
            raise ToolError(f"tool {tool!r} failed: {msg.get('error')}: {str(msg.get('msg'))[:500]}")
        else:
            raise ToolError(f"tool {tool!r}: its sandbox {_status(msg)}")


def _status(msg: dict[str, Any]) -> str:
    err = msg.get("stderr")
    tail = err[-4096:].strip().splitlines()[-2:] if type(err) is str else []
    status = msg.get("status", "ended")
    return (status[:200] if type(status) is str else type(status).__name__) + \
        (f" (stderr: {' | '.join(tail)[:300]})" if tail else "")


__all__ = ["run_sandboxed", "run_wasm", "wasm_bound"]
