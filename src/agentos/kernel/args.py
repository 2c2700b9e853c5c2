"""Checks for syscall arguments, where they enter the kernel.

A handler trusts nothing in a request: a process can build any request object and hand it
to the trap. Every scalar a handler uses is checked here first, so that a wrong type, a
NaN or an infinity is a `BadArgument` naming the call and the argument, and never a
`TypeError` from deep inside the kernel (which the dispatch loop reports as a kernel bug).

Invariant: each check returns the value in the form the kernel uses (an `int` stays an
`int`, a `float` stays a `float`); bool is never accepted as a number.
"""
from __future__ import annotations

import math
from typing import Any

from ..abi.errors import BadArgument

_NUM = (int, float)


def number(what: str, value: Any, *, minimum: float | None = None) -> float:
    """A finite int or float (milliseconds, amounts), at least `minimum` when given."""
    t = type(value)
    if t is not int and t is not float:
        if isinstance(value, bool) or not isinstance(value, _NUM):
            raise BadArgument(f"{what} must be a number, got {type(value).__name__}")
        # a subclass is read by its value through the base methods: its own never run
        value = int.__index__(value) if isinstance(value, int) else float.__float__(value)
    if type(value) is not float and not -1e300 < value < 1e300:  # an int past float's range
        raise BadArgument(f"{what} is out of range (an integer of {int(value).bit_length()} bits)")
    if not math.isfinite(value):
        raise BadArgument(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise BadArgument(f"{what} must be at least {minimum:g}, got {value!r}")
    return value


def optional_number(what: str, value: Any, *, minimum: float | None = None) -> float | None:
    return None if value is None else number(what, value, minimum=minimum)


def integer(what: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (not a bool), within the bounds given."""
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadArgument(f"{what} must be an integer, got {type(value).__name__}")
        value = int.__index__(value)  # its value: a subclass's own __int__/__index__ never runs
    if minimum is not None and value < minimum:
        raise BadArgument(f"{what} must be at least {minimum}, got {_int(value)}")
    if maximum is not None and value > maximum:
        raise BadArgument(f"{what} must be at most {maximum}, got {_int(value)}")
    return value


def _int(v: int) -> str:
    """An int for a message: printed if short, else by its size (printing a huge one raises)."""
    return str(v) if v.bit_length() <= 64 else f"an integer of {v.bit_length()} bits"


def flag(what: str, value: Any) -> bool:
    if value is True or value is False:
        return value
    raise BadArgument(f"{what} must be True or False, got {type(value).__name__}")


def text(what: str, value: Any, *, empty: bool = True, max_len: int | None = None) -> str:
    """A str (a subclass is taken as its plain value, so its methods cannot run in the kernel)."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise BadArgument(f"{what} must be a string, got {type(value).__name__}")
        value = str.__str__(value)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadArgument(f"{what} holds a lone surrogate at index {e.start}") from None
    if not empty and not value:
        raise BadArgument(f"{what} must not be empty")
    if max_len is not None and len(value) > max_len:
        raise BadArgument(f"{what} is {len(value)} characters; at most {max_len} are allowed")
    return value


def optional_text(what: str, value: Any, *, empty: bool = True) -> str | None:
    return None if value is None else text(what, value, empty=empty)


def callable_(what: str, value: Any) -> Any:
    if not callable(value):
        raise BadArgument(f"{what} must be callable, got {type(value).__name__}")
    return value


def sequence(what: str, value: Any) -> tuple[Any, ...]:
    """A tuple or list, returned as a tuple (strings and mappings are refused: a common slip)."""
    if type(value) is tuple:
        return value
    if isinstance(value, list):  # the base iterators: a subclass's own __iter__ never runs
        return tuple(list.__iter__(value))
    if isinstance(value, tuple):
        return tuple(tuple.__iter__(value))
    raise BadArgument(f"{what} must be a list or tuple, got {type(value).__name__}")


def shown(value: Any, limit: int = 80) -> str:
    """A caller's value for an error message: bounded, and safe whatever its `__repr__`
    does (raises, recurses, returns junk). Never the value's own code for odd types."""
    t = type(value)
    if t in (int, float, bool, type(None)):
        text = repr(value) if t is not int or abs(value) < 10**30 else f"<int of {value.bit_length()} bits>"
    elif t is str:
        text = repr(value[: limit + 1]).encode("utf-8", "backslashreplace").decode("utf-8")
    else:
        text = f"<{t.__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


def signal(what: str, value: Any) -> Any:
    """A `Signal` (or its number)."""
    from ..abi.types import Signal

    if type(value) is Signal:
        return value
    if type(value) is int:
        try:
            return Signal(value)
        except ValueError:
            pass
    raise BadArgument(f"{what}: {shown(value)} is not a signal; known: {', '.join(s.name for s in Signal)}")


__all__ = ["callable_", "flag", "integer", "number", "optional_number", "optional_text", "sequence",
           "shown", "signal", "text"]
