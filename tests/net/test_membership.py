"""The failure detector's decisions, on plain numbers: leases, declared down, fencing,
incarnations (no NATS, no clock)."""
from __future__ import annotations

import math

import pytest

from agentos.net.membership import Change, Membership

pytestmark = pytest.mark.live_only(reason="no kernel runs: the detector alone, on plain numbers")


def rec(inc: int, stamp: int) -> tuple[int, int, dict]:
    return (inc, stamp, {})


def test_a_peer_is_up_while_its_stamp_changes_and_down_a_lease_after_it_stops() -> None:
    m = Membership("a", lease=1.0)
    assert m.observe({"b": rec(1, 1)}, 0.0) == [Change("b", 1, True)]
    assert m.observe({"b": rec(1, 2)}, 0.9) == []
    assert m.observe({"b": rec(1, 3)}, 1.8) == []          # renewed: the clock restarts
    assert m.observe({"b": rec(1, 3)}, 2.7) == []          # 0.9 s without change: still up
    assert m.observe({"b": rec(1, 3)}, 2.81) == [Change("b", 1, False)]
    assert not m.accepts("b", 1)


def test_a_peer_missing_from_the_table_is_declared_down_too() -> None:
    m = Membership("a", lease=1.0)
    m.observe({"b": rec(1, 1)}, 0.0)
    assert m.observe({}, 1.5) == [Change("b", 1, False)]


def test_a_declared_down_incarnation_never_comes_back_only_a_higher_one() -> None:
    m = Membership("a", lease=1.0)
    m.observe({"b": rec(1, 1)}, 0.0)
    m.observe({"b": rec(1, 1)}, 2.0)
    # the old incarnation's process wakes and renews: refused, it must rejoin as a new one
    assert m.observe({"b": rec(1, 2)}, 2.1) == []
    assert not m.accepts("b", 1)
    assert m.observe({"b": rec(2, 1)}, 2.2) == [Change("b", 2, True)]
    assert m.accepts("b", 2) and not m.accepts("b", 1)


def test_a_new_incarnation_seen_before_the_old_expired_ends_the_old_one() -> None:
    m = Membership("a", lease=1.0)
    m.observe({"b": rec(1, 1)}, 0.0)
    assert m.observe({"b": rec(2, 1)}, 0.3) == [Change("b", 1, False), Change("b", 2, True)]


def test_a_node_that_could_not_renew_for_a_lease_fences_and_rejoins_as_the_next_incarnation() -> None:
    m = Membership("a", lease=1.0)
    assert not m.must_fence(5.0)              # never renewed yet: nothing to lose
    m.renewed(0.0)
    assert not m.must_fence(1.0)
    assert m.must_fence(1.01)
    m.fence()
    assert not m.must_fence(9.0)              # fenced once, not again
    m.observe({"b": rec(1, 1)}, 9.0)
    assert not m.accepts("b", 1)              # a fenced node acts on nothing
    assert m.rejoin(9.5) == 2 and not m.fenced and not m.must_fence(10.0)


def test_wrong_types_in_the_table_are_ignored_not_crashed_on() -> None:
    m = Membership("a", lease=1.0)
    table = {"b": ("1", 1, {}), "c": (None, None, {}), "a": rec(7, 7), "d": (1.5, 0, {})}
    assert m.observe(table, 0.0) == []  # type: ignore[arg-type]
    assert m.up_nodes() == [] and not m.accepts("b", "1")


@pytest.mark.parametrize("lease", [0, -1, math.nan, math.inf, "1"])
def test_a_lease_must_be_a_positive_finite_number(lease: object) -> None:
    with pytest.raises(ValueError):
        Membership("a", lease=lease)  # type: ignore[arg-type]
