"""Weighted round robin across lanes: a backlogged lane gets its share whatever the others
hold, and each lane's bound only ever drops that lane's own oldest items."""
from __future__ import annotations

from hypothesis import given, strategies as st

from agentos.services.lanes import LANES, WEIGHTS, LaneQueue


@given(st.lists(st.integers(0, LANES - 1), min_size=1, max_size=400))
def test_a_backlogged_lane_gets_its_weight_in_every_round(pushes: list[int]) -> None:
    q = LaneQueue(10_000)
    for i, lane in enumerate(pushes):
        q.push(lane, (lane, i))
    out = []
    while (item := q.pop()) is not None:
        out.append(item[0])
    assert sorted(out) == sorted(pushes)
    backlog = [pushes.count(l) for l in range(LANES)]
    served = [0] * LANES
    window = sum(WEIGHTS)
    for n, lane in enumerate(out, 1):   # while lane l still had items, it got >= its weight per window
        served[lane] += 1
        if n % window == 0:
            for l in range(LANES):
                if backlog[l] - served[l] > 0:
                    assert served[l] >= WEIGHTS[l] * (n // window) - WEIGHTS[l], (l, n, served)


@given(st.lists(st.tuples(st.integers(0, LANES - 1), st.integers()), max_size=300), st.integers(1, 8))
def test_a_full_lane_drops_only_its_own_oldest(pushes: list[tuple[int, int]], cap: int) -> None:
    q = LaneQueue(cap)
    for lane, v in pushes:
        dropped = q.push(lane, (lane, v))
        assert dropped is None or dropped[0] == lane
    for lane in range(LANES):
        mine = [p for p in pushes if p[0] == lane]
        assert list(q.lanes[lane]) == mine[-cap:]


def test_a_lane_queue_with_no_room_is_refused_when_made_not_when_pushed() -> None:
    import pytest

    from agentos.services.lanes import LaneQueue

    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="positive int"):
            LaneQueue(bad)  # type: ignore[arg-type]
