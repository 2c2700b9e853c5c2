"""Where audit records live: a narrow interface and its embedded backends.

The interface is four calls, named as the kernel store offers them, so a `Store` with
`append_audit`/`audit_records` and an anchor slot can stand in for these backends:
`append_audit(records)` returns only once the records are durable; `audit_records(start)`
yields them in stored order; `read_anchor()`/`write_anchor(a)` keep the anchor, which must
live apart from the records (here: its own file, replaced atomically).

Durability: "fsync" (SQLite synchronous=FULL and an fsynced anchor: survives power loss)
or "os" (handed to the OS before returning: survives a killed kernel, not a power cut).
"""
from __future__ import annotations

import json
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
    """Records in `<dir>/audit.db` (SQLite, WAL); the anchor in `<dir>/audit.anchor`."""

    def __init__(self, directory: str | os.PathLike[str], durability: str = "fsync") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {DURABILITY}, got {durability!r}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.durability = durability
        self.db_path = self.dir / "audit.db"
        self.anchor_path = self.dir / "audit.anchor"
        self.db = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durability == 'fsync' else 'NORMAL'}")
        self.db.execute("CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, time REAL, wall REAL, "
                        "pid INTEGER, kind TEXT, data TEXT, prev TEXT, mac TEXT)")

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
        try:
            raw = self.anchor_path.read_text()
        except FileNotFoundError:
            return None
        try:
            d = json.loads(raw)
            return Anchor(int(d["count"]), str(d["last_mac"]), str(d["mac"]))
        except (ValueError, KeyError, TypeError):
            return Anchor(-1, "", "unreadable")

    def write_anchor(self, anchor: Anchor) -> None:
        tmp = self.anchor_path.with_suffix(".tmp")
        data = json.dumps({"count": anchor.count, "last_mac": anchor.last_mac, "mac": anchor.mac}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            if self.durability == "fsync":
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.anchor_path)
        if self.durability == "fsync":
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def close(self) -> None:
        self.db.close()
