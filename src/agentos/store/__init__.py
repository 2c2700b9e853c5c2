"""Stores for events, journals, snapshots and audit records: memory, SQLite, PostgreSQL.

`open_default_store()` opens the store `agentctl` uses: `$AGENTOS_STORE` if set (a URL:
`sqlite:///path`, `postgresql://...`, `memory:`), else `$AGENTOS_HOME/store.db`
(`AGENTOS_HOME` defaults to `./.agentos`). `record_run(kernel, store, name)` records a run.
Backends import their libraries on first use.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .base import DURABILITY_MODES, NoSuchRun, RunInfo, Store, StoredEvent, StoreError, resolve
from .memory import MemoryStore
from .owners import effective_status
from .recorder import Recording, record_run


def agentos_home() -> Path:
    return Path(os.environ.get("AGENTOS_HOME") or ".agentos")


def open_store(url: str, durability: str = "group", **kw: Any) -> Any:
    """Open a store by URL: `memory:`, `sqlite:///path` (or a bare path), `postgresql://...`."""
    if url in ("memory", "memory:"):
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, durability, **kw)
    if url.startswith("sqlite://"):
        url = url[len("sqlite://"):]
        if url.startswith("/") and url[1:2] == "/":
            url = url[1:]
    if "://" in url:
        raise StoreError(f"unknown store URL {url!r}: use memory:, sqlite:///path or postgresql://...")
    from .sqlite import SqliteStore

    return SqliteStore(url, durability, **kw)


def open_default_store(durability: str | None = None) -> Any:
    """The store agentctl reads and `agentctl run`/`demo` record to."""
    mode = durability or os.environ.get("AGENTOS_DURABILITY") or "group"
    url = os.environ.get("AGENTOS_STORE")
    if url:
        return open_store(url, mode)
    return open_store(str(agentos_home() / "store.db"), mode)


@contextmanager
def recorded(kernel: Any, name: str, store: Any = None) -> Iterator[str]:
    """`with recorded(kernel, "demo") as run_id: kernel.run(...)`: record into `store` (the
    default store when None, opened and closed here); a run that raises is marked failed."""
    own = store is None
    st = open_default_store() if own else store
    try:
        run_id = record_run(kernel, st, name)
        try:
            yield run_id
        except BaseException as e:
            st.update_run(run_id, status="failed", summary={"error": f"{type(e).__name__}: {e}"})
            raise
    finally:
        if own:
            st.close()


def __getattr__(name: str) -> Any:  # the SQL backends load lazily
    if name == "SqliteStore":
        from .sqlite import SqliteStore

        return SqliteStore
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)


__all__ = ["DURABILITY_MODES", "MemoryStore", "NoSuchRun", "PostgresStore", "Recording", "RunInfo", "SqliteStore",
           "Store", "StoreError", "StoredEvent", "agentos_home", "effective_status", "open_default_store", "open_store",
           "record_run",
           "recorded", "resolve"]
