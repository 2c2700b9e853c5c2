"""An attacker without the key can neither forge an envelope nor change a sealed one: each
such frame is dropped at ingress, counted under its reason, and never delivered."""
from __future__ import annotations

import hashlib
import hmac

import pytest
from netsec import KEY, OTHER_KEY, collect, envelope, frame, receiver

from agentos.net import EnvelopeRejected, NonceGuard, seal, verify
from agentos.net.envelope import HEADER_LEN, MAGIC


def test_a_frame_sealed_under_another_key_is_forged() -> None:
    k, _ = receiver()
    assert k.ingress(frame("forged", key=OTHER_KEY)) is False
    assert k.ingress(frame("real")) is True
    assert k.run(collect).value == ["real"]
    assert k.net.dropped == {"forged": 1}
    assert [e.data for e in k.events.events() if e.kind == "net_drop"] == [{"forged": 1}]


def test_a_frame_with_a_made_up_mac_under_the_right_key_id_is_tampered() -> None:
    good = frame("x")
    fake = good[:len(MAGIC) + 8] + hmac.new(b"guess", good[HEADER_LEN:], hashlib.sha256).digest() + good[HEADER_LEN:]
    with pytest.raises(EnvelopeRejected) as e:
        verify(KEY, fake, None, 0.0)
    assert e.value.reason == "tampered"


@pytest.mark.parametrize("edit", ["body", "to_pid", "from_pid", "timestamp", "flip_each_byte"])
def test_any_change_to_a_sealed_frame_is_tampered(edit: str) -> None:
    k, _ = receiver()
    good = frame({"amount": 10}, to_pid=1)
    payload = good[HEADER_LEN:]
    if edit == "flip_each_byte":
        variants = [good[:i] + bytes([good[i] ^ 1]) + good[i + 1:] for i in range(len(MAGIC) + 8, len(good))]
    else:
        old, new = {"body": (b'"amount":10', b'"amount":99'), "to_pid": (b'["b",1]', b'["b",2]'),
                    "from_pid": (b'["a",1,0]', b'["a",2,0]'), "timestamp": (b'"at":1800000000.0', b'"at":1800000001.0')}[edit]
        assert old in payload
        variants = [good[:HEADER_LEN] + payload.replace(old, new)]
    for v in variants:
        assert k.ingress(v) is False
    assert sum(k.net.dropped.values()) == len(variants)
    assert set(k.net.dropped) <= {"tampered", "forged", "malformed"} and k.net.dropped["tampered"] >= 1
    assert k.run(collect).value == []


def test_verification_compares_macs_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify(KEY, frame(), NonceGuard(), envelope().sent_at)
    assert (32, 32) in calls
