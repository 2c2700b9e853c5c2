"""The canonical encoder: one walk over a value for the event log, the journal and the audit.

Everything a run keeps (an event's data, a journal entry's request, a flight-recorder
record) is rendered by the `Walk` below, in one of two dialects that share its dispatch,
its cycle and depth tracking and its handling of hostile objects:

- the *log* dialect (`canonical`, `checked`, `canonical_checked`): JSON types as they are,
  dataclasses as `{"@": name, field: ...}`, bytes as hex, sets sorted, callables and other
  objects by name. In checking mode the walk refuses, in the same pass that builds the form,
  what it cannot hold: a cycle, nesting deeper than `MAX_DEPTH` (1,000), a lone surrogate,
  an integer too long to print, an object whose conversion raises (`Unencodable`, turned
  into the caller's `BadArgument` by `checked`). Events and journal entries are written
  with `dumps_canonical` (sorted keys, UTF-8).
- the *audit* dialect (`AuditWalk`, `audit_encode`): total (never raises), ASCII, bounded
  (depth, node count, string and record size cut with a SHA-256 of what was cut), every
  special value tagged with a "$" key that a value's own keys cannot forge.

The two dialects keep the bytes each has always written, so recordings and audit logs made
before this module still replay and verify. Invariant: for every value `checked` accepts,
`canonical` builds the same form and `dumps_canonical` of it does not raise.
"""
from __future__ import annotations

import abc
import base64
import dataclasses
import enum
import hashlib
import json
import math
import re
import sys
import typing
from typing import Any, Callable

MAX_DEPTH = 1000
"""Containers nested deeper than this are refused at a syscall."""
MAX_INT_BITS = 13_000
"""Integers longer than this do not print as decimal under CPython's default digit limit."""

_FIELDS: dict[type, tuple[str, ...]] = {}   # dataclass type -> field names (fields() is slow)


class Unencodable(Exception):
    """Raised inside a checking walk; `checked` turns it into a BadArgument naming the argument.

    `error` is the name of the exception the log's writers have always tagged such a value
    with (`total`): a cycle is a "RecursionError" however deep the stack was when it was
    found, so a live run and its replay write the same tag."""

    def __init__(self, message: str, error: str = "ValueError") -> None:
        super().__init__(message)
        self.error = error


def _type_name(v: Any) -> str:
    """The name of `v`'s type for a message: bounded (a class's name is the caller's text)."""
    try:
        n = _QUALNAME(type(v))  # the type's own slot: a metaclass's property never runs
        if type(n) is not str:
            return "?"
        return n if len(n) <= 100 else "..." + n[-97:]  # the end names the class itself
    except Exception:
        return "?"


_QUALNAME = type.__dict__["__qualname__"].__get__


_METAS: tuple[type, ...] = tuple(m for m in (type, enum.EnumMeta, abc.ABCMeta,
                                              getattr(typing, "_ProtocolMeta", None)) if m is not None)
"""Metaclasses a checking walk accepts: any other one may define `__hash__`/`__eq__` for
the value's class, which looking the class up would run."""
_CONTAINERS = (list, tuple, dict, set, frozenset)
"""Built-in containers whose subclasses a checking walk refuses: walking one runs the
subclass's own `__iter__`, `__len__`, `items` (which may never return) in the kernel."""
_TRUSTED: set[type] = set()
"""Container subclasses the kernel itself defines (named tuples such as a bus message)
and the standard library's plain dict variants: walked as their base type is."""


def trust(t: type) -> type:
    """Let a checking walk carry instances of the kernel's own container subclass `t`
    (a NamedTuple the kernel hands to processes, which they may send on). Returns `t`."""
    _TRUSTED.add(t)
    return t


def _trust_stdlib() -> None:
    import collections

    for t in (collections.OrderedDict, collections.defaultdict, collections.Counter):
        _TRUSTED.add(t)


_trust_stdlib()


def _c_dumps(ascii_only: bool) -> Callable[[Any], str]:
    """json.dumps(obj, separators=(",", ":"), sort_keys=True) with the C encoder built once
    (a canonical tree is acyclic: no marker checks). ASCII: lone surrogates are escaped and
    NaN is refused; otherwise UTF-8 text as it is."""
    from json import encoder as _enc

    make = getattr(_enc, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return lambda obj: json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=ascii_only,
                                      allow_nan=not ascii_only)
    esc = _enc.encode_basestring_ascii if ascii_only else _enc.encode_basestring
    c = make(None, None, esc, None, ":", ",", True, False, not ascii_only)
    join = "".join
    return lambda obj: join(c(obj, 0))


