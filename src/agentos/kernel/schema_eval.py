"""Evaluating a compiled typed-pipe schema against a message: the bounded walk.

A compiled schema (schema.py) is a tree of `_Node`s, each a list of checks; a check is a
closure `check(value, value_path, ctx, depth)` that returns when the value passes and
raises `_Fail` otherwise. Every (node, value) visit spends one step of the message's
budget (`MAX_STEPS`), and nested validations deeper than `MAX_VALIDATION_DEPTH` are
refused, so a check ends in bounded time and far from Python's recursion limit. A failure
that is about cost (`fatal`) cannot be swallowed by `anyOf`, `oneOf`, `not` or `if`.
Paths are kept as tuples and rendered as JSON pointers only once, on failure.
"""
from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any, Callable

MAX_STEPS = 100_000          # (schema node, value) visits per message
MAX_VALIDATION_DEPTH = 128   # nested validations (only $ref can make this exceed the schema's depth)
PATTERN_CHARS_PER_STEP = 64  # a pattern match over n characters costs n // 64 steps

class Violation(Exception):
    """A value fails the schema (or costs too much to check). Paths are JSON pointers."""

    def __init__(self, path: str, schema_path: str, why: str) -> None:
        super().__init__(f"at {path or '/'} (schema {schema_path or '/'}): {why}")
        self.path = path
        self.schema_path = schema_path
        self.why = why


class _Fail(Exception):
    """Internal: carries the reversed path pieces up the stack, rendered only once."""

    __slots__ = ("vpath", "spath", "why", "fatal")

    def __init__(self, vpath: tuple[Any, ...], spath: tuple[Any, ...], why: str, fatal: bool = False) -> None:
        self.vpath = vpath
        self.spath = spath
        self.why = why
        self.fatal = fatal  # too costly: no anyOf/not may swallow it


