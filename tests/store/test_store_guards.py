"""Attacks on a store's options and run rows that used to kill its writer thread silently.

A SQL store hands every write to one writer thread. Whatever that thread cannot do must be
refused in the caller's thread (bad options at construction, a run row it could not
insert) or, when it fails anyway, recorded as the store's error so that every later call
raises it: never a dead writer behind calls that keep returning normally.
"""
from __future__ import annotations

import contextlib
import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agentos import Kernel
from agentos.store import MemoryStore, StoreError, open_store, record_run
from agentos.store import base as store_base, memory as store_memory
from agentos.store.base import MAX_NAME, MAX_RUN_ID, WRITER_OPTIONS, check_writer_options
from agentos.store.sqlite import SqliteStore

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _rows(start: int, n: int) -> list[tuple[int, float, int, str, bytes]]:
    return [(i, i * 0.5, 1, "log", json.dumps([i, i * 0.5, 1, "log", {"i": i}]).encode())
            for i in range(start, start + n)]


def _assert_usable(store: Any) -> None:
    """The store still takes a run, its events and answers reads."""
    rid = store.create_run("after", {"ok": True})
    store.append_events(rid, _rows(1, 20))
    store.flush()
    assert [e.seq for e in store.events(rid)] == list(range(1, 21))
    assert store.get_run(rid).name == "after"


# -- the writer's numeric options ------------------------------------------------------------

@pytest.mark.parametrize("group_ms", [math.inf, -math.inf, 1e300, math.nan, 0, -1, 3_600_001, "x", None, True])
def test_an_infinite_group_ms_is_refused_at_construction_not_lost_in_the_writer(tmp_path, group_ms):
    where = tmp_path / "never"
    with pytest.raises(StoreError, match="group_ms must be a finite number") as e:
        SqliteStore(where / "s.db", group_ms=group_ms)
    assert repr(group_ms) in str(e.value)
    assert not where.exists()  # refused before a directory, a file or a writer thread exists


def test_an_infinite_group_ms_message_names_the_value():
    with pytest.raises(StoreError, match=r"group_ms must be a finite number > 0 .*got inf$"):
        check_writer_options(group_ms=float("inf"))


@pytest.mark.parametrize("opt", ["max_batch", "group_rows", "max_queue"])
@pytest.mark.parametrize("value", ["x", None, 0, -3, 1.5, 8.0, math.inf, math.nan, True, 2**70])
def test_a_non_int_or_out_of_range_count_option_is_refused_at_construction(tmp_path, opt, value):
    where = tmp_path / "never"
    with pytest.raises(StoreError, match=f"{opt} must be an int from") as e:
        SqliteStore(where / "s.db", **{opt: value})
    assert repr(value) in str(e.value)
    assert not where.exists()


def test_a_string_max_queue_is_a_store_error_not_a_bare_type_error(tmp_path):
    with pytest.raises(StoreError, match="max_queue must be an int from 1 to .*got 'x'"):
        open_store(str(tmp_path / "s.db"), max_queue="x")


def test_a_bad_durability_that_is_not_a_str_is_refused(tmp_path):
    with pytest.raises(StoreError, match="durability must be one of"):
        SqliteStore(tmp_path / "s.db", ["group"])  # type: ignore[arg-type]


def test_postgres_options_are_checked_before_any_connection():
    from agentos.store.postgres import PostgresStore

    with pytest.raises(StoreError, match="group_ms must be a finite number"):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none", group_ms=math.inf)


_NOT_A_NUMBER = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.binary(max_size=3),
                          st.lists(st.integers(), max_size=2), st.decimals(allow_nan=False), st.complex_numbers())


@FAST
@given(opt=st.sampled_from(sorted(WRITER_OPTIONS)), data=st.data())
def test_any_bad_value_of_any_numeric_option_is_refused_naming_it(tmp_path, opt, data):
    lo, hi = WRITER_OPTIONS[opt]
    if opt == "group_ms":
        bad = st.one_of(_NOT_A_NUMBER, st.floats().filter(lambda x: not (lo < x <= hi)),
                        st.integers().filter(lambda x: not (lo < x <= hi)))
    else:
        bad = st.one_of(_NOT_A_NUMBER, st.floats(), st.integers(max_value=int(lo) - 1),
                        st.integers(min_value=int(hi) + 1))
    value = data.draw(bad, label=opt)
    where = tmp_path / "never"
    with pytest.raises(StoreError) as e:
        SqliteStore(where / "s.db", **{opt: value})
    assert str(e.value).startswith(opt) and repr(value)[:80] in str(e.value)
    assert not where.exists()


