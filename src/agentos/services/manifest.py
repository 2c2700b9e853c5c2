"""Tool manifests: what a tool declares, checked strictly before the registry keeps it.

A manifest names a tool (name, version, description), the JSON schema of its arguments,
its ontology class, its risk tier (`Risk`), its declared effect, the capability tags
discovery filters on, and what runs it: a WebAssembly module (`wasm`) or Python source
for the process sandbox (`source`); a host may also hand a plain function with the
manifest, at construction. `parse_manifest` turns an untrusted value into a frozen
`ToolManifest` or raises `ManifestError` (a `BadArgument`) naming the field at fault.

Invariants kept here:
- every field is typed and bounded; unknown fields are refused, not ignored;
- an argument schema is a fixed dialect (JSON Schema 2020-12, a whitelist of keywords),
  at most `SCHEMA_DEPTH` deep and `SCHEMA_NODES` schema objects, only local `$ref`s to
  `$defs`, no cycle of `$ref`s that does not descend into the instance (which could
  loop forever), and at most `SCHEMA_COST` schema objects applied at one instance
  location once references are expanded (no exponential `anyOf` fan-out);
- regexes (`pattern`) are compiled by RE2 and matched by RE2 at call time: linear time;
  `patternProperties` is refused (jsonschema matches those with Python's backtracking
  `re`); `uniqueItems` (quadratic in jsonschema) needs a `maxItems` of at most 256;
- arguments are checked against the schema only after their own bounds (`ARGS_DEPTH`,
  `ARGS_BYTES`), so validation work is bounded by the two together.
"""
from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..abi.errors import BadArgument, ManifestError, ToolError
from ..kernel.values import checked

SCHEMA_DEPTH = 32
SCHEMA_NODES = 2_000
SCHEMA_COST = 2_000
SCHEMA_BYTES = 64 * 1024
STRING_MAX = 4096
ARGS_DEPTH = 32
ARGS_BYTES = 64 * 1024
SOURCE_BYTES = 256 * 1024
MODULE_BYTES = 1 << 20
UNIQUE_MAX_ITEMS = 256
INT_LIMIT = 1 << 63

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]{0,31}")
_CLASS = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TAG = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_DEF_REF = re.compile(r"#/\$defs/([A-Za-z0-9_.-]{1,64})")

RESERVED_NAMES = frozenset({"list", "register", "describe", "invalid"})
"""Names that are registry operations, so `<device>.<name>` never means two things."""


class Risk(enum.Enum):
    """How far a tool's code is trusted; the tier it runs in is at least this risky's."""

    PURE = "pure"                            # a pure function the host vouches for
    UNTRUSTED_COMPUTE = "untrusted_compute"  # computation only: no syscalls, no I/O
    UNTRUSTED_CODE = "untrusted_code"        # arbitrary code: an OS process in a cage

    @property
    def level(self) -> int:
        return _RISK_LEVEL[self]


_RISK_LEVEL = {Risk.PURE: 0, Risk.UNTRUSTED_COMPUTE: 1, Risk.UNTRUSTED_CODE: 2}


class Tier(enum.Enum):
    """Where a tool runs. The registry chooses it; nobody asks for one."""

    IN_KERNEL = "in_kernel"   # the tools driver, on the kernel's thread
    WASM = "wasm"             # wasmtime: fuel, memory cap, deadline, no imports
    SANDBOX = "sandbox"       # a child OS process: namespaces, seccomp, rlimits

    @property
    def level(self) -> int:
        return _TIER_LEVEL[self]

    @property
    def driver(self) -> str:
        return _TIER_DRIVER[self]


_TIER_LEVEL = {Tier.IN_KERNEL: 0, Tier.WASM: 1, Tier.SANDBOX: 2}
_TIER_DRIVER = {Tier.IN_KERNEL: "tools", Tier.WASM: "wasm", Tier.SANDBOX: "sandbox"}


