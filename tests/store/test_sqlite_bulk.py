"""The SQLite writer inserts a batch with one statement (the interpreter's lock released
while SQLite works); what it stores must be exactly what row-by-row inserts store."""
from __future__ import annotations

import json
import sqlite3
from typing import Any

from hypothesis import given, settings, strategies as st

from agentos.store.sqlite import SCHEMA, SqliteStore, _bulk_events, _bulk_journal, _utf8

RUN = "run-1"

times = st.floats(min_value=0, max_value=1e12, allow_nan=False).map(lambda t: round(t, 6))
event_rows = st.lists(st.tuples(st.integers(0, 2**62), times, st.integers(-2**31, 2**31),
                                st.text(min_size=1, max_size=12).filter(lambda s: s.isprintable()),
                                st.binary(max_size=300)),
                      min_size=8, max_size=60, unique_by=lambda r: r[0])
# (a journal line is a JSON object: the table's index reads its pid and index)
journal_lines = st.builds(lambda pid, index, text: json.dumps({"pid": pid, "index": index, "t": text},
                                                              ensure_ascii=False),
                          st.integers(-2**40, 2**40), st.integers(0, 2**40), st.text(max_size=200))
journal_rows = st.lists(st.tuples(st.integers(0, 2**62), journal_lines),
                        min_size=8, max_size=60, unique_by=lambda r: r[0])


def _conn() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    return conn


