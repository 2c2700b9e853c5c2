"""One conformance suite for every store backend (memory, SQLite in each mode, PostgreSQL)."""
from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

import pytest

from agentos import JournalEntry
from agentos.store import MemoryStore, StoreError, open_store, resolve
from agentos.store.base import Store


def _rows(start: int, n: int, run: str = "r") -> list[tuple[int, float, int, str, bytes]]:
    return [(i, i * 0.5, i % 3, "sys" if i % 2 else "log",
             json.dumps([i, i * 0.5, i % 3, "k", {"i": i}]).encode()) for i in range(start, start + n)]


def test_protocol(store):
    assert isinstance(store, Store)


def test_runs_events_journal_roundtrip(store):
    rid = store.create_run("alpha", {"seed": 7, "nested": {"a": [1, 2]}})
    store.append_events(rid, _rows(1, 100))
    store.append_events(rid, _rows(101, 50))
    e = JournalEntry(2, 0, "read", "kv", "kv.get", {"op": "get", "key": "x"}, True, {"v": [1, "ü"]},
                     tokens=3, usd=0.25, at=4)
    store.append_journal(rid, [(0, e.to_json())])
    store.flush()
    info = store.get_run(rid)
    assert info.name == "alpha" and info.status == "running" and info.events == 150
    assert info.meta == {"seed": 7, "nested": {"a": [1, 2]}}
    evs = list(store.events(rid))
    assert [x.seq for x in evs] == list(range(1, 151))
    assert evs[9].raw == _rows(10, 1)[0][4] and evs[9].data == {"i": 10}
    assert [x.seq for x in store.events(rid, pid=1)] == [i for i in range(1, 151) if i % 3 == 1]
    assert all(x.kind == "sys" for x in store.events(rid, kind="sys"))
    j = store.journal(rid)
    assert len(j) == 1 and j[0].to_json() == e.to_json() and j[0].at == 4
    store.update_run(rid, status="finished", summary={"exit": "normal"})
    info = store.get_run(rid)
    assert info.status == "finished" and info.summary == {"exit": "normal"}
    assert store.acked(rid) == 150


def test_runs_listing_and_resolve(store):
    a = store.create_run("one", {})
    b = store.create_run("two", {})
    ids = [r.run_id for r in store.runs()]
    assert a in ids and b in ids
    assert resolve(store, a).run_id == a
    assert resolve(store, "two").run_id == b
    with pytest.raises(StoreError, match="no run"):
        resolve(store, "nope-nope")
    with pytest.raises(StoreError, match="no run"):
        store.get_run("nope-nope")


def test_runs_are_separate(store):
    a = store.create_run("a", {})
    b = store.create_run("b", {})
    store.append_events(a, _rows(1, 5))
    store.append_events(b, _rows(1, 3))
    assert len(list(store.events(a))) == 5 and len(list(store.events(b))) == 3


def test_snapshots(store):
    rid = store.create_run("s", {})
    sid = store.put_snapshot({"pid": 4, "mailbox": [{"body": "hi"}]}, rid)
    assert store.get_snapshot(sid) == {"pid": 4, "mailbox": [{"body": "hi"}]}
    assert [s["snap_id"] for s in store.snapshots(rid)] == [sid]
    with pytest.raises(StoreError):
        store.get_snapshot("missing")


def test_audit_records_kept_in_order_with_anchor(store):
    store.append_audit([b"\x00\x01raw", "text", {"b": 1, "a": 2}])
    store.append_audit([b"four"])
    assert store.audit_records() == [b"\x00\x01raw", b"text", b'{"a":2,"b":1}', b"four"]
    assert store.get_anchor() is None
    store.set_anchor({"count": 4, "mac": "ab"})
    store.set_anchor({"count": 5, "mac": "cd"})
    assert json.loads(store.get_anchor()) == {"count": 5, "mac": "cd"}
    with pytest.raises(StoreError, match="audit record"):
        store.append_audit([12345])


def test_on_commit_reports_acknowledged_seq(store):
    seen: list[dict[str, int]] = []
    store.on_commit.append(seen.append)
    rid = store.create_run("ack", {})
    store.append_events(rid, _rows(1, 10))
    store.flush()
    assert seen and max(d[rid] for d in seen) == 10


def test_bad_durability_is_a_typed_error(tmp_path):
    from agentos.store.sqlite import SqliteStore

    with pytest.raises(StoreError, match="durability must be one of"):
        SqliteStore(tmp_path / "x.db", "sometimes")


