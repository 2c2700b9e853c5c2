"""What a bus message body may be: built-in data, bounded in size, that the log can hold.

A body comes from a process (a publish), from another node (a NATS frame) or from the
store (a durable topic's history), and is checked the same way wherever it enters:
an iterative walk (so depth and cycles cannot exhaust the stack) that refuses anything but
built-in data (`None`, `bool`, `int`, `float`, `str`, `bytes`, and exact `list`, `tuple`,
`dict`, `set`, `frozenset` of them) before any of a value's own code can run, and that
stops once the body's size passes `MAX_BODY`; then the canonical encoder's check
(`kernel/values.py`: cycles, depth, lone surrogates, huge integers).
"""
from __future__ import annotations

from typing import Any

from ..abi.errors import BadArgument
from ..kernel.values import checked

MAX_BODY = 1 << 20
"""Largest body the bus accepts, in bytes of its text (a bound, measured cheaply)."""

_KEY_TYPES = frozenset({str, int, float, bool, type(None), bytes, tuple, frozenset})
_NAME = type.__dict__["__name__"].__get__


def _tname(v: Any) -> str:
    n = _NAME(type(v))
    return n if len(n) <= 60 else n[:57] + "..."


def body(what: str, value: Any) -> Any:
    """`value` if it is built-in data of at most MAX_BODY bytes that the log can hold;
    else `BadArgument` saying what is wrong."""
    t = type(value)
    if value is None or t is int or t is float or t is bool:
        return checked(what, value)
    if size(what, value, MAX_BODY) > MAX_BODY:
        raise BadArgument(f"{what} is larger than the bus's limit of {MAX_BODY} bytes")
    return checked(what, value)


def size(what: str, value: Any, limit: int) -> int:
    """An upper-bound-ish size of `value` in bytes, stopping once past `limit`; refuses
    (`BadArgument`) a value that is not built-in data, before touching its contents."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str:
            total += len(v) * (1 if v.isascii() else 4) + 2
        elif t is int:
            total += 8 + v.bit_length() // 8
        elif v is None or t is bool or t is float:
            total += 8
        elif t is bytes:
            total += len(v) + 2
        elif t is list or t is tuple or t is set or t is frozenset:
            total += 2 + len(v)
            stack.extend(v)
        elif t is dict:
            total += 2 + len(v)
            for k, x in v.items():
                if type(k) not in _KEY_TYPES:
                    raise BadArgument(f"{what}: a dict key of type {_tname(k)} is not built-in data")
                stack.append(k)
                stack.append(x)
        else:
            raise BadArgument(f"{what}: a {_tname(v)} is not built-in data (a body is None, bool, int, float, "
                              f"str, bytes, or a list, tuple, dict, set or frozenset of them)")
        if total > limit:
            return total
    return total


__all__ = ["MAX_BODY", "body", "size"]
