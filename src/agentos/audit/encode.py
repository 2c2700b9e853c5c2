"""The recorder's encoding: total over every Python value, deterministic, ASCII, bounded.

Whatever reaches the flight recorder (a tool argument, a decision's reason, sandboxed
code's request) becomes canonical JSON text that can always be stored and MACed: `encode`
never raises for any value. Lone surrogates are escaped (`\\ud800`), so the text is pure
ASCII and every backend can store it; NaN and infinities, integers too long to print,
bytes, sets, dict keys that are not strings, cycles and objects whose `repr` raises all
have a tagged form. Dict keys that start with "$" get one more "$", so a tag can never be
forged by a value.

Bounds keep one record from being a denial of service: nesting past `MAX_DEPTH`, more than
`MAX_NODES` values, strings or bytes past `MAX_STR`, and a record past `MAX_TEXT` are cut,
each cut leaving a SHA-256 of what it replaced where that is cheap, and a tag saying so.
"""
from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import json
import math
import re
from typing import Any

MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_STR = 64 * 1024
MAX_TEXT = 1 << 20
MAX_INT_BITS = 8192

_ADDR = re.compile(r" at 0x[0-9a-fA-F]+")


def _qualname(obj: Any) -> str:
    try:
        name = type(obj).__qualname__
        return name if isinstance(name, str) else "?"
    except Exception:
        return "?"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


class _Encoder:
    __slots__ = ("nodes", "path")

    def __init__(self) -> None:
        self.nodes = 0
        self.path: set[int] = set()   # ids of the containers being walked (cycle check)

    def value(self, v: Any, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            return {"$cut": "nodes"}
        t = type(v)
        if v is None or t is bool:
            return v
        if t is str:
            return self.text(v)
        if t is int:
            return self.integer(v)
        if t is float:
            return v if math.isfinite(v) else {"$float": repr(v)}
        if depth >= MAX_DEPTH:
            return {"$cut": "depth", "type": _qualname(v)}
        if t is dict or t is list or t is tuple:
            return self.container(v, depth)
        return self.other(v, depth)

    def text(self, s: str) -> Any:
        if len(s) <= MAX_STR:
            return s
        return {"$str": s[:MAX_STR], "len": len(s), "sha256": _sha(_utf8(s))}

    @staticmethod
    def integer(i: int) -> Any:
        if i.bit_length() <= MAX_INT_BITS:
            return i
        return {"$int": "cut", "bits": i.bit_length(), "sign": -1 if i < 0 else 1}

    def container(self, v: Any, depth: int) -> Any:
        key = id(v)
        if key in self.path:
            return {"$cycle": _qualname(v)}
        self.path.add(key)
        try:
            if isinstance(v, dict):
                return self.mapping(v, depth)
            out: list[Any] = []
            for x in v:
                if self.nodes >= MAX_NODES:
                    out.append({"$cut": "nodes"})
                    break
                out.append(self.value(x, depth + 1))
            return out
        finally:
            self.path.discard(key)

    def mapping(self, d: Any, depth: int) -> Any:
        items = list(d.items())
        if all(type(k) is str for k, _ in items):
            out: dict[str, Any] = {}
            for k, x in items:
                if self.nodes >= MAX_NODES:
                    out["$cut"] = "nodes"
                    break
                out[("$" + k) if k.startswith("$") else k] = self.value(x, depth + 1)
            return out
        pairs = []
        for k, x in items:
            if self.nodes >= MAX_NODES:
                pairs.append([{"$cut": "nodes"}, None])
                break
            pairs.append([self.value(k, depth + 1), self.value(x, depth + 1)])
        pairs.sort(key=lambda p: _dumps(p[0]))
        return {"$dict": pairs}

    def other(self, v: Any, depth: int) -> Any:
        try:
            if isinstance(v, bool):
                return bool(v)
            if isinstance(v, enum.Enum):
                return {"$enum": f"{_qualname(v)}.{v.name}"}
            if isinstance(v, int):
                return self.integer(int(v))
            if isinstance(v, float):
                fv = float(v)
                return fv if math.isfinite(fv) else {"$float": repr(fv)}
            if isinstance(v, str):
                return self.text(str.__str__(v))
            if isinstance(v, (bytes, bytearray, memoryview)):
                b = bytes(v)
                if len(b) <= MAX_STR:
                    return {"$bytes": base64.b64encode(b).decode()}
                return {"$bytes": base64.b64encode(b[:MAX_STR]).decode(), "len": len(b), "sha256": _sha(b)}
            if isinstance(v, (dict, list, tuple)):
                return self.container(v, depth)
            if isinstance(v, (set, frozenset)):
                key = id(v)
                if key in self.path:
                    return {"$cycle": _qualname(v)}
                self.path.add(key)
                try:
                    items = [self.value(x, depth + 1) for x in list(v)[: MAX_NODES]]
                finally:
                    self.path.discard(key)
                return {"$set": sorted(items, key=_dumps)}
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                out: dict[str, Any] = {"$type": _qualname(v)}
                for f in dataclasses.fields(v):
                    name = ("$" + f.name) if f.name.startswith("$") else f.name
                    out[name] = self.value(getattr(v, f.name), depth + 1)
                return out
            if hasattr(type(v), "_asdict"):
                return {"$type": _qualname(v), "fields": self.value(v._asdict(), depth + 1)}
        except Exception as e:  # a hostile __eq__, __iter__, property...
            return {"$object": _qualname(v), "error": type(e).__name__}
        return {"$object": _qualname(v), "repr": self.text(_safe_repr(v))}


def _safe_repr(v: Any) -> str:
    try:
        r = repr(v)
        if not isinstance(r, str):
            return "?"
    except Exception as e:
        return f"<repr raised {type(e).__name__}>"
    return _ADDR.sub(" at 0x?", r[: MAX_STR + 1])


def _make_dumps() -> Any:
    """json.dumps(tree, separators=(",", ":"), sort_keys=True, ensure_ascii=True,
    allow_nan=False), with the C encoder built once (a tree is acyclic: no marker checks)."""
    from json import encoder as _enc

    make = getattr(_enc, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return lambda tree: json.dumps(tree, separators=(",", ":"), sort_keys=True, ensure_ascii=True,
                                       allow_nan=False)
    c = make(None, None, _enc.encode_basestring_ascii, None, ":", ",", True, False, False)
    join = "".join
    return lambda tree: join(c(tree, 0))


_dumps = _make_dumps()


def to_tree(value: Any) -> Any:
    """`value` as a JSON-ready tree (str keys, finite floats, bounded); never raises."""
    return _Encoder().value(value, 0)


def encode(value: Any) -> str:
    """Canonical ASCII JSON text for `value`; never raises, never longer than MAX_TEXT."""
    try:
        text = _dumps(to_tree(value))
    except RecursionError:  # only if the caller's own stack was already near the limit
        text = _dumps({"$cut": "stack"})
    if len(text) > MAX_TEXT:
        text = _dumps({"$cut": "size", "len": len(text), "sha256": _sha(text.encode("ascii")),
                       "head": text[: MAX_STR]})
    return text


__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_STR", "MAX_TEXT", "encode", "to_tree"]
