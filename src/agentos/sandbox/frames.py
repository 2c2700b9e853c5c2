"""The child → kernel frame format, read as hostile input.

A frame is one line of strict JSON (UTF-8, no NaN/Infinity, no integer of thousands of
digits) holding an object: {"t": "hello", ...}, {"t": "call", "name", "args", "kw"} or
{"t": "exit", "ok", ...}. Lines are bounded in bytes by the sandbox's `max_line` (the
reader checks that before parsing) and in nesting depth by `MAX_DEPTH`: the C parser
stops at the interpreter's recursion limit with a RecursionError, and the parsed value is
then measured without recursion, so nothing downstream ever walks a deeper value. Anything else is a `FrameError`, and the
driver kills the child for it: a child that speaks the protocol wrongly is not trusted to
speak it rightly next time.
"""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a frame may hold (the protocol itself needs 4)."""
MAX_NAME = 64

_KINDS = frozenset({"hello", "call", "exit"})


class FrameError(ValueError):
    """A frame that breaks the protocol; the message says how."""


def _reject_constant(name: str) -> Any:
    raise FrameError(f"{name} is not JSON")


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep `value` nests arrays and objects (a scalar is 0), walked with an explicit
    stack; stops early once past `limit` (returning limit + 1)."""
    if type(value) is not dict and type(value) is not list:
        return 0
    worst = 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        items = v.values() if type(v) is dict else v
        for x in items:
            if type(x) is dict or type(x) is list:
                if d + 1 > limit:
                    return limit + 1
                if d + 1 > worst:
                    worst = d + 1
                stack.append((x, d + 1))
    return worst


def parse_frame(line: bytes) -> dict[str, Any]:
    """One frame, checked; raises FrameError on anything malformed."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FrameError(f"a frame that is not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        msg = json.loads(text, parse_constant=_reject_constant)
    except FrameError:
        raise
    except RecursionError:
        raise FrameError("a frame nested too deep to parse") from None
    except ValueError as e:  # JSONDecodeError, an integer with too many digits
        raise FrameError(f"a frame that is not JSON ({str(e)[:100]})") from None
    if not isinstance(msg, dict):
        raise FrameError(f"a frame that is a JSON {type(msg).__name__}, not an object")
    if (line.count(b"[") + line.count(b"{") > MAX_DEPTH  # fewer brackets cannot nest deeper
            and depth(msg) > MAX_DEPTH):
        raise FrameError(f"a frame nested more than {MAX_DEPTH} deep")
    t = msg.get("t")
    if t not in _KINDS:
        raise FrameError(f"a frame of unknown type {str(t)[:40]!r}")
    if t == "call":
        name = msg.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise FrameError("a call frame without a syscall name")
        if not isinstance(msg.get("args", []), list) or not isinstance(msg.get("kw", {}), dict):
            raise FrameError("a call frame whose args is not a list or whose kw is not an object")
    return msg


__all__ = ["FrameError", "MAX_DEPTH", "depth", "parse_frame"]
