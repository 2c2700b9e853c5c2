"""The read side the SQL stores share. SQLite and PostgreSQL differ only in their
placeholder (`?` or `%s`) and table prefix; each subclass sets those two and `_query`."""
from __future__ import annotations

import json
from typing import Any, Iterator

from ..kernel.journal import JournalEntry
from .base import NOT_DEVICE_OPS, RunInfo, StoredEvent, StoreError, check_key, entries_of


class SqlReads:
    _P = "?"      # the driver's placeholder
    _T = ""       # table name prefix

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _where(self) -> str:
        """Where this store lives, for error messages (never a password)."""
        raise NotImplementedError

    def _info(self, r: tuple[Any, ...]) -> RunInfo:
        try:
            meta = r[4] if isinstance(r[4], dict) else json.loads(r[4])
            summary = r[5] if isinstance(r[5], dict) else json.loads(r[5])
        except (TypeError, ValueError, RecursionError) as e:
            raise StoreError(f"{self._where()}: run {r[0]!r:.80} has a damaged row: {e}") from None
        if not isinstance(meta, dict) or not isinstance(summary, dict):
            raise StoreError(f"{self._where()}: run {r[0]!r:.80} has a damaged row: its meta and summary "
                             f"must be JSON objects")
        return RunInfo(r[0], r[1], r[2], r[3], meta, summary, r[6])

    def runs(self) -> list[RunInfo]:
        t = self._T
        rows = self._query(f"SELECT r.run_id, name, created_at, status, meta, summary, "
                           f"(SELECT COUNT(*) FROM {t}events e WHERE e.run_id = r.run_id) "
                           f"FROM {t}runs r ORDER BY created_at, r.run_id")
        return [self._info(r) for r in rows]

    def get_run(self, run_id: str) -> RunInfo:
        t, p = self._T, self._P
        rows = self._query(f"SELECT run_id, name, created_at, status, meta, summary, "
                           f"(SELECT COUNT(*) FROM {t}events e WHERE e.run_id = {p}) "
                           f"FROM {t}runs WHERE run_id={p}", (run_id, run_id))
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self._where()}")
        return self._info(rows[0])

    def has_run(self, run_id: str) -> bool:
        """Whether a run with exactly this id is stored."""
        return bool(self._query(f"SELECT 1 FROM {self._T}runs WHERE run_id={self._P}", (run_id,)))

    def events(self, run_id: str, *, pid: int | None = None, kind: str | None = None) -> Iterator[StoredEvent]:
        p = self._P
        sql = f"SELECT seq, time, pid, kind, body FROM {self._T}events WHERE run_id={p}"
        args: list[Any] = [run_id]
        if pid is not None:
            sql += f" AND pid={p}"
            args.append(pid)
        if kind is not None:
            sql += f" AND kind={p}"
            args.append(kind)
        last = 0
        while True:  # pages, so a long run streams in constant memory
            rows = self._query(sql + f" AND seq>{p} ORDER BY seq LIMIT 4096", (*args, last))
            if not rows:
                return
            for r in rows:
                yield StoredEvent(r[0], r[1], r[2], r[3], bytes(r[4]))
            last = rows[-1][0]

    def event_bodies(self, run_id: str) -> Iterator[bytes]:
        """A run's stored event encodings in order, and nothing else of each row: what
        replay compares, byte for byte."""
        p = self._P
        sql = f"SELECT seq, body FROM {self._T}events WHERE run_id={p} AND seq>{p} ORDER BY seq LIMIT 8192"
        last = 0
        while True:  # pages, as `events`
            rows = self._query(sql, (run_id, last))
            if not rows:
                return
            for r in rows:
                yield bytes(r[1])
            last = rows[-1][0]

    # the journal key inside a row's JSON body, in this dialect (an index covers it)
    _JPID = "json_extract(body, '$.pid')"
    _JIDX = "json_extract(body, '$.index')"
    _JHINT = " INDEXED BY journal_key"  # without statistics SQLite would scan the run instead

    def journal_entry(self, run_id: str, pid: int, index: int) -> JournalEntry | None:
        """The device result journaled for (pid, op index), or None: one indexed lookup, so a
        reader that follows a long run (provenance) never holds its whole journal."""
        t, p = self._T, self._P
        rows = self._query(f"SELECT body FROM {t}journal{self._JHINT} WHERE run_id={p} AND {self._JPID}={p} "
                           f"AND {self._JIDX}={p} ORDER BY n", (run_id, int(pid), int(index)))
        for r in rows:
            try:
                e = JournalEntry.from_json(r[0])
            except (TypeError, ValueError) as err:
                raise StoreError(f"{self._where()}: the journal of run {run_id!r:.80} is damaged: "
                                 f"{err}") from None
            if e.op not in NOT_DEVICE_OPS:
                return e
        return None

    def journal(self, run_id: str) -> list[JournalEntry]:
        rows = self._query(f"SELECT meta FROM {self._T}runs WHERE run_id={self._P}", (run_id,))
        meta = rows[0][0] if rows else {}
        return entries_of(meta if isinstance(meta, dict) else json.loads(meta), self.journal_rows(run_id))

    def journal_rows(self, run_id: str) -> list[str]:
        rows = self._query(f"SELECT body FROM {self._T}journal WHERE run_id={self._P} ORDER BY n", (run_id,))
        return [r[0] for r in rows]

    def get_snapshot(self, snap_id: str) -> dict[str, Any]:
        rows = self._query(f"SELECT body FROM {self._T}snapshots WHERE snap_id={self._P}", (snap_id,))
        if not rows:
            raise StoreError(f"no snapshot {snap_id!r} in {self._where()}")
        try:
            return json.loads(rows[0][0])
        except (TypeError, ValueError) as e:
            raise StoreError(f"{self._where()}: snapshot {snap_id!r:.80} is damaged: {e}") from None

    def snapshots(self, run_id: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT snap_id, run_id, pid, created_at FROM {self._T}snapshots"
        rows = self._query(sql + (f" WHERE run_id={self._P}" if run_id else "") + " ORDER BY created_at",
                           (run_id,) if run_id else ())
        return [{"snap_id": r[0], "run_id": r[1], "pid": r[2], "created_at": r[3]} for r in rows]

    def audit_records(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._query(f"SELECT body FROM {self._T}audit ORDER BY n")]

    def get_anchor(self) -> bytes | None:
        rows = self._query(f"SELECT body FROM {self._T}anchor WHERE k=1")
        return bytes(rows[0][0]) if rows else None

    # -- the key-value space (long-term memory, VFS files) ---------------------------------
    def kv_get(self, key: str) -> bytes | None:
        rows = self._query(f"SELECT body FROM {self._T}kv WHERE key={self._P}", (check_key(key),))
        return bytes(rows[0][0]) if rows else None

    def kv_items(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every (key, value) whose key starts with `prefix`, in key order."""
        if not isinstance(prefix, str):
            raise StoreError(f"a key prefix is a str, got {type(prefix).__name__}")
        if not prefix:
            rows = self._query(f"SELECT key, body FROM {self._T}kv ORDER BY key")
        else:
            check_key(prefix)
            rows = self._query(f"SELECT key, body FROM {self._T}kv WHERE substr(key, 1, {self._P}) = {self._P} "
                               f"ORDER BY key", (len(prefix), prefix))
        return [(r[0], bytes(r[1])) for r in rows]
