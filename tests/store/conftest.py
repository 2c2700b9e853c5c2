from __future__ import annotations

import os
import sys
from typing import Any, Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import pgserver  # noqa: E402


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'agentos[postgres]')")
    server, why = pgserver.start()
    if server is None:
        pytest.skip(why)
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture(params=["memory", "sqlite-fsync", "sqlite-group", "sqlite-off", "postgres"])
def store(request: Any, tmp_path: Any) -> Iterator[Any]:
    from agentos.store import MemoryStore

    kind = request.param
    if kind == "memory":
        s: Any = MemoryStore()
    elif kind.startswith("sqlite"):
        from agentos.store.sqlite import SqliteStore

        s = SqliteStore(tmp_path / "s.db", kind.split("-")[1], group_ms=5)
    else:
        from agentos.store.postgres import PostgresStore

        dsn = request.getfixturevalue("pg_dsn")
        s = PostgresStore(pgserver.fresh_db(dsn), "group", group_ms=5)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(autouse=True)
def _live_and_replayed(conformance: str) -> Iterator[str]:
    """Store tests that run a kernel run it live and recorded-then-replayed too
    (tests/support/conformance.py)."""
    yield conformance