class Origin(enum.Enum):
    """Who registered a tool: the host, in the kernel's configuration, or a process."""

    HOST = "host"
    RUNTIME = "runtime"


class Effect(enum.Enum):
    READ_ONLY = "read_only"
    READ_WRITE = "read_write"


def refuse(field: str, message: str) -> ManifestError:
    """The `ManifestError` for `field`."""
    return ManifestError(f"tool manifest field {field!r}: {message}", field)


@dataclass(frozen=True)
class WasmArtifact:
    module: str | bytes          # WAT text or a binary module
    export: str
    params: tuple[str, ...]      # argument names, passed as numbers in this order

    @property
    def sha256(self) -> str:
        data = self.module.encode() if isinstance(self.module, str) else self.module
        return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SourceArtifact:
    code: str                    # Python source defining `entry`
    entry: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.code.encode()).hexdigest()


@dataclass(frozen=True)
class ToolManifest:
    name: str
    version: str
    schema: dict[str, Any]
    risk: Risk
    effect: Effect
    description: str = ""
    ontology_class: str | None = None
    capabilities: tuple[str, ...] = ()
    driver: str | None = None    # what the manifest declares; the registry decides
    wasm: WasmArtifact | None = None
    source: SourceArtifact | None = None

    def summary(self) -> dict[str, Any]:
        """What an audit record says of the tool: identity, risk and the code's digest."""
        art = self.wasm or self.source
        return {"name": self.name, "version": self.version, "risk": self.risk.value,
                "effect": self.effect.value, "class": self.ontology_class,
                "artifact": None if art is None else ("wasm" if self.wasm else "source"),
                "sha256": None if art is None else art.sha256}


MANIFEST_KEYS = frozenset({"name", "version", "description", "schema", "ontology_class", "risk", "effect",
                           "capabilities", "driver", "wasm", "source"})


class NotJSON(ValueError):
    """A value that is not plain JSON; `where` is the path to the part at fault ("" for
    the whole value), e.g. ``schema.properties.x.maximum``."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


def _where(node: Any) -> str:
    keys: list[Any] = []
    while node is not None:
        node, key = node
        keys.append(key)
    out = ""
    for k in reversed(keys):
        out += f"[{k}]" if type(k) is int else (f".{k[:40]}" if out else k[:40])
    return out


def plain_json(what: str, value: Any, *, allow_bytes: bool = False) -> Any:
    """A copy of `value` made of plain JSON types only (dict with str keys, list, str, int,
    finite float, bool, None; and bytes when `allow_bytes`), or `NotJSON` saying what is
    not and where. A subclass of a builtin is taken as its plain value through the
    builtin's own methods, so none of its code runs; a tuple becomes a list. `value` must
    already have passed `checked` (no cycle, bounded depth): the walk is iterative but
    does not look for cycles itself."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, Any]] = [(value, root, 0, None)]
    while stack:
        x, parent, key, node = stack.pop()
        t = type(x)
        y: Any
        if x is None or t is bool or t is str or t is int:
            y = x
        elif t is float or isinstance(x, float):
            y = float.__float__(x)
            if not math.isfinite(y):
                at = _where(node)
                raise NotJSON(f"{what}{' at ' + at if at else ''}: {y!r} is not a JSON number "
                              f"(JSON has no NaN or infinity)", at)
        elif isinstance(x, str):
            y = str.__str__(x)
        elif isinstance(x, int):
            y = int.__int__(x)
        elif isinstance(x, dict):
            y = {}
            for k, v in dict.items(x):
                if type(k) is not str:
                    if not isinstance(k, str):
                        at = _where(node)
                        raise NotJSON(f"{what}{' at ' + at if at else ''}: a key of type {type(k).__name__} "
                                      f"(JSON keys are strings)", at)
                    k = str.__str__(k)
                y[k] = None
                stack.append((v, y, k, (node, k)))
        elif isinstance(x, (list, tuple)):
            items = list.copy(x) if isinstance(x, list) else [*tuple.__iter__(x)]
            y = [None] * len(items)
            stack.extend((v, y, i, (node, i)) for i, v in enumerate(items))
        elif allow_bytes and isinstance(x, (bytes, bytearray, memoryview)):
            y = bytes(x)
        else:
            at = _where(node)
            raise NotJSON(f"{what}{' at ' + at if at else ''}: a value of type {t.__name__} is not JSON", at)
        parent[key] = y
    return root[0]


