"""Whatever bytes reach a kernel's ingress (random bytes, truncated frames, frames sealed
by a key holder with wrong types in their fields, NaN, 10,000-deep bodies, lone
surrogates, 50 MB), the frame is dropped and counted, and the kernel runs on."""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from netsec import KEY, NOW, collect, envelope, frame, receiver

from agentos import BadArgument
from agentos.net import REASONS, EnvelopeRejected, NonceGuard, seal, verify
from agentos.net.envelope import _DOMAIN, HEADER_LEN, MAGIC, key_id


def sealed_raw(payload: bytes, key: bytes = KEY) -> bytes:
    """A frame a key holder built by hand: a valid seal over whatever bytes it likes."""
    return MAGIC + key_id(key) + hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest() + payload


def good_doc(**changes: Any) -> dict[str, Any]:
    doc = json.loads(frame("x")[HEADER_LEN:])
    doc.update(changes)
    return doc


def rejected(data: Any, **kw: Any) -> str:
    with pytest.raises(EnvelopeRejected) as e:
        verify(KEY, data, NonceGuard(), NOW, **kw)
    assert e.value.reason in REASONS
    return e.value.reason


@settings(derandomize=True, max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=600))
def test_random_bytes_are_rejected(data: bytes) -> None:
    rejected(data)
    rejected(MAGIC + data)
    rejected(MAGIC + key_id(KEY) + data)


def test_every_truncation_of_a_good_frame_is_rejected() -> None:
    good = frame({"k": list(range(20))})
    for n in range(len(good)):
        rejected(good[:n])


HOSTILE_FIELDS = [
    {"from": ["a", "1", 0]}, {"from": ["a", True, 0]}, {"from": ["a", -1, 0]}, {"from": ["a", 1]},
    {"from": "a/1"}, {"to": ["b", 2 ** 70]}, {"to": [None, 1]}, {"to": ["", 1]}, {"to": ["b\u0000", 1]},
    {"at": None}, {"at": "now"}, {"at": -5.0}, {"kind": "SEND"}, {"kind": 7}, {"nonce": "z" * 32},
    {"nonce": 5}, {"reply": 1}, {"v": 2}, {"extra": 1}, {"body": {"@bytes": 7}}, {"body": {"@float": "x"}},
    {"body": {"@tuple": 5}}, {"body": {"@dict": 5}}, {"corr": {"@dict": 3}},
    {"body": "\ud800"}, {"body": {"\udfff": 1}},
]


@pytest.mark.parametrize("change", HOSTILE_FIELDS, ids=[next(iter(c)) + str(i) for i, c in enumerate(HOSTILE_FIELDS)])
def test_a_sealed_frame_with_wrong_types_in_its_fields_is_malformed(change: dict[str, Any]) -> None:
    doc = good_doc(**change)
    payload = json.dumps(doc, ensure_ascii=True, sort_keys=True).encode()
    assert rejected(sealed_raw(payload)) == "malformed"


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_timestamps_are_malformed(raw: bytes) -> None:
    payload = json.dumps(good_doc(at=12345.5), sort_keys=True).encode().replace(b"12345.5", raw)
    assert rejected(sealed_raw(payload)) == "malformed"


def test_ten_thousand_deep_bodies_are_refused_at_seal_and_dropped_at_ingress() -> None:
    deep: Any = "x"
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(BadArgument, match="deeper"):
        seal(KEY, envelope(deep))
    text = json.dumps(good_doc(body="PLACEHOLDER"), sort_keys=True)
    payload = text.replace('"PLACEHOLDER"', "[" * 10_000 + "1" + "]" * 10_000).encode()
    assert rejected(sealed_raw(payload), max_frame=1 << 20) == "malformed"


def test_lone_surrogates_are_refused_at_seal() -> None:
    for body in ("\ud800", {"k\udc80": 1}, ["ok", "\udfff"]):
        with pytest.raises(BadArgument, match="surrogate"):
            seal(KEY, envelope(body))


def test_fifty_megabytes_are_oversize_before_anything_is_parsed() -> None:
    big = b"\x00" * (50 << 20)
    assert rejected(MAGIC + big) == "oversize"
    with pytest.raises(BadArgument, match="over the frame limit"):
        seal(KEY, envelope("x" * (2 << 20)))


def test_a_kernel_fed_garbage_counts_every_frame_and_delivers_only_the_good_one() -> None:
    k, _ = receiver()
    junk: list[Any] = [b"", b"\x00" * 10, MAGIC * 20, "a string", None, 12, bytearray(b"AOE1"),
                       sealed_raw(b"not json"), sealed_raw(b"[]"), b"\xff" * 5_000_000]
    for j in junk:
        assert k.ingress(j) is False
    assert k.ingress(frame("good")) is True
    assert k.run(collect).value == ["good"]
    assert sum(k.net.dropped.values()) == len(junk)
    assert k.net.dropped["oversize"] == 1


def test_a_flood_into_a_kernel_that_is_not_running_is_bounded() -> None:
    k, _ = receiver(max_inbox=100)
    for i in range(1000):
        k.ingress(frame(i))
    assert len(k._net_inbox) == 100 and k.net.dropped == {"overload": 901}  # the node's start is one
    got = k.run(collect).value
    assert got == list(range(99))
