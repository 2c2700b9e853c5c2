"""Where hibernated processes live: the `HibernationStore` protocol and its backends.

A record is opaque bytes under a key the kernel chooses (`hib/<pid>`). `put_many` is all
or nothing and returns only once the records are durable (per the backend): the kernel
frees a process's memory only after it returns, so a store that fails loses nothing.

Backends: `MemoryHibernationStore` (a dict of bytes, in this process: it saves the
objects a live process holds, not the bytes), and `KVHibernationStore`, over the
key-value table of any agentos `Store` (`agentos.store`: memory, SQLite, PostgreSQL);
`SqliteHibernationStore(path)` opens a SQLite store for it.
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol

from ..abi.errors import AgentOSError


class HibernationStoreError(AgentOSError):
    """The hibernation store could not write, read or delete a record."""


class HibernationStore(Protocol):
    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write every record, durably, or raise and write none."""
        ...

    def get(self, key: str) -> bytes | None:
        ...

    def delete_many(self, keys: Iterable[str]) -> None:
        """Forget these records (absent ones are no error)."""
        ...


class MemoryHibernationStore:
    """Records as bytes in a dict (compact: a process's objects become one bytes value)."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        rows = list(items)
        for k, v in rows:
            if type(k) is not str or type(v) is not bytes:
                raise HibernationStoreError(f"a record is (str key, bytes), got ({type(k).__name__}, {type(v).__name__})")
        self.records.update(rows)

    def get(self, key: str) -> bytes | None:
        return self.records.get(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        for k in keys:
            self.records.pop(k, None)

    def __len__(self) -> int:
        return len(self.records)


class KVHibernationStore:
    """Records in the key-value table of an agentos `Store` (kv_put commits before it returns)."""

    def __init__(self, store: Any, prefix: str = "hibernate/") -> None:
        self.store = store
        self.prefix = prefix

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        self.store.kv_put([(self.prefix + k, v) for k, v in items])

    def get(self, key: str) -> bytes | None:
        return self.store.kv_get(self.prefix + key)

    def delete_many(self, keys: Iterable[str]) -> None:
        self.store.kv_delete([self.prefix + k for k in keys])


def SqliteHibernationStore(path: str, durability: str = "group") -> KVHibernationStore:
    """A `KVHibernationStore` on a SQLite file (the store agentctl uses, or a file of its own)."""
    from ..store.sqlite import SqliteStore

    return KVHibernationStore(SqliteStore(path, durability))


__all__ = ["HibernationStore", "HibernationStoreError", "KVHibernationStore", "MemoryHibernationStore",
           "SqliteHibernationStore"]
