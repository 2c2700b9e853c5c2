"""Where audit records live: a narrow interface and its embedded backends.

The interface is four calls, named as the kernel store offers them, so a `Store` with
`append_audit`/`audit_records` and an anchor slot can stand in for these backends:
`append_audit(records)` returns only once the records are durable; `audit_records(start)`
yields them in stored order from position `start` (0-based: record `start + 1` first);
`read_anchor()`/`write_anchor(a)` keep the anchor, which must live apart from the records
(here: its own SQLite database, one row, so that editing or truncating the records file
cannot also move the anchor). Two optional calls keep signed checkpoints (checkpoint.py)
with the Merkle frontier that lets a recorder resume without rehashing the whole log:
`write_checkpoint(size, body, frontier)` and `checkpoints()` (newest first).

Durability: "fsync" (the records file is SQLite synchronous=FULL: a record survives power
loss before `append_audit` returns) or "os" (handed to the OS before returning: survives a
killed kernel, not a power cut). The anchor is rewritten with every group, so in "fsync"
mode its file is committed with synchronous=NORMAL (handed to the OS: it survives a killed
kernel at once) and fsynced by the checkpoint thread, at most `ANCHOR_SYNC_S` after it
moved and never on a caller's path: one fsync per group commit, not two. After a power cut
the anchor may trail the records by what the last `ANCHOR_SYNC_S` committed; verify reports
those as valid records past the anchor, exactly as after a crash between the two commits.
An fsync (or close) of the anchor's file that fails is final: Linux marks the pages it could
not write clean, so a later fsync would succeed without writing them, and nothing can say
what reached the disk. Every later anchor move, and `close`, then fail (the recorder holds
actions back once the anchor trails too far) until the recorder is reopened, which reads
what is really on the disk. A checkpoint thread that stops for any other reason (it could
not open its connections, say) fails the next move too, and is started again by it.

The WAL checkpoint (copying committed pages from the write-ahead log into the database) is
off the commit path: SQLite's automatic checkpoint, which runs inside whichever commit
crosses 1,000 pages and takes milliseconds, is switched off (`wal_autocheckpoint=0`), and a
background thread with its own connections runs a passive checkpoint (which never blocks a
writer) once enough has been committed, and a truncating one at close.
"""
from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

from ..kernel.args import shown
from .chain import Anchor, AuditRecord

DURABILITY = ("fsync", "os")


def check_durability(durability: object) -> str:
    if type(durability) is not str or durability not in DURABILITY:
        raise ValueError(f"durability must be one of {DURABILITY}, got {shown(durability)}")
    return durability


ANCHOR_SYNC_S = 0.05
"""In "fsync" mode, the most time an anchor move waits for its background fsync (moves in
that window share one)."""


class AuditBackend(Protocol):
    def append_audit(self, records: Sequence[AuditRecord]) -> None: ...
    def audit_records(self, start: int = 0) -> Iterator[AuditRecord]: ...
    def read_anchor(self) -> Anchor | None: ...
    def write_anchor(self, anchor: Anchor) -> None: ...


