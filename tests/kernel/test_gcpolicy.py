"""The kernel's collector policy: tuned while the loop runs, the interpreter's own settings
back afterwards (even when the run raises), and what a long run keeps in memory bounded."""
from __future__ import annotations

import gc
from typing import Any

import pytest
from hypothesis import given, strategies as st

from agentos import AllowAll, Cost, Driver, DriverResult, Kernel
from agentos.kernel import gcpolicy
from agentos.kernel.gcpolicy import GcPolicy
from agentos.kernel.observer import Observer
from agentos.store import MemoryStore, record_run
from agentos.store.recorder import RECORDED_RING


class Null(Driver):
    name = "null"

    def read(self, handle: Any, req: Any) -> DriverResult:
        return DriverResult(req, Cost(reductions=1))


def _kernel(**kw: Any) -> Kernel:
    k = Kernel(deterministic=True, policy=AllowAll(), **kw)
    k.register_driver(Null())
    return k


def _reads(n: int, seen: dict[str, Any] | None = None) -> Any:
    async def init(sys: Any, args: Any) -> int:
        if seen is not None:
            now = gcpolicy.settings()
            seen.update(threshold=now["threshold"], frozen=now["frozen"] > 0)
        h = await sys.open("null")
        for i in range(n):
            await sys.read(h, i)
        return n
    return init


@pytest.fixture
def host_settings() -> Any:
    before = (gc.get_threshold(), gc.isenabled(), gc.get_freeze_count())
    gc.set_threshold(600, 9, 8)
    yield (600, 9, 8)
    gc.set_threshold(*before[0])
    (gc.enable if before[1] else gc.disable)()


def test_the_loop_runs_under_the_policy_and_the_host_gets_its_settings_back(host_settings: Any) -> None:
    seen: dict[str, Any] = {}
    assert gc.get_freeze_count() == 0
    res = _kernel().run(_reads(10, seen), grant=["null"])
    assert res.value == 10
    assert seen["threshold"] == GcPolicy().threshold and seen["frozen"]  # boot's objects frozen
    assert gc.get_threshold() == host_settings and gc.isenabled() and gc.get_freeze_count() == 0


@pytest.mark.live_only(reason="the run ends in an observer's exception: nothing completes to replay")
def test_settings_come_back_when_the_kernel_raises(host_settings: Any) -> None:
    class Breaks(Observer):
        def flushed(self, batch: Any) -> None:
            raise RuntimeError("observer broke")

    gc.disable()
    k = _kernel()
    k.add_observer(Breaks())
    with pytest.raises(RuntimeError, match="observer broke"):
        k.run(_reads(10), grant=["null"])
    assert gc.get_threshold() == host_settings and not gc.isenabled() and gc.get_freeze_count() == 0
    gc.enable()


@pytest.mark.live_only(reason="collector settings are the host's, not the run's: a replay kernel uses its own")
def test_gc_none_leaves_the_interpreter_alone(host_settings: Any) -> None:
    seen: dict[str, Any] = {}
    _kernel(gc=None).run(_reads(1, seen), grant=["null"])
    assert seen["threshold"] == host_settings and not seen["frozen"]


def test_a_host_that_froze_objects_keeps_its_freeze() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        seen: dict[str, Any] = {}
        _kernel().run(_reads(1, seen), grant=["null"])
        assert seen["threshold"] == GcPolicy().threshold
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_only_the_outermost_kernel_applies_and_restores() -> None:
    before = gc.get_threshold()
    outer = gcpolicy.apply(GcPolicy(threshold=(1000, 11, 12)))
    try:
        inner = gcpolicy.apply(GcPolicy(threshold=(5, 5, 5)))
        assert gc.get_threshold() == (1000, 11, 12)
        gcpolicy.restore(inner)
        assert gc.get_threshold() == (1000, 11, 12)  # the outer kernel is still running
    finally:
        gcpolicy.restore(outer)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


@pytest.mark.parametrize("bad", [(1, 2), (1, 2, -3), (1.5, 2, 3), [1, 2, 3]])
def test_a_malformed_threshold_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="three ints in 0.."):
        GcPolicy(threshold=bad)


@pytest.mark.live_only(reason="it records and replays the run itself, to see what the kernel keeps")
def test_a_recorded_run_keeps_neither_its_journal_nor_its_whole_event_log_in_memory() -> None:
    store = MemoryStore()
    k = _kernel()
    rid = record_run(k, store, "long")
    prog = _reads(3000)
    k.run(prog, grant=["null"])
    assert k.journal is not None and k.journal.entries == [] and len(k.journal) == len(store.journal(rid))
    assert len(k.events.ring) <= RECORDED_RING < k.events.seq
    rep = Kernel.replay_from(store, rid, image=prog)  # the store alone replays it
    assert rep.identical, rep


def test_a_run_with_no_store_keeps_its_journal_for_replay() -> None:
    k = _kernel()
    k.run(_reads(50), grant=["null"])
    assert k.journal is not None and len(k.journal.entries) == len(k.journal) > 50


@pytest.mark.parametrize("threshold", [(2**31, 1, 1), (1, 2**40, 1), (-1, 0, 0), (1.0, 1, 1), (True, 1, 1)])
def test_a_threshold_the_collector_cannot_take_is_refused_before_anything_is_frozen(threshold: Any) -> None:
    with pytest.raises(ValueError, match="GcPolicy.threshold"):
        GcPolicy(threshold=threshold)
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("freeze", ["no", 0, 1, None])
def test_freeze_must_be_a_bool_not_anything_truthy(freeze: Any) -> None:
    with pytest.raises(ValueError, match="GcPolicy.freeze must be True or False"):
        GcPolicy(freeze=freeze)


def test_a_threshold_that_fails_to_apply_leaves_nothing_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: Any) -> None:
        raise OverflowError("signed integer is greater than maximum")
    monkeypatch.setattr(gcpolicy.gc, "set_threshold", refuse)
    with pytest.raises(OverflowError):
        gcpolicy.apply(GcPolicy())
    assert gc.get_freeze_count() == 0


@given(st.tuples(st.integers(-2, 2**32) | st.floats() | st.booleans(), st.integers(0, 9), st.integers(0, 9))
       | st.lists(st.integers(0, 9), max_size=4) | st.text(max_size=3) | st.none())
def test_any_threshold_is_taken_only_if_the_collector_can_take_it(threshold: Any) -> None:
    ok = (type(threshold) is tuple and len(threshold) == 3
          and all(type(x) is int and 0 <= x <= 2**31 - 1 for x in threshold))
    try:
        GcPolicy(threshold=threshold)
    except ValueError as e:
        assert not ok and "GcPolicy.threshold" in str(e)
    else:
        assert ok
