"""A store's key-value space as the narrow `get/put/keys` interface the VFS speaks.

Every store (memory, SQLite, PostgreSQL) keeps, beside runs, a flat key-value space
(`kv_put`, `kv_delete`, `kv_get`, `kv_items`). `StoreKV(store, prefix)` gives one part of
it to a `vfs.StoreBackend`, so files under `/agent/<pid>/mem/semantic` or a mount outlive
the kernel; long-term memory (`drivers.lessons.StorePersist`) uses the same space.
A write returns once it is committed.
"""
from __future__ import annotations

from typing import Any, Iterable


class StoreKV:
    """`get(key)`, `put(key, bytes)`, `keys(prefix)` on `store`'s key-value space, under `prefix`."""

    def __init__(self, store: Any, prefix: str = "") -> None:
        for method in ("kv_get", "kv_put", "kv_items"):
            if not callable(getattr(store, method, None)):
                raise TypeError(f"StoreKV needs a store with {method}(); {type(store).__name__} has none")
        self.store = store
        self.prefix = prefix

    def get(self, key: str) -> bytes | None:
        out: bytes | None = self.store.kv_get(self.prefix + key)
        return out

    def put(self, key: str, value: bytes) -> None:
        self.store.kv_put([(self.prefix + key, value)])

    def keys(self, prefix: str) -> Iterable[str]:
        n = len(self.prefix)
        return [k[n:] for k, _ in self.store.kv_items(self.prefix + prefix)]


__all__ = ["StoreKV"]