class MemoryAuditBackend:
    """In-process lists: for tests and for kernels that ship records elsewhere."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.anchor: Anchor | None = None
        self.saved_checkpoints: list[tuple[int, str, str]] = []

    def write_checkpoint(self, size: int, body: str, frontier: str) -> None:
        self.saved_checkpoints.append((size, body, frontier))

    def checkpoints(self) -> Iterator[tuple[int, str, str]]:
        return iter(list(reversed(self.saved_checkpoints)))

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        self.records.extend(records)

    def audit_records(self, start: int = 0) -> Iterator[AuditRecord]:
        return iter(self.records[start:])

    def read_anchor(self) -> Anchor | None:
        return self.anchor

    def write_anchor(self, anchor: Anchor) -> None:
        self.anchor = anchor

    def close(self) -> None:
        pass


class Checkpointer:
    """Runs the WAL checkpoints of some SQLite files on a thread of its own.

    `poke()` says one more commit happened (each adds a few pages to a log); past `every`
    the thread runs a passive checkpoint (it copies what no reader still needs and never waits for a writer).
    `sync_soon(path)` asks for one file's committed log to be fsynced off the caller's
    path: requests within `sync_every` seconds of the last fsync share the next one.
    `close()` stops the thread and truncates the logs."""

    def __init__(self, paths: list[Path], every: int = 512, sync_every: float = ANCHOR_SYNC_S) -> None:
        self.paths = paths
        self.every = every
        self.sync_every = sync_every
        self.runs = 0            # checkpoints run (for tests and the benchmark)
        self.syncs = 0           # background fsyncs asked for with `sync_soon`
        self.sync_errors = 0
        self.sync_failure: OSError | None = None  # why the last move may not be on the disk
        self.poisoned = False    # an fsync failed: final (see the module's docstring)
        self.written = False
        self.errors = 0
        self._pending = 0
        self._checkpoint_due = False
        self._sync_due: Path | None = None
        self._last_sync = float("-inf")  # the first move is synced at once
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poke(self, n: int = 1) -> None:
        self.written = True
        self._pending += n
        if self._pending >= self.every:
            self._pending = 0
            self._checkpoint_due = True
            self._start()
            self._wake.set()

    def sync_soon(self, path: Path) -> None:
        """Have `path`'s committed log fsynced by the thread, within `sync_every` seconds."""
        self.written = True
        self._sync_due = path
        self._start()
        self._wake.set()

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop:
                    self._thread = threading.Thread(target=self._run, name="agentos-audit-checkpoint",
                                                    daemon=True)
                    self._thread.start()

    def retry(self) -> None:
        """After a failure that can pass (the thread stopped, a file could not be opened):
        start the thread again if it stopped, and have it try the due fsync now."""
        if not self.poisoned:
            self._start()
            self._wake.set()

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as e:  # never dies unheard: the next anchor move hears of it
            self.errors += 1
            if not self.poisoned:
                self.sync_failure = OSError(errno.EIO, f"the checkpoint thread stopped "
                                                       f"({type(e).__name__}: {e})")
            with self._lock:
                self._thread = None  # `retry` (or the next poke) starts another

    def _serve(self) -> None:
        dbs = [sqlite3.connect(str(p), isolation_level=None, check_same_thread=False) for p in self.paths]
        try:
            while True:
                # a failed fsync left its move due: try it again after the window, woken or not
                self._wake.wait(None if self._sync_due is None else self.sync_every)
                self._wake.clear()
                if self._stop:
                    return
                due = self._sync_due
                if due is not None:
                    while not self._stop and not self._checkpoint_due:  # moves in this window share one fsync
                        wait = self._last_sync + self.sync_every - time.monotonic()
                        if wait <= 0:
                            break
                        self._wake.wait(wait)
                        self._wake.clear()
                    if self._stop:
                        return  # close() syncs what is still due
                    self._sync(due)
                if self._checkpoint_due:
                    self._checkpoint_due = False
                    self._checkpoint(dbs, "PASSIVE")
        finally:
            for db in dbs:
                db.close()

    def _sync(self, path: Path) -> None:
        """fsync what was committed to `path` so far: its write-ahead log holds every commit
        since the last checkpoint (which synced the database file itself)."""
        self._sync_due = None  # a request made after this point asks for the next fsync
        was_poisoned = self.poisoned
        self._last_sync = time.monotonic()
        failure: OSError | None = None
        for name in (str(path) + "-wal", str(path)):
            try:
                fd = os.open(name, os.O_RDONLY)
            except FileNotFoundError:
                continue  # no log yet (or checkpointed away): nothing of it to sync
            except OSError as e:
                failure = e  # nothing was tried: the next try may work
                continue
            try:
                os.fsync(fd)
            except OSError as e:
                failure = e
                self.poisoned = True
            finally:
                try:
                    os.close(fd)
                except OSError as e:  # a write-back error reported at close (NFS) is as final
                    failure = failure or e
                    self.poisoned = True
        self.syncs += 1
        if failure is None:
            if not self.poisoned:
                self.sync_failure = None
            return
        # not durable: say so to the writer (its next anchor move fails, and the recorder's
        # bound on a trailing anchor holds the actions back); a failure that can pass is
        # tried again after the window
        self.sync_errors += 1
        if not was_poisoned:  # (after the first final failure, that one is the one to name)
            self.sync_failure = failure
        if self._sync_due is None and not self.poisoned:
            self._sync_due = path

    def _checkpoint(self, dbs: list[sqlite3.Connection], mode: str) -> None:
        for db in dbs:
            try:
                db.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
            except sqlite3.Error:  # busy or closed: the next one catches up
                self.errors += 1
        self.runs += 1

    def close(self, dbs: list[sqlite3.Connection]) -> None:
        """Stop the thread; then, if anything was written, checkpoint through `dbs` (the
        writer's connections), passively: a reader elsewhere (`agentctl audit verify`) is
        never waited for."""
        with self._lock:
            self._stop = True
            t = self._thread
        if t is not None:
            self._wake.set()
            t.join()
        if self.written:
            self._checkpoint(dbs, "PASSIVE")
            due = self._sync_due
            if due is not None:  # a move the thread had not synced yet (the checkpoint may not have)
                self._sync(due)


