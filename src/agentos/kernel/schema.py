"""A bounded JSON Schema validator for typed pipes: compiled once, checked on every send.

A typed pipe's schema comes from a process, so it is hostile input twice: when it is
declared and each time a message is checked against it. Both are bounded:

- *At creation* (`compile_schema`) an iterative walk refuses a schema nested deeper than
  `MAX_SCHEMA_DEPTH` or holding more than `MAX_SCHEMA_NODES` values before any recursive
  code sees it; anything that is not plain JSON (a NaN, a non-string key, a lone
  surrogate); a keyword outside the supported subset (refused, never ignored, so nothing
  that looks enforced is not); a `$ref` that is not local (`#` or `#/$defs/<name>`); a
  cycle of `$ref`s that never descends into the message (it would never terminate); and a
  `pattern` RE2 does not accept (RE2 matches in linear time: no backreferences, no
  lookaround, so no regex bomb).
- *At validation* (`Schema.validate`, the walk in schema_eval.py) every (schema node, message value) visit is one
  step, and a message that needs more than `MAX_STEPS` steps is refused as too costly;
  matching a pattern costs steps in proportion to the string's length; following `$ref`s
  deeper than `MAX_VALIDATION_DEPTH` is refused. So no schema and no body can hold the
  kernel for long, and Python's recursion limit is never approached.

The supported subset (JSON Schema 2020-12 semantics): `type`, `enum`, `const`;
`minLength`, `maxLength`, `pattern`; `minimum`, `maximum`, `exclusiveMinimum`,
`exclusiveMaximum`, `multipleOf`; `items`, `prefixItems`, `minItems`, `maxItems`,
`uniqueItems`; `properties`, `required`, `additionalProperties`, `propertyNames`,
`minProperties`, `maxProperties`; `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`;
local `$ref` with `$defs` (or `definitions`); and the annotations `title`,
`description`, `default`, `examples`, `$comment`, `$schema`, `deprecated`, `readOnly`,
`writeOnly`. A failure names the message path (a JSON pointer) and the schema path.

Message values map to JSON types as the kernel carries them: a tuple is an array as a
list is; a float that is NaN or infinite is no JSON number; `True` is a boolean and never
the integer 1; a float with no fractional part is an integer (as JSON Schema says).
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Callable

from .schema_eval import (
    MAX_STEPS, MAX_VALIDATION_DEPTH, PATTERN_CHARS_PER_STEP, Violation, _bounded, _combinator, _Ctx, _equal, _Fail, _holds,
    _key, _kind, _multiple, _Node, _pointer, _short, _spend, _tname, _types_of, _validate,
)

MAX_SCHEMA_DEPTH = 64
MAX_SCHEMA_NODES = 10_000
MAX_SCHEMA_BYTES = 256 * 1024
MAX_PATTERN = 1_000          # characters of one `pattern`

_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "$schema", "deprecated",
                          "readOnly", "writeOnly"})
_SUBSCHEMA = frozenset({"items", "additionalProperties", "propertyNames", "not", "if", "then", "else"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions"})
_NONNEG_INTS = frozenset({"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"})
_NUMBERS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
_OTHERS = frozenset({"type", "enum", "const", "pattern", "uniqueItems", "required", "$ref"})
_KNOWN = _ANNOTATIONS | _SUBSCHEMA | _SCHEMA_LISTS | _SCHEMA_MAPS | _NONNEG_INTS | _NUMBERS | _OTHERS
_IN_PLACE = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else")  # apply to the same value


class SchemaInvalid(ValueError):
    """The schema itself is refused; `path` is a JSON pointer into the schema."""

    def __init__(self, path: str, why: str) -> None:
        path = _bounded(path)
        super().__init__(f"at {path or '/'}: {why}")
        self.path = path
        self.why = why


# -- creation ---------------------------------------------------------------------------

def _check_plain_json(schema: Any) -> None:
    """Iteratively: depth, size, and plain-JSON-ness, before any recursive code runs."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(schema, 1, ())]
    nodes = 0
    size = 0
    while stack:
        v, depth, path = stack.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            raise SchemaInvalid(_pointer(path), f"more than {MAX_SCHEMA_NODES} values in the schema")
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaInvalid(_pointer(path), f"nested deeper than {MAX_SCHEMA_DEPTH}")
        t = type(v)
        if t is dict:
            for k, item in v.items():
                if type(k) is not str:
                    raise SchemaInvalid(_pointer(path), f"object keys must be strings, got {_tname(k)}")
                size += len(k)
                _encodable(k, path)
                stack.append((item, depth + 1, path + (k,)))
        elif t is list:
            for i, item in enumerate(v):
                stack.append((item, depth + 1, path + (i,)))
        elif t is str:
            size += len(v)
            _encodable(v, path)
        elif t is float:
            if not math.isfinite(v):
                raise SchemaInvalid(_pointer(path), f"{v!r} is not a JSON number")
        elif t is int:
            if v.bit_length() > 256:
                raise SchemaInvalid(_pointer(path), "integer too large for a schema")
        elif v is not None and t is not bool:
            raise SchemaInvalid(_pointer(path), f"{_tname(v)} is not a JSON value (schemas are plain JSON)")
        if size > MAX_SCHEMA_BYTES:
            raise SchemaInvalid(_pointer(path), f"the schema's text exceeds {MAX_SCHEMA_BYTES} characters")


