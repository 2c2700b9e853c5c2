"""When the anchor moves: by default with every group, before the group's actions run;
with `anchor_every=N` > 1 it may trail the records by fewer than N.

What a trailing anchor means for a cut tail: after a crash, up to `anchor_every - 1` of the
last durable records may lie past the anchor; they verify (as "valid records past the
anchor") and a cut of only those goes unseen. A cut one record deeper is caught, by
`verify` and by the next recorder start. `commit()`, a checkpoint, close, and an idle live
recorder bring the anchor level with the records.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agentos.audit import AuditUnavailable, FlightRecorder, MemoryAuditBackend, verify
from agentos.audit.chain import Anchor
from agentos.audit.logdir import read_anchor, verify_dir
from agentos.audit.recorder import AuditAnchorLost

KEY = b"K" * 32


def test_by_default_every_executed_action_is_vouched_for_by_the_anchor_even_after_a_crash(tmp_path: Path) -> None:
    """A kernel killed at any point after an action ran: its record is under the anchor, so
    cutting it (the last one included) is caught."""
    rec = FlightRecorder.open(tmp_path, durability="os", key=KEY, sign=False)
    for i in range(5):
        rec.write_ahead(1, "action", {"i": i})   # returns once the record is durable: the action may run
        assert read_anchor(tmp_path).count == rec.durable == i + 1
    db = sqlite3.connect(str(tmp_path / "audit.db"))    # crash, then the last record is cut
    db.execute("DELETE FROM audit WHERE seq = 5")
    db.commit()
    db.close()
    assert not verify_dir(tmp_path, KEY).ok
    with pytest.raises(AuditAnchorLost):
        FlightRecorder.open(tmp_path, durability="os", key=KEY, sign=False)


def _crashed_log(d: Path, n: int, every: int) -> FlightRecorder:
    """`n` actions written ahead one by one, then the kernel dies: no commit(), no close."""
    rec = FlightRecorder.open(d, durability="os", key=KEY, sign=False, anchor_every=every)
    for i in range(n):
        rec.write_ahead(1, "action", {"i": i})
    return rec


def test_a_crash_leaves_the_anchor_less_than_anchor_every_records_behind(tmp_path: Path) -> None:
    rec = _crashed_log(tmp_path, 20, every=8)
    a = read_anchor(tmp_path)
    assert a is not None and a.count == 16            # moved at 8 and 16, not at every record
    assert rec.durable == 20 and rec.anchor_lag == 4 and rec.anchor_writes == 2
    r = verify_dir(tmp_path, key=KEY)
    assert r.ok and r.count == 20 and r.anchored == 16 and r.unanchored == 4
    again = FlightRecorder.open(tmp_path, durability="os", key=KEY, sign=False, anchor_every=8)
    assert again.seq == 20 and again.anchor_lag == 4  # the valid tail counts toward the bound
    again.write_ahead(1, "action", {"i": 20})
    again.write_ahead(1, "action", {"i": 21})
    again.write_ahead(1, "action", {"i": 22})
    assert again.anchor_lag == 7
    again.write_ahead(1, "action", {"i": 23})         # 8 past the anchor: it moves
    assert again.anchor_lag == 0 and read_anchor(tmp_path).count == 24  # type: ignore[union-attr]
    again.close()
    rec.close()


def test_a_tail_cut_deeper_than_the_bound_is_caught_after_a_crash(tmp_path: Path) -> None:
    rec = _crashed_log(tmp_path, 20, every=8)
    with sqlite3.connect(str(tmp_path / "audit.db"), isolation_level=None) as db:
        db.execute("DELETE FROM audit WHERE seq >= 16")    # the anchor vouches for 16
    r = verify_dir(tmp_path, key=KEY)
    assert not r.ok and "truncated" in r.reason
    with pytest.raises(AuditAnchorLost, match="tail was cut"):
        FlightRecorder.open(tmp_path, durability="os", key=KEY, sign=False)
    rec.close()


def test_a_tail_cut_within_the_bound_after_a_crash_is_the_documented_limit(tmp_path: Path) -> None:
    rec = _crashed_log(tmp_path, 20, every=8)
    rec.backend.close()  # type: ignore[attr-defined]  # the kernel is gone: nothing more is written
    with sqlite3.connect(str(tmp_path / "audit.db"), isolation_level=None) as db:
        db.execute("DELETE FROM audit WHERE seq > 16")     # only records past the anchor
    r = verify_dir(tmp_path, key=KEY)
    assert r.ok and r.count == 16 and r.unanchored == 0   # unseen: docs/audit.md states this bound


@pytest.mark.parametrize("level", ["commit", "close", "checkpoint"])
def test_commit_close_and_checkpoints_bring_a_trailing_anchor_level(tmp_path: Path, level: str) -> None:
    rec = FlightRecorder.open(tmp_path, durability="os", key=KEY, anchor_every=100)
    for i in range(5):
        rec.write_ahead(1, "action", {"i": i})
    assert read_anchor(tmp_path) is None and rec.anchor_lag == 5
    if level == "commit":
        assert rec.commit() == 0                          # nothing pending, the anchor still moves
    elif level == "checkpoint":
        rec.checkpoint()
    else:
        rec.close()
    a = read_anchor(tmp_path)
    assert a is not None and a.count == 5
    if level != "close":
        assert rec.anchor_lag == 0
        rec.close()
    with sqlite3.connect(str(tmp_path / "audit.db"), isolation_level=None) as db:
        db.execute("DELETE FROM audit WHERE seq = 5")
    assert not verify_dir(tmp_path, key=KEY).ok


class _AnchorFails(MemoryAuditBackend):
    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.moves = 0

    def write_anchor(self, anchor: Anchor) -> None:
        if self.broken:
            raise OSError("anchor disk on fire")
        self.moves += 1
        super().write_anchor(anchor)


class _Dec:
    allowed, rule, effect, reason, extra = True, "r", "allow", "", None


def test_an_anchor_that_cannot_move_never_requeues_durable_records(tmp_path: Path) -> None:
    b = _AnchorFails()
    rec = FlightRecorder(b, KEY, anchor_every=4)
    for i in range(6):
        assert rec.decision(1, "calc", {"i": i}, _Dec(), before_action=True)
    assert [r.seq for r in b.records] == [1, 2, 3, 4, 5, 6]   # each written once, in order
    assert rec.anchor_errors >= 2 and b.anchor is None
    b.broken = False
    assert rec.decision(1, "calc", {"i": 6}, _Dec(), before_action=True)
    assert b.anchor is not None and b.anchor.count == 7 and rec.anchor_lag == 0
    assert verify(b.records, b.anchor, KEY).ok


def test_an_anchor_stuck_for_twice_the_bound_refuses_new_actions(tmp_path: Path) -> None:
    b = _AnchorFails()
    rec = FlightRecorder(b, KEY, anchor_every=4)
    for i in range(8):
        assert rec.decision(1, "calc", {"i": i}, _Dec(), before_action=True)
    with pytest.raises(AuditUnavailable, match="anchor disk on fire"):
        rec.decision(1, "calc", {"i": 8}, _Dec(), before_action=True)
    assert len(b.records) == 8                        # the refused action's record was not written
    b.broken = False
    assert rec.decision(1, "calc", {"i": 9}, _Dec(), before_action=True)   # the refused one goes first
    assert [r.seq for r in b.records] == list(range(1, 11)) and b.anchor is not None
    assert verify(b.records, b.anchor, KEY).ok


def test_anchor_every_must_be_a_positive_int() -> None:
    for bad in (0, -1, 1.5, True, "8", 10 ** 400):
        if bad == 10 ** 400:
            FlightRecorder.in_memory(KEY, anchor_every=bad)   # huge is allowed: an anchor at close only
            continue
        with pytest.raises(ValueError, match="anchor_every"):
            FlightRecorder.in_memory(KEY, anchor_every=bad)


def test_a_live_recorder_moves_its_anchor_when_idle_and_not_per_group(tmp_path: Path) -> None:
    from agentos import Kernel
    from agentos.drivers.tools import ToolsDriver, tool
    from agentos.policy import PolicyEngine

    @tool()
    def work(n: int) -> int:
        return n

    pol = "```yaml\nkernel: {version: '1.0', mode: strict}\npolicies:\n  - {action: work, effect: allow}\n```\n"
    rec = FlightRecorder.open(tmp_path, key=KEY, durability="os", sign=False, anchor_every=128)
    k = Kernel(policy=PolicyEngine.from_text(pol, path="s.md"), audit=rec)   # live: group commit
    k.register_driver(ToolsDriver([work]))
    seen: list[Any] = []

    async def worker(sys, base):
        h = await sys.open("tools")
        for i in range(4):
            await sys.read(h, {"tool": "work", "args": {"n": base + i}})

    async def init(sys, args):
        caps = [(await sys.spawn(worker, args=100 * j, caps=["tools"]))[1] for j in range(1, 9)]
        for c in caps:
            await sys.waitpid(c)
        seen.append((rec.durable, rec.commits, rec.anchor_writes))
        for _ in range(400):                           # idle: the writer thread moves the anchor
            a = read_anchor(tmp_path)
            if a is not None and a.count == rec.durable:
                break
            await sys.sleep(25)
        seen.append(read_anchor(tmp_path))
        return "done"
    assert k.run(init, grant=["tools"]).value == "done"
    (durable, commits, anchors), a = seen
    assert durable == 32 and anchors < commits    # not one anchor per group
    assert a is not None and a.count == 32
    rec.close()
    assert verify_dir(tmp_path, key=KEY).ok


def test_a_commit_whose_anchor_move_fails_does_not_write_its_durable_records_twice(tmp_path: Path) -> None:
    """The records of an explicit commit reached the disk, then the anchor's move failed: the
    commit reports the failure, but the records are not queued again (the next commit would
    find them already durable and refuse every write after)."""
    rec = FlightRecorder.open(tmp_path, durability="os", key=KEY, sign=False)
    backend: Any = rec.backend
    real = backend.write_anchor
    failing = [False]

    def write_anchor(a: Anchor) -> None:
        if failing[0]:
            raise OSError(5, "Input/output error")
        real(a)
    backend.write_anchor = write_anchor
    rec.append(1, "decision", {"i": 0})
    rec.commit()
    failing[0] = True
    rec.append(1, "decision", {"i": 1})
    with pytest.raises(OSError, match="Input/output"):
        rec.commit()
    assert rec.durable == 2 and rec.pending == []
    failing[0] = False
    rec.append(1, "decision", {"i": 2})
    rec.commit()
    assert rec.durable == 3 and rec.anchor_lag == 0
    rec.close()
    r = verify_dir(tmp_path, key=KEY)
    assert r.ok and r.count == 3 and r.anchored == 3
