"""The keyed hash chain: records, anchors, and verification.

Each record's MAC is HMAC-SHA256 under the kernel key over every field (seq, kernel time,
wall time, pid, kind, data, and the previous record's MAC), so an edited field, a
dropped or reordered record, or a record written without the key breaks the chain at
that point. The anchor (count + last MAC, itself MACed) is kept apart from the records:
it catches a tail cut off the log, which a chain alone cannot. Rolling back both the
records and the anchor to an older consistent state is caught only against a signed
checkpoint kept elsewhere (checkpoint.py).

Verification reads rows as hostile input: a row with a NULL, a BLOB, a non-hex MAC or an
unprintable number is the first bad record, reported by number, never an exception. An
`anchor_lost` record (written only by an operator's explicit re-anchoring) keeps the
chain valid but is reported by every verification after it.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from .encode import _dumps  # compact ASCII JSON, C encoder built once

GENESIS = "0" * 64
ANCHOR_LOST = "anchor_lost"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int            # 1, 2, 3, ... with no gap
    time: float         # kernel clock, ms since boot
    wall: float         # unix time, seconds
    pid: int
    kind: str           # decision | approval_request | approval | signal | ...
    data: str           # canonical JSON text
    prev: str           # MAC of record seq-1 (GENESIS for the first)
    mac: str

    def fields(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "wall": self.wall, "pid": self.pid,
                "kind": self.kind, "data": json.loads(self.data), "prev": self.prev, "mac": self.mac}


@dataclass(frozen=True, slots=True)
class Anchor:
    count: int
    last_mac: str
    mac: str


def is_hex64(v: Any) -> bool:
    return type(v) is str and len(v) == 64 and set(v) <= _HEX


def record_problem(rec: Any) -> str | None:
    """Why a stored row is not a well-formed record (None if it is)."""
    if not isinstance(rec, AuditRecord):
        return f"not a record ({type(rec).__name__})"
    if type(rec.seq) is not int:
        return f"its seq is {type(rec.seq).__name__}, not an integer"
    for name in ("time", "wall"):
        v = getattr(rec, name)
        if type(v) not in (int, float) or not math.isfinite(v):
            return f"its {name} is {_show(v)}, not a finite number"
    if type(rec.pid) is not int:
        return f"its pid is {_show(rec.pid)}, not an integer"
    if type(rec.kind) is not str or not rec.kind.isascii():
        return f"its kind is {_show(rec.kind)}, not ASCII text"
    if type(rec.data) is not str:
        return f"its data is {_show(rec.data)}, not text"
    if not is_hex64(rec.prev):
        return f"its prev is {_show(rec.prev)}, not a 64-digit hex MAC"
    if not is_hex64(rec.mac):
        return f"its mac is {_show(rec.mac)}, not a 64-digit hex MAC"
    return None


def _show(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"a {len(bytes(v))}-byte BLOB"
    text = repr(v)
    return (text[:40] + "...") if len(text) > 40 else text


def leaf_data(rec: AuditRecord) -> bytes:
    """The bytes a record contributes to the Merkle tree: every field, MAC included, as
    compact ASCII JSON `[seq, "time", "wall", pid, kind, data, prev, mac]`."""
    return _dumps([rec.seq, repr(float(rec.time)), repr(float(rec.wall)), rec.pid, rec.kind, rec.data,
                   rec.prev, rec.mac]).encode()


def _c_body_encoder() -> Any:
    """json.dumps(..., separators=(",", ":"), ensure_ascii=True) of a flat list of ints and
    strings, with the C encoder built once (json.dumps builds one per call)."""
    from json import encoder as _enc

    make = getattr(_enc, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return None
    c = make(None, None, _enc.encode_basestring_ascii, None, ":", ",", False, False, True)
    join = "".join
    return lambda obj: join(c(obj, 0))


_fast_body = _c_body_encoder()


def _body(seq: int, time: float, wall: float, pid: int, kind: str, data: str, prev: str) -> bytes:
    body = [seq, repr(float(time)), repr(float(wall)), pid, kind, data, prev]
    if (_fast_body is not None and type(seq) is int and type(pid) is int and type(kind) is str
            and type(data) is str and type(prev) is str):
        return _fast_body(body).encode()  # the same text json.dumps gives for exactly these types
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> "hmac.HMAC":
    """HMAC-SHA256 with `key` absorbed: a copy of it MACs a body in half the time of a new one."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _mac_of(key: bytes, body: bytes) -> str:
    if type(key) is not bytes:  # bytearray (unhashable), a subclass: no cached copy
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    h = _keyed(key).copy()
    h.update(body)
    return h.hexdigest()


def record_mac(key: bytes, seq: int, time: float, wall: float, pid: int, kind: str, data: str,
               prev: str) -> str:
    return _mac_of(key, _body(seq, time, wall, pid, kind, data, prev))


def make_record(key: bytes, seq: int, time: float, wall: float, pid: int, kind: str, data: str,
                prev: str) -> AuditRecord:
    return AuditRecord(seq, time, wall, pid, kind, data, prev,
                       record_mac(key, seq, time, wall, pid, kind, data, prev))


def make_record_leaf(key: bytes, seq: int, time: float, wall: float, pid: int, kind: str, data: str,
                     prev: str) -> tuple[AuditRecord, bytes | None]:
    """`make_record`, and the record's Merkle leaf hash (`leaf_hash(leaf_data(rec))`) from
    the same JSON text: the leaf data is the MAC body with the MAC as its last item. None
    when the fields are not the plain types that make the two texts agree."""
    body = _body(seq, time, wall, pid, kind, data, prev)
    mac = _mac_of(key, body)
    rec = AuditRecord(seq, time, wall, pid, kind, data, prev, mac)
    if type(seq) is not int or type(pid) is not int or type(kind) is not str or type(data) is not str \
            or type(prev) is not str or type(time) is not float or type(wall) is not float:
        return rec, None
    return rec, hashlib.sha256(b"\x00" + body[:-1] + b',"' + mac.encode() + b'"]').digest()


