"""Plain data, losslessly: what a hibernation record and an agent file may hold.

A hibernated process must come back with the very values it left with: a tuple as a
tuple, bytes as bytes, a monitor's `Down` and a signal's `SignalMessage` as those types.
The event log's encoder (`recording.encode_value`) stores any other object in its
canonical form, which reads back as a dict: right for a log, wrong for a process. So
records use this codec, which is *total*: `encode` either returns JSON that `decode`
turns back into an equal value of the same types, or raises `NotPlain` saying what it
could not hold; it never calls a value's own methods (exact types only: a subclass of a
builtin, a set, a dataclass, a callable is not plain). The kernel keeps a process whose
values are not plain resident instead of storing something else.

Plain: None, bool, int (up to `MAX_INT_BITS` bits), float (NaN and infinities tagged),
str (valid UTF-8), bytes, list, tuple, dict (keys plain and hashable), `Down` (with its
`ExitReason`) and `SignalMessage`, nested at most `MAX_PLAIN_DEPTH` deep. The tags are
those of `encode_value` ("@tuple", "@bytes", "@float", "@dict") plus "@down" and
"@signal"; a dict whose keys are not sorted plain strings free of "@" is stored as pairs,
so a value's own keys cannot forge a tag.

`decode` is the defensive inverse, for bytes read back from a store or a file: anything
malformed (an unknown tag, a wrong type, a bad signal number, too deep) is `Malformed`,
and with `finite=True` (agent files) a non-finite float anywhere is refused too.
"""
from __future__ import annotations

import json
import math
from typing import Any

from ..abi.types import Down, ExitKind, ExitReason, Signal, SignalMessage
from ..kernel.values import MAX_INT_BITS

MAX_PLAIN_DEPTH = 256
"""Containers nested deeper than this are not stored (the process stays resident)."""

_EXIT_KINDS = {k.value: k for k in ExitKind}
_SIGNALS = {int(s): s for s in Signal}
_TAGS = frozenset({"@tuple", "@bytes", "@float", "@dict", "@down", "@signal"})


class NotPlain(Exception):
    """A value that the record codec cannot hold exactly (says what and where)."""


class Malformed(ValueError):
    """Stored or imported JSON that is not a value this codec wrote."""


