"""Sealed envelopes: how a message travels between two kernels.

An `Envelope` names its sender (node, pid, the node's incarnation), its addressee (node,
pid), the sender's wall-clock time, a fresh random nonce, its kind ("send", or one a
cluster layer defines: "down", "spawn", "reply", ...), a correlation id and a body.
`seal(key, env)` turns it into a frame: a magic tag, the key's id, an HMAC-SHA256 and the
canonical JSON of every field (one rendering per envelope: sorted keys, no spaces, the
journal's value tags for tuples, bytes and non-finite floats). `verify(key, frame, guard,
now)` gives it back or raises `EnvelopeRejected` naming why.

Invariants: the MAC covers every field, and is compared in constant time before any
field is parsed; `verify` is total over bytes: whatever it is handed (random bytes, a
truncated frame, wrong types, NaN, 10,000-deep bodies, lone surrogates) it returns a
checked `Envelope` or raises `EnvelopeRejected`, nothing else. A body `seal` accepts is
one the receiving kernel's event log can hold (`kernel.values.canonical_checked`).
Nothing here knows about capabilities: a body is plain data, and a capability ref inside
one is only a number to the receiver (the kernel refuses to send one; see kernel/remote.py).
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from ..abi.errors import BadArgument
from ..kernel.events import dumps_canonical
from ..kernel.recording import decode_value, encode_value
from ..kernel.values import canonical_checked
from .errors import EnvelopeRejected, EnvelopeTooLarge

MAGIC = b"AOE1"
"""The first bytes of every frame (format 1)."""
KEY_ID_LEN = 8
MAC_LEN = 32
HEADER_LEN = len(MAGIC) + KEY_ID_LEN + MAC_LEN
MAX_FRAME = 1 << 20
"""The default frame limit, bytes (1 MiB): larger frames are refused at seal and dropped at ingress."""
MIN_KEY_LEN = 16

_DOMAIN = b"agentos envelope v1\x00"
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_PID_MAX = (1 << 63) - 1
_FIELDS = frozenset({"v", "kind", "from", "to", "at", "nonce", "corr", "body", "reply"})
_FIELDS_ATT = _FIELDS | {"att"}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message between nodes. `sent_at` is the sender's wall clock, in seconds since
    the epoch; `reply` asks the receiving kernel to hand the addressee a send-only proxy
    back to the sender (how `call` works across nodes without a capability on the wire)."""

    from_node: str
    from_pid: int
    to_node: str
    to_pid: int
    sent_at: float
    nonce: str
    body: Any = None
    incarnation: int = 0
    kind: str = "send"
    corr: Any = None
    reply: bool = False
    att: Any = None
    """The sender's attestation (services/trust.py), signed by the key its node holds for
    it; None when the sending kernel attests nothing. The MAC covers it like every field."""


def fresh_nonce() -> str:
    """128 random bits as 32 hex digits (from the OS, never from a seeded generator)."""
    return os.urandom(16).hex()


def key_id(key: bytes) -> bytes:
    """A short public name of `key`, carried in each frame so that a frame sealed under
    another key is told apart from one tampered with (it does not reveal the key)."""
    return hmac.new(_key(key), b"agentos key id", hashlib.sha256).digest()[:KEY_ID_LEN]


def _key(key: Any) -> bytes:
    if type(key) is not bytes or len(key) < MIN_KEY_LEN:
        raise BadArgument(f"an envelope key must be bytes of at least {MIN_KEY_LEN}, got "
                          f"{type(key).__name__}{'' if type(key) is not bytes else f' of {len(key)}'}")
    return key


# -- field checks (one set of rules for seal and verify) ----------------------------------

def _field_problem(env: Envelope) -> str | None:
    """What is wrong with `env`'s fields (not its body), or None."""
    for name in ("from_node", "to_node"):
        v = getattr(env, name)
        if type(v) is not str or _NODE.fullmatch(v) is None:
            return f"{name} must be a node name (1-128 of A-Z a-z 0-9 _ . : -), got {_shown(v)}"
    for name in ("from_pid", "to_pid", "incarnation"):
        v = getattr(env, name)
        if type(v) is not int or not 0 <= v <= _PID_MAX:
            return f"{name} must be an int in [0, 2**63), got {_shown(v)}"
    t = env.sent_at
    if type(t) not in (int, float) or not math.isfinite(t) or t < 0:
        return f"sent_at must be a finite, non-negative number of seconds, got {_shown(t)}"
    if type(env.nonce) is not str or _NONCE.fullmatch(env.nonce) is None:
        return f"nonce must be 32 lowercase hex digits (fresh_nonce()), got {_shown(env.nonce)}"
    if type(env.kind) is not str or _KIND.fullmatch(env.kind) is None:
        return f"kind must be a short lowercase identifier, got {_shown(env.kind)}"
    if type(env.reply) is not bool:
        return f"reply must be a bool, got {_shown(env.reply)}"
    if env.att is not None and type(env.att) is not dict:
        return f"att must be an attestation (a dict) or None, got {_shown(env.att)}"
    return None