def anchor_mac(key: bytes, count: int, last_mac: str) -> str:
    return hmac.new(key, f"agentos-audit-anchor|{count}|{last_mac}".encode(), hashlib.sha256).hexdigest()


def make_anchor(key: bytes, count: int, last_mac: str) -> Anchor:
    return Anchor(count, last_mac, anchor_mac(key, count, last_mac))


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    count: int                       # records read
    first_bad: int | None = None     # position (1-based) of the first bad record, if any
    reason: str = ""
    anchored: int = 0                # count the anchor vouches for
    unanchored: int = 0              # valid records past the anchor (a crash between commits)
    losses: tuple[int, ...] = ()     # "anchor lost after record N": the N of each re-anchoring
    what: str = "chain and anchor"   # what was checked (for the summary)

    def summary(self) -> str:
        lost = "".join(f"; WARNING: anchor lost after record {n} (re-anchored by an operator: records "
                       f"after {n} may be missing)" for n in self.losses)
        if self.ok:
            past = ("record(s) past the checkpoint, not covered by it" if "checkpoint" in self.what
                    else "valid record(s) past the anchor")
            tail = f"; {self.unanchored} {past}" if self.unanchored else ""
            return f"ok: {self.count} record(s), {self.what} verified{tail}{lost}"
        where = f"record {self.first_bad}" if self.first_bad is not None else "the log"
        return f"BAD at {where}: {self.reason}{lost}"


def anchor_problem(anchor: Any, key: bytes) -> str | None:
    """Why an anchor cannot be trusted (None if it verifies under `key`)."""
    if not isinstance(anchor, Anchor) or type(anchor.count) is not int or anchor.count < 0:
        return "the anchor is unreadable"
    if not is_hex64(anchor.mac) or not (anchor.count == 0 or is_hex64(anchor.last_mac)):
        return "the anchor is malformed"
    if not hmac.compare_digest(anchor.mac, anchor_mac(key, anchor.count, str(anchor.last_mac))):
        return "the anchor's MAC does not match (anchor forged or edited, or the key is wrong)"
    return None


def lost_after(rec: AuditRecord) -> int | None:
    """For an `anchor_lost` record, the N of "after record N"."""
    if rec.kind != ANCHOR_LOST or len(rec.data) > 4096:  # the recorder writes a few dozen bytes
        return None
    try:
        n = json.loads(rec.data).get("after")
    except (ValueError, AttributeError, RecursionError):
        return None
    return n if type(n) is int else None


def _safe_iter(records: Iterable[AuditRecord]) -> Iterator[AuditRecord | BaseException]:
    """The records, then (if reading failed part way) the error instead of raising it."""
    try:
        for rec in records:
            yield rec
    except Exception as e:  # a corrupt database page, a table of another shape...
        yield e


def verify(records: Iterable[AuditRecord], anchor: Anchor | None, key: bytes) -> VerifyReport:
    """Walk the chain in stored order; report the first record that does not check out."""
    prev = GENESIS
    n = 0
    anchored_mac: str | None = None
    losses: list[int] = []
    if anchor is not None:
        why = anchor_problem(anchor, key)
        if why is not None:
            return VerifyReport(False, 0, None, why)
    for rec in _safe_iter(records):
        n += 1
        if isinstance(rec, BaseException):
            return VerifyReport(False, n - 1, n, f"the log cannot be read past record {n - 1} "
                                f"({type(rec).__name__}: {str(rec)[:200]})", losses=tuple(losses))
        problem = record_problem(rec)
        if problem is not None:
            return VerifyReport(False, n, n, f"malformed record: {problem}", losses=tuple(losses))
        if rec.seq != n:
            return VerifyReport(False, n, n, f"sequence {rec.seq} where {n} was expected "
                                f"(a record was deleted, inserted or reordered)")
        if not hmac.compare_digest(rec.prev, prev):
            return VerifyReport(False, n, n, "its link to the previous record is broken "
                                "(a record before it was deleted or reordered)")
        want = record_mac(key, rec.seq, rec.time, rec.wall, rec.pid, rec.kind, rec.data, rec.prev)
        if not hmac.compare_digest(rec.mac, want):
            return VerifyReport(False, n, n, "its MAC does not match its fields (a field was edited, "
                                "or the record was written without the key)")
        prev = rec.mac
        lost = lost_after(rec)
        if lost is not None:
            losses.append(lost)
        if anchor is not None and n == anchor.count:
            anchored_mac = rec.mac
    found = tuple(losses)
    if anchor is None:
        if n:
            return VerifyReport(False, n, None, f"{n} record(s) but no anchor: the anchor was deleted "
                                f"(agentctl audit reanchor --accept-loss starts a new epoch, on the record)",
                                losses=found)
        return VerifyReport(True, 0)
    if n < anchor.count:
        return VerifyReport(False, n, n + 1, f"the log ends at record {n} but the anchor vouches for "
                            f"{anchor.count}: the tail was truncated", anchor.count, losses=found)
    if anchor.count and not hmac.compare_digest(anchored_mac or "", str(anchor.last_mac)):
        return VerifyReport(False, n, anchor.count, "the record the anchor points at has another MAC "
                            "(the log was rewritten)", anchor.count, losses=found)
    return VerifyReport(True, n, None, "", anchor.count, n - anchor.count, found)