def _text_ok(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode(v: Any, what: str = "value") -> Any:
    """The JSON form of plain value `v`; `NotPlain` naming `what` if it is not plain."""
    try:
        return _enc(v, 0)
    except NotPlain as e:
        raise NotPlain(f"{what} holds {e}") from None
    except RecursionError:
        raise NotPlain(f"{what} nests too deep to store") from None


def _enc(v: Any, depth: int) -> Any:
    t = type(v)
    if v is None or t is bool:
        return v
    if t is str:
        if not _text_ok(v):
            raise NotPlain("a string with a lone surrogate")
        return v
    if t is int:
        if v.bit_length() > MAX_INT_BITS:
            raise NotPlain(f"an integer of {v.bit_length()} bits")
        return v
    if t is float:
        return v if math.isfinite(v) else {"@float": repr(v)}
    if depth >= MAX_PLAIN_DEPTH:
        raise NotPlain(f"nesting deeper than {MAX_PLAIN_DEPTH} levels")
    d = depth + 1
    if t is list:
        return [_enc(x, d) for x in v]
    if t is tuple:
        return {"@tuple": [_enc(x, d) for x in v]}
    if t is dict:
        ks = list(v)
        if all(type(k) is str and not k.startswith("@") for k in ks) and ks == sorted(ks):
            out = {}
            for k in ks:
                if not _text_ok(k):
                    raise NotPlain("a dict key with a lone surrogate")
                out[k] = _enc(v[k], d)
            return out
        return {"@dict": [[_key(k, d), _enc(x, d)] for k, x in v.items()]}
    if t is bytes:
        return {"@bytes": v.hex()}
    if t is Down:
        r = v.reason
        if type(v.pid) is not int or type(r) is not ExitReason or type(r.kind) is not ExitKind \
                or not (r.detail is None or (type(r.detail) is str and _text_ok(r.detail))) \
                or type(v.name) is not str or not _text_ok(v.name):
            raise NotPlain("a Down with fields of the wrong types")
        return {"@down": [v.pid, r.kind.value, r.detail, v.name]}
    if t is SignalMessage:
        if type(v.signal) is not Signal or type(v.sender) is not int:
            raise NotPlain("a SignalMessage with fields of the wrong types")
        return {"@signal": [int(v.signal), v.sender]}
    raise NotPlain(f"a {_type_name(v)}, which is not plain data")


def _key(k: Any, depth: int) -> Any:
    t = type(k)
    if t is list or t is dict:  # (never a key of a real dict, but a hostile __hash__ could lie)
        raise NotPlain("an unhashable dict key")
    return _enc(k, depth)


def _type_name(v: Any) -> str:
    try:
        n = type(v).__qualname__
        return n if isinstance(n, str) else "?"
    except Exception:
        return "?"


def loads(blob: Any) -> Any:
    """Parse stored JSON text or bytes: no NaN/Infinity constants, `Malformed` on any fault."""
    if type(blob) is not bytes and type(blob) is not str:
        raise Malformed(f"a record is bytes, got {_type_name(blob)}")
    try:
        return json.loads(blob, parse_constant=_no_constant)
    except Malformed:
        raise
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise Malformed(f"not JSON: {str(e)[:120]}") from None


def _no_constant(name: str) -> Any:
    raise Malformed(f"holds {name}, which is not a finite number")


def decode(obj: Any, what: str = "value", *, finite: bool = False) -> Any:
    """The value `encode` wrote as `obj`; `Malformed` naming `what` if `obj` is not such a
    form (or, with `finite`, if it holds a NaN or an infinity)."""
    try:
        return _dec(obj, 0, finite)
    except Malformed as e:
        raise Malformed(f"{what}: {e}") from None
    except RecursionError:
        raise Malformed(f"{what} nests too deep") from None


def _dec(obj: Any, depth: int, finite: bool) -> Any:
    t = type(obj)
    if obj is None or t is bool or t is str:
        return obj
    if t is int:
        if obj.bit_length() > MAX_INT_BITS:
            raise Malformed(f"an integer of {obj.bit_length()} bits")
        return obj
    if t is float:
        if not math.isfinite(obj):
            raise Malformed("a non-finite number")
        return obj
    if depth >= MAX_PLAIN_DEPTH:
        raise Malformed(f"nesting deeper than {MAX_PLAIN_DEPTH} levels")
    d = depth + 1
    if t is list:
        return [_dec(x, d, finite) for x in obj]
    if t is not dict:
        raise Malformed(f"a {_type_name(obj)}")
    if len(obj) == 1:
        (tag, body), = obj.items()
        if tag in _TAGS:
            return _tagged(tag, body, d, finite)
    for k in obj:
        if type(k) is not str or k.startswith("@"):
            raise Malformed(f"an unknown tag {str(k)[:20]!r}")
    return {k: _dec(x, d, finite) for k, x in obj.items()}


def _tagged(tag: str, body: Any, d: int, finite: bool) -> Any:
    if tag == "@tuple":
        if type(body) is not list:
            raise Malformed("a @tuple that is not a list")
        return tuple(_dec(x, d, finite) for x in body)
    if tag == "@bytes":
        if type(body) is not str:
            raise Malformed("@bytes that are not hex text")
        try:
            return bytes.fromhex(body)
        except ValueError:
            raise Malformed("@bytes that are not hex text") from None
    if tag == "@float":
        if finite:
            raise Malformed(f"a non-finite number ({str(body)[:10]})")
        if body not in ("nan", "inf", "-inf"):
            raise Malformed(f"a @float of {str(body)[:20]!r}")
        return float(body)
    if tag == "@dict":
        if type(body) is not list:
            raise Malformed("a @dict that is not a list of pairs")
        out: dict[Any, Any] = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise Malformed("a @dict entry that is not a [key, value] pair")
            k = _dec(pair[0], d, finite)
            if not _hashable(k):
                raise Malformed("an unhashable @dict key")
            out[k] = _dec(pair[1], d, finite)
        return out
    if tag == "@down":
        if type(body) is not list or len(body) != 4:
            raise Malformed("a @down that is not [pid, kind, detail, name]")
        pid, kind, detail, name = body
        if type(pid) is not int or type(kind) is not str or kind not in _EXIT_KINDS \
                or not (detail is None or type(detail) is str) or type(name) is not str:
            raise Malformed("a @down with fields of the wrong types")
        return Down(pid, ExitReason(_EXIT_KINDS[kind], detail), name)
    # "@signal"
    if type(body) is not list or len(body) != 2 or type(body[0]) is not int or type(body[1]) is not int \
            or body[0] not in _SIGNALS:
        raise Malformed("a @signal that is not [known signal number, sender pid]")
    return SignalMessage(_SIGNALS[body[0]], body[1])


def _hashable(k: Any) -> bool:
    t = type(k)
    if t is list or t is dict:
        return False
    if t is tuple:
        return all(_hashable(x) for x in k)
    return True


__all__ = ["MAX_PLAIN_DEPTH", "Malformed", "NotPlain", "decode", "encode", "loads"]