def _text(field: str, v: Any, pattern: re.Pattern[str] | None = None, limit: int = STRING_MAX) -> str:
    if type(v) is not str:
        raise refuse(field, f"must be a string, got {type(v).__name__}")
    if len(v) > limit:
        raise refuse(field, f"is {len(v)} characters; the limit is {limit}")
    if pattern is not None and not pattern.fullmatch(v):
        raise refuse(field, f"{v[:64]!r} does not match {pattern.pattern}")
    return v


def parse_manifest(obj: Any) -> ToolManifest:
    """A `ToolManifest` from an untrusted value, or `ManifestError` naming the field."""
    if isinstance(obj, ToolManifest):
        obj = manifest_dict(obj)
    if not isinstance(obj, dict):
        raise refuse("(root)", f"a manifest is an object, got {type(obj).__name__}")
    try:
        checked("tool manifest", obj)  # cycles, 1,000+ levels, lone surrogates: refused here
        # from here on only plain values: a dict subclass's get() or a key's __eq__ never runs
        obj = plain_json("tool manifest", obj, allow_bytes=True)
    except BadArgument as e:
        raise refuse("(root)", str(e)) from None
    except NotJSON as e:
        raise refuse(e.where or "(root)", str(e)) from None
    unknown = sorted(str(k)[:40] for k in obj if k not in MANIFEST_KEYS)
    if unknown:
        raise refuse(unknown[0], f"is not a manifest field (fields: {', '.join(sorted(MANIFEST_KEYS))})")
    for required in ("name", "version", "schema", "risk", "effect"):
        if required not in obj:
            raise refuse(required, "is required")
    name = _text("name", obj["name"], _NAME)
    if name in RESERVED_NAMES:
        raise refuse("name", f"{name!r} is reserved for a registry operation")
    version = _text("version", obj["version"], _VERSION)
    desc = _text("description", obj.get("description", ""), limit=1000)
    risk = _enum("risk", Risk, obj["risk"])
    effect = _enum("effect", Effect, obj["effect"])
    cls = obj.get("ontology_class")
    if cls is not None:
        cls = _text("ontology_class", cls, _CLASS)
    caps = obj.get("capabilities", [])
    if not isinstance(caps, (list, tuple)) or len(caps) > 16:
        raise refuse("capabilities", "must be a list of at most 16 tags")
    tags = tuple(_text(f"capabilities[{i}]", t, _TAG) for i, t in enumerate(caps))
    driver = obj.get("driver")
    if driver is not None and driver not in ("tools", "wasm", "sandbox"):
        raise refuse("driver", f"is 'tools', 'wasm' or 'sandbox', got {str(driver)[:40]!r}")
    schema = check_schema(obj["schema"])
    wasm = _wasm(obj["wasm"], schema) if obj.get("wasm") is not None else None
    source = _source(obj["source"]) if obj.get("source") is not None else None
    if wasm is not None and source is not None:
        raise refuse("wasm", "a tool has one artifact: wasm or source, not both")
    return ToolManifest(name, version, schema, risk, effect, desc, cls, tags, driver, wasm, source)


def manifest_dict(m: ToolManifest) -> dict[str, Any]:
    out: dict[str, Any] = {"name": m.name, "version": m.version, "schema": m.schema, "risk": m.risk.value,
                           "effect": m.effect.value, "description": m.description,
                           "ontology_class": m.ontology_class, "capabilities": list(m.capabilities),
                           "driver": m.driver}
    if m.wasm is not None:
        out["wasm"] = {"module": m.wasm.module, "export": m.wasm.export, "params": list(m.wasm.params)}
    if m.source is not None:
        out["source"] = {"code": m.source.code, "entry": m.source.entry}
    return out


