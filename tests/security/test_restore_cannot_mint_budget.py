"""A snapshot cannot mint budget: `restore` carves what the snapshot had left from a
parent on the restoring kernel (by default its root), all or nothing, and refuses when
there is no parent to carve from. A hostile snapshot is refused before anything is made.
Queued message deadlines stay relative to the snapshot's time."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from agentos import AllowAll, Kernel, KernelError, Quota, QuotaExceeded


async def idle(sys: Any, args: Any) -> Any:
    while True:
        m = await sys.recv()
        if m.body == "stop":
            return None


def take_snapshot(at: float = 0.0, deadline_in: float | None = None) -> dict[str, Any]:
    holder: dict[str, Any] = {}

    async def init(sys: Any, args: Any) -> None:
        if at:
            await sys.sleep(at)
        pid, cap = await sys.spawn(idle, quota=Quota(tokens=50, usd=0.5))
        await sys.yield_()
        await sys.send(cap, "queued", deadline=deadline_in)
        holder["snap"] = k.snapshot(pid)
        await sys.kill(cap)

    k = Kernel(deterministic=True, policy=AllowAll())
    k.run(init, quota=Quota(tokens=100, usd=1.0))
    return holder["snap"]


def restore_inside(snap: dict[str, Any], quota: Quota, *, sleep_first: float = 0.0) -> Any:
    async def init(sys: Any, args: Any) -> Any:
        if sleep_first:
            await sys.sleep(sleep_first)
        before = await sys.budget()
        procs = len(k.procs)
        try:
            pid = k.restore(snap, idle)
        except QuotaExceeded as e:
            after = await sys.budget()
            return "refused", str(e), before.remaining, after.remaining, procs, len(k.procs)
        after = await sys.budget()
        info = k.procs[pid]
        return "ok", pid, before.remaining, after.remaining, k.accounts.view(info.account)["remaining"]

    k = Kernel(deterministic=True, policy=AllowAll())
    return k, k.run(init, quota=quota).value


def test_restore_carves_the_remaining_budget_from_the_root():
    snap = take_snapshot()
    _, (status, pid, before, after, child) = restore_inside(snap, Quota(tokens=200, usd=2.0))
    assert status == "ok"
    assert before["tokens"] - after["tokens"] == 50 and child["tokens"] == 50
    assert abs((before["usd"] - after["usd"]) - 0.5) < 1e-9 and child["usd"] == 0.5


def test_restore_into_a_parent_that_cannot_pay_creates_nothing():
    snap = take_snapshot()
    _, (status, msg, before, after, procs_before, procs_after) = restore_inside(snap, Quota(tokens=30, usd=2.0))
    assert status == "refused" and "tokens" in msg
    assert before == after and procs_before == procs_after  # all or nothing


def test_restore_outside_a_running_kernel_is_refused_not_funded_from_nothing():
    snap = take_snapshot()
    k = Kernel(deterministic=True, policy=AllowAll())
    with pytest.raises(KernelError, match="not running"):
        k.restore(snap, idle)
    assert not k.procs


@pytest.mark.parametrize("field,value", [
    ("tokens", float("nan")), ("tokens", -5), ("usd", float("inf")), ("tokens", "50"), ("usd", True),
])
def test_snapshot_with_forged_budget_is_refused(field, value):
    snap = copy.deepcopy(take_snapshot())
    snap["budget"]["remaining"][field] = value

    async def init(sys: Any, args: Any) -> Any:
        n = len(k.procs)
        try:
            k.restore(snap, idle)
        except KernelError as e:
            return str(e), n, len(k.procs)

    k = Kernel(deterministic=True, policy=AllowAll())
    msg, n0, n1 = k.run(init, quota=Quota(tokens=1000, usd=10.0)).value
    assert "remaining" in msg and n0 == n1


def test_snapshot_with_garbage_mailbox_is_refused_before_anything_is_made():
    snap = copy.deepcopy(take_snapshot())
    snap["mailbox"] = [{"sender": 1, "body": "x", "deadline": float("nan")}, "junk"]

    async def init(sys: Any, args: Any) -> Any:
        n = len(k.procs)
        before = (await sys.budget()).remaining
        try:
            k.restore(snap, idle)
        except KernelError as e:
            return str(e), n, len(k.procs), before, (await sys.budget()).remaining

    k = Kernel(deterministic=True, policy=AllowAll())
    msg, n0, n1, b0, b1 = k.run(init, quota=Quota(tokens=1000, usd=10.0)).value
    assert "mailbox" in msg and n0 == n1 and b0 == b1


def test_restored_deadline_moves_with_the_clock():
    snap = take_snapshot(at=1000.0, deadline_in=100.0)  # taken at t=1000, message due at 1100
    assert snap["taken_at"] == 1000.0 and snap["mailbox"][0]["deadline"] == 1100.0
    holder: dict[str, Any] = {}

    async def init(sys: Any, args: Any) -> Any:
        await sys.sleep(5000)
        pid = k.restore(snap, idle)
        holder["deadline"] = k.procs[pid].mailbox[0].deadline
        return await sys.now()

    k = Kernel(deterministic=True, policy=AllowAll())
    now = k.run(init, quota=Quota(tokens=200, usd=2.0)).value
    assert now == 5000.0 and holder["deadline"] == 5100.0
