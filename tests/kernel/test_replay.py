"""Record and replay: byte-identical event logs, no driver calls, named divergence."""
from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from replay_workloads import BOOT, CoinPolicy, interp, live_kernel, replay_kernel  # noqa: E402

from agentos import AllowAll, Journal, Kernel, KernelError, NondeterminismError, Quota  # noqa: E402
from agentos.kernel.events import digest, encode_event  # noqa: E402
from agentos.store import MemoryStore, record_run  # noqa: E402

keys = st.sampled_from(["a", "b", "c", "forbidden"])
leaf_ops = st.one_of(
    st.tuples(st.just("set"), keys, st.integers(0, 9)),
    st.tuples(st.just("get"), keys),
    st.tuples(st.just("del"), keys),
    st.tuples(st.just("echo"), st.integers(0, 99)),
    st.tuples(st.just("echo_all"), st.lists(st.integers(0, 9), min_size=1, max_size=3)),
    st.tuples(st.just("sleep"), st.integers(0, 50)),
    st.tuples(st.just("yield")),
    st.tuples(st.just("remember"), st.text("abc xyz", min_size=1, max_size=12)),
    st.tuples(st.just("check"), st.sampled_from(["kv.delete", "echo.say", "kv.get"])),
    st.tuples(st.just("send"), st.integers(0, 9)),
    st.tuples(st.just("recv"), st.sampled_from([0, 5, 30])),
    st.tuples(st.just("now")),
)


def specs(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    ops = leaf_ops if depth == 0 else st.one_of(
        leaf_ops, st.tuples(st.just("spawn"), st.deferred(lambda: specs(depth - 1))))
    return st.fixed_dictionaries({"ops": st.lists(ops, min_size=1, max_size=8)})


def live(spec: dict[str, Any], seed: int) -> Kernel:
    k = live_kernel(seed)
    k.run(interp, args=spec, **BOOT)
    return k


def assert_identical(a: Kernel, b: Kernel) -> None:
    ea, eb = list(a.events), list(b.events)
    for x, y in zip(ea, eb):
        assert encode_event(x) == encode_event(y), f"first difference at seq {x.seq}"
    assert len(ea) == len(eb)
    assert digest(ea) == digest(eb)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(2), seed=st.integers(0, 2**32))
def test_replay_is_byte_identical_and_calls_no_driver(spec: dict[str, Any], seed: int) -> None:
    k1 = live(spec, seed)
    assert k1.journal is not None and len(k1.journal) > 0
    k2 = replay_kernel(seed, Journal(k1.journal.entries))
    r2 = k2.run(interp, args=spec, **BOOT)
    assert_identical(k1, k2)
    assert r2.reason == k1.init.exit_reason  # type: ignore[union-attr]


def test_live_runs_really_differ_so_replay_is_doing_the_work() -> None:
    spec = {"ops": [("echo", i) for i in range(6)] + [("spawn", {"ops": [("echo_all", [1, 2, 3]), ("send", 1)]}),
                                                     ("recv", 30)]}
    digests = {digest(live(spec, 5).events) for _ in range(8)}
    assert len(digests) > 1  # unseeded timing, failures and coin: live runs are not reproducible


def test_policy_decisions_come_from_the_journal_not_the_policy() -> None:
    spec = {"ops": [("del", "a"), ("check", "kv.delete"), ("set", "forbidden", 1)]}
    k1 = live(spec, 1)
    assert k1.init.exit_reason is not None and "no-forbidden" in str(k1.init.exit_reason)  # type: ignore[union-attr]
    k2 = replay_kernel(1, Journal(k1.journal.entries))  # type: ignore[union-attr]
    assert isinstance(k2.policy.inner, AllowAll)  # the replay was handed an allow-all policy ...
    k2.run(interp, args=spec, **BOOT)
    assert_identical(k1, k2)  # ... and still refused exactly what the live run refused


