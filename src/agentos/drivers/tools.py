"""The `tools` driver: plain Python functions as a metered device.

Arguments are checked against each tool's JSON schema (with `jsonschema`, validators
compiled once at registration) before the function runs. Each call costs one tool call.
Every tool declares its effect on the world, `read_only` or `read_write`, or gives a
classifier that decides per call (e.g. a SQL parser); policy's `mode: read_only` uses it.
The action a call performs is `<device>.<name>` (the name the driver is registered under),
which is what policies match; a tool's `ontology_class` goes with it to every device.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..abi.driver import Driver, DriverResult
from ..abi.errors import ToolError
from ..abi.types import Cost

Effect = str  # "read_only" | "read_write" | "unknown"
EFFECTS = ("read_only", "read_write", "unknown")

_JSON_TYPES: dict[Any, str] = {int: "integer", float: "number", str: "string", bool: "boolean",
                               list: "array", dict: "object"}


def schema_from_signature(fn: Callable[..., Any]) -> dict[str, Any]:
    """A JSON schema for `fn`'s keyword arguments, from its annotations."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    props: dict[str, Any] = {}
    required = []
    for name, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        t = hints.get(name, Any)
        origin = typing.get_origin(t) or t
        js = _JSON_TYPES.get(origin)
        props[name] = {"type": js} if js else {}
        if p.default is p.empty:
            required.append(name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


@dataclass
class Tool:
    name: str
    fn: Callable[..., Any]
    schema: dict[str, Any] | None = None
    description: str = ""
    effect: Effect | Callable[[dict[str, Any]], Effect] = "read_write"
    cost: Cost | None = None
    ontology_class: str | None = None
    _validator: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a tool needs a non-empty name")
        if self.schema is None:
            self.schema = schema_from_signature(self.fn)
        if not self.description:
            self.description = (inspect.getdoc(self.fn) or "").strip().split("\n")[0]
        if isinstance(self.effect, str) and self.effect not in EFFECTS:
            raise ValueError(f"tool {self.name!r}: effect must be one of {EFFECTS} or a callable")
        check_class("tool", self.name, self.ontology_class)
        from jsonschema import validators  # lazy: only drivers need it

        cls = validators.validator_for(self.schema)
        cls.check_schema(self.schema)
        self._validator = cls(self.schema)

    def classify(self, args: dict[str, Any]) -> Effect:
        return classify_effect(self.effect, args)

    def spec(self) -> dict[str, Any]:
        """OpenAI-style function description, for LLM tool calling."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.schema}}


@dataclass
class ServedTool:
    """What policy needs to know about a tool served by a driver that is not a `ToolsDriver`
    (a worker function, a WASM export): its ontology class and its effect."""

    name: str
    ontology_class: str | None = None
    effect: Effect | Callable[[dict[str, Any]], Effect] = "read_write"

    def classify(self, args: dict[str, Any]) -> Effect:
        return classify_effect(self.effect, args)


def classify_effect(effect: Any, args: dict[str, Any]) -> Effect:
    """A tool's effect for these arguments: its declared word, or what its classifier says
    (a classifier that raises or answers something unknown gives "unknown", which policy
    refuses under read_only rules)."""
    if callable(effect):
        try:
            out = effect(args)
        except Exception:
            return "unknown"
        return out if out in EFFECTS else "unknown"
    return effect


def check_effect(owner: str, tool_name: str, effect: Any) -> None:
    """Refuse an effect that is neither a known word nor a classifier."""
    if not callable(effect) and effect not in EFFECTS:
        raise ValueError(f"{owner}: effect of {tool_name!r} must be one of {EFFECTS} or a callable, got {effect!r}")


def check_class(owner: str, tool_name: str, cls: Any) -> None:
    if cls is not None and (not isinstance(cls, str) or not cls):
        raise ValueError(f"{owner}: the ontology class of {tool_name!r} must be a class name, got {cls!r}")


def tool(name: str | None = None, *, schema: dict[str, Any] | None = None, effect: Any = "read_write",
         description: str = "", ontology_class: str | None = None) -> Callable[[Callable[..., Any]], Tool]:
    """Decorator: turn a function into a `Tool` (schema inferred from annotations if not given)."""
    def wrap(fn: Callable[..., Any]) -> Tool:
        return Tool(name or fn.__name__, fn, schema, description, effect, ontology_class=ontology_class)
    return wrap


class ToolsDriver(Driver):
    """Requests are `{"tool": name, "args": {...}}` (or a `(name, args)` pair)."""

    name = "tools"

    def __init__(self, tools: list[Tool | Callable[..., Any]] = (), name: str = "tools") -> None:  # type: ignore[assignment]
        self.name = name
        self.tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, t: Tool | Callable[..., Any]) -> Tool:
        if not isinstance(t, Tool):
            t = Tool(getattr(t, "__name__", "tool"), t)
        if t.name in self.tools:
            raise ValueError(f"tool {t.name!r} is registered twice")
        self.tools[t.name] = t
        return t

    def specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self.tools.values()]

    def _parse(self, req: Any) -> tuple[Tool, dict[str, Any]]:
        if isinstance(req, dict):
            name, args = req.get("tool"), req.get("args", {})
        elif isinstance(req, (tuple, list)) and len(req) == 2:
            name, args = req
        else:
            raise ToolError(f"{self.name}: a request is {{'tool': name, 'args': {{...}}}}, got {type(req).__name__}")
        t = self.tools.get(name)  # type: ignore[arg-type]
        if t is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ToolError(f"{self.name}: unknown tool {name!r} (known: {known})")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ToolError(f"tool {name!r}: arguments must be an object, got {type(args).__name__}")
        return t, args

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        if op == "read" and isinstance(req, dict) and req.get("op") == "list":
            return (f"{self.name}.list", {})
        t, args = self._parse(req)
        return (f"{self.name}.{t.name}", args)

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        """A tool call is one call (or the tool's declared cost); listing is free."""
        if isinstance(req, dict) and req.get("op") == "list":
            return Cost()
        t, args = self._parse(req)  # a bad request is refused here, before anything is reserved
        self._check_args(t, args)
        return t.cost or Cost(tool_calls=1)

    @staticmethod
    def _check_args(t: Tool, args: dict[str, Any]) -> None:
        errors = sorted(t._validator.iter_errors(args), key=lambda e: list(e.path))
        if errors:
            detail = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:3])
            raise ToolError(f"tool {t.name!r}: bad arguments: {detail}")

    def read(self, handle: Any, req: Any) -> DriverResult | Awaitable[DriverResult]:
        if isinstance(req, dict) and req.get("op") == "list":
            return DriverResult(self.specs())
        t, args = self._parse(req)
        self._check_args(t, args)
        cost = t.cost or Cost(tool_calls=1)
        try:
            out = t.fn(**args)
        except Exception as e:
            raise ToolError(f"tool {t.name!r} failed: {type(e).__name__}: {e}") from e
        if inspect.isawaitable(out):
            return _await_tool(t, out, cost)
        return DriverResult(out, cost)

    def write(self, handle: Any, data: Any) -> DriverResult | Awaitable[DriverResult]:
        return self.read(handle, data)


async def _await_tool(t: Tool, aw: Awaitable[Any], cost: Cost) -> DriverResult:
    try:
        out = await aw
    except Exception as e:
        raise ToolError(f"tool {t.name!r} failed: {type(e).__name__}: {e}") from e
    return DriverResult(out, cost)
