"""The SQL effect classifier: read-only only when the grammar says so, unknown when unsure."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from agentos.drivers.effects import classify_sql, sql_effect


@pytest.mark.parametrize("q", [
    "SELECT * FROM users", "select id from t where name = 'drop table x'", "WITH a AS (SELECT 1) SELECT * FROM a",
    "SELECT 1;", "  SELECT \"delete\" FROM t -- delete everything\n", "VALUES (1), (2)",
    "SELECT /* update */ 1", "SELECT $$ insert $$", "TABLE users",
])
def test_read_only_queries(q: str) -> None:
    assert classify_sql(q) == "read_only"


@pytest.mark.parametrize("q", [
    "DELETE FROM users", "INSERT INTO t VALUES (1)", "UPDATE t SET a = 1", "DROP TABLE t",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "SELECT * INTO new_t FROM t",
    "SELECT * FROM t FOR UPDATE", "SELECT load_extension('x')", "SELECT pg_sleep(10)",
    "select nextval('s')", "PRAGMA writable_schema = 1", "ATTACH DATABASE 'x' AS y",
])
def test_writes_and_side_effects(q: str) -> None:
    assert classify_sql(q) == "read_write"


@pytest.mark.parametrize("q", [
    "SELECT 1; DROP TABLE users", "", "   ", None, 42, "SELECT 'unterminated", "SELECT /* open",
    "frobnicate the db", "SELECT 1\x00", "SELECT 'a\\' ; DROP TABLE t; --'", "x" * 200_000,
])
def test_unclear_text_is_unknown(q: object) -> None:
    assert classify_sql(q) == "unknown"


def test_the_argument_must_be_unambiguous() -> None:
    assert sql_effect({"query": "SELECT 1"}) == "read_only"
    assert sql_effect({"q": "SELECT 1", "sql": "DELETE FROM t"}) == "unknown"   # which one runs?
    assert sql_effect({}) == "unknown" and sql_effect("SELECT 1") == "unknown"  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(max_size=80))
def test_never_raises_and_never_calls_a_write_read_only(text: str) -> None:
    out = classify_sql("SELECT " + text)
    assert out in ("read_only", "read_write", "unknown")
    if out == "read_only":
        lowered = text.lower()
        for word in ("delete", "insert", "update", "drop"):
            if word in lowered:
                # only inside a literal, a quoted name or a comment
                assert any(ch in text for ch in "'\"`[-/$"), text
