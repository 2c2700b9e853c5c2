"""Reserve comes before the write-ahead record, and is held across the group commit.

Under a group-commit flight recorder a caller parks until its action record is durable and
then reruns its syscall. If the reservation were taken only on that rerun, a sibling on
the same budget could spend it in between, and the log would say an action was about to
run that then got `reservation_refused`. These tests hold two siblings on one shared
budget, the second deciding while the first's record is still pending, and check the log
and the books at every park and every commit.
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from agentos import AllowAll, Kernel, Quota, Signal
from agentos.audit import FlightRecorder
from agentos.drivers.tools import ToolsDriver, tool

KEY = b"r" * 32
CALLS: list[int] = []


class Watched(FlightRecorder):
    """A group-commit recorder that checks the books whenever a caller parks or a commit
    wakes the parked ones, and stops a caller that parks over and over (a livelock)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.checks: list[Any] = []
        self.parks = 0

    def _park(self, *a: Any) -> bool:
        self.parks += 1
        if self.parks > 50:
            raise RuntimeError("a caller parked for its records over and over")
        r = super()._park(*a)
        self._check()
        return r

    def _wake_durable(self) -> None:
        self._check()
        super()._wake_durable()
        self._check()

    def _check(self) -> None:
        k = self._kernel
        if k is not None:
            self.checks.append(books(k))


def books(k: Kernel) -> tuple[int, int, int]:
    """(used, reserved, remaining) of the shared tool_calls budget, right now. Every tool
    call settles at one call, so `used` is the calls that ran."""
    rows = k.ps()
    init = next(r for r in rows if r["pid"] == 1)
    reserved = sum(r["reserved"]["tool_calls"] for r in rows)
    return len(CALLS), reserved, init["remaining"]["tool_calls"]


@tool()
def spend(n: int) -> int:
    """Spends one call."""
    CALLS.append(n)
    return n


def _kernel() -> tuple[Kernel, Watched]:
    rec = Watched(*_mem(), group_commit=True)
    k = Kernel(policy=AllowAll(), audit=rec)   # live: the recorder commits in groups
    k.register_driver(ToolsDriver([spend]))
    return k, rec


def _mem() -> tuple[Any, bytes]:
    from agentos.audit import MemoryAuditBackend
    return MemoryAuditBackend(), KEY


def _log(rec: FlightRecorder) -> list[tuple[int, str, dict[str, Any]]]:
    rec.commit()
    return [(r.pid, r.kind, json.loads(r.data)) for r in rec.records()]


def _assert_no_record_of_an_action_that_never_ran(rec: FlightRecorder, limit: int) -> None:
    log = _log(rec)
    acted = [(pid, d["args"]["n"]) for pid, kind, d in log if kind == "action"]
    assert any(kind == "reservation_refused" for _pid, kind, _d in log), "a sibling must be refused"
    # every action record is of a call that ran, once: none is followed by its refusal
    assert sorted(n for _pid, n in acted) == sorted(CALLS), f"a recorded action never ran: {log}"
    assert rec.checks and all(sum(b) == limit for b in rec.checks), rec.checks


@pytest.mark.parametrize("limit", [1, 2])
def test_a_sibling_cannot_spend_a_reservation_held_while_its_record_commits(limit: int) -> None:
    CALLS.clear()
    k, rec = _kernel()

    async def child(sys: Any, base: int) -> Any:
        h = await sys.open("tools")
        return [await sys.read(h, {"tool": "spend", "args": {"n": base + i}}) for i in range(limit)]

    async def init(sys: Any, args: Any) -> Any:
        _, a = await sys.spawn(child, args=0, caps=["tools"])     # parks for its records first
        _, b = await sys.spawn(child, args=100, caps=["tools"])   # decides while a's are pending
        return [str(await sys.waitpid(a)), str(await sys.waitpid(b)), books(k)]

    res = k.run(init, grant=["tools"], quota=Quota(tool_calls=limit))
    *reasons, end = res.value
    assert "quota(tool_calls)" in reasons and end == (limit, 0, 0)
    assert len(CALLS) == limit                 # the budget bought exactly that many calls
    if limit == 1:                             # the first to decide holds the one call
        assert reasons == ["normal", "quota(tool_calls)"] and CALLS == [0]
    _assert_no_record_of_an_action_that_never_ran(rec, limit)