def _dump(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    return [tuple((type(v).__name__, v) for v in row)
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]


def _encodable(rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [(n, b) for n, b in rows if _utf8(b)]


@given(event_rows)
def test_bulk_events_store_the_same_bytes_and_fields_as_row_by_row(rows: list[Any]) -> None:
    bulk, plain = _conn(), _conn()
    assert _bulk_events(bulk, RUN, rows)
    plain.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", [(RUN, *r) for r in rows])
    assert _dump(bulk, "events") == _dump(plain, "events")


@given(journal_rows)
def test_bulk_journal_stores_the_same_text_as_row_by_row(rows: list[Any]) -> None:
    rows = _encodable(rows)
    if len(rows) < 8:
        return
    bulk, plain = _conn(), _conn()
    assert _bulk_journal(bulk, RUN, rows)
    plain.executemany("INSERT INTO journal VALUES (?,?,?)", [(RUN, *r) for r in rows])
    assert _dump(bulk, "journal") == _dump(plain, "journal")


def test_a_batch_the_bulk_statement_cannot_take_inserts_nothing_and_is_left_to_the_row_path() -> None:
    conn = _conn()
    rows = [(i, 0.5, 1, "sys", b"x") for i in range(10)]
    assert _bulk_events(conn, RUN, rows)
    # the same seqs again: the statement fails whole, nothing half-inserted, row path reports
    assert not _bulk_events(conn, RUN, rows[:5] + [(100 + i, 0.5, 1, "sys", b"y") for i in range(5)])
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 10
    # a time that is not a finite number, a body that is text: row by row it is
    assert not _bulk_events(conn, RUN, [(200 + i, float("inf"), 1, "sys", b"z") for i in range(10)])
    assert not _bulk_events(conn, RUN, [(300 + i, 0.5, 1, "sys", "text") for i in range(10)])
    # a journal line with a lone surrogate cannot be UTF-8: the row path raises as it always did
    assert not _bulk_journal(conn, RUN, [(i, '{"pid":1,"index":%d}' % i if i else '"\ud800"') for i in range(10)])
    assert conn.execute("SELECT count(*) FROM journal").fetchone()[0] == 0


def test_a_recorded_run_reads_back_byte_for_byte_through_the_bulk_path(tmp_path: Any) -> None:
    store = SqliteStore(tmp_path / "s.db", "group")
    try:
        rid = store.create_run("bulk", {})
        rows = [(i + 1, round(i * 0.001, 6), i % 3, "sys", f'[{i + 1},"é{i}"]'.encode()) for i in range(100)]
        store.append_journal(rid, [(i, f'{{"n":{i},"t":"ü"}}') for i in range(50)])
        store.append_events(rid, rows)
        store.flush()
        assert [(e.seq, e.time, e.pid, e.kind, e.raw) for e in store.events(rid)] == rows
        assert store.journal_rows(rid) == [f'{{"n":{i},"t":"ü"}}' for i in range(50)]
        assert store.acked(rid) == 100
    finally:
        store.close()


def test_fields_json_would_carry_differently_from_a_binding_take_the_row_path() -> None:
    # each of these would be stored otherwise by the bulk statement than by binding it (a
    # kind cut at its NUL, a 65-bit seq turned REAL, a list stored as JSON text, invalid
    # UTF-8): the bulk path declines the whole batch and inserts nothing
    good = [(i + 1, 0.5, 1, "sys", b"x") for i in range(9)]
    odd_rows = [
        (20, 0.5, 1, "tool\x00call", b"x"),
        (2**64, 0.5, 1, "sys", b"x"),
        (21, 0.5, -2**63 - 1, "sys", b"x"),
        (22, 2**70, 1, "sys", b"x"),
        (23, 0.5, 1, ["sys"], b"x"),
        (24, 0.5, 1, "\ud800", b"x"),
        (25, float("nan"), 1, "sys", b"x"),
        (True, 0.5, 1, "sys", b"x"),
    ]
    for odd in odd_rows:
        conn = _conn()
        assert not _bulk_events(conn, RUN, good + [odd]), odd
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    conn = _conn()
    assert not _bulk_journal(conn, RUN, [(i, '{"pid":1,"index":%d}' % i) for i in range(9)] + [(2**63, "{}")])
    assert conn.execute("SELECT count(*) FROM journal").fetchone()[0] == 0


def test_a_kind_with_a_nul_is_stored_whole_through_the_store(tmp_path: Any) -> None:
    store = SqliteStore(tmp_path / "s.db", "group")
    try:
        rid = store.create_run("nul", {})
        rows = [(i + 1, 0.5, 1, "tool\x00call", b"[]") for i in range(20)]
        store.append_events(rid, rows)
        store.flush()
        assert [e.kind for e in store.events(rid)] == ["tool\x00call"] * 20
        assert len(list(store.events(rid, kind="tool\x00call"))) == 20
    finally:
        store.close()


def test_a_batch_too_large_for_one_statement_goes_row_by_row(monkeypatch: Any) -> None:
    # bodies that add up past what one bound blob may hold (2 GiB in the binding) must not
    # raise out of the writer and kill the store: row by row they are stored as ever
    import agentos.store.sqlite as S

    monkeypatch.setattr(S, "_BULK_MAX_BYTES", 64)
    conn = _conn()
    rows = [(i + 1, 0.5, 1, "sys", b"x" * 20) for i in range(10)]
    assert not _bulk_events(conn, RUN, rows)
    assert not _bulk_journal(conn, RUN, [(i, '{"pid":1,"index":%d,"pad":"%s"}' % (i, "y" * 20)) for i in range(10)])
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_a_binding_that_overflows_is_left_to_the_row_path(monkeypatch: Any) -> None:
    class Refusing:
        def execute(self, *a: Any) -> None:
            raise OverflowError("BLOB longer than INT_MAX bytes")
    rows = [(i + 1, 0.5, 1, "sys", b"x") for i in range(10)]
    assert not _bulk_events(Refusing(), RUN, rows)  # type: ignore[arg-type]
    assert not _bulk_journal(Refusing(), RUN, [(i, '{"pid":1,"index":%d}' % i) for i in range(10)])  # type: ignore[arg-type]


@settings(max_examples=25)  # each example opens a store (a writer thread and a file)
@given(st.lists(st.tuples(st.integers(1, 2**62), times, st.integers(0, 2**31), st.sampled_from(["sys", "exit", "ü"]),
                          st.binary(max_size=300)), max_size=60, unique_by=lambda r: r[0]))
def test_event_bodies_are_the_stored_encodings_in_order(rows: list[Any]) -> None:
    import tempfile

    from agentos.store import MemoryStore

    rows = sorted(rows)
    where = tempfile.mkdtemp(prefix="agentos-bodies-")
    for store in (SqliteStore(f"{where}/s.db", "off"), MemoryStore()):
        try:
            rid = store.create_run("bodies", {})
            store.append_events(rid, [(s, t, p, k, b) for s, t, p, k, b in rows])
            store.flush()
            assert list(store.event_bodies(rid)) == [e.raw for e in store.events(rid)] == [r[4] for r in rows]
        finally:
            store.close()


def test_event_bodies_page_through_a_long_run(tmp_path: Any) -> None:
    store = SqliteStore(tmp_path / "s.db", "off")
    try:
        rid = store.create_run("long", {})
        rows = [(i + 1, 0.5, 1, "sys", b"%d" % i) for i in range(20000)]  # more than two pages
        store.append_events(rid, rows)
        store.flush()
        bodies = list(store.event_bodies(rid))
        assert bodies == [r[4] for r in rows]
    finally:
        store.close()