def _enum(field: str, cls: Any, v: Any) -> Any:
    if isinstance(v, cls):
        return v
    try:
        return cls(v)
    except (ValueError, TypeError):
        allowed = ", ".join(m.value for m in cls)
        raise refuse(field, f"is one of {allowed}, got {str(v)[:40]!r}") from None


def _wasm(v: Any, schema: dict[str, Any]) -> WasmArtifact:
    if not isinstance(v, dict) or set(v) - {"module", "export", "params"}:
        raise refuse("wasm", "is {'module': WAT text or bytes, 'export': name, 'params': [argument names]}")
    mod = v.get("module")
    if isinstance(mod, (bytearray, memoryview)):
        mod = bytes(mod)
    if not isinstance(mod, (str, bytes)) or not mod:
        raise refuse("wasm.module", "must be WAT text or a binary module")
    if len(mod) > MODULE_BYTES:
        raise refuse("wasm.module", f"is {len(mod)} long; the limit is {MODULE_BYTES}")
    export = _text("wasm.export", v.get("export"), _IDENT)
    params = v.get("params", [])
    if not isinstance(params, (list, tuple)) or len(params) > 16:
        raise refuse("wasm.params", "must be a list of at most 16 argument names")
    props = schema.get("properties", {})
    req = set(schema.get("required", ()))
    for i, p in enumerate(params):
        p = _text(f"wasm.params[{i}]", p, _IDENT)
        ptype = props.get(p, {}).get("type") if isinstance(props.get(p), dict) else None
        if p not in req or ptype not in ("integer", "number"):
            raise refuse(f"wasm.params[{i}]", f"{p!r} must be a required argument of type integer "
                                                     f"or number (WebAssembly takes numbers)")
    if len(set(params)) != len(params):
        raise refuse("wasm.params", "names an argument twice")
    return WasmArtifact(mod, export, tuple(params))


def _source(v: Any) -> SourceArtifact:
    if not isinstance(v, dict) or set(v) - {"code", "entry"}:
        raise refuse("source", "is {'code': Python source, 'entry': function name}")
    code = _text("source.code", v.get("code"), limit=SOURCE_BYTES)
    entry = _text("source.entry", v.get("entry", "run"), _IDENT)
    if entry.startswith("__"):
        raise refuse("source.entry", "must not be a dunder name")
    if "\x00" in code:
        raise refuse("source.code", "holds a NUL character")
    return SourceArtifact(code, entry)


def choose_tier(m: ToolManifest, origin: Origin, has_fn: bool) -> Tier:
    """The tier a tool runs in: the least isolated one that is at least as strong as its
    risk requires and, for a tool a process registered, never in the kernel; it must also
    be able to run the tool's artifact. The manifest's `driver` is not consulted."""
    need = max(m.risk.level, 0 if origin is Origin.HOST else Risk.UNTRUSTED_COMPUTE.level)
    runnable = [(Tier.IN_KERNEL, has_fn and origin is Origin.HOST), (Tier.WASM, m.wasm is not None),
                (Tier.SANDBOX, m.source is not None)]
    for tier, ok in runnable:
        if ok and tier.level >= need:
            return tier
    what = {0: "a host function, wasm or source", 1: "a wasm module or Python source",
            2: "Python source (the process sandbox)"}[need]
    why = " (a tool registered at run time never runs in the kernel)" if origin is Origin.RUNTIME else ""
    raise refuse("risk", f"risk {m.risk.value} needs {what} to run{why}")


# -- argument schemas ----------------------------------------------------------------------

_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "enum", "const",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "description",
    "title", "default", "examples", "$defs", "$ref", "allOf", "anyOf", "oneOf", "not", "format",
    "propertyNames", "deprecated", "readOnly", "writeOnly", "$comment", "$schema",
})
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# keywords whose value is data, not a schema: never walked as schemas
_DATA = frozenset({"enum", "const", "default", "examples", "required", "description", "title", "$comment",
                   "format", "$schema", "type"})