def _encodable(s: str, path: tuple[Any, ...]) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise SchemaInvalid(_pointer(path), "a string holds a lone surrogate") from None


def _compile_pattern(pattern: str, path: tuple[Any, ...]) -> Any:
    if len(pattern) > MAX_PATTERN:
        raise SchemaInvalid(_pointer(path), f"pattern longer than {MAX_PATTERN} characters")
    try:
        import re2  # lazy: only a schema with a pattern needs it
    except ImportError:  # pragma: no cover - a core dependency
        raise SchemaInvalid(_pointer(path), "pattern needs google-re2 (pip install google-re2)") from None
    opts = re2.Options()
    opts.log_errors = False
    opts.never_capture = True
    opts.max_mem = 8 << 20
    try:
        return re2.compile(pattern, opts)
    except Exception as e:  # re2.error carries bytes
        msg = e.args[0] if e.args else e
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise SchemaInvalid(_pointer(path), f"RE2 rejects the pattern {_short(pattern)}: {msg} "
                                            f"(no backreferences or lookaround)") from None


class _Compiler:
    def __init__(self, root: Any) -> None:
        self.root_schema = root
        self.defs: dict[str, _Node] = {}
        self.pending: list[tuple[str, tuple[Any, ...]]] = []

    def compile(self, s: Any, spath: tuple[Any, ...]) -> _Node:
        node = _Node(spath)
        if type(s) is bool:
            node.always = s
            return node
        if type(s) is not dict:
            raise SchemaInvalid(_pointer(spath), f"a schema must be an object or a boolean, got {_short(s)}")
        for key in s:
            if key not in _KNOWN:
                hint = " (format is not asserted by typed pipes: use pattern)" if key == "format" else ""
                raise SchemaInvalid(_pointer(spath), f"unsupported keyword {key!r}{hint}")
        for key in ("$schema", "title", "description", "$comment"):
            if key in s and type(s[key]) is not str:
                raise SchemaInvalid(_pointer(spath + (key,)), f"{key} must be a string")
        for key in ("$defs", "definitions"):
            if key in s:
                defs = s[key]
                if type(defs) is not dict:
                    raise SchemaInvalid(_pointer(spath + (key,)), f"{key} must be an object")
                if spath == ():
                    for name, sub in defs.items():
                        self.defs[f"#/{key}/{_escape(name)}"] = self.compile(sub, spath + (key, name))
                else:
                    raise SchemaInvalid(_pointer(spath + (key,)), f"{key} is supported at the root only")
        self._type(s, node, spath)
        self._values(s, node, spath)
        self._strings(s, node, spath)
        self._numbers(s, node, spath)
        self._arrays(s, node, spath)
        self._objects(s, node, spath)
        self._logic(s, node, spath)
        if "$ref" in s:
            ref = s["$ref"]
            if type(ref) is not str:
                raise SchemaInvalid(_pointer(spath + ("$ref",)), "$ref must be a string")
            if ref != "#" and not (ref.startswith("#/$defs/") or ref.startswith("#/definitions/")):
                raise SchemaInvalid(_pointer(spath + ("$ref",)),
                                    f"only local references (# or #/$defs/<name>) are supported, got {_short(ref)}")
            node.refs.append(ref)
            self.pending.append((ref, spath + ("$ref",)))
            node.checks.append(self._ref_check(ref, spath + ("$ref",)))
        return node

    # -- keyword groups -----------------------------------------------------------------
    def _type(self, s: dict[str, Any], node: _Node, spath: tuple[Any, ...]) -> None:
        if "type" not in s:
            return
        t = s["type"]
        names = [t] if type(t) is str else t
        if type(names) is not list or not names or any(type(n) is not str or n not in _TYPES for n in names):
            raise SchemaInvalid(_pointer(spath + ("type",)), f"type must be one of {', '.join(_TYPES)} "
                                                             f"or a non-empty list of them, got {_short(t)}")
        allowed = frozenset(names)
        where = spath + ("type",)

        def check(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
            if not (_types_of(v) & allowed):
                raise _Fail(vp, where, f"{_kind(v)} is not of type {' or '.join(names)}")
            if type(v) is dict and v:  # a JSON object's keys are strings; looking costs steps
                _spend(ctx, len(v) // 16, vp, where)
                for k in v:
                    if type(k) is not str:
                        raise _Fail(vp, where, f"a key of type {_tname(k)} (JSON object keys are strings)")
        node.checks.append(check)

    def _values(self, s: dict[str, Any], node: _Node, spath: tuple[Any, ...]) -> None:
        if "enum" in s:
            options = s["enum"]
            if type(options) is not list or not options:
                raise SchemaInvalid(_pointer(spath + ("enum",)), "enum must be a non-empty array")
            where = spath + ("enum",)

            def enum_check(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
                for o in options:
                    if _equal(v, o, ctx):
                        return
                raise _Fail(vp, where, f"{_short(v)} is not one of {_short(options)}")
            node.checks.append(enum_check)
        if "const" in s:
            want = s["const"]
            where_c = spath + ("const",)

            def const_check(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
                if not _equal(v, want, ctx):
                    raise _Fail(vp, where_c, f"{_short(v)} is not {_short(want)}")
            node.checks.append(const_check)

    def _nonneg(self, s: dict[str, Any], key: str, spath: tuple[Any, ...]) -> int | None:
        if key not in s:
            return None
        v = s[key]
        if type(v) is float and v.is_integer():
            v = int(v)
        if type(v) is not int or v < 0:
            raise SchemaInvalid(_pointer(spath + (key,)), f"{key} must be a non-negative integer, got {_short(v)}")
        return v

    def _strings(self, s: dict[str, Any], node: _Node, spath: tuple[Any, ...]) -> None:
        lo, hi = self._nonneg(s, "minLength", spath), self._nonneg(s, "maxLength", spath)
        if lo is not None or hi is not None:
            where = spath + ("minLength" if lo is not None else "maxLength",)
            where_hi = spath + ("maxLength",)

            def length(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
                if type(v) is str:
                    if lo is not None and len(v) < lo:
                        raise _Fail(vp, where, f"a string of {len(v)} characters is shorter than {lo}")
                    if hi is not None and len(v) > hi:
                        raise _Fail(vp, where_hi, f"a string of {len(v)} characters is longer than {hi}")
            node.checks.append(length)
        if "pattern" in s:
            pattern = s["pattern"]
            if type(pattern) is not str:
                raise SchemaInvalid(_pointer(spath + ("pattern",)), "pattern must be a string")
            prog = _compile_pattern(pattern, spath + ("pattern",))
            where_p = spath + ("pattern",)

            def match(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
                if type(v) is str:
                    _spend(ctx, len(v) // PATTERN_CHARS_PER_STEP, vp, where_p)
                    if prog.search(v) is None:
                        raise _Fail(vp, where_p, f"{_short(v)} does not match {_short(pattern)}")
            node.checks.append(match)

    def _numbers(self, s: dict[str, Any], node: _Node, spath: tuple[Any, ...]) -> None:
        bounds = []
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if key in s:
                v = s[key]
                if type(v) not in (int, float):
                    raise SchemaInvalid(_pointer(spath + (key,)), f"{key} must be a number, got {_short(v)}")
                if key == "multipleOf" and not v > 0:
                    raise SchemaInvalid(_pointer(spath + (key,)), f"multipleOf must be > 0, got {_short(v)}")
                bounds.append((key, v, spath + (key,)))
        if not bounds:
            return

        def numeric(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
            if type(v) not in (int, float) or (type(v) is float and not math.isfinite(v)):
                return
            for key, b, where in bounds:
                if key == "minimum" and v < b:
                    raise _Fail(vp, where, f"{_short(v)} is less than the minimum {_short(b)}")
                if key == "maximum" and v > b:
                    raise _Fail(vp, where, f"{_short(v)} is more than the maximum {_short(b)}")
                if key == "exclusiveMinimum" and v <= b:
                    raise _Fail(vp, where, f"{_short(v)} is not more than {_short(b)}")
                if key == "exclusiveMaximum" and v >= b:
                    raise _Fail(vp, where, f"{_short(v)} is not less than {_short(b)}")
                if key == "multipleOf" and not _multiple(v, b):
                    raise _Fail(vp, where, f"{_short(v)} is not a multiple of {_short(b)}")
        node.checks.append(numeric)

    def _arrays(self, s: dict[str, Any], node: _Node, spath: tuple[Any, ...]) -> None:
        lo, hi = self._nonneg(s, "minItems", spath), self._nonneg(s, "maxItems", spath)
        unique = s.get("uniqueItems", False)
        if type(unique) is not bool:
            raise SchemaInvalid(_pointer(spath + ("uniqueItems",)), "uniqueItems must be a boolean")
        prefix: list[_Node] = []
        if "prefixItems" in s:
            prefix = self._list(s, "prefixItems", spath)
        items = self.compile(s["items"], spath + ("items",)) if "items" in s else None
        if lo is None and hi is None and not unique and not prefix and items is None:
            return
        w_lo, w_hi, w_u = spath + ("minItems",), spath + ("maxItems",), spath + ("uniqueItems",)

        def array(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
            if type(v) is not list and type(v) is not tuple:
                return
            n = len(v)
            if lo is not None and n < lo:
                raise _Fail(vp, w_lo, f"an array of {n} items has fewer than {lo}")
            if hi is not None and n > hi:
                raise _Fail(vp, w_hi, f"an array of {n} items has more than {hi}")
            for i, sub in enumerate(prefix[:n]):
                _validate(sub, v[i], vp + (i,), ctx, depth + 1)
            if items is not None:
                for i in range(len(prefix), n):
                    _validate(items, v[i], vp + (i,), ctx, depth + 1)
            if unique:
                seen: set[Any] = set()
                for i, x in enumerate(v):
                    key = _key(x, ctx, vp, w_u)
                    if key in seen:
                        raise _Fail(vp + (i,), w_u, "repeats an earlier item (uniqueItems)")
                    seen.add(key)
        node.checks.append(array)

    def _objects(self, s: dict[str, Any], node: _Node, spath: tuple[Any, ...]) -> None:
        lo, hi = self._nonneg(s, "minProperties", spath), self._nonneg(s, "maxProperties", spath)
        props: dict[str, _Node] = {}
        if "properties" in s:
            if type(s["properties"]) is not dict:
                raise SchemaInvalid(_pointer(spath + ("properties",)), "properties must be an object")
            props = {k: self.compile(sub, spath + ("properties", k)) for k, sub in s["properties"].items()}
        required: list[str] = []
        if "required" in s:
            required = s["required"]
            if type(required) is not list or any(type(r) is not str for r in required) \
                    or len(set(required)) != len(required):
                raise SchemaInvalid(_pointer(spath + ("required",)), "required must be an array of distinct strings")
        extra = self.compile(s["additionalProperties"], spath + ("additionalProperties",)) \
            if "additionalProperties" in s else None
        names = self.compile(s["propertyNames"], spath + ("propertyNames",)) if "propertyNames" in s else None
        if lo is None and hi is None and not props and not required and extra is None and names is None:
            return
        w_req, w_lo, w_hi = spath + ("required",), spath + ("minProperties",), spath + ("maxProperties",)

        def obj(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
            if type(v) is not dict:
                return
            n = len(v)
            if lo is not None and n < lo:
                raise _Fail(vp, w_lo, f"an object of {n} properties has fewer than {lo}")
            if hi is not None and n > hi:
                raise _Fail(vp, w_hi, f"an object of {n} properties has more than {hi}")
            for k in v:  # before any lookup: a key that is not a str may hash or compare in its own code
                if type(k) is not str:
                    raise _Fail(vp, spath, f"a key of type {_tname(k)} (JSON object keys are strings)")
            for r in required:
                if r not in v:
                    raise _Fail(vp, w_req, f"the required property {_short(r)} is missing")
            for k, x in v.items():
                sub = props.get(k)
                if sub is not None:
                    _validate(sub, x, vp + (k,), ctx, depth + 1)
                elif extra is not None:
                    _validate(extra, x, vp + (k,), ctx, depth + 1)
                if names is not None:
                    _validate(names, k, vp + (k,), ctx, depth + 1)
        node.checks.append(obj)

    def _list(self, s: dict[str, Any], key: str, spath: tuple[Any, ...]) -> list[_Node]:
        subs = s[key]
        if type(subs) is not list or not subs:
            raise SchemaInvalid(_pointer(spath + (key,)), f"{key} must be a non-empty array of schemas")
        return [self.compile(sub, spath + (key, i)) for i, sub in enumerate(subs)]

    def _logic(self, s: dict[str, Any], node: _Node, spath: tuple[Any, ...]) -> None:
        for key in ("allOf", "anyOf", "oneOf"):
            if key not in s:
                continue
            subs = self._list(s, key, spath)
            node.in_place.extend(subs)
            node.checks.append(_combinator(key, subs, spath + (key,)))
        if "not" in s:
            neg = self.compile(s["not"], spath + ("not",))
            node.in_place.append(neg)
            where = spath + ("not",)

            def not_check(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
                if _holds(neg, v, vp, ctx, depth):
                    raise _Fail(vp, where, "matches the schema under not")
            node.checks.append(not_check)
        if "if" in s:
            cond = self.compile(s["if"], spath + ("if",))
            then = self.compile(s["then"], spath + ("then",)) if "then" in s else None
            other = self.compile(s["else"], spath + ("else",)) if "else" in s else None
            node.in_place.extend(n for n in (cond, then, other) if n is not None)

            def if_check(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
                branch = then if _holds(cond, v, vp, ctx, depth) else other
                if branch is not None:
                    _validate(branch, v, vp, ctx, depth + 1)
            node.checks.append(if_check)
        else:
            for key in ("then", "else"):  # without `if` they do nothing, but must still be schemas
                if key in s:
                    self.compile(s[key], spath + (key,))

    def _ref_check(self, ref: str, where: tuple[Any, ...]) -> Callable[[Any, tuple[Any, ...], _Ctx, int], None]:
        defs = self.defs

        def follow(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
            _validate(defs[ref], v, vp, ctx, depth + 1)
        return follow

    def link(self, root: _Node) -> None:
        """Resolve every $ref; refuse a dangling one and a cycle that never descends."""
        self.defs["#"] = root
        for ref, where in self.pending:
            if ref not in self.defs:
                raise SchemaInvalid(_pointer(where), f"$ref {_short(ref)} names no entry of $defs")
        # in-place reachability between refs: a cycle that applies to the same value forever.
        # Each definition's in-place subtree is walked once (the subtrees are disjoint), then
        # one iterative depth-first search over the ref graph: linear in the schema's size.
        edges: dict[str, list[str]] = {}
        for name, n in self.defs.items():
            out: list[str] = []
            stack = [n]
            while stack:
                cur = stack.pop()
                out.extend(cur.refs)
                stack.extend(cur.in_place)
            edges[name] = out
        state: dict[str, int] = {}  # 1: on the current path, 2: done (no cycle through it)
        for start in edges:
            if start in state:
                continue
            state[start] = 1
            path: list[tuple[str, int]] = [(start, 0)]
            while path:
                name, i = path[-1]
                targets = edges.get(name, ())
                if i == len(targets):
                    state[name] = 2
                    path.pop()
                    continue
                path[-1] = (name, i + 1)
                ref = targets[i]
                seen = state.get(ref)
                if seen == 1:
                    raise SchemaInvalid("", f"$ref {_short(ref)} refers back to itself without descending "
                                            f"into the message (it would never end)")
                if seen is None:
                    state[ref] = 1
                    path.append((ref, 0))


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


class Schema:
    """A compiled schema. `validate(value)` raises `Violation` or returns None."""

    __slots__ = ("_root", "digest", "source")

    def __init__(self, root: _Node, digest: str, source: Any) -> None:
        self._root = root
        self.digest = digest
        self.source = source

    def validate(self, value: Any) -> None:
        try:
            _validate(self._root, value, (), _Ctx(), 0)
        except _Fail as f:
            raise Violation(_bounded(_pointer(f.vpath)), _bounded(_pointer(f.spath)), f.why) from None
        except RecursionError:  # defence in depth; the limits above keep far from it
            raise Violation("", "", "the message nests too deeply to check") from None


def compile_schema(schema: Any) -> Schema:
    """Check `schema` (bounded, see the module doc) and compile it; `SchemaInvalid` if refused."""
    _check_plain_json(schema)
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    comp = _Compiler(schema)
    root = comp.compile(schema, ())
    comp.link(root)
    return Schema(root, hashlib.sha256(text.encode()).hexdigest(), json.loads(text))


__all__ = ["MAX_SCHEMA_DEPTH", "MAX_SCHEMA_NODES", "MAX_STEPS", "MAX_VALIDATION_DEPTH", "Schema", "SchemaInvalid",
           "Violation", "compile_schema"]
