"""The keyed hash chain: records, anchors, and verification.

Each record's MAC is HMAC-SHA256 under the kernel key over every field (seq, kernel time,
wall time, pid, kind, data, and the previous record's MAC), so an edited field, a
dropped or reordered record, or a record written without the key breaks the chain at
that point. The anchor (count + last MAC, itself MACed) is kept apart from the records:
it catches a tail cut off the log, which a chain alone cannot. Rolling back both the
records and the anchor to an older consistent state is out of scope (ship anchors
off-host for that).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Iterable

GENESIS = "0" * 64


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


def _body(seq: int, time: float, wall: float, pid: int, kind: str, data: str, prev: str) -> bytes:
    return json.dumps([seq, repr(float(time)), repr(float(wall)), pid, kind, data, prev],
                      separators=(",", ":"), ensure_ascii=True).encode()


def record_mac(key: bytes, seq: int, time: float, wall: float, pid: int, kind: str, data: str,
               prev: str) -> str:
    return hmac.new(key, _body(seq, time, wall, pid, kind, data, prev), hashlib.sha256).hexdigest()


def make_record(key: bytes, seq: int, time: float, wall: float, pid: int, kind: str, data: str,
                prev: str) -> AuditRecord:
    return AuditRecord(seq, time, wall, pid, kind, data, prev,
                       record_mac(key, seq, time, wall, pid, kind, data, prev))


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

    def summary(self) -> str:
        if self.ok:
            tail = f"; {self.unanchored} valid record(s) past the anchor" if self.unanchored else ""
            return f"ok: {self.count} record(s), chain and anchor verified{tail}"
        where = f"record {self.first_bad}" if self.first_bad is not None else "the log"
        return f"BAD at {where}: {self.reason}"


def verify(records: Iterable[AuditRecord], anchor: Anchor | None, key: bytes) -> VerifyReport:
    """Walk the chain in stored order; report the first record that does not check out."""
    prev = GENESIS
    n = 0
    anchored_mac: str | None = None
    if anchor is not None and not hmac.compare_digest(anchor.mac, anchor_mac(key, anchor.count, anchor.last_mac)):
        return VerifyReport(False, 0, None, "the anchor's MAC does not match (anchor forged or edited, "
                            "or the key is wrong)")
    for rec in records:
        n += 1
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
        if anchor is not None and n == anchor.count:
            anchored_mac = rec.mac
    if anchor is None:
        if n:
            return VerifyReport(False, n, None, f"{n} record(s) but no anchor: the anchor was deleted")
        return VerifyReport(True, 0)
    if n < anchor.count:
        return VerifyReport(False, n, n + 1, f"the log ends at record {n} but the anchor vouches for "
                            f"{anchor.count}: the tail was truncated", anchor.count)
    if anchor.count and not hmac.compare_digest(anchored_mac or "", anchor.last_mac):
        return VerifyReport(False, n, anchor.count, "the record the anchor points at has another MAC "
                            "(the log was rewritten)", anchor.count)
    return VerifyReport(True, n, None, "", anchor.count, n - anchor.count)
