"""Cluster frames: what nodes say to each other, sealed, and how a frame is opened.

A frame is one sealed envelope: from (node, incarnation, pid), to (node, pid), a kind
(`msg`, `spawn`, `spawned`, `mon`, `down`, ...), a JSON body, a nonce and the sender's
timestamp. Opening checks, in order: size, encoding, the HMAC (constant time), that the
frame is addressed to this node, its age against the window, and that its nonce was not
seen within the window (a replay). Anything failing is dropped and counted by reason,
never raised: a peer's bytes cannot crash a node.

Invariants: a frame's body is plain JSON (objects, arrays, strings, finite numbers, bools,
null); a tuple travels as an array. Capabilities never travel: a process reference is a
`RemoteAddr` (node, pid) that only the receiving kernel turns into a capability.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..abi.errors import BadArgument

MAX_FRAME = 1 << 20
"""Bytes: a larger frame is refused when sealed and dropped when received."""
WINDOW_S = 60.0
"""Seconds a frame stays acceptable; the nonce guard remembers nonces this long."""
MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class RemoteAddr:
    """A process on another node: what a remote capability designates."""

    node: str
    pid: int

    def __str__(self) -> str:
        return f"{self.node}/{self.pid}"


@dataclass(frozen=True, slots=True)
class Frame:
    src: str
    inc: int
    src_pid: int
    dst: str
    dst_pid: int
    kind: str
    body: Any
    nonce: str
    sent_at: float


def wire_value(what: str, value: Any) -> Any:
    """`value` as plain JSON data, or BadArgument naming what cannot cross the wire."""
    try:
        return _plain(value, 0)
    except _NotWire as e:
        raise BadArgument(f"{what}: cannot send to another node: {e}") from None


class _NotWire(Exception):
    pass


def _plain(v: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _NotWire(f"nested deeper than {MAX_DEPTH}")
    t = type(v)
    if v is None or t is bool or t is int:
        return v
    if t is float:
        if not math.isfinite(v):
            raise _NotWire(f"{v!r} is not a finite number")
        return v
    if t is str:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise _NotWire("a string holds a lone surrogate") from None
        return v
    if t is list or t is tuple:
        return [_plain(x, depth + 1) for x in v]
    if t is dict:
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _NotWire(f"a dict key must be a string, got {type(k).__name__}")
            out[_plain(k, depth + 1)] = _plain(x, depth + 1)
        return out
    raise _NotWire(f"a {t.__name__} is not plain data (JSON: dict, list, str, number, bool, None)")


class FrameCodec:
    """Seals frames with the cluster key and opens them, dropping what must be dropped."""

    def __init__(self, key: bytes, window: float = WINDOW_S) -> None:
        self._key = key
        self.window = window
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.drops: dict[str, int] = {}

    def seal(self, src: str, inc: int, src_pid: int, dst: str, dst_pid: int, kind: str,
             body: Any, *, nonce: str | None = None) -> tuple[bytes, str]:
        nonce = nonce or os.urandom(16).hex()
        head = [src, inc, src_pid, dst, dst_pid, kind, nonce, time.time()]
        payload = json.dumps([head, body], separators=(",", ":"), ensure_ascii=False,
                             allow_nan=False).encode("utf-8")
        if len(payload) + 32 > MAX_FRAME:
            raise BadArgument(f"a frame of {len(payload)} bytes exceeds the limit of {MAX_FRAME}")
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return mac + payload, nonce

    def _drop(self, why: str) -> None:
        self.drops[why] = self.drops.get(why, 0) + 1

    def open(self, data: Any, me: str, *, replay_ok: bool = False) -> Frame | None:
        """The frame in `data` if it is sound, addressed to `me`, fresh and not a replay."""
        if not isinstance(data, (bytes, bytearray)) or len(data) < 33:
            self._drop("malformed")
            return None
        if len(data) > MAX_FRAME:
            self._drop("oversize")
            return None
        mac, payload = bytes(data[:32]), bytes(data[32:])
        if not hmac.compare_digest(mac, hmac.new(self._key, payload, hashlib.sha256).digest()):
            self._drop("bad_mac")
            return None
        try:
            head, body = json.loads(payload)
            src, inc, src_pid, dst, dst_pid, kind, nonce, sent_at = head
        except (ValueError, TypeError):
            self._drop("malformed")
            return None
        if not (type(src) is str and type(inc) is int and type(src_pid) is int and type(dst) is str
                and type(dst_pid) is int and type(kind) is str and type(nonce) is str
                and isinstance(sent_at, (int, float)) and math.isfinite(sent_at)):
            self._drop("malformed")
            return None
        if dst != me:
            self._drop("misaddressed")
            return None
        now = time.time()
        if not replay_ok:
            if now - sent_at > self.window or sent_at - now > self.window:
                self._drop("stale")
                return None
            if nonce in self._seen:
                self._drop("replay")
                return None
            self._seen[nonce] = sent_at
            while self._seen:
                first = next(iter(self._seen.items()))
                if now - first[1] <= self.window and len(self._seen) <= 1_000_000:
                    break
                self._seen.popitem(last=False)
        return Frame(src, inc, src_pid, dst, dst_pid, kind, body, nonce, float(sent_at))


__all__ = ["Frame", "FrameCodec", "MAX_FRAME", "RemoteAddr", "WINDOW_S", "wire_value"]