# keywords applying subschemas at the same instance location (a $ref cycle through only
# these never ends); the rest descend into a part of the instance
_SAME_PLACE = frozenset({"allOf", "anyOf", "oneOf", "not", "$ref"})
_SUBSCHEMAS = frozenset({"properties", "$defs", "allOf", "anyOf", "oneOf", "prefixItems", "items",
                         "additionalProperties", "not", "propertyNames"})
_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def _children(node: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(keyword, path suffix, subschema) for every subschema directly under `node`."""
    for kw, v in node.items():
        if kw in _DATA or kw == "$ref" or kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                                                  "multipleOf", "minLength", "maxLength", "pattern", "minItems",
                                                  "maxItems", "uniqueItems", "minProperties", "maxProperties",
                                                  "deprecated", "readOnly", "writeOnly"):
            continue
        if kw in ("properties", "$defs"):
            if not isinstance(v, dict):
                raise refuse(f"schema.{kw}", "must be an object of schemas")
            for k, s in v.items():
                yield kw, f"{kw}.{k}", s
        elif kw in ("allOf", "anyOf", "oneOf", "prefixItems"):
            if not isinstance(v, list) or not v:
                raise refuse(f"schema.{kw}", "must be a non-empty list of schemas")
            for i, s in enumerate(v):
                yield kw, f"{kw}[{i}]", s
        else:  # additionalProperties, items, not, propertyNames
            yield kw, kw, v


def check_schema(schema: Any) -> dict[str, Any]:
    """Refuse an argument schema outside the bounded dialect; return it unchanged."""
    if not isinstance(schema, dict):
        raise refuse("schema", f"must be an object schema, got {type(schema).__name__}")
    if schema.get("type") != "object":
        raise refuse("schema.type", "the arguments are an object: the schema's type must be 'object'")
    if "$schema" in schema and schema["$schema"] != _DIALECT:
        raise refuse("schema.$schema", f"only {_DIALECT} is accepted")
    defs = schema.get("$defs", {})
    if not isinstance(defs, dict):
        raise refuse("schema.$defs", "must be an object of schemas")
    # one iterative walk: depth, node count, keywords, values; collect $ref edges
    same: dict[int, list[Any]] = {}   # id(node) -> subschemas applied at its instance place
    nodes = 0
    stack: list[tuple[Any, str, int]] = [(schema, "schema", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, bool):
            continue
        if not isinstance(node, dict):
            raise refuse(path, f"a schema is an object or a boolean, got {type(node).__name__}")
        nodes += 1
        if nodes > SCHEMA_NODES:
            raise refuse("schema", f"has more than {SCHEMA_NODES} subschemas")
        if depth > SCHEMA_DEPTH:
            raise refuse(path, f"nests deeper than {SCHEMA_DEPTH} schemas")
        _check_keywords(node, path, defs)
        here = same.setdefault(id(node), [])
        for kw, sub, child in _children(node):
            if kw in _SAME_PLACE:
                here.append(child)
            stack.append((child, f"{path}.{sub}", depth + 1))
        ref = node.get("$ref")
        if ref is not None:
            here.append(defs[_DEF_REF.fullmatch(ref).group(1)])  # type: ignore[union-attr]
    try:  # only now: the walk above bounded its depth and node count
        size = len(json.dumps(schema, ensure_ascii=False, allow_nan=True, default=repr))
    except (ValueError, TypeError, RecursionError) as e:
        raise refuse("schema", f"cannot be encoded: {type(e).__name__}") from None
    if size > SCHEMA_BYTES:
        raise refuse("schema", f"is {size} bytes of JSON; the limit is {SCHEMA_BYTES}")
    _check_cost(schema, defs, same)
    _validator(schema)  # meta-schema check, and the RE2 patterns compile
    return schema


def _check_keywords(node: dict[str, Any], path: str, defs: dict[str, Any]) -> None:
    for kw, v in node.items():
        if kw not in _KEYWORDS:
            raise refuse(f"{path}.{str(kw)[:40]}", "is not a keyword this registry accepts "
                                                         "(patternProperties, $id, $anchor, $dynamicRef, if/then/else... "
                                                         "are refused)")
        if kw not in _SUBSCHEMAS:  # subschemas are walked as nodes of their own
            _check_data(f"{path}.{kw}", v)
    t = node.get("type")
    if t is not None:
        ts = t if isinstance(t, list) else [t]
        if not ts or not all(isinstance(x, str) and x in _TYPES for x in ts):
            raise refuse(f"{path}.type", f"names a type outside {sorted(_TYPES)}")
    ref = node.get("$ref")
    if ref is not None:
        m = _DEF_REF.fullmatch(ref) if isinstance(ref, str) else None
        if m is None:
            raise refuse(f"{path}.$ref", "only local references of the form '#/$defs/<name>' are accepted")
        if m.group(1) not in defs:
            raise refuse(f"{path}.$ref", f"refers to a missing definition {m.group(1)!r}")
    pat = node.get("pattern")
    if pat is not None:
        if not isinstance(pat, str):
            raise refuse(f"{path}.pattern", "must be a string")
        try:
            _re2(pat)
        except ValueError as e:
            raise refuse(f"{path}.pattern", str(e)) from None
    if node.get("uniqueItems") is True:
        mi = node.get("maxItems")
        if not isinstance(mi, int) or isinstance(mi, bool) or mi > UNIQUE_MAX_ITEMS:
            raise refuse(f"{path}.uniqueItems", f"needs a maxItems of at most {UNIQUE_MAX_ITEMS} beside it "
                                                       f"(checking uniqueness is quadratic)")


def _check_data(path: str, v: Any) -> None:
    """Numbers finite and in range, strings bounded, anywhere in a keyword's value."""
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, float) and not math.isfinite(x):
            raise refuse(path, "holds a NaN or an infinity")
        if isinstance(x, int) and not isinstance(x, bool) and not -INT_LIMIT <= x <= INT_LIMIT:
            raise refuse(path, f"holds an integer outside ±2**63")
        if isinstance(x, str) and len(x) > STRING_MAX:
            raise refuse(path, f"holds a string longer than {STRING_MAX}")
        if isinstance(x, dict):
            stack.extend(x.values())
            stack.extend(k for k in x.keys() if isinstance(k, str))
        elif isinstance(x, (list, tuple)):
            stack.extend(x)