def _pointer(parts: tuple[Any, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _short(v: Any, limit: int = 60) -> str:
    """`v` as JSON for a message, at most `limit` characters. Bounded work too: it stops
    once past `limit` (a 50 MB value costs what its first characters do) and renders only
    built-in JSON types, so no value's own code runs."""
    out: list[str] = []
    size = 0

    def emit(text: str) -> None:
        nonlocal size
        out.append(text)
        size += len(text)
        if size > limit:
            raise _Enough

    def walk(x: Any, depth: int) -> None:
        t = type(x)
        if x is None or t is bool or t is float:
            emit(json.dumps(x))
        elif t is int:
            emit(str(x) if x.bit_length() <= 256 else f"<integer of {x.bit_length()} bits>")
        elif t is str:
            emit(json.dumps(x[: limit + 1], ensure_ascii=True))
        elif depth >= 16:
            emit("...")
        elif t is list or t is tuple:
            emit("[")
            for i, y in enumerate(x):
                if i:
                    emit(", ")
                walk(y, depth + 1)
            emit("]")
        elif t is dict:
            emit("{")
            for i, (k, y) in enumerate(x.items()):
                if i:
                    emit(", ")
                walk(k if type(k) is str else _tname(k), depth + 1)
                emit(": ")
                walk(y, depth + 1)
            emit("}")
        else:
            emit(f"<{_tname(x)}>")

    try:
        walk(v, 0)
    except _Enough:
        pass
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Enough(Exception):
    """Internal: `_short` has rendered enough."""


_NAME = type.__dict__["__name__"].__get__


def _tname(v: Any) -> str:
    """The name of `v`'s type, bounded (a class's name is its author's text); read from the
    type's own slot, so no metaclass code runs."""
    n = _NAME(type(v))
    return n if len(n) <= 60 else n[:57] + "..."


def _bounded(pointer: str, limit: int = 300) -> str:
    """A JSON pointer for a message: its tail (the failing part) if it is long."""
    return pointer if len(pointer) <= limit else "..." + pointer[-(limit - 3):]


class _Node:
    """One compiled schema object: the checks that apply, in cheap-first order."""

    __slots__ = ("spath", "checks", "always", "refs", "in_place")

    def __init__(self, spath: tuple[Any, ...]) -> None:
        self.spath = spath
        self.checks: list[Callable[[Any, tuple[Any, ...], "_Ctx", int], None]] = []
        self.always: bool | None = None  # a boolean schema: True accepts all, False none
        self.refs: list[str] = []        # $ref targets applied to the same value (cycle check)
        self.in_place: list[_Node] = []  # subschemas applied to the same value


class _Ctx:
    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps = 0


def _combinator(key: str, subs: list[_Node], where: tuple[Any, ...]) -> Callable[[Any, tuple[Any, ...], _Ctx, int], None]:
    if key == "allOf":
        def all_of(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
            for sub in subs:
                _validate(sub, v, vp, ctx, depth + 1)
        return all_of

    if key == "anyOf":
        def any_of(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
            first: _Fail | None = None
            for sub in subs:
                try:
                    _validate(sub, v, vp, ctx, depth + 1)
                    return
                except _Fail as f:
                    if f.fatal:
                        raise
                    first = first or f
            assert first is not None
            raise _Fail(vp, where, f"matches no branch of anyOf (branch 0: {first.why})")
        return any_of

    def one_of(v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
        matched = [i for i, sub in enumerate(subs) if _holds(sub, v, vp, ctx, depth)]
        if len(matched) != 1:
            raise _Fail(vp, where, f"matches {len(matched)} branches of oneOf ({matched[:5]}), not exactly one")
    return one_of


# -- validation ---------------------------------------------------------------------------

def _spend(ctx: _Ctx, n: int, vp: tuple[Any, ...], where: tuple[Any, ...]) -> None:
    ctx.steps += n
    if ctx.steps > MAX_STEPS:
        raise _Fail(vp, where, f"checking this message takes more than {MAX_STEPS} steps (too large for "
                               f"the schema)", fatal=True)


def _validate(node: _Node, v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> None:
    ctx.steps += 1
    if ctx.steps > MAX_STEPS:
        _spend(ctx, 0, vp, node.spath)
    if depth > MAX_VALIDATION_DEPTH:
        raise _Fail(vp, node.spath, f"validation nests deeper than {MAX_VALIDATION_DEPTH} levels", fatal=True)
    if node.always is not None:
        if not node.always:
            raise _Fail(vp, node.spath, "the schema is false: nothing is allowed here")
        return
    for check in node.checks:
        check(v, vp, ctx, depth)


def _holds(node: _Node, v: Any, vp: tuple[Any, ...], ctx: _Ctx, depth: int) -> bool:
    try:
        _validate(node, v, vp, ctx, depth + 1)
        return True
    except _Fail as f:
        if f.fatal:
            raise
        return False


def _types_of(v: Any) -> frozenset[str]:
    t = type(v)
    if v is None:
        return _T_NULL
    if t is bool:
        return _T_BOOL
    if t is int:
        return _T_INT
    if t is float:
        if not math.isfinite(v):
            return _T_NONE
        return _T_INT if v.is_integer() else _T_NUM
    if t is str:
        return _T_STR
    if t is list or t is tuple:
        return _T_ARR
    if t is dict:
        return _T_OBJ
    return _T_NONE


_T_NULL, _T_BOOL, _T_STR = frozenset({"null"}), frozenset({"boolean"}), frozenset({"string"})
_T_INT, _T_NUM = frozenset({"integer", "number"}), frozenset({"number"})
_T_ARR, _T_OBJ = frozenset({"array"}), frozenset({"object"})
_T_NONE: frozenset[str] = frozenset()


def _kind(v: Any) -> str:
    types = _types_of(v)
    if not types:
        return f"{_tname(v)} (no JSON type)" if not (type(v) is float) else f"{v!r} (no JSON number)"
    return "integer" if "integer" in types else next(iter(types))


def _multiple(v: int | float, b: int | float) -> bool:
    """Whether `v` is a multiple of `b` (> 0). Two ints: exactly. With a float: by float
    division as JSON Schema validators do, and exactly (fractions) where the float
    quotient overflows (an integer of 10**400 against 0.5 is a multiple, not an error)."""
    if type(v) is int and type(b) is int:
        return v % b == 0
    try:
        q = v / b
        return int(q) == q
    except (OverflowError, ValueError):
        return (Fraction(v) / Fraction(b)).denominator == 1


def _equal(a: Any, b: Any, ctx: _Ctx) -> bool:
    """JSON equality: 1 == 1.0, True != 1, a tuple equals a list with the same items."""
    ctx.steps += 1
    if ctx.steps > MAX_STEPS:
        raise _Fail((), (), f"checking this message takes more than {MAX_STEPS} steps", fatal=True)
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta in (list, tuple) and tb in (list, tuple):
        return len(a) == len(b) and all(_equal(x, y, ctx) for x, y in zip(a, b))
    if ta is dict and tb is dict:  # keys that are not str never equal a JSON object's (nor run their __eq__)
        return (len(a) == len(b) and all(type(k) is str for k in a) and a.keys() == b.keys()
                and all(_equal(a[k], b[k], ctx) for k in a))
    if (ta in (int, float)) and (tb in (int, float)):
        return a == b
    if ta is str and tb is str:
        return a == b
    return a is None and b is None


def _key(v: Any, ctx: _Ctx, vp: tuple[Any, ...], where: tuple[Any, ...]) -> Any:
    """A hashable form under which JSON-equal values are equal (for uniqueItems)."""
    _spend(ctx, 1, vp, where)
    t = type(v)
    if t is bool:
        return ("b", v)
    if t is int or t is float:
        return ("n", v)  # 1 == 1.0 and hash(1) == hash(1.0)
    if t is str:
        return ("s", v)
    if t is list or t is tuple:
        return ("a", tuple(_key(x, ctx, vp, where) for x in v))
    if t is dict:
        if not all(type(k) is str for k in v):  # no JSON object: hashing its keys would run their code
            return ("?", id(v))
        return ("o", frozenset((k, _key(x, ctx, vp, where)) for k, x in v.items()))
    if v is None:
        return ("z",)
    return ("?", id(v))  # no JSON type: never equal to another item