@FAST
@given(group_ms=st.one_of(st.floats(min_value=1e-6, max_value=3_600_000.0), st.integers(1, 3_600_000)),
       group_rows=st.integers(1, 1 << 30), max_queue=st.integers(1, 1 << 20), max_batch=st.integers(1, 1 << 24))
def test_every_sane_value_of_the_numeric_options_is_accepted_and_normalised(group_ms, group_rows, max_queue,
                                                                           max_batch):
    opts = check_writer_options("fsync", group_ms=group_ms, group_rows=group_rows, max_queue=max_queue,
                                max_batch=max_batch)
    assert type(opts["group_ms"]) is float and opts["group_ms"] == group_ms
    assert (opts["group_rows"], opts["max_queue"], opts["max_batch"]) == (group_rows, max_queue, max_batch)


# -- the writer thread -------------------------------------------------------------------------

def test_an_exception_inside_the_writer_loop_surfaces_as_store_error_and_acked_data_survives(tmp_path, monkeypatch):
    """The queue read sat outside the writer's try: an exception there ended the thread
    unrecorded, and flush, append_events and close went on returning normally."""
    escaped: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    path = tmp_path / "w.db"
    s = SqliteStore(path, "group", group_ms=5)
    rid = s.create_run("w", {"k": 1})
    s.append_events(rid, _rows(1, 50))
    s.flush()
    assert s.acked(rid) == 50

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("injected writer fault")

    monkeypatch.setattr(s._q, "get", boom)
    with contextlib.suppress(StoreError):  # wakes the writer, whose next read of the queue raises
        s.append_events(rid, _rows(51, 10))
    with pytest.raises(StoreError, match="the store writer failed: injected writer fault"):
        s.flush()
    with pytest.raises(StoreError, match="injected writer fault"):
        s.append_events(rid, _rows(61, 1))
    with pytest.raises(StoreError, match="injected writer fault"):
        s.runs()
    with pytest.raises(StoreError, match="injected writer fault"):
        s.close()
    with pytest.raises(StoreError, match="injected writer fault"):
        s.flush()  # closed, but never "all written"
    s._thread.join(5)
    assert not s._thread.is_alive() and escaped == []  # recorded, not dumped by threading's hook

    again = SqliteStore(path)
    try:
        info = again.get_run(rid)
        assert info.name == "w" and info.meta == {"k": 1}
        stored = list(again.events(rid))
        assert [e.seq for e in stored[:50]] == list(range(1, 51))
        assert [e.raw for e in stored[:50]] == [r[4] for r in _rows(1, 50)]
    finally:
        again.close()


def test_an_exception_in_apply_fails_every_waiting_flush_not_only_the_first(tmp_path, monkeypatch):
    s = SqliteStore(tmp_path / "a.db", "fsync")
    rid = s.create_run("a", {})

    def boom(conn: Any, item: Any) -> int:
        raise OSError("disk on fire")

    monkeypatch.setattr(s, "_apply", boom)
    with contextlib.suppress(StoreError):
        s.append_events(rid, _rows(1, 5))
    for _ in range(3):
        with pytest.raises(StoreError, match="disk on fire"):
            s.flush()
    with pytest.raises(StoreError, match="disk on fire"):
        s.close()


# -- run rows the writer could not store -------------------------------------------------------

@pytest.fixture(params=["memory", "sqlite"])
def store(request: Any, tmp_path: Any) -> Any:
    """The in-process store and a SQL one (the shared conformance suite runs every backend;
    here each refusal is cheap, so two suffice and keep these attacks fast)."""
    s: Any = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db", "group", group_ms=5)
    yield s
    s.close()


BAD_NAMES = [None, float("nan"), {"a": 1}, b"bytes", 5, ["n"], "nul\x00inside", "lone\ud800surrogate",
             "n" * (MAX_NAME + 1)]
BAD_RUN_IDS = [5, 1.5, b"id", ["id"], "", "a\x00b", "\udfff", "r" * (MAX_RUN_ID + 1)]


def test_a_bad_run_name_is_refused_and_the_store_stays_usable(store):
    for name in BAD_NAMES:
        with pytest.raises(StoreError, match="^create_run: name "):
            store.create_run(name, {})
    assert store.runs() == []
    _assert_usable(store)


def test_record_run_refuses_a_bad_name_before_touching_the_kernel_or_the_store(store):
    for name in BAD_NAMES:
        k = Kernel(deterministic=True)
        with pytest.raises(StoreError, match="^record_run: name "):
            record_run(k, store, name)
        assert k.observers == [] and k.message_events is False and "recording" not in k.driver_shared
    assert store.runs() == [] and store.kv_items("") == []
    _assert_usable(store)