def _check_cost(schema: dict[str, Any], defs: dict[str, Any], same: dict[int, list[Any]]) -> None:
    """The schema objects applied at one instance location, references expanded, stay
    under SCHEMA_COST; a reference cycle through same-place keywords is refused."""
    cost: dict[int, int] = {}
    nodes = [schema, *defs.values()]
    # every node's own cost; an explicit stack with a grey set finds cycles without recursion
    for root in nodes:
        stack: list[tuple[Any, bool]] = [(root, False)]
        grey: set[int] = set()
        while stack:
            node, done = stack.pop()
            if isinstance(node, bool):
                continue
            key = id(node)
            if done:
                grey.discard(key)
                total = 1 + sum(cost.get(id(c), 0) for c in same.get(key, ()) if not isinstance(c, bool))
                if total > SCHEMA_COST:
                    raise refuse("schema", f"applies more than {SCHEMA_COST} subschemas at one place once "
                                                  f"its $refs are expanded")
                cost[key] = total
                continue
            if key in cost:
                continue
            if key in grey:
                raise refuse("schema.$ref", "a cycle of references that never descends into the "
                                                   "arguments (it would never end)")
            grey.add(key)
            stack.append((node, True))
            for c in same.get(key, ()):
                if not isinstance(c, bool):
                    if id(c) in grey:
                        raise refuse("schema.$ref", "a cycle of references that never descends into "
                                                           "the arguments (it would never end)")
                    stack.append((c, False))


