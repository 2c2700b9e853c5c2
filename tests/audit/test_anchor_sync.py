"""In "fsync" mode a group commit costs one fsync: the records' commit. The anchor's move is
handed to the OS and fsynced by the checkpoint thread, several moves to one fsync, never on
a caller's path, and never left unsynced at close."""
from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agentos.audit import FlightRecorder
from agentos.audit import backend as B

KEY = b"k" * 32
FULL, NORMAL = 2, 1


def _synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the path of every fsync the backend makes."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)
    monkeypatch.setattr(B.os, "fsync", fsync)
    return seen


def _until(cond: Any, limit: float = 30.0) -> bool:
    end = time.monotonic() + limit  # the thread runs on its own time: late on a loaded machine
    while not cond() and time.monotonic() < end:
        threading.Event().wait(0.005)
    return bool(cond())


def test_fsync_mode_fsyncs_the_records_commit_and_not_the_anchors(tmp_path: Path) -> None:
    rec = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    b = rec.backend
    assert isinstance(b, B.SqliteAuditBackend)
    assert b.db.execute("PRAGMA synchronous").fetchone()[0] == FULL     # a record is on disk before its action
    assert b.adb.execute("PRAGMA synchronous").fetchone()[0] == NORMAL  # the anchor: handed to the OS
    rec.close()
    rec = FlightRecorder.open(tmp_path / "os", durability="os", key=KEY, sign=False)
    assert rec.backend.db.execute("PRAGMA synchronous").fetchone()[0] == NORMAL
    rec.close()


def test_an_anchor_move_is_fsynced_in_the_background(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _synced(monkeypatch)
    rec = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    b = rec.backend
    rec.append(1, "decision", {"i": 1})
    rec.commit()
    assert rec.anchor_writes == 1
    assert _until(lambda: b.anchor_syncs >= 1)
    assert any(p.startswith(str(b.anchor_path)) for p in seen), seen
    assert b.checkpointer.sync_errors == 0
    assert rec.verify().ok
    rec.close()


def test_anchor_moves_close_together_share_one_fsync(tmp_path: Path) -> None:
    rec = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    b = rec.backend
    b.checkpointer.sync_every = 0.5
    for i in range(60):
        rec.append(1, "decision", {"i": i})
        rec.commit()
    assert rec.anchor_writes == 60
    assert _until(lambda: b.anchor_syncs >= 1)
    # the first move is synced at once, the rest wait out one window together
    assert b.anchor_syncs <= 3, b.anchor_syncs
    rec.close()
    assert b.anchor_syncs <= 4


def test_close_fsyncs_a_move_the_thread_has_not_synced_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    b = rec.backend
    b.checkpointer.sync_every = 3600.0   # the thread would wait an hour for the second move
    rec.append(1, "decision", {"i": 0})
    rec.commit()
    assert _until(lambda: b.anchor_syncs >= 1)
    seen = _synced(monkeypatch)
    rec.append(1, "decision", {"i": 1})
    rec.commit()
    t0 = time.monotonic()
    rec.close()
    assert time.monotonic() - t0 < 20       # close does not wait out the window
    assert any(p.startswith(str(b.anchor_path)) for p in seen), seen
    assert b.anchor_syncs == 2


def test_os_mode_asks_for_no_background_fsync(tmp_path: Path) -> None:
    rec = FlightRecorder.open(tmp_path, durability="os", key=KEY, sign=False)
    for i in range(5):
        rec.append(1, "decision", {"i": i})
        rec.commit()
    rec.close()
    assert rec.backend.anchor_syncs == 0


def test_a_failed_anchor_fsync_fails_the_next_move_until_a_retry_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a disk that cannot fsync the anchor must not pass for one that did: the next move
    # fails (counted, and held to the recorder's bound on a trailing anchor) until the
    # thread's own retry gets the file onto the disk
    rec = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    b = rec.backend
    b.checkpointer.sync_every = 0.01
    broken = [True]
    real = os.fsync

    def fsync(fd: int) -> None:
        if broken[0] and os.readlink(f"/proc/self/fd/{fd}").startswith(str(b.anchor_path)):
            raise OSError(errno.EIO, "Input/output error")
        real(fd)
    monkeypatch.setattr(B.os, "fsync", fsync)
    rec.append(1, "decision", {"i": 0})
    rec.commit()
    assert _until(lambda: b.checkpointer.sync_failure is not None)
    rec.append(1, "decision", {"i": 1})
    with pytest.raises(OSError, match="could not be fsynced"):
        rec.commit()                            # an explicit commit reports its anchor's failure
    rec.append(1, "decision", {"i": 2})
    rec.write_ahead(1, "action", {"i": 3})      # the per-action path counts it and goes on, bounded
    assert rec.anchor_errors >= 1
    assert rec.anchor_lag > 0                   # the anchor did not move over what may be lost
    broken[0] = False                           # the disk recovers: the thread retries unasked
    assert _until(lambda: b.checkpointer.sync_failure is None)
    errors = rec.anchor_errors
    rec.append(1, "decision", {"i": 4})
    rec.commit()
    assert rec.anchor_errors == errors
    assert rec.anchor_lag == 0 and rec.durable == 5
    assert rec.verify().ok
    rec.close()


def test_close_reports_an_anchor_that_could_not_be_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    b = rec.backend
    b.checkpointer.sync_every = 3600.0   # the move waits for close
    rec.append(1, "decision", {"i": 0})
    rec.commit()
    assert _until(lambda: b.anchor_syncs >= 1)
    rec.append(1, "decision", {"i": 1})
    rec.commit()

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(B.os, "fsync", fsync)
    with pytest.raises(OSError, match="could not be fsynced at close"):
        rec.close()
