"""The store behind hibernation: failures lose nothing, budgets are conserved, runs replay,
and the SQLite backend holds what the memory one does."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from agentos import Kernel, Quota
from agentos.sched import HibernationConfig, HibernationStoreError, MemoryHibernationStore, SqliteHibernationStore
from tests.sched.test_hibernate import _ask, counter


class FlakyStore(MemoryHibernationStore):
    """A memory store that can be switched off, as a disk or a database goes away."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def put_many(self, items):
        if self.down:
            raise HibernationStoreError("the store went away")
        super().put_many(items)

    def get(self, key):
        if self.down:
            raise HibernationStoreError("the store went away")
        return super().get(key)


def test_store_going_away_mid_hibernation_loses_nothing():
    store = FlakyStore()
    out = {}
    ref = {}

    async def init(sys, args):
        k = ref["k"]
        pid, cap = await sys.spawn(counter, args="f")
        out["a"] = await _ask(sys, cap)
        store.down = True
        out["refused"] = k.hibernate(pid)          # the put fails: it stays resident
        out["state1"] = k.procs[pid].state.value
        store.down = False
        out["ok"] = k.hibernate(pid)
        store.down = True                            # gone while it sleeps
        me = await sys.self_cap()
        await sys.send(cap, "ping", caps=[me], corr=2)
        await sys.sleep(5)
        out["state2"] = k.procs[pid].state.value     # the wake waits for the store
        store.down = False
        out["b"] = (await sys.recv()).body           # a later turn retries: nothing lost
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig(store=store))
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["refused"] is False and out["state1"] == "waiting"
    assert out["ok"] is True and out["state2"] == "hibernated"
    assert out["a"][0] == 1 and out["b"][0] == 2   # its state and the message both survived
    m = k.metrics()
    assert m["hibernate_errors"] >= 2
    assert m["events"]["hibernate_error"] >= 2


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["hib", "thaw", "ask"]), st.integers(0, 3)), max_size=25))
def test_budget_is_conserved_under_random_hibernate_and_wake(ops):
    from agentos.kernel.accounts import MEM

    ref = {}
    out = {}

    async def init(sys, args):
        k = ref["k"]
        procs = []
        for i in range(4):
            q = Quota(mem=5000) if i % 2 else None
            procs.append(await sys.spawn(counter, args=i, quota=q))
        await sys.sleep(1)
        for op, i in ops:
            pid, cap = procs[i]
            p = k.procs[pid]
            if op == "hib" and k.hibernation.why_not(p) is None:
                k.hibernate(pid)
            elif op == "thaw":
                k.thaw(pid)
            elif op == "ask":
                await _ask(sys, cap)
            await sys.sleep(1)
        for pid, _ in procs:
            k.thaw(pid)
        root = k.init.account
        out["mem_used"] = sum(k.procs[pid].account.used[MEM] for pid, _ in procs)
        out["mem_left"] = root.balance[MEM] + sum(k.procs[pid].account.balance[MEM]
                                                 for i, (pid, _) in enumerate(procs) if i % 2)
        out["answers"] = [(await _ask(sys, cap))[0] for _, cap in procs]
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    ref["k"] = k
    assert k.run(init, quota=Quota(mem=100_000)).value == "ok"
    # every token of mem the root started with is held or used: none made, none lost
    assert out["mem_left"] + out["mem_used"] == 100_000
    asks = [sum(1 for op, j in ops if op == "ask" and j == i) for i in range(4)]
    assert out["answers"] == [n + 1 for n in asks]
    assert k.accounts.open_count == 0


def test_a_run_with_hibernations_replays_byte_for_byte():
    from agentos.store import MemoryStore, record_run

    async def init(sys, args):
        caps = [(await sys.spawn(counter, args=i))[1] for i in range(8)]
        await sys.sleep(1)
        total = 0
        for r in range(3):
            for c in caps[r:]:
                total += (await _ask(sys, c))[0]
            await sys.sleep(3)
        return total

    store = MemoryStore()
    k = Kernel(deterministic=True, hibernation=HibernationConfig(max_resident=4))
    rid = record_run(k, store, "hib")
    res = k.run(init)
    assert k.metrics()["hibernations"] > 5
    rep = Kernel.replay_from(store, rid, image=init, images={"counter": counter})
    assert rep.identical, rep
    assert rep.result.value == res.value
    assert rep.kernel.metrics()["hibernations"] == k.metrics()["hibernations"]


@pytest.mark.live_only(reason="a SQLite file outside the run")
def test_sqlite_backend_round_trip(tmp_path):
    store = SqliteHibernationStore(str(tmp_path / "hib.db"))
    out = {}

    async def init(sys, args):
        caps = [(await sys.spawn(counter, args=i))[1] for i in range(5)]
        await sys.sleep(1)
        out["answers"] = [(await _ask(sys, c))[1] for c in caps]
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig(store=store, max_resident=2))
    assert k.run(init).value == "ok"
    assert out["answers"] == [0, 1, 2, 3, 4]
    assert k.metrics()["hibernations"] >= 3
    store.store.close()


def test_a_flood_of_messages_to_a_process_whose_record_cannot_be_read_parks_at_its_max_mailbox():
    from agentos.kernel.process import WaitKind

    store = FlakyStore()
    out = {}
    ref = {}

    async def flooder(sys, args):
        for i in range(6):
            await sys.send(sys.caps[0], ["n", i])
        out["flooder_done"] = True

    async def init(sys, args):
        k = ref["k"]
        pid, cap = await sys.spawn(counter, args="f", quota=Quota(max_mailbox=2))
        await _ask(sys, cap)
        k.hibernate(pid)
        store.down = True                       # its record cannot be read now
        fpid, f = await sys.spawn(flooder, caps=[cap])
        await sys.sleep(5)
        fp = k.procs[fpid]
        out["kept"] = k.hibernation.deferred_messages(k.procs[pid])
        out["flooder"] = (fp.state.value, fp.wait_kind is WaitKind.SEND)
        store.down = False                      # back: the wake and every message go through
        await sys.waitpid(f)
        out["answer"] = (await _ask(sys, cap))[0]
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig(store=store))
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["kept"] == 2 and out["flooder"] == ("waiting", True)   # parked, not queued without bound
    assert out["flooder_done"] is True
    assert out["answer"] == 8   # 1 ask + 6 flood messages + this ask: nothing lost