def test_record_run_with_a_none_name_says_what_it_got(store):
    with pytest.raises(StoreError, match="^record_run: name must be a str, got NoneType$"):
        record_run(Kernel(deterministic=True), store, None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="^record_run: name must be a str, got float$"):
        record_run(Kernel(deterministic=True), store, float("nan"))  # type: ignore[arg-type]


def test_a_duplicate_run_id_is_refused_and_the_store_stays_usable(store):
    assert store.create_run("first", {"n": 1}, "dup") == "dup"
    with pytest.raises(StoreError, match="run 'dup' already exists in "):
        store.create_run("second", {"n": 2}, "dup")
    k = Kernel(deterministic=True)
    with pytest.raises(StoreError, match="^record_run: run 'dup' already exists in "):
        record_run(k, store, "third", run_id="dup")
    assert k.observers == []
    info = store.get_run("dup")
    assert info.name == "first" and info.meta == {"n": 1}
    store.append_events("dup", _rows(1, 5))
    store.flush()
    assert store.get_run("dup").events == 5
    _assert_usable(store)


def test_a_run_id_that_is_not_a_storable_str_is_refused_not_a_type_error_in_owners(store):
    for run_id in BAD_RUN_IDS:
        with pytest.raises(StoreError, match="^record_run: run_id "):
            record_run(Kernel(deterministic=True), store, "x", run_id=run_id)
        with pytest.raises(StoreError, match="^create_run: run_id "):
            store.create_run("x", {}, run_id)
    with pytest.raises(StoreError, match="^record_run: run_id must be a str, got int$"):
        record_run(Kernel(deterministic=True), store, "x", run_id=5)  # type: ignore[arg-type]
    assert store.runs() == [] and store.kv_items("") == []
    _assert_usable(store)


def test_meta_json_cannot_store_is_refused_before_queueing(store):
    for meta in [None, [1, 2], "text", {"o": object()}, {1: "a", "b": 2}]:
        with pytest.raises(StoreError, match="^create_run: meta "):
            store.create_run("m", meta)
    assert store.runs() == []
    _assert_usable(store)


def test_a_recorded_run_still_works_after_refusals(store):
    k = Kernel(deterministic=True)
    with pytest.raises(StoreError):
        record_run(k, store, None)  # type: ignore[arg-type]
    rid = record_run(k, store, "good", run_id="given")
    assert rid == "given" and store.get_run(rid).status == "running" and k.observers


def test_a_run_id_taken_by_another_writer_after_the_check_is_refused_without_killing_this_one(tmp_path):
    """Two processes (here: two stores) on one file: the id check and the insert race.
    The insert that loses is reported to its caller; the writer lives on."""
    path = tmp_path / "shared.db"
    a, b = SqliteStore(path, "fsync"), SqliteStore(path, "fsync")
    try:
        a.create_run("a", {}, "contested")
        b.has_run = lambda run_id: False  # type: ignore[method-assign]  # b checked before a inserted
        with pytest.raises(StoreError, match="run 'contested' already exists"):
            b.create_run("b", {}, "contested")
        del b.has_run
        assert b.get_run("contested").name == "a"
        _assert_usable(b)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_generated_run_id_that_is_taken_is_drawn_again(tmp_path, monkeypatch, kind):
    s: Any = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "g.db", "fsync")
    try:
        first = s.create_run("one", {})
        ids = iter([first, first, "fresh-id"])
        monkeypatch.setattr(store_base if kind == "sqlite" else store_memory, "new_run_id", lambda: next(ids))
        assert s.create_run("two", {}) == "fresh-id"
        assert {r.name for r in s.runs()} == {"one", "two"}
    finally:
        s.close()


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory: Any) -> Any:
    s = SqliteStore(tmp_path_factory.mktemp("hyp") / "h.db", "fsync")
    yield MemoryStore(), s
    s.close()


@FAST
@given(name=st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=4), st.booleans(),
                      st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                      st.lists(st.text(max_size=2), max_size=2), st.just("ok")),
       run_id=st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=4), st.just("")))
def test_any_non_str_name_or_run_id_is_refused_by_every_store_which_stays_usable(two_stores, name, run_id):
    if name == "ok" and run_id is None:
        return  # the one good pair the strategies can draw
    for store in two_stores:
        before = len(store.runs())
        with pytest.raises(StoreError, match="create_run: (name|run_id) "):
            store.create_run(name, {}, run_id)
        rid = store.create_run("good", {})
        store.append_events(rid, _rows(1, 3))
        store.flush()
        assert len(store.runs()) == before + 1 and store.get_run(rid).events == 3


@pytest.mark.parametrize("kw", [{"status": 5}, {"status": "x" * 100}, {"meta": 5}, {"meta": {"a": {1, 2}}},
                                {"summary": "done"}, {"summary": [1]}])
