"""Durable topics: kept in the store as they are published, replayed to a late subscriber
that asks for history, and still there after the kernel is rebuilt on the same SQLite
file. The store is read and written as journaled ops, so these runs replay too."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from agentos.abi.errors import DriverError
from agentos.store import MemoryStore, SqliteStore
from agentos.services import bus_declare, bus_publish, bus_recv, bus_subscribe
from tests.services.busboot import run_bus


async def _drain(sys: Any, sub: int) -> list[Any]:
    out = []
    while (m := await bus_recv(sys, sub, timeout=0)) is not None:
        out.append(m)
    return out


def test_a_late_subscriber_gets_what_a_durable_topic_kept_then_live_messages() -> None:
    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "audit.log", durable=True)
        for i in range(3):
            await bus_publish(sys, cap, "audit.log", {"i": i}, lane=2)
        late = await bus_subscribe(sys, cap, "audit.>", history=True)
        plain = await bus_subscribe(sys, cap, "audit.>")
        await bus_publish(sys, cap, "audit.log", {"i": 3}, lane=2)
        got = await _drain(sys, late)
        return ([(m.body["i"], m.replayed, m.seq if m.replayed else None, m.lane) for m in got],
                [m.body["i"] for m in await _drain(sys, plain)])

    _, res = run_bus(init, store=MemoryStore())
    history, plain = res.value
    assert history == [(0, True, 1, 2), (1, True, 2, 2), (2, True, 3, 2), (3, False, None, 2)]
    assert plain == [3]


def test_a_durable_topic_keeps_only_its_last_keep_messages() -> None:
    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "t", durable=True, keep=2)
        for i in range(5):
            await bus_publish(sys, cap, "t", i)
        sub = await bus_subscribe(sys, cap, "t", history=True)
        return [m.body for m in await _drain(sys, sub)]

    _, res = run_bus(init, store=MemoryStore())
    assert res.value == [3, 4]


def test_durable_needs_a_store_and_says_so() -> None:
    async def init(sys: Any, args: Any) -> Any:
        try:
            await bus_declare(sys, sys.caps[0], "t", durable=True)
        except DriverError as e:
            return str(e)
        return "allowed"

    _, res = run_bus(init)
    assert "no store" in res.value


def test_a_durable_topic_survives_a_kernel_restart_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"

    async def first(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "orders.eu", durable=True)
        for i in range(4):
            await bus_publish(sys, cap, "orders.eu", ("order", i, "\u00e9", (1, 2.5), b"raw"))
        return "written"

    async def second(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "orders.eu", durable=True)   # numbering continues after the stored ones
        await bus_publish(sys, cap, "orders.eu", ("order", 4, "\u00e9", (1, 2.5), b"raw"))
        sub = await bus_subscribe(sys, cap, "orders.*", history=True)
        return [(m.seq, m.body) for m in await _drain(sys, sub)]

    store = SqliteStore(path)
    try:
        _, res = run_bus(first, store=store)
        assert res.value == "written"
    finally:
        store.close()
    store = SqliteStore(path)   # a new kernel, a new connection: only the file remembers
    try:
        _, res = run_bus(second, store=store)
    finally:
        store.close()
    assert res.value == [(i + 1, ("order", i, "\u00e9", (1, 2.5), b"raw")) for i in range(5)]