dumps_canonical = _c_dumps(ascii_only=False)
"""Compact sorted-key JSON of a canonical form (events and journal)."""
dumps_ascii = _c_dumps(ascii_only=True)
"""Compact sorted-key ASCII JSON (the audit dialect)."""


# -- the walk ------------------------------------------------------------------------------

class Walk:
    """One pass over a value in the log dialect: renders and checks as it goes.

    Subclasses (the audit dialect) keep the dispatch, the cycle tracking and the guard
    around hostile objects, and override the renderings: `text`, `integer`, `real`,
    `too_deep`, `cycle`, `raised`, `other`."""

    __slots__ = ("path",)

    def __init__(self) -> None:
        self.path: set[int] = set()   # ids of the containers being walked

    def value(self, obj: Any, depth: int) -> Any:
        t = type(obj)
        if obj is None or t is bool:
            return obj
        if t is str:
            return self.text(obj)
        if t is int:
            return self.integer(obj)
        if t is float:
            return self.real(obj)
        if depth >= self.max_depth:
            return self.too_deep(obj)
        if self.strict and type(t) not in _METAS:  # hashing its class (below) would run its code
            raise Unencodable(f"a {_type_name(obj)} has its own metaclass: only built-in data and plain "
                              f"classes are carried", "TypeError")
        try:
            names = _FIELDS.get(t) if self.by_fields else None
            if names is not None:  # a dataclass seen before (Message, Down, ...): its fields
                return self.fields(obj, t, names, depth)
            return self.other(obj, t, depth)  # (no frame between: 3 frames a level, see deep)
        except (Unencodable, RecursionError):
            raise
        except BaseException as e:  # a hostile __str__, __iter__, property, __eq__ ...: whatever
            # its class (KeyboardInterrupt, SystemExit included) it came from the value's own
            # code; a real Ctrl-C reaches a running kernel through its signal handler
            return self.raised(obj, e)

    max_depth = MAX_DEPTH
    by_fields = True   # dataclasses seen before render from their cached field names
    strict = False     # checking mode (CheckWalk): refuse what would run a value's own code

    # renderings of the log dialect ------------------------------------------------------
    def text(self, s: str) -> Any:
        if not s.isascii():
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as e:
                raise Unencodable(f"a string holds a lone surrogate at index {e.start} "
                                  f"(it cannot be encoded as UTF-8)", "UnicodeEncodeError") from None
        return s

    def integer(self, i: int) -> Any:
        if i.bit_length() > MAX_INT_BITS:
            raise Unencodable(f"an integer of {i.bit_length()} bits cannot be encoded", "ValueError")
        return i

    def real(self, f: float) -> Any:
        return f if f == f and f not in (math.inf, -math.inf) else repr(f)

    def too_deep(self, obj: Any) -> Any:
        raise Unencodable(f"nesting is deeper than {MAX_DEPTH} levels", "RecursionError")

    def cycle(self, obj: Any) -> Any:
        raise Unencodable(f"a {_type_name(obj)} contains itself (a cycle)", "RecursionError")

    def raised(self, obj: Any, e: BaseException) -> Any:
        raise Unencodable(f"converting a {_type_name(obj)} raised {_type_name(e)}", _type_name(e)) from None

    # the shared structure ---------------------------------------------------------------
    def enter(self, obj: Any) -> int | None:
        """Mark a container as being walked; None if it already is (a cycle)."""
        key = id(obj)
        if key in self.path:
            return None
        self.path.add(key)
        return key

    def fields(self, obj: Any, t: type, names: tuple[str, ...], depth: int) -> Any:
        key = self.enter(obj)
        if key is None:
            return self.cycle(obj)
        rendered: dict[str, Any] = {"@": t.__name__}
        d = depth + 1
        for n in names:
            rendered[n] = self.value(getattr(obj, n), d)
        self.path.discard(key)
        return rendered

    def items(self, obj: Any, d: int) -> Any:
        key = self.enter(obj)
        if key is None:
            return self.cycle(obj)
        out = []
        for x in obj:
            out.append(self.value(x, d))
        self.path.discard(key)
        return out

    def mapping(self, obj: Any, d: int) -> Any:
        key = self.enter(obj)
        if key is None:
            return self.cycle(obj)
        out: dict[str, Any] = {}
        for k, v in list(obj.items()):
            out[self.text(k) if type(k) is str else self.text(self.key(k, d))] = self.value(v, d)
        self.path.discard(key)
        return out

    def key(self, k: Any, depth: int = 0) -> str:
        s = str(k)
        if type(s) is not str:
            raise Unencodable(f"str() of a dict key of type {_type_name(k)} returned {_type_name(s)}", "TypeError")
        return s

    def other(self, obj: Any, t: type, depth: int) -> Any:
        d = depth + 1
        if t is dict:
            return self.mapping(obj, d)
        if t is list or t is tuple:
            return self.items(obj, d)
        if t is not set and t is not frozenset and issubclass(t, _CONTAINERS) and not issubclass(t, enum.Enum):
            if self.strict and t not in _TRUSTED:  # (inline, not an override: frames per level are counted)
                _refuse_subclass(obj, t)
            key = self.enter(obj)  # walked as its base type's data: the subclass's own code never runs
            if key is None:
                return self.cycle(obj)
            r = self.value(_as_base(obj, t), depth)
            self.path.discard(key)
            return r
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
            if key is None:
                return self.cycle(obj)
            items = [self.value(x, d) for x in list(obj)]
            self.path.discard(key)
            return sorted(items, key=repr)
        if isinstance(obj, bytes):
            return {"bytes": bytes.hex(obj)}  # the base method: a subclass's own never runs
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            _FIELDS[t] = tuple(f.name for f in dataclasses.fields(obj))
            return self.value(obj, depth)
        if callable(obj):
            q = getattr(obj, "__qualname__", None)
            return {"callable": self.text(q) if isinstance(q, str) else _type_name(obj)}
        if hasattr(obj, "_asdict"):
            key = self.enter(obj)
            if key is None:
                return self.cycle(obj)
            r = self.value(obj._asdict(), depth)
            self.path.discard(key)
            return r
        s = str(obj)
        if type(s) is not str:
            raise Unencodable(f"str() of a {_type_name(obj)} returned {_type_name(s)}", "TypeError")
        if " at 0x" in s:  # a default object repr carries an address: not reproducible
            return {"object": _type_name(obj)}
        return {"object": _type_name(obj), "str": self.text(s)}