def test_an_update_the_writer_cannot_store_is_refused_and_the_store_stays_usable(tmp_path: Path, kw: dict) -> None:
    from agentos.store import MemoryStore
    from agentos.store.sqlite import SqliteStore

    for store in (SqliteStore(tmp_path / f"u{len(list(tmp_path.iterdir()))}.db", "off"), MemoryStore()):
        try:
            rid = store.create_run("r", {"k": 1})
            with pytest.raises(StoreError, match="update_run"):
                store.update_run(rid, **kw)
            store.update_run(rid, status="done", summary={"ok": True})
            info = store.get_run(rid)
            assert info.status == "done" and info.meta == {"k": 1} and info.summary == {"ok": True}
        finally:
            store.close()


def test_a_flush_never_returns_before_rows_another_thread_is_still_queueing(tmp_path: Path) -> None:
    # thread A has counted its rows but not yet queued them; thread B's flush must not put
    # its barrier ahead of them and report them committed (A's own flush would then take
    # the fast path, and a kill would lose rows a flush had acknowledged)
    st = SqliteStore(tmp_path / "s.db", "fsync", max_queue=1, max_batch=1)
    try:
        rid = st.create_run("r", {})
        orig_put = st._q.put
        in_put, release = threading.Event(), threading.Event()

        def put(item: Any, *a: Any, **kw: Any) -> None:
            if threading.current_thread().name == "A":
                in_put.set()
                release.wait(10)
            orig_put(item, *a, **kw)
        st._q.put = put  # type: ignore[method-assign]
        a = threading.Thread(target=lambda: st.append_events(rid, [(1, 0.0, 1, "k", b"x")]), name="A")
        a.start()
        assert in_put.wait(10)
        done = threading.Event()

        def flush_b() -> None:
            st.flush()
            done.set()
        b = threading.Thread(target=flush_b, name="B")
        b.start()
        assert not done.wait(0.3)          # B waits until A's rows are queued ahead of its barrier
        release.set()
        a.join(10)
        b.join(10)
        assert done.is_set() and st.acked(rid) == 1
    finally:
        st.close()


@pytest.mark.parametrize("rid", ["bad\ud800", "nul\x00", 5, None, [1], {"a": 1}])
def test_a_run_id_the_writer_cannot_bind_is_refused_on_every_write_and_the_store_stays_usable(
        tmp_path: Path, rid: Any) -> None:
    st = SqliteStore(tmp_path / "s.db", "off")
    try:
        good = st.create_run("r", {})
        for call in (lambda: st.append_events(rid, [(1, 0.0, 1, "k", b"x")]),
                     lambda: st.append_journal(rid, [(1, "{}")]),
                     lambda: st.update_run(rid, status="done")):
            with pytest.raises(StoreError, match="run_id"):
                call()
        if rid is not None:
            with pytest.raises(StoreError, match="run_id"):
                st.put_snapshot({"pid": 1}, run_id=rid)
        st.append_events(good, [(1, 0.0, 1, "k", b"x")])
        st.flush()
        assert st.acked(good) == 1
    finally:
        st.close()


def test_update_run_of_an_unknown_run_is_refused_as_the_memory_store_refuses_it(tmp_path: Path) -> None:
    st = SqliteStore(tmp_path / "s.db", "off")
    try:
        with pytest.raises(StoreError, match="no run 'nope'"):
            st.update_run("nope", status="done")
    finally:
        st.close()
    with pytest.raises(StoreError):
        MemoryStore().update_run("nope", status="done")


@pytest.mark.parametrize("meta", [{"x": math.nan}, {"x": [math.inf]}, {"deep": json.loads("[" * 300 + "]" * 300)}])
def test_meta_no_reader_could_decode_again_is_refused(tmp_path: Path, meta: dict) -> None:
    st = SqliteStore(tmp_path / "s.db", "off")
    try:
        with pytest.raises(StoreError, match="meta"):
            st.create_run("r", meta)
        rid = st.create_run("r", {})
        with pytest.raises(StoreError, match="meta"):
            st.update_run(rid, meta=meta)
        with pytest.raises(StoreError, match="summary"):
            st.update_run(rid, summary=meta)
        assert st.get_run(rid).meta == {}
    finally:
        st.close()


def test_strict_json_refuses_what_postgres_jsonb_cannot_hold() -> None:
    for bad in ({"a": "x\x00y"}, {"a\x00": 1}, {"a": ["\ud800"]}):
        with pytest.raises(StoreError):
            store_base.check_meta(bad, strict=True)
        store_base.check_meta(bad)  # SQLite stores these as escaped JSON text