def _shown(v: Any) -> str:
    try:
        text = repr(v)
    except Exception:
        return f"<{type(v).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def payload_of(env: Envelope) -> bytes:
    """The canonical bytes the MAC covers (every field). `BadArgument` if a field or the
    body cannot be carried."""
    problem = _field_problem(env)
    if problem is not None:
        raise BadArgument(f"envelope: {problem}")
    canonical_checked("send: body", env.body)  # cycles, depth, lone surrogates, huge ints
    if env.corr is not None:
        canonical_checked("send: corr", env.corr)
    doc = {"v": 1, "kind": env.kind, "from": [env.from_node, env.from_pid, env.incarnation],
           "to": [env.to_node, env.to_pid], "at": float(env.sent_at), "nonce": env.nonce,
           "corr": encode_value(env.corr), "body": encode_value(env.body), "reply": env.reply}
    if env.att is not None:  # absent, not null, when there is none: frames without one are unchanged
        canonical_checked("send: attestation", env.att)
        doc["att"] = env.att
    try:
        return dumps_canonical(doc).encode("utf-8")
    except (RecursionError, ValueError, UnicodeError) as e:  # checked above; belt and braces
        raise BadArgument(f"send: the body cannot be encoded ({type(e).__name__})") from None


def seal(key: bytes, env: Envelope, *, max_frame: int = MAX_FRAME) -> bytes:
    """The frame carrying `env`, sealed under `key`. `BadArgument` for a field or body
    that cannot travel; `EnvelopeTooLarge` (a BadArgument) past `max_frame` bytes."""
    k = _key(key)
    payload = payload_of(env)
    size = HEADER_LEN + len(payload)
    if size > max_frame:
        raise EnvelopeTooLarge(f"send: the sealed message is {size} bytes, over the frame limit "
                               f"of {max_frame}")
    mac = hmac.new(k, _DOMAIN + payload, hashlib.sha256).digest()
    return MAGIC + key_id(k) + mac + payload


# -- the nonce guard ----------------------------------------------------------------------

class NonceGuard:
    """Drops envelopes older than `window_s` (or more than `skew_s` in the future) and
    remembers every nonce it let through for as long as it could come back inside the
    window. Memory is bounded by `max_nonces`: when full, the oldest remembered nonce is
    forgotten and the window's floor moves up to its timestamp, so anything that old is
    refused as stale from then on: a forgotten nonce can never be replayed."""

    __slots__ = ("window_s", "skew_s", "max_nonces", "_seen", "_heap", "_floor")

    def __init__(self, window_s: float = 30.0, max_nonces: int = 100_000, *, skew_s: float | None = None) -> None:
        for name, v in (("window_s", window_s), ("skew_s", window_s if skew_s is None else skew_s)):
            if type(v) not in (int, float) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"NonceGuard: {name} must be a positive number of seconds, got {v!r}")
        if type(max_nonces) is not int or max_nonces < 1:
            raise ValueError(f"NonceGuard: max_nonces must be a positive int, got {max_nonces!r}")
        self.window_s = float(window_s)
        self.skew_s = float(window_s if skew_s is None else skew_s)
        self.max_nonces = max_nonces
        self._seen: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._floor = -math.inf

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, nonce: str, sent_at: float, now: float) -> None:
        """Let (`nonce`, `sent_at`) through once, or raise `EnvelopeRejected` (stale, replayed)."""
        if not math.isfinite(now):
            raise ValueError(f"NonceGuard: now must be finite, got {now!r}")
        self._expire(now)
        oldest = max(now - self.window_s, self._floor)
        if not sent_at > oldest:
            why = ("older than the guard's memory" if sent_at > now - self.window_s
                   else f"{now - sent_at:.3f} s old, past the {self.window_s:g} s window")
            raise EnvelopeRejected("stale", f"sent {why}")
        if sent_at > now + self.skew_s:
            raise EnvelopeRejected("stale", f"sent {sent_at - now:.3f} s in the future, past the "
                                            f"{self.skew_s:g} s allowed skew")
        if nonce in self._seen:
            raise EnvelopeRejected("replayed", f"nonce {nonce} was already received")
        while len(self._seen) >= self.max_nonces:
            t, old = heapq.heappop(self._heap)
            del self._seen[old]
            self._floor = max(self._floor, t)
        self._seen[nonce] = sent_at
        heapq.heappush(self._heap, (sent_at, nonce))

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        heap = self._heap
        while heap and heap[0][0] <= horizon:
            _, old = heapq.heappop(heap)
            del self._seen[old]


