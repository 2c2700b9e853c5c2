"""A long-lived kernel's process history stays bounded: past its limit the oldest ended
processes are forgotten (and counted); live ones are always kept."""
from __future__ import annotations

import pytest

from agentos import AllowAll, Kernel, ProcessHistory


async def _child(sys, args):  # type: ignore[no-untyped-def]
    return None


async def _sleeper(sys, args):  # type: ignore[no-untyped-def]
    await sys.sleep(1000)


def test_history_limit_forgets_the_oldest_ended_and_keeps_the_live() -> None:
    async def init(sys, args):  # type: ignore[no-untyped-def]
        _, live = await sys.spawn(_sleeper, name="keeper")
        for _ in range(50):
            _, c = await sys.spawn(_child, name="short")
            await sys.waitpid(c)
        await sys.kill(live)

    k = Kernel(deterministic=True, policy=AllowAll())
    h = ProcessHistory.attach(k, limit=10)
    k.run(init)
    assert len(h.records) <= 10 and h.dropped == 52 - len(h.records)
    names = [r.name for r in h.rows()]
    assert names.count("short") >= 8 and h.rows()[-1].pid == 52   # the latest kept


def test_history_limit_must_be_a_positive_int() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            ProcessHistory(limit=bad)  # type: ignore[arg-type]
