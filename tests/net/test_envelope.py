"""seal/verify round trip every body the kernel can carry, keeping Python types."""
from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from agentos import BadArgument
from agentos.net import Envelope, NonceGuard, fresh_nonce, seal, verify

KEY = b"envelope-tests-key-0123456789abc"
NOW = 1_800_000_000.0

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20))
bodies = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(bodies, st.one_of(st.none(), st.tuples(st.text(max_size=5), st.integers(0, 99))))
def test_every_carryable_body_round_trips_with_its_types(body: Any, corr: Any) -> None:
    env = Envelope("a", 3, "b", 4, NOW, fresh_nonce(), body, 7, "send", corr, True)
    frame = seal(KEY, env)
    assert seal(KEY, env) == frame  # one rendering per envelope
    got = verify(KEY, frame, NonceGuard(), NOW)
    assert got == env


def test_non_finite_floats_travel_as_themselves() -> None:
    env = Envelope("a", 1, "b", 1, NOW, fresh_nonce(), [math.inf, -math.inf, math.nan])
    got = verify(KEY, seal(KEY, env), None, NOW).body
    assert got[0] == math.inf and got[1] == -math.inf and math.isnan(got[2])


@pytest.mark.parametrize("field,value", [("from_node", ""), ("to_node", "a b"), ("from_pid", -1), ("to_pid", True),
                                         ("sent_at", math.nan), ("sent_at", math.inf), ("nonce", "x"),
                                         ("kind", "Send"), ("incarnation", 1.5), ("reply", 1)])
def test_seal_refuses_bad_fields_with_a_typed_error(field: str, value: Any) -> None:
    fields = dict(from_node="a", from_pid=1, to_node="b", to_pid=1, sent_at=NOW, nonce=fresh_nonce())
    fields[field] = value
    with pytest.raises(BadArgument, match=field):
        seal(KEY, Envelope(**fields))  # type: ignore[arg-type]


def test_a_cycle_is_refused_at_seal() -> None:
    body: list[Any] = []
    body.append(body)
    with pytest.raises(BadArgument, match="cycle"):
        seal(KEY, Envelope("a", 1, "b", 1, NOW, fresh_nonce(), body))


def test_short_keys_are_refused() -> None:
    with pytest.raises(BadArgument, match="at least 16"):
        seal(b"short", Envelope("a", 1, "b", 1, NOW, fresh_nonce()))