# -- verify -------------------------------------------------------------------------------

def verify(key: bytes, frame: Any, guard: NonceGuard | None, now: float, *,
           max_frame: int = MAX_FRAME) -> Envelope:
    """The envelope sealed in `frame`, or `EnvelopeRejected` saying why not.

    Order: size, shape, key id, MAC (constant time), fields, then the guard (so only a
    frame sealed under `key` can take a place in the nonce memory). `guard=None` skips the
    freshness and replay checks (for a caller that keeps its own)."""
    k = _key(key)
    if type(frame) is not bytes:
        if isinstance(frame, (bytearray, memoryview)):
            frame = bytes(frame)
        else:
            raise EnvelopeRejected("malformed", f"a frame is bytes, got {type(frame).__name__}")
    if len(frame) > max_frame:
        raise EnvelopeRejected("oversize", f"{len(frame)} bytes, over the frame limit of {max_frame}")
    if len(frame) < HEADER_LEN + 2 or frame[:len(MAGIC)] != MAGIC:
        raise EnvelopeRejected("malformed", "not an agentos envelope frame (bad magic or too short)")
    kid = frame[len(MAGIC):len(MAGIC) + KEY_ID_LEN]
    mac = frame[len(MAGIC) + KEY_ID_LEN:HEADER_LEN]
    payload = frame[HEADER_LEN:]
    want = hmac.new(k, _DOMAIN + payload, hashlib.sha256).digest()
    mac_ok = hmac.compare_digest(mac, want)
    if not hmac.compare_digest(kid, key_id(k)):
        raise EnvelopeRejected("forged", "sealed under another key (or not sealed at all)")
    if not mac_ok:
        raise EnvelopeRejected("tampered", "the MAC does not match the frame's bytes")
    env = _parse(payload)
    if guard is not None:
        guard.check(env.nonce, env.sent_at, now)
    return env


def _parse(payload: bytes) -> Envelope:
    """The fields of a payload whose MAC checked out (a key holder may still be hostile)."""
    try:
        doc = _DECODER.decode(payload.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeError) as e:
        raise EnvelopeRejected("malformed", f"the payload is not JSON ({type(e).__name__})") from None
    if type(doc) is not dict or (set(doc) != _FIELDS and set(doc) != _FIELDS_ATT) or doc.get("v") != 1:
        raise EnvelopeRejected("malformed", "the payload does not have the fields of envelope format 1")
    frm, to = doc["from"], doc["to"]
    if type(frm) is not list or len(frm) != 3 or type(to) is not list or len(to) != 2:
        raise EnvelopeRejected("malformed", "from/to have the wrong shape")
    try:
        body = decode_value(doc["body"])
        corr = decode_value(doc["corr"])
    except Exception as e:  # a value tag with a body of the wrong type, an unhashable key, ...
        raise EnvelopeRejected("malformed", f"the body cannot be decoded ({type(e).__name__})") from None
    at = doc["at"]
    env = Envelope(frm[0], frm[1], to[0], to[1], at, doc["nonce"], body, frm[2], doc["kind"], corr,
                   doc["reply"], doc.get("att"))
    problem = _field_problem(env)
    if problem is not None:
        raise EnvelopeRejected("malformed", problem)
    try:
        canonical_checked("body", body)
        canonical_checked("corr", corr)
    except BadArgument as e:
        raise EnvelopeRejected("malformed", str(e)) from None
    except RecursionError:
        raise EnvelopeRejected("malformed", "the body is nested too deep") from None
    return env


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


__all__ = ["Envelope", "HEADER_LEN", "MAGIC", "MAX_FRAME", "NonceGuard", "fresh_nonce", "key_id",
           "payload_of", "seal", "verify"]
