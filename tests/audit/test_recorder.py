"""The flight recorder's chain: every kind of tampering is caught at the first bad record."""
from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentos.audit import (
    GENESIS, AuditKeyError, FlightRecorder, MemoryAuditBackend, SqliteAuditBackend, load_key, make_record,
    verify,
)
from agentos.cli.main import app

KEY = b"K" * 32


def fill(rec: FlightRecorder, n: int = 6) -> None:
    for i in range(n):
        rec.append(i % 3, "decision", {"action": "tools.calc", "args": {"x": i}, "allowed": i % 2 == 0})
        if i % 2:
            rec.commit()
    rec.commit()


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    rec = FlightRecorder.open(tmp_path, key=KEY)
    fill(rec)
    rec.close()
    return tmp_path


def _db(d: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(d / "audit.db"), isolation_level=None)


def _adb(d: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(d / "audit-anchor.db"), isolation_level=None)


def _report(d: Path):  # type: ignore[no-untyped-def]
    b = SqliteAuditBackend(d, "os")
    try:
        return verify(b.audit_records(), b.read_anchor(), KEY)
    finally:
        b.close()


def test_intact_log_verifies(logdir: Path) -> None:
    r = _report(logdir)
    assert r.ok and r.count == 6 and r.anchored == 6


def test_detects_an_edited_field(logdir: Path) -> None:
    with _db(logdir) as db:
        db.execute("UPDATE audit SET data = replace(data, '\"x\":3', '\"x\":4') WHERE seq = 4")
    r = _report(logdir)
    assert not r.ok and r.first_bad == 4 and "MAC" in r.reason


@pytest.mark.parametrize("column, value", [("pid", 99), ("kind", "action"), ("time", 1.5), ("wall", 0.0)])
def test_every_field_is_covered_by_the_mac(logdir: Path, column: str, value: object) -> None:
    with _db(logdir) as db:
        db.execute(f"UPDATE audit SET {column} = ? WHERE seq = 2", (value,))
    r = _report(logdir)
    assert not r.ok and r.first_bad == 2


def test_detects_a_deleted_record(logdir: Path) -> None:
    with _db(logdir) as db:
        db.execute("DELETE FROM audit WHERE seq = 3")
    r = _report(logdir)
    assert not r.ok and r.first_bad == 3


def test_detects_reordering(logdir: Path) -> None:
    with _db(logdir) as db:
        db.execute("UPDATE audit SET seq = -1 WHERE seq = 2")
        db.execute("UPDATE audit SET seq = 2 WHERE seq = 3")
        db.execute("UPDATE audit SET seq = 3 WHERE seq = -1")
    r = _report(logdir)
    assert not r.ok and r.first_bad == 2


def test_detects_reordering_in_stored_order() -> None:
    b = MemoryAuditBackend()
    rec = FlightRecorder(b, KEY)
    fill(rec)
    b.records[2], b.records[3] = b.records[3], b.records[2]
    r = verify(b.records, b.anchor, KEY)
    assert not r.ok and r.first_bad == 3


def test_detects_truncation_of_the_tail(logdir: Path) -> None:
    with _db(logdir) as db:
        db.execute("DELETE FROM audit WHERE seq >= 5")
    r = _report(logdir)
    assert not r.ok and r.first_bad == 5 and "truncated" in r.reason


def test_detects_a_deleted_anchor(logdir: Path) -> None:
    with _adb(logdir) as adb:
        adb.execute("DELETE FROM anchor")
    r = _report(logdir)
    assert not r.ok and "no anchor" in r.reason


def test_detects_a_record_forged_without_the_key(logdir: Path) -> None:
    # the forger knows the format and the previous MAC, but not the key
    with _db(logdir) as db:
        seq, mac = db.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        fake = make_record(b"guessed-key-guessed-key!", seq + 1, 1.0, 2.0, 1, "approval",
                           json.dumps({"approved": True}), mac)
        db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)", (fake.seq, fake.time, fake.wall, fake.pid,
                                                                  fake.kind, fake.data, fake.prev, fake.mac))
    r = _report(logdir)
    assert not r.ok and r.first_bad == 7 and "without the key" in r.reason