def test_read_all_reserves_the_whole_batch_before_its_records_and_holds_it() -> None:
    CALLS.clear()
    k, rec = _kernel()

    async def child(sys: Any, base: int) -> Any:
        h = await sys.open("tools")
        return await sys.read_all(h, [{"tool": "spend", "args": {"n": base + i}} for i in range(2)])

    async def init(sys: Any, args: Any) -> Any:
        _, a = await sys.spawn(child, args=0, caps=["tools"])
        _, b = await sys.spawn(child, args=100, caps=["tools"])
        return [str(await sys.waitpid(a)), str(await sys.waitpid(b)), books(k)]

    res = k.run(init, grant=["tools"], quota=Quota(tool_calls=3))
    assert res.value == ["normal", "quota(tool_calls)", (2, 0, 1)]
    assert CALLS == [0, 1]          # b's batch of two never fit the one call left; none of it ran
    _assert_no_record_of_an_action_that_never_ran(rec, 3)


def test_a_caller_killed_while_its_record_commits_gives_its_reservation_back() -> None:
    CALLS.clear()
    k, rec = _kernel()
    seen: list[tuple[int, int, int]] = []

    async def child(sys: Any, args: Any) -> Any:
        h = await sys.open("tools")
        return await sys.read(h, {"tool": "spend", "args": {"n": 7}})

    async def init(sys: Any, args: Any) -> Any:
        pid, c = await sys.spawn(child, caps=["tools"])
        await sys.sleep(0)          # the child decides, reserves, writes ahead and parks
        seen.append(books(k))
        await sys.signal(c, Signal.SIGKILL)
        reason = str(await sys.waitpid(c))
        seen.append(books(k))
        return reason

    res = k.run(init, grant=["tools"], quota=Quota(tool_calls=1))
    assert res.value.startswith("killed")
    assert CALLS == []
    assert seen == [(0, 1, 0), (0, 0, 1)]     # held while parked, all of it back after the kill
    assert all(sum(b) == 1 for b in rec.checks)


def test_an_interrupted_caller_gives_its_held_reservation_back_and_can_try_again() -> None:
    CALLS.clear()
    k, rec = _kernel()
    seen: list[Any] = []

    async def child(sys: Any, args: Any) -> Any:
        h = await sys.open("tools")
        try:
            await sys.read(h, {"tool": "spend", "args": {"n": 1}})
        except Exception as e:  # Interrupted: the call never ran
            seen.append((type(e).__name__, books(k)))
        return await sys.read(h, {"tool": "spend", "args": {"n": 2}})

    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(child, caps=["tools"])
        await sys.sleep(0)
        await sys.signal(c, Signal.SIGINT)
        return str(await sys.waitpid(c)), books(k)

    res = k.run(init, grant=["tools"], quota=Quota(tool_calls=1))
    assert res.value == ("normal", (1, 0, 0))
    assert seen == [("Interrupted", (0, 0, 1))]
    assert CALLS == [2]
    assert all(sum(b) == 1 for b in rec.checks)


def test_a_failed_commit_gives_the_held_reservation_back() -> None:
    from agentos.audit import AuditUnavailable

    CALLS.clear()
    k, rec = _kernel()

    def broken(records: Any) -> None:
        raise OSError("disk on fire")
    rec.backend.append_audit = broken  # type: ignore[method-assign]

    async def main(sys: Any, args: Any) -> Any:
        h = await sys.open("tools")
        try:
            await sys.read_all(h, [{"tool": "spend", "args": {"n": i}} for i in range(2)])
        except AuditUnavailable as e:
            return "disk on fire" in str(e), books(k)

    res = k.run(main, grant=["tools"], quota=Quota(tool_calls=2))
    assert res.value == (True, (0, 0, 2))
    assert CALLS == []