class CheckWalk(Walk):
    """The log dialect's walk in checking mode (a syscall's argument): it builds the same
    form as `Walk`, and refuses a subclass of a built-in container before running any of
    its code. Scalar subclasses (a `str`, `int`, `float` or `bytes` subclass, such as
    numpy's) are read through the base type's own methods, so theirs never run either."""

    __slots__ = ()
    strict = True

    def key(self, k: Any, depth: int = 0) -> str:
        tk = type(k)
        if (tk is int and k.bit_length() <= MAX_INT_BITS) or tk is float or tk is bool or k is None:
            return str(k)
        self.value(k, depth)  # refuses a hostile key (and a huge int) before str() runs its code
        return Walk.key(self, k, depth)


def _as_base(obj: Any, t: type) -> Any:
    """A container subclass's data as its built-in base type, read by the base type's own
    methods (a subclass's `__iter__`, `items` or `__len__` never run)."""
    if issubclass(t, dict):
        return dict(dict.items(obj))
    if issubclass(t, list):
        return list(list.__iter__(obj))
    if issubclass(t, tuple):
        return tuple(tuple.__iter__(obj))
    if issubclass(t, frozenset):
        return frozenset(frozenset.__iter__(obj))
    return set(set.__iter__(obj))


def _refuse_subclass(obj: Any, t: type) -> None:
    """Raise `Unencodable` for a subclass of a built-in container, naming it."""
    base = next((b for b in _CONTAINERS if issubclass(t, b)), object)
    if base in (set, frozenset) and t in (set, frozenset):
        return
    raise Unencodable(f"a {_type_name(obj)} is a subclass of {base.__name__}: only built-in data is "
                      f"carried (a subclass's own methods would run in the kernel)", "TypeError")


