"""The embedded default store: one SQLite file in WAL mode.

Durability modes: `fsync` commits (and fsyncs the WAL, synchronous=FULL) every batch the
writer drains; `group` commits once `group_rows` rows or `group_ms` have accumulated
(also synchronous=FULL, so a committed group survives a kill -9 or power loss); `off`
commits every batch with synchronous=OFF (survives a killed process, not a power loss).
Reads use their own connection; WAL lets them run beside the writer.

A damaged file (`database disk image is malformed`), a truncated one or one that is not
a database at all is a `StoreError` naming the file, on open or on the read or write
that meets the damage; no sqlite3 exception leaves this module.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from itertools import accumulate
from typing import Any

from .base import StoreError, WriterStore, check_writer_options
from .sql import SqlReads

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL,
    status TEXT NOT NULL, meta TEXT NOT NULL, summary TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL,
    pid INTEGER NOT NULL, kind TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (run_id TEXT NOT NULL, n INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (run_id, n)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS journal_key ON journal (run_id, json_extract(body, '$.pid'),
    json_extract(body, '$.index'));
CREATE TABLE IF NOT EXISTS snapshots (snap_id TEXT PRIMARY KEY, run_id TEXT, pid INTEGER,
    created_at REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (n INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS anchor (k INTEGER PRIMARY KEY CHECK (k = 1), body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
"""


# -- bulk inserts ---------------------------------------------------------------------------
# `executemany` binds each row holding the interpreter's lock and steps it without: the
# writer then needs the lock back once per row, and while the kernel's thread runs Python it
# gets it only at the interpreter's switch interval, so the writer's work ends up serial with
# the kernel's. A batch inserted by one statement is stepped with the lock released
# throughout: the bodies go in as one blob cut with substr (so each row holds exactly the
# bytes it was given, never a re-rendering of them) and the small per-row fields as one JSON
# array read with json_each.
# (The blob starts with one spare byte: SQLite's substr of a zero-length blob is NULL.)
_EVENTS_BULK = ("INSERT INTO events SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
                "json_extract(value, '$[2]'), json_extract(value, '$[3]'), "
                "substr(?2, json_extract(value, '$[4]'), json_extract(value, '$[5]')) FROM json_each(?3)")
_JOURNAL_BULK = ("INSERT INTO journal SELECT ?1, json_extract(value, '$[0]'), "
                 "CAST(substr(?2, json_extract(value, '$[1]'), json_extract(value, '$[2]')) AS TEXT) "
                 "FROM json_each(?3)")
# Only fields JSON carries as SQLite would bind them go this way (`_plain_fields`): ints
# in SQLite's 64-bit range (JSON reads a longer one as a REAL), finite floats, and kinds
# that are text with no NUL (SQLite's JSON text ends at an escaped NUL) and no lone
# surrogate; any other batch takes the row-by-row path, which binds it or names the fault.
_BULK_MIN = 8
_BULK_MAX_BYTES = 256 << 20  # bodies of one statement: under SQLite's 1e9 and the binding's 2**31
_I64 = 2**63
_encode_fields = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _int64(v: object) -> bool:
    return type(v) is int and -_I64 <= v < _I64


def _plain_fields(rows: list[tuple[int, float, int, str, bytes]]) -> bool:
    kinds: set[str] = set()
    for s, t, p, k, _ in rows:
        if not (_int64(s) and _int64(p) and (type(t) is float or _int64(t)) and type(k) is str):
            return False
        kinds.add(k)
    for k in kinds:  # a run uses a few dozen kinds: each is judged once
        if "\0" in k or not (k.isascii() or _utf8(k)):
            return False
    return True


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _bulk_events(conn: sqlite3.Connection, run_id: str, rows: list[tuple[int, float, int, str, bytes]]) -> bool:
    """Insert `rows` with one statement; False (nothing inserted) if they need the row-by-row path."""
    if len(rows) < _BULK_MIN or not _plain_fields(rows):
        return False
    try:
        bodies = [b for (_, _, _, _, b) in rows]
        lens = [len(b) for b in bodies]
        if sum(lens) > _BULK_MAX_BYTES:
            return False  # one blob past SQLite's (and the binding's) limits: row by row
        fields = _encode_fields([[s, t, p, k, at, n] for (s, t, p, k, _), at, n
                                 in zip(rows, accumulate(lens, initial=2), lens)])
        blob = b"\0" + b"".join(bodies)  # (substr of an empty blob is NULL, not empty)
    except (TypeError, ValueError, OverflowError, MemoryError):  # an odd row: the row path binds it or names the fault
        return False
    try:
        conn.execute(_EVENTS_BULK, (run_id, blob, fields))
    except (sqlite3.Error, OverflowError, MemoryError):  # fails whole: the row-by-row path says why
        return False
    return True


