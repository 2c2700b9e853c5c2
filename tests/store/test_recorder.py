"""record_run and replay_from through every backend; several kernels sharing one PostgreSQL."""
from __future__ import annotations

import os
import sys
import threading
from typing import Any

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "kernel"))
from replay_workloads import BOOT, interp, live_kernel  # noqa: E402

from agentos import Kernel, KernelError  # noqa: E402
from agentos.kernel.events import encode_event  # noqa: E402
from agentos.store import MemoryStore, open_default_store, record_run  # noqa: E402

SPEC = {"ops": [("set", "a", 1), ("echo", 1), ("spawn", {"ops": [("echo_all", [1, 2]), ("send", 5)]}),
                ("recv", 20), ("del", "a"), ("echo", 2), ("sleep", 3)]}


def test_record_and_replay_through_each_backend(store: Any) -> None:
    k = live_kernel(21)
    rid = record_run(k, store, "backend")
    res = k.run(interp, args=SPEC, **BOOT)
    info = store.get_run(rid)
    assert info.status == "finished" and info.summary["exit"] == str(res.reason)
    assert info.meta["seed"] == 21 and info.meta["init"]["qualname"] == "interp"
    stored = [e.raw for e in store.events(rid)]
    assert stored == [encode_event(e) for e in k.events]  # the store holds the log byte for byte
    assert len(store.journal(rid)) == len(k.journal)  # type: ignore[arg-type]
    rep = Kernel.replay_from(store, rid)
    assert rep.identical and rep.complete, str(rep)


def test_record_refuses_kernels_it_cannot_replay() -> None:
    from agentos import Journal

    with pytest.raises(KernelError, match="keeps no journal"):
        record_run(Kernel(record=False), MemoryStore(), "x")
    with pytest.raises(KernelError, match="replaying kernel"):
        record_run(Kernel(mode="replay", journal=Journal()), MemoryStore(), "x")


def test_default_store_follows_agentos_home(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTOS_STORE", raising=False)
    monkeypatch.delenv("AGENTOS_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    s = open_default_store()
    s.close()
    assert (tmp_path / ".agentos" / "store.db").exists()
    monkeypatch.setenv("AGENTOS_STORE", "memory:")
    assert isinstance(open_default_store(), MemoryStore)


def test_several_kernels_share_one_postgres(pg_dsn: str) -> None:
    from pgserver import fresh_db

    from agentos.store.postgres import PostgresStore

    dsn = fresh_db(pg_dsn)
    ids: dict[int, str] = {}
    errors: list[BaseException] = []

    def node(i: int) -> None:
        try:
            st = PostgresStore(dsn, "group", group_ms=5)
            k = live_kernel(100 + i)
            ids[i] = record_run(k, st, f"node{i}")
            k.run(interp, args=SPEC, **BOOT)
            st.close()
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    reader = PostgresStore(dsn)
    try:
        assert sorted(r.name for r in reader.runs()) == ["node0", "node1", "node2"]
        for rid in ids.values():
            assert Kernel.replay_from(reader, rid).identical
    finally:
        reader.close()


def test_recorded_context_marks_failures(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentos.store import recorded

    monkeypatch.setenv("AGENTOS_STORE", f"sqlite://{tmp_path}/r.db")

    async def boom(sys_: Any, args: Any) -> None:
        await sys_.now()

    k = live_kernel(3)
    with pytest.raises(RuntimeError, match="host gave up"):
        with recorded(k, "fails") as rid:
            k.run(boom)
            raise RuntimeError("host gave up")
    st = open_default_store()
    try:
        info = st.get_run(rid)
        assert info.status == "failed" and "host gave up" in info.summary["error"]
    finally:
        st.close()
