"""The tool registry: manifests, discovery filtered to what the caller may call, and
execution in the tier a tool's risk requires.

The registry is a device (`ToolRegistry`, registered as "registry" by `install`). A
process reaches it only through the kernel's device path, so every operation is
capability-checked, policy-checked, metered (reserve, act, settle) and journaled, and a
replay answers it from the journal. Requests:

- `{"tool": name, "args": {...}}`: call a tool. The action policy sees is
  `<device>.<name>` with the arguments, typed by the manifest's ontology class. The
  arguments are checked against the manifest's schema while the kernel computes the
  operation's bound, after policy and before anything is reserved: a bad call costs
  nothing. Any other key (a "tier", a "driver") is refused: the registry chooses where
  a tool runs, from its risk and origin (`manifest.choose_tier`), never the caller.
- `{"op": "list", "name"?, "class"?, "capability"?}`: discovery. It lists exactly the
  tools the caller can call through the same operation: a `read` lists the read-only
  tools (a call through `read` needs the `read` right, and a read-only tool is all it
  may call), a `write` lists every tool (read-write tools need the `write` right and are
  called through `write`); and of those, only the ones policy allows the caller, asked
  through the same side-effect-free check as `sys.check_policy`. `class` matches by
  ontology subsumption when the policy has an ontology.
- `{"op": "register", "manifest": {...}}` (through `write`): a process registers a tool.
  It is the action `<device>.register` (its arguments summarise the manifest: name,
  version, risk, effect, class, the artifact's digest, and the tier chosen), so policy
  decides who may register what and the flight recorder writes the record ahead of it.
  A tool registered at run time never runs in the kernel, whatever its manifest says.

Host tools (`HostTool`, a manifest with a Python function, or a manifest carrying a
module or source) are given at construction and are the only ones that may run in the
kernel; the in-kernel table (`in_kernel`, a `ToolsDriver`) never changes after it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Iterable

from ..abi.driver import Driver, DriverHost, DriverResult
from ..abi.errors import BadArgument, DriverError, ToolError
from ..abi.types import Cost, Pid
from ..drivers.tools import ServedTool, Tool, ToolsDriver, _await_tool
from ..kernel import args as A
from ..kernel.values import checked
from . import tiers
from .manifest import (
    ArgsChecker, Effect, Origin, Tier, ToolManifest, choose_tier, parse_manifest, plain_json,
)
from .manifest import refuse as _refuse

if TYPE_CHECKING:
    from ..drivers.wasm import WasmDriver
    from ..kernel.kernel import Kernel
    from ..sandbox.driver import SandboxDriver, SandboxLimits

_INT_RANGE = {"i32": (-(1 << 31), 1 << 31), "i64": (-(1 << 63), 1 << 63)}
_FLOAT_MAX = {"f32": 3.4028234663852886e38, "f64": 1.7976931348623157e308}  # past these: an infinity
CALL_KEYS = frozenset({"tool", "args"})
LIST_KEYS = frozenset({"op", "name", "class", "capability"})
REGISTER_KEYS = frozenset({"op", "manifest"})
_OP_FIELDS = {"call": (CALL_KEYS, "tool, args"), "list": (LIST_KEYS, "name, class, capability"),
              "register": (REGISTER_KEYS, "manifest")}
_OPS = ("list", "register")   # what an explicit `op` may say; a call has none


@dataclass(frozen=True)
class HostTool:
    """A tool in the kernel's own configuration: a manifest and, for an in-kernel tool,
    the function that implements it."""

    manifest: ToolManifest | dict[str, Any]
    fn: Any = None


@dataclass
class Entry:
    """One registered tool, as the registry keeps it."""

    manifest: ToolManifest
    origin: Origin
    tier: Tier
    owner: int                       # the registering pid; 0 for the host
    check: ArgsChecker = field(repr=False)
    served: ServedTool = field(repr=False)
    wasm_types: tuple[str, ...] = ()  # the export's parameter types (i32, i64, f32, f64)

    def check_numbers(self, args: dict[str, Any]) -> None:
        """WebAssembly arguments fit the export's parameter types, before anything runs."""
        assert self.manifest.wasm is not None
        for p, t in zip(self.manifest.wasm.params, self.wasm_types):
            v = args[p]
            if t in _INT_RANGE:
                lo, hi = _INT_RANGE[t]
                if not isinstance(v, int) or isinstance(v, bool) or not lo <= v < hi:
                    raise ToolError(f"tool {self.manifest.name!r}: argument {p!r} must be an integer "
                                    f"in [{lo}, {hi}) (the export takes an {t}), got {str(v)[:40]}")
            elif not isinstance(v, (int, float)) or isinstance(v, bool) or not -_FLOAT_MAX[t] <= v <= _FLOAT_MAX[t]:
                # compared, not converted: math.isfinite(10**400) raises OverflowError; NaN fails too
                raise ToolError(f"tool {self.manifest.name!r}: argument {p!r} must be a finite number "
                                f"(the export takes an {t})")

    def describe(self) -> dict[str, Any]:
        """What discovery and registration answer. The schema is a copy: a reply reaches the
        caller by reference, and a caller that edited the registry's own schema would change
        what every later call is checked against."""
        m = self.manifest
        return {"name": m.name, "version": m.version, "description": m.description,
                "schema": plain_json("schema", m.schema),
                "ontology_class": m.ontology_class, "risk": m.risk.value, "effect": m.effect.value,
                "capabilities": list(m.capabilities), "tier": self.tier.value, "driver": self.tier.driver,
                "origin": self.origin.value, "owner": self.owner,
                "call": "read" if m.effect is Effect.READ_ONLY else "write"}