def _bulk_journal(conn: sqlite3.Connection, run_id: str, rows: list[tuple[int, str]]) -> bool:
    """Insert journal `rows` with one statement; False (nothing inserted) if they cannot be."""
    if len(rows) < _BULK_MIN or not all(_int64(n) for n, _ in rows):
        return False
    try:
        bodies = [b.encode() for (_, b) in rows]
        lens = [len(b) for b in bodies]
        if sum(lens) > _BULK_MAX_BYTES:
            return False
        fields = _encode_fields([[n, at, ln] for (n, _), at, ln in zip(rows, accumulate(lens, initial=2), lens)])
        blob = b"\0" + b"".join(bodies)  # (substr of an empty blob is NULL, not empty)
    except (TypeError, ValueError, AttributeError, OverflowError, MemoryError):
        return False
    try:
        conn.execute(_JOURNAL_BULK, (run_id, blob, fields))
    except (sqlite3.Error, OverflowError, MemoryError):
        return False
    return True


class SqliteStore(SqlReads, WriterStore):
    _P = "?"
    _T = ""

    def __init__(self, path: str | os.PathLike[str], durability: str = "group", **kw: Any) -> None:
        check_writer_options(durability, **kw)  # before the directory is made or a thread started
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        super().__init__(durability, **kw)
        self._rlock = threading.Lock()
        try:
            self._reader = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._reader.execute("PRAGMA query_only=ON")
        except sqlite3.Error as e:
            try:
                super().close()
            except StoreError:
                pass
            raise StoreError(f"cannot open the store at {self.path}: {e}") from e

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r}, durability={self.durability!r})"

    # -- writer thread ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: could not switch SQLite to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=" + ("OFF" if self.durability == "off" else "FULL"))
        self._refuse_if_damaged(conn)
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        return conn

    def _refuse_if_damaged(self, conn: sqlite3.Connection) -> None:
        """Check every page before the first write: SQLite notices damage only on the pages a
        statement touches, so a write that misses the damaged ones would succeed and bury the
        damage under new rows. quick_check reads the file once (about 1 GB/s here)."""
        problems = [" ".join(str(r[0]).split()) for r in conn.execute("PRAGMA quick_check(3)").fetchall()]
        if problems != ["ok"]:
            raise StoreError(f"the store is damaged ({'; '.join(problems)[:300]})")

    def _apply(self, conn: sqlite3.Connection, item: Any) -> int:
        op = item[0]
        if op == "events":
            run_id, rows = item[1], item[2]
            if not _bulk_events(conn, run_id, rows):
                conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)",
                                 [(run_id, s, t, p, k, b) for (s, t, p, k, b) in rows])
            return len(rows)
        if op == "journal":
            run_id, rows = item[1], item[2]
            if not _bulk_journal(conn, run_id, rows):
                conn.executemany("INSERT INTO journal VALUES (?,?,?)", [(run_id, n, b) for (n, b) in rows])
            return len(rows)
        if op == "run":  # an id taken meanwhile (another process) is reported, not fatal to the writer
            cur = conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?) ON CONFLICT (run_id) DO NOTHING", item[1])
            if cur.rowcount == 0 and len(item) > 2:
                item[2].append(True)
        elif op == "update":
            run_id, status, meta, summary = item[1:]
            if status is not None:
                conn.execute("UPDATE runs SET status=? WHERE run_id=?", (status, run_id))
            if meta is not None:
                conn.execute("UPDATE runs SET meta=? WHERE run_id=?", (meta, run_id))
            if summary is not None:
                conn.execute("UPDATE runs SET summary=? WHERE run_id=?", (summary, run_id))
        elif op == "snapshot":
            conn.execute("INSERT INTO snapshots VALUES (?,?,?,?,?)", item[1])
        elif op == "audit":
            conn.executemany("INSERT INTO audit (body) VALUES (?)", [(b,) for b in item[1]])
            return len(item[1])
        elif op == "anchor":
            conn.execute("INSERT OR REPLACE INTO anchor VALUES (1, ?)", (item[1],))
        elif op == "kv_put":
            conn.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", item[1])
            return len(item[1])
        elif op == "kv_del":
            conn.executemany("DELETE FROM kv WHERE key=?", [(k,) for k in item[1]])
            return len(item[1])
        else:
            raise StoreError(f"unknown store op {op!r}")
        return 1

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")
        conn.execute("BEGIN")

    def _close_conn(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            pass
        conn.close()

    # -- reads --------------------------------------------------------------------------
    def _where(self) -> str:
        return str(self.path)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self._closed:
            self.flush()
        with self._rlock:
            try:
                return self._reader.execute(sql, args).fetchall()
            except sqlite3.Error as e:  # also DatabaseError: damaged pages, a truncated file, garbage
                if isinstance(e, sqlite3.OperationalError) and "no such table" in str(e):
                    return []
                raise StoreError(f"{self.path}: {e}") from e

    def close(self) -> None:
        try:
            super().close()
        finally:
            with self._rlock:
                self._reader.close()


__all__ = ["SqliteStore"]
