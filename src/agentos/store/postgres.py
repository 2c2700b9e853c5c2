"""A PostgreSQL store (psycopg 3), for runs shared by several kernels.

Same protocol and writer as the SQLite store. Durability modes map to the server's
commit behaviour: `fsync` commits each drained batch with synchronous_commit=on, `group`
commits by time/size (synchronous_commit=on), `off` uses synchronous_commit=off (the
server may lose the last commits on its own crash, never on the kernel's). Several
kernels may write one database: run ids are unique and rows are keyed by run.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from .base import StoreError, WriterStore, check_writer_options
from .sql import SqlReads

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS agentos_runs (run_id TEXT PRIMARY KEY, name TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL, meta JSONB NOT NULL,
        summary JSONB NOT NULL DEFAULT '{}')""",
    """CREATE TABLE IF NOT EXISTS agentos_events (run_id TEXT NOT NULL, seq BIGINT NOT NULL,
        time DOUBLE PRECISION NOT NULL, pid BIGINT NOT NULL, kind TEXT NOT NULL, body BYTEA NOT NULL,
        PRIMARY KEY (run_id, seq))""",
    """CREATE TABLE IF NOT EXISTS agentos_journal (run_id TEXT NOT NULL, n BIGINT NOT NULL,
        body TEXT NOT NULL, PRIMARY KEY (run_id, n))""",
    """CREATE INDEX IF NOT EXISTS agentos_journal_key ON agentos_journal (run_id,
        ((body::jsonb->>'pid')::bigint), ((body::jsonb->>'index')::bigint))""",
    """CREATE TABLE IF NOT EXISTS agentos_snapshots (snap_id TEXT PRIMARY KEY, run_id TEXT, pid BIGINT,
        created_at DOUBLE PRECISION NOT NULL, body TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS agentos_audit (n BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS agentos_anchor (k INT PRIMARY KEY CHECK (k = 1), body BYTEA NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS agentos_kv (key TEXT PRIMARY KEY, body BYTEA NOT NULL)""",
]


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise StoreError("PostgresStore needs psycopg 3: pip install 'agentos[postgres]'") from e
    return psycopg


class PostgresStore(SqlReads, WriterStore):
    _P = "%s"
    _T = "agentos_"
    _JPID = "(body::jsonb->>'pid')::bigint"
    _JIDX = "(body::jsonb->>'index')::bigint"
    _JHINT = ""
    _strict_json = True  # JSONB: no NUL, no lone surrogate in a run's meta or summary

    def __init__(self, dsn: str, durability: str = "group", **kw: Any) -> None:
        check_writer_options(durability, **kw)
        self.dsn = dsn
        psycopg = _psycopg()
        super().__init__(durability, **kw)
        self._rlock = threading.Lock()
        try:
            self._reader = psycopg.connect(dsn, autocommit=True)
        except Exception as e:
            raise StoreError(f"cannot connect to PostgreSQL at {_safe(dsn)}: {e}") from e

    def __repr__(self) -> str:
        return f"PostgresStore({_safe(self.dsn)!r}, durability={self.durability!r})"

    # -- writer thread ------------------------------------------------------------------
    def _connect(self) -> Any:
        psycopg = _psycopg()
        conn = psycopg.connect(self.dsn, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(723451)")  # kernels racing to create tables
            for stmt in SCHEMA:
                cur.execute(stmt)
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SET synchronous_commit = " + ("off" if self.durability == "off" else "on"))
        conn.commit()
        return conn

    def _apply(self, conn: Any, item: Any) -> int:
        op = item[0]
        with conn.cursor() as cur:
            if op == "events":
                run_id, rows = item[1], item[2]
                with cur.copy("COPY agentos_events (run_id, seq, time, pid, kind, body) FROM STDIN") as cp:
                    for (s, t, p, k, b) in rows:
                        cp.write_row((run_id, s, t, p, k, b))
                return len(rows)
            if op == "journal":
                run_id, rows = item[1], item[2]
                with cur.copy("COPY agentos_journal (run_id, n, body) FROM STDIN") as cp:
                    for (n, b) in rows:
                        cp.write_row((run_id, n, b))
                return len(rows)
            if op == "run":  # an id taken meanwhile (another kernel) is reported, not fatal to the writer
                cur.execute("INSERT INTO agentos_runs VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (run_id) DO NOTHING",
                            item[1])
                if cur.rowcount == 0 and len(item) > 2:
                    item[2].append(True)
            elif op == "update":
                run_id, status, meta, summary = item[1:]
                if status is not None:
                    cur.execute("UPDATE agentos_runs SET status=%s WHERE run_id=%s", (status, run_id))
                if meta is not None:
                    cur.execute("UPDATE agentos_runs SET meta=%s WHERE run_id=%s", (meta, run_id))
                if summary is not None:
                    cur.execute("UPDATE agentos_runs SET summary=%s WHERE run_id=%s", (summary, run_id))
            elif op == "snapshot":
                cur.execute("INSERT INTO agentos_snapshots VALUES (%s,%s,%s,%s,%s)", item[1])
            elif op == "audit":
                cur.executemany("INSERT INTO agentos_audit (body) VALUES (%s)", [(b,) for b in item[1]])
                return len(item[1])
            elif op == "anchor":
                cur.execute("INSERT INTO agentos_anchor VALUES (1, %s) ON CONFLICT (k) DO UPDATE "
                            "SET body = EXCLUDED.body", (item[1],))
            elif op == "kv_put":
                cur.executemany("INSERT INTO agentos_kv VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                                "SET body = EXCLUDED.body", item[1])
                return len(item[1])
            elif op == "kv_del":
                cur.executemany("DELETE FROM agentos_kv WHERE key=%s", [(k,) for k in item[1]])
                return len(item[1])
            else:
                raise StoreError(f"unknown store op {op!r}")
        return 1

    def _commit(self, conn: Any) -> None:
        conn.commit()

    def _close_conn(self, conn: Any) -> None:
        try:
            conn.commit()
        finally:
            conn.close()

    # -- reads --------------------------------------------------------------------------
    def _where(self) -> str:
        return _safe(self.dsn)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self._closed:
            self.flush()
        with self._rlock:
            try:
                with self._reader.cursor() as cur:
                    cur.execute(sql, args)
                    return cur.fetchall()
            except Exception as e:
                raise StoreError(f"{_safe(self.dsn)}: {e}") from e

    def close(self) -> None:
        super().close()
        with self._rlock:
            self._reader.close()


def _safe(dsn: str) -> str:
    """The DSN without its password, for messages."""
    import re

    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", re.sub(r"password=\S+", "password=***", dsn))


__all__ = ["PostgresStore"]
