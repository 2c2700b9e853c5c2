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


def test_a_failed_anchor_fsync_fails_every_later_move_until_the_recorder_is_reopened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a disk that could not fsync the anchor must not pass for one that did: Linux marks
    # the pages it failed to write clean, so a later fsync "succeeds" without them. Every
    # later move fails (counted, and held to the recorder's bound on a trailing anchor),
    # close says so, and reopening reads what the disk really holds
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
    broken[0] = False                           # the disk answers again: not to be believed
    syncs = b.anchor_syncs
    threading.Event().wait(0.1)
    assert b.anchor_syncs == syncs              # no retry: its success would mean nothing
    assert b.checkpointer.sync_failure is not None
    rec.append(1, "decision", {"i": 4})
    with pytest.raises(OSError, match="could not be fsynced"):
        rec.commit()
    with pytest.raises(OSError, match="could not be fsynced"):
        rec.close()
    assert b.checkpointer._thread is None or not b.checkpointer._thread.is_alive()
    again = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    assert again.verify().ok                    # the records past the anchor are valid, and kept
    assert again.durable == rec.durable         # every record acknowledged as durable is there
    again.append(1, "decision", {"i": 5})
    again.commit()
    assert again.anchor_lag == 0 and again.durable == rec.durable + 1
    again.close()


def test_a_checkpoint_thread_that_dies_fails_the_next_move_and_is_started_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the thread could not open its connections (too many open files, say): it must not die
    # unheard, leaving every later move unsynced with nothing said
    rec = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    b = rec.backend
    b.checkpointer.sync_every = 0.01
    real = B.sqlite3.connect
    refuse = [True]

    def connect(*a: Any, **kw: Any) -> Any:
        if refuse[0] and threading.current_thread().name == "agentos-audit-checkpoint":
            raise B.sqlite3.OperationalError("unable to open database file")
        return real(*a, **kw)
    monkeypatch.setattr(B.sqlite3, "connect", connect)
    rec.append(1, "decision", {"i": 0})
    rec.commit()                                # starts the thread, which dies at once
    assert _until(lambda: b.checkpointer.sync_failure is not None)
    assert "checkpoint thread stopped" in str(b.checkpointer.sync_failure)
    assert not b.checkpointer.poisoned          # nothing was fsynced wrongly: it may pass
    rec.append(1, "decision", {"i": 1})
    with pytest.raises(OSError, match="checkpoint thread stopped"):
        rec.commit()
    refuse[0] = False
    rec.append(1, "decision", {"i": 2})
    with pytest.raises(OSError, match="checkpoint thread stopped"):
        rec.commit()                            # still failing, but it starts the thread again,
    assert _until(lambda: b.checkpointer.sync_failure is None)  # which syncs what was due
    assert b.anchor_syncs >= 1
    rec.append(1, "decision", {"i": 3})
    rec.commit()
    assert rec.anchor_lag == 0 and rec.durable == 4
    rec.close()


def test_an_error_at_close_of_the_fsynced_file_is_final(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # NFS reports a write-back error at close(): as final as one from fsync, and the thread
    # must not die of it
    rec = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    b = rec.backend
    real_close = os.close
    once = [True]

    def close(fd: int) -> None:
        real_close(fd)
        if once[0] and threading.current_thread().name == "agentos-audit-checkpoint":
            once[0] = False
            raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(B.os, "close", close)
    rec.append(1, "decision", {"i": 0})
    rec.commit()
    assert _until(lambda: b.checkpointer.sync_failure is not None)
    assert b.checkpointer.poisoned
    assert b.checkpointer._thread is not None and b.checkpointer._thread.is_alive()
    rec.append(1, "decision", {"i": 1})
    with pytest.raises(OSError, match="could not be fsynced"):
        rec.commit()
    with pytest.raises(OSError):
        rec.close()


def test_close_lets_go_of_the_backend_even_when_the_last_commit_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = FlightRecorder.open(tmp_path, durability="fsync", key=KEY, sign=False)
    b = rec.backend
    b.checkpointer.sync_every = 0.01

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(B.os, "fsync", fsync)
    rec.append(1, "decision", {"i": 0})
    rec.commit()
    assert _until(lambda: b.checkpointer.sync_failure is not None)
    rec.append(1, "decision", {"i": 1})        # its commit at close fails
    with pytest.raises(OSError, match="could not be fsynced"):
        rec.close()
    t = b.checkpointer._thread
    assert t is None or not t.is_alive()       # the thread stopped
    with pytest.raises(B.sqlite3.ProgrammingError):
        b.db.execute("SELECT 1")                # and the files were let go
    with pytest.raises(B.sqlite3.ProgrammingError):
        b.adb.execute("SELECT 1")


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
