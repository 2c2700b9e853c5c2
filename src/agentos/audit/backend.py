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

Durability: "fsync" (SQLite synchronous=FULL for both files: survives power loss) or "os"
(handed to the OS before returning: survives a killed kernel, not a power cut).
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Iterator, Protocol, Sequence

from .chain import Anchor, AuditRecord

DURABILITY = ("fsync", "os")


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


class SqliteAuditBackend:
    """Records in `<dir>/audit.db`, the anchor in `<dir>/audit-anchor.db` (SQLite, WAL)."""

    def __init__(self, directory: str | os.PathLike[str], durability: str = "fsync") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, got {durability!r}")
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
        self.adb = self._connect(self.anchor_path)
        self.adb.execute("CREATE TABLE IF NOT EXISTS anchor (id INTEGER PRIMARY KEY CHECK (id = 1), "
                         "count INTEGER, last_mac TEXT, mac TEXT)")

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'fsync' else 'NORMAL'}")
        return db

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)",
                           [(r.seq, r.time, r.wall, r.pid, r.kind, r.data, r.prev, r.mac) for r in records])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

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
        self.adb.execute("INSERT OR REPLACE INTO anchor VALUES (1, ?, ?, ?)",
                         (anchor.count, anchor.last_mac, anchor.mac))

    def write_checkpoint(self, size: int, body: str, frontier: str) -> None:
        self.db.execute("INSERT INTO checkpoints (size, body, frontier) VALUES (?, ?, ?)", (size, body, frontier))

    def checkpoints(self) -> Iterator[tuple[int, str, str]]:
        for row in self.db.execute("SELECT size, body, frontier FROM checkpoints ORDER BY id DESC"):
            yield row[0], row[1], row[2]

    def close(self) -> None:
        self.db.close()
        self.adb.close()