def test_detects_a_forged_anchor_hiding_truncation(logdir: Path) -> None:
    with _db(logdir) as db:
        db.execute("DELETE FROM audit WHERE seq = 6")
        last = db.execute("SELECT mac FROM audit WHERE seq = 5").fetchone()[0]
    with _adb(logdir) as adb:
        adb.execute("UPDATE anchor SET count = 5, last_mac = ?, mac = ?", (last, "0" * 64))
    r = _report(logdir)
    assert not r.ok and "anchor" in r.reason


def test_wrong_key_fails(logdir: Path) -> None:
    b = SqliteAuditBackend(logdir, "os")
    assert not verify(b.audit_records(), b.read_anchor(), b"x" * 32).ok
    b.close()


def test_reopened_recorder_continues_the_chain(logdir: Path) -> None:
    rec = FlightRecorder.open(logdir, key=KEY)
    assert rec.seq == 6
    rec.write_ahead(1, "action", {"action": "tools.calc"})
    rec.close()
    r = _report(logdir)
    assert r.ok and r.count == 7


def test_records_past_the_anchor_still_verify(logdir: Path) -> None:
    # a crash between the records' commit and the anchor's move leaves a valid tail
    with _adb(logdir) as adb:
        old = adb.execute("SELECT count, last_mac, mac FROM anchor").fetchone()
    rec = FlightRecorder.open(logdir, key=KEY)
    rec.write_ahead(1, "action", {"n": 1})
    rec.close()
    with _adb(logdir) as adb:
        adb.execute("UPDATE anchor SET count = ?, last_mac = ?, mac = ?", old)
    r = _report(logdir)
    assert r.ok and r.unanchored == 1
    rec2 = FlightRecorder.open(logdir, key=KEY)
    assert rec2.seq == 7 and rec2.last != GENESIS


def test_key_file_is_created_owner_only(tmp_path: Path) -> None:
    key = load_key(tmp_path, env={})
    mode = stat.S_IMODE((tmp_path / "audit.key").stat().st_mode)
    assert mode == 0o600 and len(key) == 32
    assert load_key(tmp_path, env={}) == key


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_key(tmp_path, env={})
    os.chmod(tmp_path / "audit.key", 0o644)
    with pytest.raises(AuditKeyError, match="0o644"):
        load_key(tmp_path, env={})


def test_env_key_wins_and_short_keys_are_refused(tmp_path: Path) -> None:
    assert load_key(tmp_path, env={"AGENTOS_AUDIT_KEY": "ab" * 32}) == bytes.fromhex("ab" * 32)
    with pytest.raises(AuditKeyError, match="at least 16"):
        load_key(tmp_path, env={"AGENTOS_AUDIT_KEY": "short"})
    assert not (tmp_path / "audit.key").exists()