def test_divergence_names_where() -> None:
    spec = {"ops": [("set", "a", 1), ("get", "a")]}
    k1 = live(spec, 2)
    other = {"ops": [("set", "a", 1), ("get", "b")]}
    k2 = replay_kernel(2, Journal(k1.journal.entries))  # type: ignore[union-attr]
    with pytest.raises(NondeterminismError, match=r'pid 1 op #3: recorded read.*"a".*replay asked.*"b"'):
        k2.run(interp, args=other, **BOOT)
    k3 = replay_kernel(2, Journal(k1.journal.entries))  # type: ignore[union-attr]
    longer = {"ops": [("set", "a", 1), ("get", "a"), ("get", "c")]}
    with pytest.raises(NondeterminismError, match="recorded run has no such operation"):
        k3.run(interp, args=longer, **BOOT)


def test_replay_needs_a_journal() -> None:
    with pytest.raises(KernelError, match="needs a journal"):
        Kernel(mode="replay")


def test_replay_from_store_reports_identical() -> None:
    store = MemoryStore()
    k = live_kernel(9)
    rid = record_run(k, store, "hyp")
    spec = {"ops": [("echo", 1), ("spawn", {"ops": [("echo_all", [1, 2]), ("send", 3)]}), ("recv", 20),
                    ("del", "x"), ("set", "b", 2)]}
    k.run(interp, args=spec, **BOOT)
    assert store.get_run(rid).status == "finished"
    rep = Kernel.replay_from(store, rid)
    assert rep.identical and rep.complete and rep.matched == store.get_run(rid).events, str(rep)


def test_replay_from_reports_first_divergence() -> None:
    store = MemoryStore()
    k = live_kernel(9, policy=AllowAll())
    rid = record_run(k, store, "tampered")
    k.run(interp, args={"ops": [("set", "a", 1), ("sleep", 5), ("now",)]}, **BOOT)
    evs = list(store.events(rid))
    i = [n for n, e in enumerate(evs) if e.kind == "sys"][2]
    bad = evs[i]
    store._events[rid][i] = type(bad)(bad.seq, bad.time, bad.pid, bad.kind, bad.raw.replace(b'"sys"', b'"SYS"'))
    rep = Kernel.replay_from(store, rid)
    assert not rep.identical and rep.divergence and rep.divergence["seq"] == bad.seq
    assert "diverged at event seq" in str(rep)


def test_no_event_is_lost_when_a_flush_lands_mid_quantum() -> None:
    async def chatty(sys: Any, args: Any) -> None:
        for i in range(50):
            await sys.log("info", f"m{i}")   # emits: with a small batch, flushes mid-quantum
            await sys.now()

    k = Kernel(deterministic=True, event_batch=8)
    k.run(chatty)
    evs = list(k.events)
    assert sum(1 for e in evs if e.kind == "sys") == 100
    assert [e.seq for e in evs] == list(range(1, len(evs) + 1))


