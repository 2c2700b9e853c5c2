"""A captured envelope sent again is dropped (replayed) while its nonce is remembered and
as stale once its window has passed; one from too far in the future is stale too. The
guard's memory is bounded, and forgetting a nonce never lets it be replayed."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from netsec import NOW, collect, frame, receiver

from agentos.net import EnvelopeRejected, NonceGuard, fresh_nonce


def test_the_same_frame_twice_is_delivered_once() -> None:
    k, clock = receiver(window_s=30)
    f = frame("pay once")
    assert k.ingress(f) is True
    assert k.ingress(f) is False
    clock.t += 29
    assert k.ingress(f) is False          # still remembered: replayed
    clock.t += 2
    assert k.ingress(f) is False          # forgotten, but past the window: stale
    assert k.run(collect).value == ["pay once"]
    assert k.net.dropped == {"replayed": 2, "stale": 1}


def test_an_old_frame_is_stale_and_a_future_one_too() -> None:
    k, _ = receiver(window_s=30, skew_s=5)
    assert k.ingress(frame("old", at=NOW - 31)) is False
    assert k.ingress(frame("future", at=NOW + 6)) is False
    assert k.ingress(frame("near future", at=NOW + 4)) is True
    assert k.run(collect).value == ["near future"]
    assert k.net.dropped == {"stale": 2}


def test_a_full_guard_forgets_the_oldest_nonce_and_refuses_anything_that_old() -> None:
    g = NonceGuard(window_s=60, max_nonces=3)
    nonces = [fresh_nonce() for _ in range(4)]
    for i, n in enumerate(nonces):
        g.check(n, NOW + i, NOW + 3)
    assert len(g) == 3
    with pytest.raises(EnvelopeRejected) as e:
        g.check(nonces[0], NOW, NOW + 3)  # forgotten, so refused by the floor
    assert e.value.reason == "stale"
    with pytest.raises(EnvelopeRejected) as e:
        g.check(nonces[3], NOW + 3, NOW + 3)
    assert e.value.reason == "replayed"


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.floats(-60, 60), min_size=10, max_size=10),
       st.lists(st.tuples(st.integers(0, 9), st.floats(0, 20)), max_size=60), st.integers(1, 8))
def test_no_envelope_is_ever_accepted_twice_whatever_the_order_and_memory(
        stamps: list[float], events: list[tuple[int, float]], cap: int) -> None:
    # a replay is the same frame again: the same nonce with the same (MACed) timestamp
    g = NonceGuard(window_s=50, max_nonces=cap)
    names = [fresh_nonce() for _ in range(10)]
    accepted: set[str] = set()
    now = NOW
    for i, step in events:
        now += step
        try:
            g.check(names[i], NOW + stamps[i], now)
        except EnvelopeRejected:
            continue
        assert names[i] not in accepted
        assert now - 50 < NOW + stamps[i] <= now + 50
        accepted.add(names[i])
        assert len(g) <= cap