def canonical(obj: Any) -> Any:
    """The log dialect's form of `obj` (JSON-ready, deterministic). Raises `Unencodable` or
    `RecursionError` for what that form cannot hold; the event and journal encoders turn
    that into a tag (`total`), a syscall into a `BadArgument` (`checked`)."""
    t = type(obj)  # exact-type fast paths first: this runs for every recorded event
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is float:
        return obj if obj == obj and obj not in (math.inf, -math.inf) else repr(obj)
    # (a scalar member is taken as it is, without a call: most of what a run logs is flat)
    if t is dict:
        return {k if type(k) is str else str(k): v if type(v) in _AS_IS else canonical(v) for k, v in obj.items()}
    if t is list or t is tuple:
        return [x if type(x) in _AS_IS else canonical(x) for x in obj]
    names = _FIELDS.get(t)
    if names is not None:
        out: dict[str, Any] = {"@": t.__name__}
        for n in names:
            v = getattr(obj, n)
            out[n] = v if type(v) in _AS_IS else canonical(v)
        return out
    return Walk().value(obj, 0)


_AS_IS = frozenset({str, int, bool, type(None)})
"""Types `canonical` renders as themselves (a float may be NaN: it goes through the call)."""


# -- checking at the syscall boundary ------------------------------------------------------

def checked(what: str, value: Any) -> Any:
    """`value` unchanged if it can be encoded; otherwise `BadArgument` naming `what`.
    Scalars and flat tuples or lists of them (most messages) are checked without a walk."""
    t = type(value)
    if value is None or t is bool or t is float:
        return value
    if t is int:
        if value.bit_length() > MAX_INT_BITS:
            from ..abi.errors import BadArgument
            raise BadArgument(f"{what}: an integer of {value.bit_length()} bits cannot be encoded")
        return value
    if t is str:
        if not value.isascii():
            _text(what, value)
        return value
    if (t is tuple or t is list) and _flat(value):
        return value
    if t is dict and _flat_dict(value):  # a driver request, a message of named scalars
        return value
    if type(t) not in _METAS:  # its class's own __hash__ would run in the lookup below
        canonical_checked(what, value)
    names = _FIELDS.get(t)
    if names is not None and _flat_fields(value, names):  # a dataclass seen before (a Message)
        return value
    canonical_checked(what, value)
    return value


_GETTERS: dict[type, Callable[[Any], Any]] = {}   # dataclass type -> all its fields in one C call


def _getter(names: tuple[str, ...]) -> Callable[[Any], Any]:
    """A function returning the tuple of the named attributes (one C call for two or more)."""
    import operator

    if len(names) > 1:
        return operator.attrgetter(*names)
    one = [operator.attrgetter(n) for n in names]
    return lambda v: tuple(g(v) for g in one)


def _flat_fields(value: Any, names: tuple[str, ...]) -> bool:
    t = type(value)
    get = _GETTERS.get(t)
    if get is None:
        get = _GETTERS[t] = _getter(names)
    try:
        values = get(value)
    except BaseException:  # a hostile property: the walk says what is wrong
        return False
    for x in values:
        tx = type(x)
        if x is None or tx is bool or tx is float or (tx is str and x.isascii()):
            continue
        if tx is int:
            if x.bit_length() <= MAX_INT_BITS:
                continue
            return False
        if (tx is tuple or tx is list) and (not x or _flat(x)):
            continue
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


def _flat_dict(value: dict[Any, Any]) -> bool:
    """A small dict of ASCII str keys and plain scalars: encodable without a walk."""
    if len(value) > 16:
        return False
    for k, x in value.items():
        if type(k) is not str or not k.isascii():
            return False
        tx = type(x)
        if not (x is None or tx is bool or tx is float or (tx is int and x.bit_length() <= MAX_INT_BITS)
                or (tx is str and x.isascii())):
            return False
    return True


def canonical_checked(what: str, value: Any) -> Any:
    """The canonical form of `value` (as `canonical` renders it), or `BadArgument`."""
    from ..abi.errors import BadArgument

    try:
        try:
            return CheckWalk().value(value, 0)
        except RecursionError:  # deep but maybe within MAX_DEPTH: again with room for it
            return deep(CheckWalk().value, value, 0)
    except Unencodable as e:
        raise BadArgument(f"{what}: {e}") from None


def _text(what: str, s: str) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        from ..abi.errors import BadArgument
        raise BadArgument(f"{what}: a string holds a lone surrogate at index {e.start} "
                          f"(it cannot be encoded as UTF-8)") from None
    return s


STACK_NEEDED = 2 * MAX_DEPTH + 400
"""Frames a canonical rendering of 1,000 nested containers may need."""