def test_tool_calls_and_their_errors_replay_identically() -> None:
    import asyncio

    from agentos.drivers.tools import ToolsDriver, tool
    from replay_workloads import Exploding, tools_agent

    @tool()
    def add(a: int, b: int) -> int:
        return a + b

    @tool()
    def boom() -> int:
        raise RuntimeError("the tool broke")

    @tool()
    async def slow(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    k1 = Kernel(deterministic=True, seed=8, policy=AllowAll())
    k1.register_driver(ToolsDriver([add, boom, slow]))
    r1 = k1.run(tools_agent, grant=["tools"], quota=Quota(tool_calls=20))
    assert r1.value[0] == 5 and r1.value[4] == [0, 2, 4, 6]
    assert r1.value[1].startswith("ToolError") and "the tool broke" in r1.value[3]
    k2 = Kernel(deterministic=True, seed=8, mode="replay", journal=Journal(k1.journal.entries),  # type: ignore[union-attr]
                policy=AllowAll())  # recorded under AllowAll, whose device allows are not journaled
    k2.register_driver(Exploding("tools"))
    r2 = k2.run(tools_agent, grant=["tools"], quota=Quota(tool_calls=20))
    assert r2.value == r1.value
    assert_identical(k1, k2)


def test_linked_children_are_torn_down_in_pid_order_not_memory_order() -> None:
    """A set of linked processes iterates in memory-address order, which a replaying
    kernel does not share: the teardown order (and so the event log) must not follow it."""
    async def waiter(sys: Any, args: Any) -> None:
        await sys.recv()

    async def middle(sys: Any, args: Any) -> None:
        for _ in range(40):
            await sys.spawn(waiter, link=True)  # (it was handed the spawn right)
        raise RuntimeError("the middle process crashes; its linked children go with it")

    async def init(sys: Any, args: Any) -> str:
        _, m = await sys.spawn(middle, caps=["spawn"])
        return str(await sys.waitpid(m))

    k = Kernel(deterministic=True, policy=AllowAll())
    assert k.run(init).value.startswith("fault(RuntimeError")
    killed = [e.pid for e in k.events.events(kind="exit") if str(e.data).startswith("killed(link:")]
    assert len(killed) == 40 and killed == sorted(killed)


def test_replay_reports_the_first_divergence_not_one_the_teardown_flushes_later() -> None:
    store = MemoryStore()
    k = live_kernel(3, policy=AllowAll(), event_batch=4)   # small batches: flushes mid-run
    rid = record_run(k, store, "early-tamper")
    k.run(interp, args={"ops": [("spawn", {"ops": [("recv", 0)]}), ("set", "a", 1), ("sleep", 5), ("now",)]},
          **BOOT)
    evs = store._events[rid]
    i = [n for n, e in enumerate(evs) if e.kind == "sys"][3]
    bad = evs[i]
    evs[i] = type(bad)(bad.seq, bad.time, bad.pid, bad.kind, bad.raw.replace(b'"sys"', b'"SYS"'))
    rep = Kernel.replay_from(store, rid)
    assert not rep.identical and rep.divergence is not None
    assert rep.divergence["seq"] == bad.seq, str(rep)


def test_error_messages_about_a_callers_odd_value_carry_no_memory_address() -> None:
    """An object's default repr holds its address; in an error message it would land in
    the event log and no replay (nor a second live run) could reproduce it."""
    class Odd:
        pass

    async def init(sys: Any, args: Any) -> list[str]:
        out = []
        for call in (lambda: sys.spawn(Odd()), lambda: sys.spawn(interp, priority=Odd()),
                     lambda: sys.sched(priority=Odd()), lambda: sys.derive(sys.caps[0] if sys.caps else 1, Odd()),
                     lambda: sys.signal(1, Odd()), lambda: sys.spawn(interp, caps=[Odd()])):
            try:
                await call()
            except Exception as e:
                out.append(f"{type(e).__name__}: {e}")
        return out

    k = Kernel(deterministic=True, policy=AllowAll())
    res = k.run(init)
    assert len(res.value) == 6
    for msg in res.value:
        assert " at 0x" not in msg, msg
    for e in k.events.events():
        assert b" at 0x" not in encode_event(e), e


def test_replay_asks_policy_about_the_kernel_actions_the_recorded_run_did_and_no_others() -> None:
    """A device whose actions are named like the VFS's ("vfs.write") must not make a replay
    police VFS calls the live kernel never asked its policy about: the run row says which."""
    from agentos.abi.driver import Driver, DriverResult

    class LooksLikeVfs(Driver):
        name = "shelf"

        def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
            return ("vfs.write", req)

        def write(self, handle: Any, data: Any) -> DriverResult:
            return DriverResult("shelved")

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("shelf")
        me = await sys.pid()
        await sys.write(h, {"path": "x"})                           # asks policy: a device action
        await sys.vfs_write(f"/agent/{me}/mem/semantic/note", "n")  # AllowAll governs no VFS call
        return await sys.vfs_read(f"/agent/{me}/mem/semantic/note")

    store = MemoryStore()
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(LooksLikeVfs())
    rid = record_run(k, store, "governs")
    assert k.run(init, grant=["shelf"]).value == "n"
    assert store.get_run(rid).meta["governs"] == []
    rep = Kernel.replay_from(store, rid, image=init)
    assert rep.identical, str(rep)
