"""An in-process store: the same protocol as the SQL stores, kept in lists.

For tests, benchmarks and short-lived kernels. Every write is "committed" when the call
returns, so `acked` is simply the last seq appended.
"""
from __future__ import annotations

import copy
import json
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from ..kernel.journal import JournalEntry
from .base import (
    NOT_DEVICE_OPS, RunInfo, StoredEvent, StoreError, check_items, check_key, check_meta, check_run_id, check_run_name,
    check_update, entries_of, new_run_id, to_bytes,
)


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, dict[str, Any]] = {}
        self._events: dict[str, list[StoredEvent]] = {}
        self._journal: dict[str, list[str]] = {}
        self._jindex: dict[str, tuple[int, dict[tuple[int, int], int]]] = {}
        self._snaps: dict[str, dict[str, Any]] = {}
        self._audit: list[bytes] = []
        self._anchor: bytes | None = None
        self._kv: dict[str, bytes] = {}
        self.on_commit: list[Callable[[dict[str, int]], None]] = []
        self.durability = "memory"

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._runs)} runs)"

    def has_run(self, run_id: str) -> bool:
        """Whether a run with exactly this id is stored."""
        return run_id in self._runs

    def create_run(self, name: str, meta: dict[str, Any], run_id: str | None = None) -> str:
        """As the SQL stores: a name, id or metadata they could not store is refused here too."""
        name = check_run_name(name)
        given = check_run_id(run_id)
        body = json.loads(check_meta(meta))
        with self._lock:
            rid = given or new_run_id()
            while given is None and rid in self._runs:  # a generated id already taken: draw again
                rid = new_run_id()
            if rid in self._runs:
                raise StoreError(f"run {rid!r:.120} already exists in {self!r}")
            self._runs[rid] = {"name": name, "created_at": time.time(), "status": "running",
                               "meta": body, "summary": {}}
            self._events[rid] = []
            self._journal[rid] = []
        return rid

    def update_run(self, run_id: str, *, status: str | None = None, meta: dict[str, Any] | None = None,
                   summary: dict[str, Any] | None = None) -> None:
        r = self._row(run_id)
        status, meta_text, summary_text = check_update(status, meta, summary)
        if status is not None:
            r["status"] = status
        if meta_text is not None:
            r["meta"] = json.loads(meta_text)
        if summary_text is not None:
            r["summary"] = json.loads(summary_text)

    def _row(self, run_id: str) -> dict[str, Any]:
        r = self._runs.get(run_id)
        if r is None:
            raise StoreError(f"no run {run_id!r} in this memory store")
        return r

    def _info(self, rid: str) -> RunInfo:
        r = self._runs[rid]
        return RunInfo(rid, r["name"], r["created_at"], r["status"], copy.deepcopy(r["meta"]),
                       copy.deepcopy(r["summary"]), len(self._events[rid]))

    def runs(self) -> list[RunInfo]:
        return sorted((self._info(r) for r in self._runs), key=lambda i: (i.created_at, i.run_id))

    def get_run(self, run_id: str) -> RunInfo:
        self._row(run_id)
        return self._info(run_id)

    def append_events(self, run_id: str, rows: list[tuple[int, float, int, str, bytes]]) -> None:
        evs = self._events.get(run_id)
        if evs is None:
            raise StoreError(f"no run {run_id!r} to append events to")
        with self._lock:
            evs.extend(StoredEvent(*r) for r in rows)
        if rows:
            for cb in self.on_commit:
                cb({run_id: rows[-1][0]})

    def events(self, run_id: str, *, pid: int | None = None, kind: str | None = None) -> Iterator[StoredEvent]:
        self._row(run_id)
        for e in list(self._events[run_id]):
            if (pid is None or e.pid == pid) and (kind is None or e.kind == kind):
                yield e

    def event_bodies(self, run_id: str) -> Iterator[bytes]:
        """A run's stored event encodings in order (what replay compares)."""
        for e in self.events(run_id):
            yield e.raw

    def append_journal(self, run_id: str, rows: list[tuple[int, str]]) -> None:
        j = self._journal.get(run_id)
        if j is None:
            raise StoreError(f"no run {run_id!r} to append journal entries to")
        with self._lock:
            j.extend(b for _, b in rows)

    def journal_entry(self, run_id: str, pid: int, index: int) -> JournalEntry | None:
        """The device result journaled for (pid, op index), or None."""
        self._row(run_id)
        with self._lock:
            rows = self._journal[run_id]
            idx = self._jindex.get(run_id)
            if idx is None or idx[0] != len(rows):
                keys: dict[tuple[int, int], int] = {}
                for n, b in enumerate(rows):
                    e = JournalEntry.from_json(b)
                    if e.op not in NOT_DEVICE_OPS:
                        keys.setdefault((e.pid, e.index), n)
                idx = self._jindex[run_id] = (len(rows), keys)
            at = idx[1].get((int(pid), int(index)))
            return None if at is None else JournalEntry.from_json(rows[at])

    def journal(self, run_id: str) -> list[JournalEntry]:
        return entries_of(self._row(run_id)["meta"], self._journal[run_id])

    def journal_rows(self, run_id: str) -> list[str]:
        self._row(run_id)
        return list(self._journal[run_id])

    def put_snapshot(self, snap: dict[str, Any], run_id: str | None = None) -> str:
        sid = new_run_id()
        self._snaps[sid] = {"snap_id": sid, "run_id": run_id, "pid": snap.get("pid"),
                            "created_at": time.time(), "body": json.dumps(snap, sort_keys=True)}
        return sid

    def get_snapshot(self, snap_id: str) -> dict[str, Any]:
        s = self._snaps.get(snap_id)
        if s is None:
            raise StoreError(f"no snapshot {snap_id!r} in this memory store")
        return json.loads(s["body"])

    def snapshots(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return [{k: v for k, v in s.items() if k != "body"} for s in self._snaps.values()
                if run_id is None or s["run_id"] == run_id]

    def append_audit(self, records: Iterable[bytes | str | dict[str, Any]], *, wait: bool = True) -> None:
        rows = [to_bytes(r) for r in records]
        with self._lock:
            self._audit.extend(rows)

    def audit_records(self) -> list[bytes]:
        return list(self._audit)

    def set_anchor(self, anchor: bytes | str | dict[str, Any]) -> None:
        self._anchor = to_bytes(anchor)

    def get_anchor(self) -> bytes | None:
        return self._anchor

    def acked(self, run_id: str) -> int:
        evs = self._events.get(run_id)
        return evs[-1].seq if evs else 0

    def kv_put(self, items: Iterable[tuple[str, bytes]]) -> None:
        rows = check_items(items)
        with self._lock:
            self._kv.update(rows)

    def kv_delete(self, keys: Iterable[str]) -> None:
        rows = [check_key(k) for k in keys]
        with self._lock:
            for k in rows:
                self._kv.pop(k, None)

    def kv_get(self, key: str) -> bytes | None:
        return self._kv.get(check_key(key))

    def kv_items(self, prefix: str) -> list[tuple[str, bytes]]:
        if not isinstance(prefix, str):
            raise StoreError(f"a key prefix is a str, got {type(prefix).__name__}")
        with self._lock:
            return sorted((k, v) for k, v in self._kv.items() if k.startswith(prefix))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


__all__ = ["MemoryStore"]