def test_agentctl_audit_verify(logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTOS_AUDIT_KEY", KEY.hex())
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--dir", str(logdir)])
    assert ok.exit_code == 0 and "ok: 6 record(s)" in ok.output
    with _db(logdir) as db:
        db.execute("UPDATE audit SET pid = 7 WHERE seq = 5")
    bad = runner.invoke(app, ["audit", "verify", "--dir", str(logdir)])
    assert bad.exit_code == 1 and "record 5" in bad.output
    none = runner.invoke(app, ["audit", "verify", "--dir", str(logdir / "nowhere")])
    assert none.exit_code == 2


# -- group commit on a live kernel ------------------------------------------------------

def _live_kernel(tmp_path: Path, peek_log: list[tuple[int, set[int]]] | None = None):  # type: ignore[no-untyped-def]
    from agentos import Kernel
    from agentos.drivers.tools import ToolsDriver, tool
    from agentos.policy import PolicyEngine

    @tool()
    def work(n: int) -> int:
        if peek_log is not None:   # what a reader recovering after a crash would find, right now
            b = SqliteAuditBackend(tmp_path, "os")
            seen = {json.loads(r.data)["args"]["n"] for r in b.audit_records() if r.kind == "action"}
            b.close()
            peek_log.append((n, seen))
        return n

    pol = "```yaml\nkernel: {version: '1.0', mode: strict}\npolicies:\n  - {action: work, effect: allow}\n```\n"
    rec = FlightRecorder.open(tmp_path, key=KEY)
    k = Kernel(policy=PolicyEngine.from_text(pol, path="s.md"), audit=rec)   # live: group commit
    k.register_driver(ToolsDriver([work]))
    return k, rec


def test_group_commit_parks_callers_and_shares_commits(tmp_path: Path) -> None:
    peeks: list[tuple[int, set[int]]] = []
    k, rec = _live_kernel(tmp_path, peeks)

    async def worker(sys, base):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        return [await sys.read(h, {"tool": "work", "args": {"n": base + i}}) for i in range(5)]

    async def init(sys, args):  # type: ignore[no-untyped-def]
        caps = [(await sys.spawn(worker, args=100 * j, caps=["tools"]))[1] for j in range(1, 9)]
        for c in caps:
            await sys.waitpid(c)
        return "done"
    assert k.run(init, grant=["tools"]).value == "done"
    assert rec.group_commit is True
    assert len(peeks) == 40
    assert all(n in seen for n, seen in peeks)      # each action's record was durable before it ran
    assert rec.commits < 40                          # several callers shared a commit
    rec.close()
    r = _report(tmp_path)
    assert r.ok and r.count == 40


def test_group_commit_failure_refuses_the_action(tmp_path: Path) -> None:
    from agentos.audit import AuditUnavailable

    k, rec = _live_kernel(tmp_path)

    def broken(records):  # type: ignore[no-untyped-def]
        raise OSError("disk on fire")
    rec.backend.append_audit = broken  # type: ignore[method-assign]

    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        try:
            return await sys.read(h, {"tool": "work", "args": {"n": 1}})
        except AuditUnavailable as e:
            return str(e)
    assert "disk on fire" in k.run(main, grant=["tools"]).value


def test_a_group_commit_holds_every_caller_that_can_run_before_it_starts(tmp_path: Path) -> None:
    # 16 processes, 4 audited calls each: a flush that started as soon as the first caller
    # parked would commit that one alone and the other 15 next (8 per commit on average)
    k, rec = _live_kernel(tmp_path)

    async def worker(sys, base):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        return [await sys.read(h, {"tool": "work", "args": {"n": base + i}}) for i in range(4)]

    async def init(sys, args):  # type: ignore[no-untyped-def]
        caps = [(await sys.spawn(worker, args=100 * j, caps=["tools"]))[1] for j in range(1, 17)]
        for c in caps:
            await sys.waitpid(c)
        return "done"
    assert k.run(init, grant=["tools"]).value == "done"
    actions = 16 * 4
    assert rec.commits * 12 <= actions, f"{actions} actions took {rec.commits} commits"
    rec.close()
    assert _report(tmp_path).ok


def test_the_wal_checkpoint_runs_off_the_commit_path(tmp_path: Path) -> None:
    rec = FlightRecorder.open(tmp_path, durability="os", key=KEY)
    b = rec.backend
    assert isinstance(b, SqliteAuditBackend)
    assert b.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0   # no commit checkpoints inline
    assert b.adb.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    b.checkpointer.every = 8
    import threading
    for i in range(40):
        rec.append(1, "decision", {"i": i})
        rec.commit()
    import time
    end = time.monotonic() + 30  # the checkpoint thread runs on its own time: late on a loaded machine
    while not b.checkpointer.runs and time.monotonic() < end:
        threading.Event().wait(0.01)
    assert b.checkpointer.runs > 0 and b.checkpointer._thread is not None
    assert b.checkpointer._thread.name == "agentos-audit-checkpoint"
    rec.close()
    assert not b.checkpointer._thread.is_alive()
    r = _report(tmp_path)
    assert r.ok and r.count == 40
