"""Under a VirtualClock, timers fire while another process's driver I/O hangs: after the
autojump threshold of real time with nothing runnable, virtual time jumps to the next
timer. Each jump is journaled at its I/O tick and replayed there, byte for byte."""
from __future__ import annotations

import asyncio
import time

import pytest

from agentos import AllowAll, Cost, Driver, DriverResult, Journal, Kernel, KernelError
from agentos.kernel.events import encode_event
from agentos.store import MemoryStore, record_run


class Hung(Driver):
    """An async read that never completes (a hung endpoint)."""

    name = "hung"

    def __init__(self) -> None:
        self.started = 0

    def read(self, handle, req):
        self.started += 1

        async def forever():
            await asyncio.sleep(3600)
            return DriverResult("never", Cost())
        return forever()


class Exploding(Driver):
    name = "hung"

    def read(self, handle, req):  # replay must never call a driver
        raise AssertionError("driver called in replay")


async def reader(sys, args):
    h = await sys.open("hung")
    return await sys.read(h, "hello")


async def sleeper(sys, args):
    await sys.sleep(20)
    t1 = await sys.now()
    await sys.sleep(5)
    return t1, await sys.now()


async def init(sys, args):
    await sys.spawn(reader, caps=(sys.caps[0],))
    _, s = await sys.spawn(sleeper)
    await sys.waitpid(s)
    return await sys.now()


def _boot(**kw):
    k = Kernel(deterministic=True, seed=3, policy=AllowAll(), **kw)
    return k


def test_sleep_beside_a_hung_driver_read_fires():
    k = _boot(autojump_threshold=0.02)
    hung = Hung()
    k.register_driver(hung)
    t0 = time.monotonic()
    res = k.run(init, grant=["hung"])
    assert hung.started == 1
    assert str(res.reason) == "normal" and res.value == 25.0
    assert time.monotonic() - t0 < 5  # it did not wait for the driver
    jumps = [e for e in k.journal.entries if e.op == "clock_jump"]
    assert [j.value for j in jumps] == [20.0, 25.0]
    assert all(j.at is not None for j in jumps)


def test_autojump_off_leaves_time_standing_while_io_is_in_flight():
    k = _boot(autojump_threshold=None)
    k.register_driver(Hung())

    async def bounded():
        return await asyncio.wait_for(k.boot(init, grant=["hung"]), 0.3)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(bounded())


def test_autojumps_replay_byte_identical_from_the_journal():
    k = _boot(autojump_threshold=0.01)
    k.register_driver(Hung())
    res = k.run(init, grant=["hung"])
    k2 = _boot(mode="replay", journal=Journal(k.journal.entries))
    k2.register_driver(Exploding())
    res2 = k2.run(init, grant=["hung"])
    assert res2.value == res.value == 25.0
    a, b = list(k.events), list(k2.events)
    assert [encode_event(e) for e in a] == [encode_event(e) for e in b]


def test_autojumps_replay_from_a_store():
    store = MemoryStore()
    k = _boot(autojump_threshold=0.01)
    k.register_driver(Hung())
    rid = record_run(k, store, "autojump")
    k.run(init, grant=["hung"])
    assert any(e.op == "clock_jump" for e in store.journal(rid))
    rep = Kernel.replay_from(store, rid)
    assert rep.identical and rep.complete, str(rep)


def test_a_replay_that_skips_a_recorded_jump_is_a_named_divergence():
    from agentos import NondeterminismError
    from agentos.kernel.journal import JournalEntry

    k = _boot(autojump_threshold=0.01)
    k.register_driver(Hung())
    k.run(init, grant=["hung"])
    entries = list(k.journal.entries)
    j = next(e for e in entries if e.op == "clock_jump")
    forged = JournalEntry(0, 1, "clock_jump", "", None, None, True, 1.0, at=1)  # a tick the replay is busy
    k2 = _boot(mode="replay", journal=Journal([forged] + [e for e in entries if e is not j]))
    k2.register_driver(Exploding())
    with pytest.raises(NondeterminismError, match="I/O tick"):
        k2.run(init, grant=["hung"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, "0.1", True])
def test_autojump_threshold_is_validated(bad):
    with pytest.raises(KernelError, match="autojump_threshold"):
        Kernel(deterministic=True, autojump_threshold=bad)