class ToolRegistry(Driver):
    """A device serving registered tools. Build with the host's tools, then `install`."""

    name = "registry"
    serves_tools = True

    def __init__(self, tools: Iterable[HostTool] = (), *, name: str = "registry",
                 wasm: "WasmDriver | None" = None, sandbox: "SandboxDriver | None" = None,
                 sandbox_limits: "SandboxLimits | None" = None, sandbox_timeout_s: float = 30.0,
                 require_isolation: bool = True, allow_runtime: bool = True,
                 max_runtime_tools: int = 256, max_per_process: int = 32) -> None:
        self.name = name
        self._wasm = wasm
        self._sandbox = sandbox
        self._limits = sandbox_limits
        if isinstance(sandbox_timeout_s, bool) or not (isinstance(sandbox_timeout_s, (int, float))
                                                        and 0 < sandbox_timeout_s <= 3600):
            raise ValueError(f"registry: sandbox_timeout_s must be in (0, 3600], got {sandbox_timeout_s!r}")
        self.sandbox_timeout_s = float(sandbox_timeout_s)
        for what, flag in (("require_isolation", require_isolation), ("allow_runtime", allow_runtime)):
            if type(flag) is not bool:  # "false" is truthy: a string here would open what it meant to close
                raise ValueError(f"registry: {what} must be True or False, got {type(flag).__name__}")
        for what, n in (("max_runtime_tools", max_runtime_tools), ("max_per_process", max_per_process)):
            if type(n) is not int or not 0 <= n <= 1 << 20:  # a NaN limit would compare false: no limit at all
                raise ValueError(f"registry: {what} must be an int in [0, 2**20], got {n!r:.40}")
        self.require_isolation = require_isolation
        self.allow_runtime = allow_runtime
        self.max_runtime_tools = max_runtime_tools
        self.max_per_process = max_per_process
        self.entries: dict[str, Entry] = {}
        in_kernel: list[Tool | Any] = []
        for ht in tools:
            if not isinstance(ht, HostTool):
                raise TypeError(f"registry: host tools are HostTool(manifest, fn), got {type(ht).__name__}")
            m = parse_manifest(ht.manifest)
            if ht.fn is not None and not callable(ht.fn):
                raise _refuse("fn", "a host tool's function must be callable")
            tier = choose_tier(m, Origin.HOST, ht.fn is not None)
            if m.name in self.entries:
                raise _refuse("name", f"{m.name!r} is registered twice")
            entry = self._entry(m, Origin.HOST, tier, 0)
            if tier is Tier.WASM:
                entry.wasm_types = self._check_module(0, m)
            if tier is Tier.IN_KERNEL:
                t = Tool(m.name, ht.fn, m.schema, m.description, m.effect.value, ontology_class=m.ontology_class)
                t._validator = entry.check._v  # RE2 patterns, as for every other tier
                in_kernel.append(t)
            self.entries[m.name] = entry
        self.in_kernel = ToolsDriver(in_kernel, name=f"{name}.in_kernel")
        """The in-kernel tool table: host tools of risk `pure` with a function, fixed here."""
        self._frozen = frozenset(self.in_kernel.tools)
        self.registrations = 0

    @staticmethod
    def _entry(m: ToolManifest, origin: Origin, tier: Tier, owner: int) -> Entry:
        return Entry(m, origin, tier, owner, ArgsChecker(m.name, m.schema),
                     ServedTool(m.name, m.ontology_class, m.effect.value))

    # -- kernel side -------------------------------------------------------------------
    def on_register(self, host: DriverHost) -> None:
        super().on_register(host)
        self.in_kernel.name = f"{self.name}.in_kernel"
        if self._sandbox is not None:
            self._sandbox.on_register(tiers._PrivateHost(host))  # type: ignore[arg-type]

    def wasm(self) -> "WasmDriver":
        if self._wasm is None:
            from ..drivers.wasm import WasmDriver

            self._wasm = WasmDriver(f"{self.name}-wasm", max_workers=2)
        return self._wasm

    def sandbox(self) -> "SandboxDriver":
        if self._sandbox is None:
            from ..sandbox.driver import SandboxDriver

            self._sandbox = SandboxDriver(f"{self.name}-sandbox")
            self._sandbox.on_register(tiers._PrivateHost(self.host))  # type: ignore[arg-type]
        return self._sandbox

    # what policy sees of the tools (ontology classes and effects)
    def tool_names(self) -> list[str] | None:
        return None if self.allow_runtime else sorted(self.entries)

    def tool_info(self, name: str) -> ServedTool | None:
        e = self.entries.get(name)
        return e.served if e is not None else None

    def tool_classes(self) -> dict[str, str]:
        return {n: e.manifest.ontology_class for n, e in self.entries.items() if e.manifest.ontology_class}

    # -- parsing a request -------------------------------------------------------------
    def _kind(self, req: Any) -> tuple[str, dict[str, Any]]:
        """The request's kind, and the request as a plain dict (a dict subclass is read
        through dict's own methods, so its get() or __getitem__ never runs here)."""
        if not isinstance(req, dict):
            raise ToolError(f"{self.name}: a request is {{'tool': name, 'args': {{...}}}} or "
                            f"{{'op': 'list' | 'register', ...}}, got {type(req).__name__}")
        if type(req) is not dict:
            req = dict(dict.items(req))
        if any(type(k) is not str for k in req):
            raise ToolError(f"{self.name}: a request's fields are named by strings")
        for f in ("op", "tool"):  # a str subclass is read by its value: its own __eq__ never runs
            v = req.get(f)
            if isinstance(v, str) and type(v) is not str:
                req = {**req, f: str.__str__(v)}
        op = req.get("op")
        kind = "call" if op is None else op if isinstance(op, str) and op in _OPS else None
        if kind is None:
            raise ToolError(f"{self.name}: unknown op {A.shown(op, 40)} (list, register, or a call without op)")
        allowed, shown = _OP_FIELDS[kind]
        extra = sorted(str(k)[:32] for k in req if k not in allowed)
        if extra:
            why = "; the registry chooses where a tool runs" if kind == "call" else ""
            raise ToolError(f"{self.name}: {extra[0]!r} is not a field of a {kind} (fields: {shown}){why}")
        return kind, req

    def _tool(self, req: dict[str, Any]) -> Entry:
        name = req.get("tool")
        e = self.entries.get(name) if isinstance(name, str) else None
        if e is None:
            raise ToolError(f"{self.name}: no tool {A.shown(name, 64)} is registered")
        return e

    def _registration(self, owner: int | None, req: dict[str, Any]) -> tuple[ToolManifest, Tier]:
        if not self.allow_runtime:
            raise ToolError(f"{self.name}: this registry takes no tools at run time")
        m = parse_manifest(req.get("manifest"))
        tier = choose_tier(m, Origin.RUNTIME, False)
        if m.name in self.entries:
            raise _refuse("name", f"a tool named {m.name!r} is already registered")
        return m, tier

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any] | None:
        kind, req = self._kind(req)
        if kind == "list":
            return None  # reads the registry's own table, filtered for this caller
        if kind == "register":
            m, tier = self._registration(handle, req)
            return (f"{self.name}.register", {**m.summary(), "tier": tier.value})
        e = self._tool(req)
        args = req.get("args")
        return (f"{self.name}.{e.manifest.name}", args if args is not None else {})

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        kind, req = self._kind(req)
        if kind == "list":
            return Cost()
        if kind == "register":  # the kernel parses and compiles it: a budget pays for that
            if op != "write":
                raise ToolError(f"{self.name}: register is a write")
            return Cost(tool_calls=1)
        e = self._tool(req)
        self._may_call(op, e)
        args = e.check(req.get("args"))  # refused here: after policy, before anything is reserved
        if e.tier is Tier.WASM:
            e.check_numbers(args)
            return tiers.wasm_bound(self.wasm())
        return Cost(tool_calls=1)

    def _may_call(self, op: str, e: Entry) -> None:
        if op != "write" and e.manifest.effect is not Effect.READ_ONLY:
            raise ToolError(f"tool {e.manifest.name!r} is read_write: call it with write "
                            f"(which needs the write right on the registry)")

    # -- operations --------------------------------------------------------------------
    def open(self, owner: Pid, params: Any) -> int:
        if params not in (None, {}):
            raise DriverError(f"{self.name}: open takes no parameters")
        return int(owner)

    def read(self, handle: int, req: Any) -> DriverResult | Awaitable[DriverResult]:
        return self._do("read", handle, req)

    def write(self, handle: int, data: Any) -> DriverResult | Awaitable[DriverResult]:
        return self._do("write", handle, data)

    def _do(self, op: str, owner: int, req: Any) -> DriverResult | Awaitable[DriverResult]:
        kind, req = self._kind(req)
        if kind == "list":
            return DriverResult(self.discover(owner, op, req))
        if kind == "register":
            if op != "write":
                raise ToolError(f"{self.name}: register is a write")
            return DriverResult(self._register(owner, req), Cost(tool_calls=1))
        e = self._tool(req)
        self._may_call(op, e)
        args = e.check(req.get("args"))
        if e.tier is Tier.WASM:
            e.check_numbers(args)
        return self._run(owner, e, args)

    def _run(self, owner: int, e: Entry, args: dict[str, Any]) -> DriverResult | Awaitable[DriverResult]:
        m = e.manifest
        if e.tier is Tier.IN_KERNEL:
            if m.name not in self._frozen:  # never: only construction fills the table
                raise ToolError(f"tool {m.name!r} is not in the in-kernel table")
            t = self.in_kernel.tools[m.name]
            try:  # the table's own read would check the arguments a third time
                out = t.fn(**args)
            except Exception as exc:
                raise ToolError(f"tool {m.name!r} failed: {type(exc).__name__}: {exc}") from exc
            if inspect.isawaitable(out):
                return _replied(m.name, _await_tool(t, out, Cost(tool_calls=1)))
            return DriverResult(_reply(m.name, out), Cost(tool_calls=1))
        if e.tier is Tier.WASM:
            assert m.wasm is not None
            return _replied(m.name, tiers.run_wasm(self.wasm(), owner, m.name, m.wasm, args))
        assert m.source is not None
        from ..sandbox.driver import SandboxLimits

        return _replied(m.name, tiers.run_sandboxed(self.sandbox(), owner, m.name, m.source, args,
                                                    self._limits or SandboxLimits(), self.sandbox_timeout_s,
                                                    self.require_isolation))

    def _register(self, owner: int, req: dict[str, Any]) -> dict[str, Any]:
        m, tier = self._registration(owner, req)
        runtime = [e for e in self.entries.values() if e.origin is Origin.RUNTIME]
        if len(runtime) >= self.max_runtime_tools:
            raise ToolError(f"{self.name}: the registry holds its limit of {self.max_runtime_tools} run-time tools")
        if sum(1 for e in runtime if e.owner == owner) >= self.max_per_process:
            raise ToolError(f"{self.name}: pid {owner} has registered its limit of {self.max_per_process} tools")
        onto = self._ontology()
        if m.ontology_class is not None and onto is not None and not onto.has_class(m.ontology_class):
            raise _refuse("ontology_class", f"{m.ontology_class!r} is not a class of the policy's ontology")
        types = self._check_module(owner, m) if tier is Tier.WASM else ()
        entry = self._entry(m, Origin.RUNTIME, tier, owner)
        entry.wasm_types = types
        self.entries[m.name] = entry
        self.registrations += 1
        self._retyped()
        return entry.describe()

    def _check_module(self, owner: int, m: ToolManifest) -> tuple[str, ...]:
        """Compile the module now (cached for its calls); the export must be a function
        taking exactly the manifest's params, as numbers. Returns its parameter types."""
        assert m.wasm is not None
        drv = self.wasm()
        key = "wat" if isinstance(m.wasm.module, str) else "wasm"
        try:
            h = drv.open(owner, {key: m.wasm.module})
        except DriverError as e:
            raise _refuse("wasm.module", str(e)[:500]) from None
        try:
            _linker, module = h.start
            exports = {ex.name: ex.type for ex in module.exports}
        finally:
            drv.close(h)
        ftype = exports.get(m.wasm.export)
        params = getattr(ftype, "params", None)
        if params is None:
            raise _refuse("wasm.export", f"the module exports no function {m.wasm.export!r}")
        types = tuple(str(t) for t in params)
        if len(types) != len(m.wasm.params) or any(t not in ("i32", "i64", "f32", "f64") for t in types):
            raise _refuse("wasm.params", f"{m.wasm.export!r} takes ({', '.join(types)}); the manifest "
                                               f"passes {len(m.wasm.params)} number(s)")
        return types

    # -- discovery ---------------------------------------------------------------------
    def discover(self, pid: int, op: str, req: dict[str, Any]) -> list[dict[str, Any]]:
        """The tools `pid` can call through `op`, filtered by name, class and capability."""
        name, cls, cap = req.get("name"), req.get("class"), req.get("capability")
        for label, v in (("name", name), ("class", cls), ("capability", cap)):
            if v is not None and (type(v) is not str or len(v) > 128):
                raise ToolError(f"{self.name}: list filter {label} must be a string of at most 128 characters")
        onto = self._ontology() if cls is not None else None
        out = []
        for n in sorted(self.entries):
            e = self.entries[n]
            m = e.manifest
            if name is not None and n != name:
                continue
            if cap is not None and cap not in m.capabilities:
                continue
            if cls is not None and not self._is_a(m.ontology_class, cls, onto):
                continue
            if op != "write" and m.effect is not Effect.READ_ONLY:
                continue  # not callable through this operation
            if not self._allowed(pid, n):
                continue
            out.append(e.describe())
        return out

    @staticmethod
    def _is_a(tool_cls: str | None, cls: str, onto: Any) -> bool:
        if tool_cls is None:
            return False
        if onto is None:
            return tool_cls == cls
        return bool(onto.is_a(tool_cls, cls))

    def _allowed(self, pid: int, tool: str) -> bool:
        host = self.host
        check = getattr(host, "check_policy", None)
        if check is None:
            return False  # no way to ask: list nothing rather than something uncallable
        d = check(pid, f"{self.name}.{tool}", {})
        return bool(d.allowed) or d.effect == "approve"

    def _ontology(self) -> Any:
        fn = getattr(self.host, "ontology", None)
        return fn() if callable(fn) else None

    def _retyped(self) -> None:
        fn = getattr(self.host, "tools_changed", None)
        if callable(fn):
            fn()

    def close(self, handle: Any) -> None:
        return None


def _reply(tool: str, value: Any, cost: Cost | None = None) -> Any:
    """A tool's answer as plain JSON, or a `ToolError` saying why it is not one (a NaN or an
    infinity, a cycle, an integer too long to record, an object of another type): a
    hostile or broken tool is a typed failure of the call, charged what it used."""
    try:
        checked("the reply", value)
        return plain_json("the reply", value)
    except (BadArgument, ValueError) as e:
        err = ToolError(f"tool {tool!r}: bad reply: {e}")
        if cost is not None:
            err.cost = cost  # type: ignore[attr-defined]  # work done (wasm fuel) is still charged
        raise err from None


async def _replied(tool: str, run: Awaitable[DriverResult]) -> DriverResult:
    res = await run
    return DriverResult(_reply(tool, res.value, res.cost), res.cost)


def install(kernel: "Kernel", registry: ToolRegistry | None = None, **kw: Any) -> ToolRegistry:
    """Register `registry` (or a new one built with `kw`) as a device of `kernel`."""
    reg = registry if registry is not None else ToolRegistry(**kw)
    kernel.register_driver(reg)
    return reg


__all__ = ["Entry", "HostTool", "ToolRegistry", "install"]