def _re2(pattern: str) -> Any:
    from ..policy.rules import compile_regex  # RE2, linear time

    return compile_regex(pattern)


def _validator(schema: dict[str, Any]) -> Any:
    """A Draft 2020-12 validator whose `pattern` is matched by RE2."""
    from jsonschema import ValidationError, validators
    from jsonschema.exceptions import SchemaError

    compiled: dict[str, Any] = {}

    def pattern(validator: Any, patrn: str, instance: Any, _schema: Any) -> Iterator[Any]:
        if isinstance(instance, str):
            prog = compiled.get(patrn)
            if prog is None:
                prog = compiled[patrn] = _re2(patrn)
            if prog.search(instance) is None:
                yield ValidationError(f"{instance[:64]!r} does not match {patrn!r}")

    base = validators.Draft202012Validator
    try:
        base.check_schema(schema)
    except SchemaError as e:
        where = ".".join(str(p) for p in e.absolute_path) or "(root)"
        raise refuse(f"schema.{where}", e.message[:300]) from None
    except RecursionError:
        raise refuse("schema", "too deep for the meta-schema check") from None
    cls = validators.extend(base, {"pattern": pattern})
    return cls(schema)


class ArgsChecker:
    """Checks a call's arguments against a tool's schema, within bounds, before it runs."""

    def __init__(self, tool: str, schema: dict[str, Any]) -> None:
        self.tool = tool
        self._v = _validator(schema)

    def __call__(self, args: Any) -> dict[str, Any]:
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ToolError(f"tool {self.tool!r}: arguments must be an object, got {type(args).__name__}")
        try:
            checked(f"tool {self.tool!r}: arguments", args)
            # plain values from here: the schema check and the tool see no subclass's code,
            # and a NaN (which every comparison lets through) never reaches a tool
            args = plain_json("arguments", args)
            size = len(json.dumps(args, ensure_ascii=False, allow_nan=False))
        except (BadArgument, ValueError, TypeError, RecursionError) as e:
            raise ToolError(f"tool {self.tool!r}: bad arguments: {e}") from None
        if size > ARGS_BYTES:
            raise ToolError(f"tool {self.tool!r}: arguments are {size} bytes of JSON; the limit is {ARGS_BYTES}")
        if _depth(args) > ARGS_DEPTH:
            raise ToolError(f"tool {self.tool!r}: arguments nest deeper than {ARGS_DEPTH}")
        try:
            errors = sorted(self._v.iter_errors(args), key=lambda e: [str(p) for p in e.path])
        except RecursionError:
            raise ToolError(f"tool {self.tool!r}: arguments too deep for the schema check") from None
        except (OverflowError, ValueError, TypeError) as e:  # a 10**3000 against a float multipleOf
            raise ToolError(f"tool {self.tool!r}: bad arguments: a value the schema cannot check "
                            f"({type(e).__name__}: {str(e)[:100]})") from None
        if errors:
            detail = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message[:200]}" for e in errors[:3])
            raise ToolError(f"tool {self.tool!r}: bad arguments: {detail}")
        return args


def _depth(v: Any) -> int:
    deepest = 0
    stack = [(v, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, (dict, list, tuple)):
            deepest = max(deepest, d)
            if d > ARGS_DEPTH:
                return d
            stack.extend((c, d + 1) for c in (x.values() if isinstance(x, dict) else x))
    return deepest


HostFn = Callable[..., Any]

__all__ = ["ARGS_BYTES", "ARGS_DEPTH", "ArgsChecker", "Effect", "ManifestError", "Origin", "Risk",
           "SCHEMA_COST", "SCHEMA_DEPTH", "SCHEMA_NODES", "SourceArtifact", "Tier", "ToolManifest",
           "WasmArtifact", "check_schema", "choose_tier", "manifest_dict", "parse_manifest", "plain_json", "NotJSON"]
