"""A run row whose boot record was edited or damaged is refused by replay with a
KernelError naming the field, never a KeyError, TypeError or AttributeError from inside."""
from __future__ import annotations

from typing import Any

import pytest

from agentos import AllowAll, Kernel
from agentos.abi.errors import KernelError
from agentos.store import MemoryStore, record_run


async def tiny(sys: Any, args: Any) -> int:
    await sys.yield_()
    return 3


def _recorded() -> tuple[MemoryStore, str]:
    store = MemoryStore()
    k = Kernel(deterministic=True, policy=AllowAll())
    rid = record_run(k, store, "tiny")
    k.run(tiny, args={"n": 1})
    return store, rid


DAMAGE = [
    ("seed", None), ("seed", 1.5), ("seed", "7"), ("images", "x"), ("images", {"a": 5}), ("init", "x"),
    ("init", {"qualname": 5, "module": __name__}), ("init", {"qualname": "nope", "module": __name__}),
    ("quota", "x"), ("quota", {"bogus": 1}), ("grant", 5), ("grant", [[1]]), ("name", 5), ("priority", "high"),
]


@pytest.mark.parametrize("key,value", DAMAGE, ids=[f"{k}={v!r}" for k, v in DAMAGE])
def test_an_edited_boot_record_is_a_kernel_error_naming_it(key: str, value: Any) -> None:
    store, rid = _recorded()
    meta = dict(store.get_run(rid).meta)
    if value is None:
        meta.pop(key, None)
    else:
        meta[key] = value
    store.update_run(rid, meta=meta)
    with pytest.raises(KernelError, match="damaged boot record|image"):
        Kernel.replay_from(store, rid)


def test_the_untouched_record_replays() -> None:
    store, rid = _recorded()
    rep = Kernel.replay_from(store, rid)
    assert rep.identical and rep.result.value == 3