class SqliteAuditBackend:
    """Records in `<dir>/audit.db`, the anchor in `<dir>/audit-anchor.db` (SQLite, WAL)."""

    def __init__(self, directory: str | os.PathLike[str], durability: str = "fsync") -> None:
        check_durability(durability)
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.durability = durability
        self.db_path = self.dir / "audit.db"
        self.anchor_path = self.dir / "audit-anchor.db"
        self.db = self._connect(self.db_path)
        self.db.execute("CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, time REAL, wall REAL, "
                        "pid INTEGER, kind TEXT, data TEXT, prev TEXT, mac TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS checkpoints (id INTEGER PRIMARY KEY, size INTEGER, "
                        "body TEXT, frontier TEXT)")
        # fsync mode: the anchor's commit is handed to the OS and fsynced in the background
        self.adb = self._connect(self.anchor_path, full=False)
        self.adb.execute("CREATE TABLE IF NOT EXISTS anchor (id INTEGER PRIMARY KEY CHECK (id = 1), "
                         "count INTEGER, last_mac TEXT, mac TEXT)")
        self.checkpointer = Checkpointer([self.db_path, self.anchor_path])

    def _connect(self, path: Path, full: bool | None = None) -> sqlite3.Connection:
        if full is None:
            full = self.durability == "fsync"
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
        db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on the Checkpointer's thread
        return db

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        db = self.db
        if len(records) == 1:  # one statement is its own transaction: no BEGIN/COMMIT round trips
            r = records[0]
            db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)",
                       (r.seq, r.time, r.wall, r.pid, r.kind, r.data, r.prev, r.mac))
            self.checkpointer.poke()
            return
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)",
                           [(r.seq, r.time, r.wall, r.pid, r.kind, r.data, r.prev, r.mac) for r in records])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self.checkpointer.poke()

    def audit_records(self, start: int = 0) -> Iterator[AuditRecord]:
        # stored order is insertion order (rowid); verification, not the query, judges seq
        cur = self.db.execute("SELECT seq, time, wall, pid, kind, data, prev, mac FROM audit "
                              "WHERE rowid > ? ORDER BY rowid", (start,))
        for row in cur:
            yield AuditRecord(*row)

    def read_anchor(self) -> Anchor | None:
        row = self.adb.execute("SELECT count, last_mac, mac FROM anchor WHERE id = 1").fetchone()
        if row is None:
            return None
        count, last, mac = row
        if type(count) is not int or not isinstance(last, str) or not isinstance(mac, str):
            return Anchor(-1, "", "unreadable")
        return Anchor(count, last, mac)

    def write_anchor(self, anchor: Anchor) -> None:
        fsync = self.durability == "fsync"
        if fsync:
            failure = self.checkpointer.sync_failure
            if failure is not None:  # an earlier move may not be on the disk: this one would not be either
                self.checkpointer.retry()
                raise OSError(failure.errno, f"the anchor's file {self.anchor_path} could not be fsynced: "
                                             f"{failure.strerror or failure}")
        self.adb.execute("INSERT OR REPLACE INTO anchor VALUES (1, ?, ?, ?)",
                         (anchor.count, anchor.last_mac, anchor.mac))
        if fsync:
            self.checkpointer.sync_soon(self.anchor_path)
        self.checkpointer.poke()

    @property
    def anchor_syncs(self) -> int:
        """Background fsyncs of the anchor's file ("fsync" mode; the records' own are commits)."""
        return self.checkpointer.syncs

    def write_checkpoint(self, size: int, body: str, frontier: str) -> None:
        self.db.execute("INSERT INTO checkpoints (size, body, frontier) VALUES (?, ?, ?)", (size, body, frontier))

    def checkpoints(self) -> Iterator[tuple[int, str, str]]:
        for row in self.db.execute("SELECT size, body, frontier FROM checkpoints ORDER BY id DESC"):
            yield row[0], row[1], row[2]

    def close(self) -> None:
        try:
            self.checkpointer.close([self.db, self.adb])
        finally:
            self.db.close()
            self.adb.close()
        failure = self.checkpointer.sync_failure
        if failure is not None and self.durability == "fsync":  # the last move may not be on the disk
            raise OSError(failure.errno, f"the anchor's file {self.anchor_path} could not be fsynced at "
                                         f"close: {failure.strerror or failure}")
