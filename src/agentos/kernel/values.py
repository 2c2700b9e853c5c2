"""Values that enter through a syscall: checked for encodability where they enter.

A message body, a log field, spawn args, a device payload, a file's data, a policy
query's args and a remembered body all end up in the event log and the journal, which
render them in canonical form (`events.canonical`). A value that form cannot hold must
be the caller's `BadArgument` at the syscall, never a crash of `kernel.run` later when a
recording store encodes the batch. `canonical_checked` builds the canonical form under
the same rules as `events.canonical` and refuses, naming the argument and the reason:

- a cycle (a container that contains itself);
- nesting deeper than `MAX_DEPTH` (1,000) containers;
- a lone surrogate in a string or a dict key (it cannot be written as UTF-8);
- an integer too long to print as decimal;
- an object whose conversion raises (its `str`, a dataclass field, `_asdict`).

Everything else encodes. `checked` is the syscall-side entry point: scalars, the common
case of IPC, return at once; only containers and other objects pay for the walk.
Invariant: for every value `checked` accepts, `events.canonical` and the event and journal
encoders produce the same form and do not raise.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any

from ..abi.errors import BadArgument
from .events import _FIELDS, deep

MAX_DEPTH = 1000
"""Containers nested deeper than this are refused."""
MAX_INT_BITS = 13_000
"""Integers longer than this do not print as decimal under CPython's default digit limit."""


class Unencodable(Exception):
    """Raised inside the walk; turned into a BadArgument naming the argument."""


def checked(what: str, value: Any) -> Any:
    """`value` unchanged if it can be encoded; otherwise `BadArgument` naming `what`.
    Scalars and flat tuples or lists of them (most messages) are checked without a walk."""
    t = type(value)
    if value is None or t is bool or t is float:
        return value
    if t is int:
        if value.bit_length() > MAX_INT_BITS:
            raise BadArgument(f"{what}: an integer of {value.bit_length()} bits cannot be encoded")
        return value
    if t is str:
        if not value.isascii():
            _text(what, value)
        return value
    if (t is tuple or t is list) and _flat(value):
        return value
    names = _FIELDS.get(t)
    if names is not None and _flat_fields(value, names):  # a dataclass seen before (a Message)
        return value
    canonical_checked(what, value)
    return value


def _flat_fields(value: Any, names: tuple[str, ...]) -> bool:
    try:
        for n in names:
            x = getattr(value, n)
            tx = type(x)
            if not (x is None or tx is bool or tx is float or (tx is int and x.bit_length() <= MAX_INT_BITS)
                    or (tx is str and x.isascii()) or ((tx is tuple or tx is list) and _flat(x))):
                return False
    except BaseException:  # a hostile property: the walk says what is wrong
        return False
    return True


def _flat(value: Any) -> bool:
    """A short tuple or list of plain scalars: encodable without a walk."""
    if len(value) > 16:
        return False
    for x in value:
        tx = type(x)
        if not (x is None or tx is bool or tx is float or (tx is int and x.bit_length() <= MAX_INT_BITS)
                or (tx is str and x.isascii())):
            return False
    return True


def canonical_checked(what: str, value: Any) -> Any:
    """The canonical form of `value` (as `events.canonical` renders it), or `BadArgument`."""
    try:
        try:
            return _Walk().value(value, 0)
        except RecursionError:  # deep but maybe within MAX_DEPTH: again with room for it
            return deep(_Walk().value, value, 0)
    except Unencodable as e:
        raise BadArgument(f"{what}: {e}") from None


def _text(what: str, s: str) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadArgument(f"{what}: a string holds a lone surrogate at index {e.start} "
                          f"(it cannot be encoded as UTF-8)") from None
    return s


def _type_name(v: Any) -> str:
    try:
        n = type(v).__qualname__
        return n if isinstance(n, str) else "?"
    except Exception:
        return "?"


