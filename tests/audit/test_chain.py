"""Property: any single tampering with a chained log is caught, at or before its position."""
from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings, strategies as st

from agentos.audit import FlightRecorder, MemoryAuditBackend, verify

KEY = b"p" * 32


def _log(n: int) -> MemoryAuditBackend:
    b = MemoryAuditBackend()
    rec = FlightRecorder(b, KEY, now=lambda: 1.0, wall=lambda: 2.0)
    for i in range(n):
        rec.append(i, "decision", {"i": i})
        if i % 3 == 2:
            rec.commit()
    rec.commit()
    return b


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 12), st.data())
def test_any_single_tampering_is_detected(n: int, data: st.DataObject) -> None:
    b = _log(n)
    assert verify(b.records, b.anchor, KEY).ok
    recs = list(b.records)
    kind = data.draw(st.sampled_from(["edit", "delete", "swap", "truncate", "insert_copy"]))
    i = data.draw(st.integers(0, n - 1))
    if kind == "edit":
        field = data.draw(st.sampled_from(["time", "wall", "pid", "kind", "data", "prev", "mac", "seq"]))
        old = getattr(recs[i], field)
        if field in ("time", "wall", "pid", "seq"):
            new = old + 1
        else:
            new = {"kind": old + "x", "data": json.dumps({"i": -1}), "prev": "f" * 64, "mac": "e" * 64}[field]
        recs[i] = dataclasses.replace(recs[i], **{field: new})
    elif kind == "delete":
        del recs[i]
    elif kind == "swap":
        j = (i + 1) % n
        recs[i], recs[j] = recs[j], recs[i]
    elif kind == "truncate":
        recs = recs[:i]
    else:
        recs.insert(i, recs[i])
    r = verify(recs, b.anchor, KEY)
    assert not r.ok, (kind, i)
    assert r.first_bad is None or r.first_bad <= n + 1


@settings(max_examples=300)
@given(seq=st.integers(), time=st.floats(allow_nan=True, allow_infinity=True), wall=st.floats(),
       pid=st.integers(), kind=st.text(), data=st.text(), prev=st.text())
def test_the_mac_body_is_the_json_text_it_always_was(seq: int, time: float, wall: float, pid: int, kind: str,
                                                       data: str, prev: str) -> None:
    # the built-once encoder must write exactly what json.dumps wrote, or old logs stop verifying
    import hashlib
    import hmac
    import json

    from agentos.audit.chain import _body, record_mac
    old = json.dumps([seq, repr(float(time)), repr(float(wall)), pid, kind, data, prev],
                     separators=(",", ":"), ensure_ascii=True).encode()
    assert _body(seq, time, wall, pid, kind, data, prev) == old
    assert record_mac(b"k" * 32, seq, time, wall, pid, kind, data, prev) == hmac.new(
        b"k" * 32, old, hashlib.sha256).hexdigest()


@settings(max_examples=300)
@given(seq=st.integers(), time=st.floats(), wall=st.floats(), pid=st.integers(), kind=st.text(),
       data=st.text(), prev=st.text())
def test_the_leaf_made_with_the_mac_is_the_leaf_of_the_stored_record(seq: int, time: float, wall: float,
                                                                      pid: int, kind: str, data: str,
                                                                      prev: str) -> None:
    # the recorder folds this leaf into the Merkle tree that checkpoints sign: it must be
    # the leaf anyone recomputes from the stored record
    from agentos.audit.chain import leaf_data, make_record_leaf
    from agentos.audit.merkle import leaf_hash
    rec, leaf = make_record_leaf(b"k" * 32, seq, time, wall, pid, kind, data, prev)
    assert leaf == leaf_hash(leaf_data(rec))