def test_sqlite_is_wal_and_reopens(tmp_path):
    path = tmp_path / "w.db"
    s = open_store(f"sqlite://{path}", "fsync")
    rid = s.create_run("w", {})
    s.append_events(rid, _rows(1, 10))
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    s2 = open_store(str(path))
    assert [e.seq for e in s2.events(rid)] == list(range(1, 11))
    s2.close()


def test_writer_failure_surfaces_as_store_error(tmp_path):
    from agentos.store.sqlite import SqliteStore

    s = SqliteStore(tmp_path / "f.db", "fsync")
    rid = s.create_run("f", {})
    s.append_events(rid, _rows(1, 3))
    s.append_events(rid, _rows(1, 3))  # same seqs again: a primary key violation in the writer
    with pytest.raises(StoreError, match="writer failed"):
        s.flush()
    with pytest.raises(StoreError):
        s.append_events(rid, _rows(10, 1))


def test_writer_queue_is_bounded(tmp_path):
    """A full queue blocks the producer (backpressure) instead of growing without limit."""
    from agentos.store.sqlite import SqliteStore

    s = SqliteStore(tmp_path / "b.db", "off", max_queue=2)
    rid = s.create_run("b", {})
    gate = threading.Event()
    orig = s._apply

    def slow_apply(conn, item):
        gate.wait(5)
        return orig(conn, item)

    s._apply = slow_apply  # type: ignore[method-assign]
    done = threading.Event()

    def producer() -> None:
        for i in range(6):
            s.append_events(rid, _rows(i * 10 + 1, 10))
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.3)  # blocked: at most max_queue items wait, plus the one in hand
    assert s._q.qsize() <= 2
    gate.set()
    assert done.wait(5)
    t.join()
    s.flush()
    assert len(list(s.events(rid))) == 60
    s.close()


def test_unknown_store_url():
    with pytest.raises(StoreError, match="unknown store URL"):
        open_store("ftp://x")
    assert isinstance(open_store("memory:"), MemoryStore)


def test_key_value_space_round_trips_and_rejects_bad_keys(store: Any) -> None:
    from agentos.store import StoreError

    store.kv_put([("lessons/a/1", b"one"), ("lessons/a/2", b"two"), ("lessons/b/1", b"\x00\xff"),
                  ("lessonsX", b"x")])
    store.kv_put([("lessons/a/1", b"uno")])                       # overwrite
    assert store.kv_get("lessons/a/1") == b"uno" and store.kv_get("missing") is None
    assert store.kv_items("lessons/a/") == [("lessons/a/1", b"uno"), ("lessons/a/2", b"two")]
    assert [k for k, _ in store.kv_items("lessons/")] == ["lessons/a/1", "lessons/a/2", "lessons/b/1"]
    assert store.kv_items("lessons/b/") == [("lessons/b/1", b"\x00\xff")]
    store.kv_delete(["lessons/a/2", "never-there"])
    assert [k for k, _ in store.kv_items("lessons/a/")] == ["lessons/a/1"]
    for bad in ("", "k\x00", "x" * 1025, "lone \ud800", 7):
        with pytest.raises(StoreError):
            store.kv_put([(bad, b"v")])  # type: ignore[list-item]
    with pytest.raises(StoreError):
        store.kv_put([("ok", "not bytes")])  # type: ignore[list-item]
    assert store.kv_get("lessons/a/1") == b"uno"


def test_vfs_files_outlive_the_kernel_in_a_store(store: Any) -> None:
    """The VFS long-term tree over a store's key-value space: a second kernel reads what
    the first wrote under /agent/<pid>/mem/semantic."""
    from agentos import AllowAll, Kernel
    from agentos.store.kv import StoreKV
    from agentos.vfs import StoreBackend, install

    async def writer(sys: Any, args: Any) -> None:
        await sys.vfs_write(f"/agent/{await sys.pid()}/mem/semantic/facts/sky", {"color": "blue"})

    async def reader(sys: Any, args: Any) -> Any:
        return await sys.vfs_read(f"/agent/{await sys.pid()}/mem/semantic/facts/sky")

    for body in (writer, reader):
        k = Kernel(deterministic=True, policy=AllowAll())
        install(k, longterm=StoreBackend(StoreKV(store), prefix="agent"))
        res = k.run(body)
    assert res.value == {"color": "blue"}
