"""Cheap recording under a constant policy: a device operation allowed by a policy that
allows everything the same way (AllowAll) journals no decision of its own (its entry names
the action); the run names the policy, and replay under any other policy is refused."""
from __future__ import annotations

from typing import Any

import pytest

from agentos import AllowAll, Cost, Driver, DriverResult, Kernel
from agentos.abi.errors import NondeterminismError
from agentos.abi.policy import Decision
from agentos.kernel.journal import Journal
from agentos.store import MemoryStore, record_run


class Null(Driver):
    name = "null"

    def read(self, handle: Any, req: Any) -> DriverResult:
        return DriverResult(req, Cost(reductions=1))

    write = read


class AllowAllToo:
    """Constant too, but not the policy the run was recorded under."""

    constant_decision = Decision(True, "allow-all", "AllowAll policy installed")
    governs_kernel: frozenset[str] = frozenset()

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        return self.constant_decision


class Counting:
    """Allows everything too, but does not say so: every decision is journaled."""

    governs_kernel: frozenset[str] = frozenset()

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        return Decision(True, "count", "")


async def program(sys: Any, args: Any) -> Any:
    h = await sys.open("null")
    out = [await sys.read(h, i) for i in range(5)]
    out.append(await sys.write(h, "w"))
    out.append(await sys.read_all(h, [7, 8]))
    out.append((await sys.check_policy("null.read", 1)).allowed)   # a dry run is still journaled
    return out


def _record(policy: Any) -> tuple[Kernel, MemoryStore, str]:
    store = MemoryStore()
    k = Kernel(deterministic=True, policy=policy)
    k.register_driver(Null())
    rid = record_run(k, store, "p")
    k.run(program, grant=["null"])
    return k, store, rid


@pytest.mark.live_only(reason="it records and replays the run itself, under chosen policies")
def test_device_allows_of_a_constant_policy_are_named_by_their_entries_only() -> None:
    k, store, rid = _record(AllowAll())
    rows = store.journal(rid)
    ops = [e.op for e in rows]
    assert ops.count("policy") == 1 and ops.count("run_policy") == 1   # only the dry run
    assert [e.action for e in rows if e.op in ("read", "write")] == ["null.read"] * 5 + ["null.write"] + [
        "null.read"] * 2
    assert len(k.events.events(kind="policy")) == 8   # one event per device check, journaled or not
    rep = Kernel.replay_from(store, rid, image=program)
    assert rep.identical, rep

    _, store2, rid2 = _record(Counting())
    assert [e.op for e in store2.journal(rid2)].count("policy") == 9   # a policy that does not say
    assert Kernel.replay_from(store2, rid2, image=program).identical


@pytest.mark.live_only(reason="it replays the run itself, under another policy")
def test_replay_under_another_policy_is_refused_naming_both() -> None:
    _, store, rid = _record(AllowAll())
    rep = Kernel.replay_from(store, rid, image=program, options={"policy": AllowAllToo()})
    assert not rep.identical and rep.error is not None
    assert "agentos.kernel.decision.AllowAll" in rep.error and "AllowAllToo" in rep.error

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(Null())
    k.run(program, grant=["null"])
    again = Kernel(deterministic=True, mode="replay", journal=Journal(k.journal.entries))  # no policy
    with pytest.raises(NondeterminismError, match="recorded under policy 'agentos.kernel.decision.AllowAll'"
                                                  ".*this replay runs under 'agentos.kernel.decision.NoPolicy'"):
        again.run(program, grant=["null"])


@pytest.mark.live_only(reason="it replays the run itself from its in-memory journal")
def test_an_op_killed_in_flight_under_a_constant_policy_replays() -> None:
    import asyncio

    class Slow(Driver):
        name = "slow"

        async def _go(self, req: Any) -> DriverResult:
            await asyncio.sleep(10)
            return DriverResult(req)

        def read(self, handle: Any, req: Any) -> Any:
            return self._go(req)

    async def victim(sys: Any, args: Any) -> None:
        h = await sys.open("slow")
        await sys.read(h, 1)

    async def init(sys: Any, args: Any) -> str:
        pid, cap = await sys.spawn(victim, caps=["slow"])
        await sys.sleep(1)
        await sys.kill(cap)
        await sys.waitpid(cap)
        return "done"

    k = Kernel(deterministic=True, policy=AllowAll(), autojump_threshold=0.01)
    k.register_driver(Slow())
    assert k.run(init, grant=["slow"]).value == "done"
    assert [e.action for e in k.journal.entries if e.op == "policy"] == ["slow.read"]  # no entry names it
    r = Kernel(deterministic=True, mode="replay", journal=Journal(k.journal.entries), policy=AllowAll())
    assert r.run(init, grant=["slow"]).value == "done"
    from agentos import digest
    assert digest(r.events.events()) == digest(k.events.events())