class _Walk:
    """One pass: renders like `events.canonical`, and checks as it goes."""

    __slots__ = ("path",)

    def __init__(self) -> None:
        self.path: set[int] = set()   # ids of the containers being walked

    def text(self, s: str) -> str:
        if not s.isascii():
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as e:
                raise Unencodable(f"a string holds a lone surrogate at index {e.start} "
                                  f"(it cannot be encoded as UTF-8)") from None
        return s

    def value(self, obj: Any, depth: int) -> Any:
        t = type(obj)
        if obj is None or t is bool:
            return obj
        if t is str:
            return self.text(obj)
        if t is int:
            if obj.bit_length() > MAX_INT_BITS:
                raise Unencodable(f"an integer of {obj.bit_length()} bits cannot be encoded")
            return obj
        if t is float:
            return obj if obj == obj and obj not in (float("inf"), float("-inf")) else repr(obj)
        if depth >= MAX_DEPTH:
            raise Unencodable(f"nesting is deeper than {MAX_DEPTH} levels")
        names = _FIELDS.get(t)
        try:
            if names is not None:  # a dataclass seen before (Message, Down, ...): its fields
                key = self.enter(obj)
                rendered: dict[str, Any] = {"@": t.__name__}
                d = depth + 1
                for n in names:
                    rendered[n] = self.value(getattr(obj, n), d)
                self.path.discard(key)
                return rendered
            return self.other(obj, t, depth)
        except (Unencodable, RecursionError):
            raise
        except BaseException as e:  # a hostile __str__, __iter__, property, __eq__ ...: whatever
            # its class (KeyboardInterrupt, SystemExit included) it came from the value's own
            # code; a real Ctrl-C reaches a running kernel through its signal handler
            raise Unencodable(f"converting a {_type_name(obj)} raised {_type_name(e)}") from None

    def enter(self, obj: Any) -> int:
        key = id(obj)
        if key in self.path:
            raise Unencodable(f"a {_type_name(obj)} contains itself (a cycle)")
        self.path.add(key)
        return key

    def other(self, obj: Any, t: type, depth: int) -> Any:
        # the same order of cases as events.canonical and its slow path
        d = depth + 1
        if t is dict:
            return self.mapping(obj, d)
        if t is list or t is tuple:
            return self.items(obj, d)
        if isinstance(obj, enum.Enum):
            return obj.name if isinstance(obj, enum.IntEnum) else self.value(obj.value, d)
        if isinstance(obj, bool):
            return bool(obj)
        if isinstance(obj, str):
            return self.text(str.__str__(obj))
        if isinstance(obj, int):
            return self.value(int.__index__(obj), depth)
        if isinstance(obj, float):
            return self.value(float.__float__(obj), depth)
        if isinstance(obj, (list, tuple)):
            return self.items(obj, d)
        if isinstance(obj, dict):
            return self.mapping(obj, d)
        if isinstance(obj, (set, frozenset)):
            key = self.enter(obj)
            items = [self.value(x, d) for x in list(obj)]
            self.path.discard(key)
            return sorted(items, key=repr)
        if isinstance(obj, bytes):
            return {"bytes": obj.hex()}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            _FIELDS[t] = tuple(f.name for f in dataclasses.fields(obj))
            return self.value(obj, depth)
        if callable(obj):
            q = getattr(obj, "__qualname__", None)
            return {"callable": self.text(q) if isinstance(q, str) else _type_name(obj)}
        if hasattr(obj, "_asdict"):
            key = self.enter(obj)
            r = self.value(obj._asdict(), depth)
            self.path.discard(key)
            return r
        s = str(obj)
        if type(s) is not str:
            raise Unencodable(f"str() of a {_type_name(obj)} returned {_type_name(s)}")
        if " at 0x" in s:
            return {"object": _type_name(obj)}
        return {"object": _type_name(obj), "str": self.text(s)}

    def mapping(self, obj: Any, d: int) -> dict[str, Any]:
        key = self.enter(obj)
        out: dict[str, Any] = {}
        for k, v in list(obj.items()):
            out[self.text(k) if type(k) is str else self.text(self.key(k))] = self.value(v, d)
        self.path.discard(key)
        return out

    def items(self, obj: Any, d: int) -> list[Any]:
        key = self.enter(obj)
        out = []
        for x in obj:
            out.append(self.value(x, d))
        self.path.discard(key)
        return out

    def key(self, k: Any) -> str:
        s = str(k)
        if type(s) is not str:
            raise Unencodable(f"str() of a dict key of type {_type_name(k)} returned {_type_name(s)}")
        return s


__all__ = ["MAX_DEPTH", "Unencodable", "canonical_checked", "checked"]