def deep(fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` with room for 1,000 nested containers above the caller's own stack."""
    old = sys.getrecursionlimit()
    if old >= STACK_NEEDED + 200:
        return fn(*args)
    sys.setrecursionlimit(old + STACK_NEEDED)
    try:
        return fn(*args)
    finally:
        sys.setrecursionlimit(old)


def total(value: Any, first: BaseException | None = None) -> Any:
    """A canonical, encodable rendering of `value` that never raises: the canonical form
    itself when it can be built (with room for deep nesting), else a tag naming the type of
    the value and of the error."""
    if first is None or isinstance(first, RecursionError):
        try:
            out = deep(canonical, value)
            dumps_canonical(out).encode()
            return out
        except BaseException as e:
            first = e
    try:
        name = type(value).__qualname__
    except BaseException:
        name = "?"
    error = first.error if isinstance(first, Unencodable) else type(first).__name__
    return {"unencodable": name if isinstance(name, str) and name.isascii() else "?", "error": error}


# -- the audit dialect ---------------------------------------------------------------------

AUDIT_MAX_DEPTH = 64
AUDIT_MAX_NODES = 100_000
AUDIT_MAX_STR = 64 * 1024
AUDIT_MAX_TEXT = 1 << 20
AUDIT_MAX_INT_BITS = 8192

_ADDR = re.compile(r" at 0x[0-9a-fA-F]+")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AuditWalk(Walk):
    """The walk in the audit dialect: total, bounded, tagged. Nothing raises out of it."""

    __slots__ = ("nodes",)
    max_depth = AUDIT_MAX_DEPTH
    by_fields = False

    def __init__(self) -> None:
        super().__init__()
        self.nodes = 0

    def value(self, obj: Any, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > AUDIT_MAX_NODES:
            return {"$cut": "nodes"}
        return Walk.value(self, obj, depth)

    def text(self, s: str) -> Any:
        if len(s) <= AUDIT_MAX_STR:
            return s
        return {"$str": s[:AUDIT_MAX_STR], "len": len(s), "sha256": _sha(s.encode("utf-8", "surrogatepass"))}

    def integer(self, i: int) -> Any:
        if i.bit_length() <= AUDIT_MAX_INT_BITS:
            return i
        return {"$int": "cut", "bits": i.bit_length(), "sign": -1 if i < 0 else 1}

    def real(self, f: float) -> Any:
        return f if math.isfinite(f) else {"$float": repr(f)}

    def too_deep(self, obj: Any) -> Any:
        return {"$cut": "depth", "type": _type_name(obj)}

    def cycle(self, obj: Any) -> Any:
        return {"$cycle": _type_name(obj)}

    def raised(self, obj: Any, e: BaseException) -> Any:
        if not isinstance(e, Exception):
            raise e  # only the value's ordinary errors are tagged in this dialect
        return {"$object": _type_name(obj), "error": type(e).__name__}

    def container(self, v: Any, depth: int) -> Any:
        key = self.enter(v)
        if key is None:
            return self.cycle(v)
        try:
            if isinstance(v, dict):
                return self.audit_mapping(v, depth)
            out: list[Any] = []
            for x in v:
                if self.nodes >= AUDIT_MAX_NODES:
                    out.append({"$cut": "nodes"})
                    break
                out.append(self.value(x, depth + 1))
            return out
        finally:
            self.path.discard(key)

    def audit_mapping(self, d: Any, depth: int) -> Any:
        items = list(d.items())
        if all(type(k) is str for k, _ in items):
            out: dict[str, Any] = {}
            for k, x in items:
                if self.nodes >= AUDIT_MAX_NODES:
                    out["$cut"] = "nodes"
                    break
                out[("$" + k) if k.startswith("$") else k] = self.value(x, depth + 1)
            return out
        pairs = []
        for k, x in items:
            if self.nodes >= AUDIT_MAX_NODES:
                pairs.append([{"$cut": "nodes"}, None])
                break
            pairs.append([self.value(k, depth + 1), self.value(x, depth + 1)])
        pairs.sort(key=lambda p: dumps_ascii(p[0]))
        return {"$dict": pairs}

    def other(self, v: Any, t: type, depth: int) -> Any:
        if t is dict or t is list or t is tuple:
            return self.container(v, depth)
        try:
            if isinstance(v, bool):
                return bool(v)
            if isinstance(v, enum.Enum):
                return {"$enum": f"{_type_name(v)}.{v.name}"}
            if isinstance(v, int):
                return self.integer(int(v))
            if isinstance(v, float):
                return self.real(float(v))
            if isinstance(v, str):
                return self.text(str.__str__(v))
            if isinstance(v, (bytes, bytearray, memoryview)):
                b = bytes(v)
                if len(b) <= AUDIT_MAX_STR:
                    return {"$bytes": base64.b64encode(b).decode()}
                return {"$bytes": base64.b64encode(b[:AUDIT_MAX_STR]).decode(), "len": len(b), "sha256": _sha(b)}
            if isinstance(v, (dict, list, tuple)):
                return self.container(_as_base(v, type(v)), depth)
            if isinstance(v, (set, frozenset)):
                key = self.enter(v)
                if key is None:
                    return self.cycle(v)
                try:
                    items = [self.value(x, depth + 1) for x in list(_as_base(v, type(v)))[:AUDIT_MAX_NODES]]
                finally:
                    self.path.discard(key)
                return {"$set": sorted(items, key=dumps_ascii)}
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                out: dict[str, Any] = {"$type": _type_name(v)}
                for f in dataclasses.fields(v):
                    name = ("$" + f.name) if f.name.startswith("$") else f.name
                    out[name] = self.value(getattr(v, f.name), depth + 1)
                return out
            if hasattr(type(v), "_asdict"):
                return {"$type": _type_name(v), "fields": self.value(v._asdict(), depth + 1)}
        except Exception as e:  # a hostile __eq__, __iter__, property...
            return self.raised(v, e)
        return {"$object": _type_name(v), "repr": self.text(_safe_repr(v))}


def _safe_repr(v: Any) -> str:
    try:
        r = repr(v)
        if not isinstance(r, str):
            return "?"
    except Exception as e:
        return f"<repr raised {type(e).__name__}>"
    return _ADDR.sub(" at 0x?", r[: AUDIT_MAX_STR + 1])


def audit_tree(value: Any) -> Any:
    """`value` in the audit dialect as a JSON-ready tree (str keys, finite floats, bounded);
    never raises."""
    return AuditWalk().value(value, 0)


def _plain(v: Any, depth: int, budget: list[int]) -> bool:
    """Whether `v` is its own audit form (plain JSON within every bound, no "$" key): then
    the walk would copy it unchanged, and it is written as it is."""
    t = type(v)
    if v is None or t is bool:
        return True
    if t is str:
        return len(v) <= AUDIT_MAX_STR
    if t is int:
        return v.bit_length() <= AUDIT_MAX_INT_BITS
    if t is float:
        return math.isfinite(v)
    if depth >= AUDIT_MAX_DEPTH - 1:
        return False
    budget[0] -= len(v) if (t is dict or t is list or t is tuple) else 0
    if budget[0] < 0:
        return False
    # strings, None and bools inside a container are judged here, as the call would judge
    # them (they touch neither depth nor budget): one Python call fewer per such value
    if t is dict:
        for k, x in v.items():
            if type(k) is not str or k[:1] == "$" or len(k) > AUDIT_MAX_STR:
                return False
            tx = type(x)
            if tx is str:
                if len(x) > AUDIT_MAX_STR:
                    return False
            elif not (x is None or tx is bool or _plain(x, depth + 1, budget)):
                return False
        return True
    if t is list or t is tuple:
        for x in v:
            tx = type(x)
            if tx is str:
                if len(x) > AUDIT_MAX_STR:
                    return False
            elif not (x is None or tx is bool or _plain(x, depth + 1, budget)):
                return False
        return True
    return False


def audit_encode(value: Any) -> str:
    """Canonical ASCII JSON text of `value` in the audit dialect; never raises, never longer
    than AUDIT_MAX_TEXT."""
    try:
        text = dumps_ascii(value if _plain(value, 0, [AUDIT_MAX_NODES // 2]) else audit_tree(value))
    except RecursionError:  # only if the caller's own stack was already near the limit
        text = dumps_ascii({"$cut": "stack"})
    if len(text) > AUDIT_MAX_TEXT:
        text = dumps_ascii({"$cut": "size", "len": len(text), "sha256": _sha(text.encode("ascii")),
                            "head": text[:AUDIT_MAX_STR]})
    return text


__all__ = ["AUDIT_MAX_DEPTH", "AUDIT_MAX_NODES", "AUDIT_MAX_STR", "AUDIT_MAX_TEXT", "MAX_DEPTH", "AuditWalk",
           "CheckWalk", "Unencodable", "Walk", "audit_encode", "audit_tree", "canonical", "canonical_checked", "checked",
           "deep", "dumps_ascii", "dumps_canonical", "total", "trust"]
