"""The bus at its edges: bodies that are not built-in data, a store that lies or fails,
exits that must not cost quadratic time, and the bounds on what the bus keeps."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from agentos.abi.errors import BadArgument, DriverError, QuotaExceeded
from agentos.services import bus as B
from agentos.services import bus_declare, bus_publish, bus_recv, bus_subscribe
from agentos.store import MemoryStore
from tests.services.busboot import run_bus


async def _drain(sys: Any, sub: int) -> list[Any]:
    out = []
    while (m := await bus_recv(sys, sub, timeout=0)) is not None:
        out.append(m)
    return out


class _Ran:
    n = 0


class EndlessList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        _Ran.n += 1
        while True:
            yield 0

    def __len__(self) -> int:
        _Ran.n += 1
        return 1


class Opaque:
    pass


class Key(tuple):  # type: ignore[type-arg]
    pass


def test_a_body_that_is_not_built_in_data_is_refused_before_its_code_runs() -> None:
    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        out = []
        for body in (EndlessList([1]), [1, {"k": EndlessList()}], Opaque(), {Key((1,)): 1}, {"k": [Opaque()]}):
            try:
                await bus_publish(sys, cap, "t", body)
                out.append("published")
            except BadArgument as e:
                out.append(str(e))
        out.append(await bus_publish(sys, cap, "t", {"fine": (1, b"x", 2.5, None, True)}))
        return out

    _Ran.n = 0
    _, res = run_bus(init)
    *refused, last = res.value
    assert last == 0 and _Ran.n == 0
    assert "EndlessList is not built-in data" in refused[0] and "EndlessList" in refused[1]
    assert "Opaque is not built-in data" in refused[2] and "dict key of type Key" in refused[3]
    assert all(r != "published" for r in refused)


def _forge(store: MemoryStore) -> None:
    m = "bus/m/t/"
    store.kv_put([
        (f"{m}{3:016d}", b"not json"),
        (f"{m}{4:016d}", json.dumps([9, 1]).encode()),                         # no such lane
        (f"{m}{5:016d}", json.dumps([True, 1]).encode()),                      # a bool is no lane
        (f"{m}{6:016d}", json.dumps([0, {"@bytes": "zz"}]).encode()),          # undecodable body
        (f"{m}{7:016d}", json.dumps([0, "\ud800"]).encode()),                  # a lone surrogate
        (f"{m}{8:016d}", json.dumps([0, "x" * (2 << 20)]).encode()),           # past MAX_BODY
        (f"{m}oops", json.dumps([0, 1]).encode()),                              # a key with no number
        ("bus/t/bad topic!", b"{}"),                                            # a forged topic key
    ])
    deep = "[0, " + "[" * 5000 + "0" + "]" * 5000 + "]"
    store.kv_put([(f"{m}{10:016d}", deep.encode())])                           # too deep to decode


def test_corrupted_or_forged_stored_rows_are_reported_and_never_delivered() -> None:
    store = MemoryStore()

    async def first(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "t", durable=True)
        await bus_publish(sys, cap, "t", "one")
        await bus_publish(sys, cap, "t", "two")

    run_bus(first, store=store)
    _forge(store)

    async def second(sys: Any, args: Any) -> Any:
        sub = await bus_subscribe(sys, sys.caps[0], "t", history=True)
        return [m.body for m in await _drain(sys, sub)]

    k, res = run_bus(second, store=store)
    assert res.value[:2] == ["one", "two"]
    assert all(type(b) in (str, list, int) for b in res.value)
    bad = k.metrics()["events"]["bus_store_bad"]
    assert bad >= 8 and k.extensions["bus"].store_bad == bad


class FlakyStore(MemoryStore):
    """A store that fails its reads of the bus's topics, or its writes, when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_reads = False
        self.fail_writes = False
        self.message_scans = 0

    def kv_items(self, prefix: str) -> list[tuple[str, bytes]]:
        if self.fail_reads and prefix.startswith("bus/"):
            raise OSError("disk gone")
        if prefix.startswith("bus/m/"):
            self.message_scans += 1
        return super().kv_items(prefix)

    def kv_put(self, items: Any) -> None:
        if self.fail_writes:
            raise OSError("disk full")
        super().kv_put(items)


def test_a_store_failure_reading_history_leaves_no_subscription_behind() -> None:
    store = FlakyStore()

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "t", durable=True)
        store.fail_reads = True
        try:
            await bus_subscribe(sys, cap, "t", history=True)
        except DriverError:
            pass
        store.fail_reads = False
        return await bus_publish(sys, cap, "t", "after")   # how many subscriptions it reached

    k, res = run_bus(init, store=store)
    assert res.value == 0 and k.extensions["bus"].stats()["subscriptions"] == 0


def test_a_failed_durable_write_moves_no_counter_and_loses_no_sequence_number() -> None:
    store = FlakyStore()

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "t", durable=True)
        sub = await bus_subscribe(sys, cap, "t")
        store.fail_writes = True
        try:
            await bus_publish(sys, cap, "t", "lost")
        except DriverError:
            pass
        store.fail_writes = False
        await bus_publish(sys, cap, "t", "kept")
        return [(m.body, m.seq) for m in await _drain(sys, sub)]

    k, res = run_bus(init, store=store)
    assert res.value == [("kept", 1)]
    stats = k.extensions["bus"].stats()
    assert stats["published"] == 1 and stats["dead"] == 0


def test_history_with_a_count_reads_only_the_newest_rows_by_key() -> None:
    store = FlakyStore()

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "t", durable=True, keep=100)
        for i in range(50):
            await bus_publish(sys, cap, "t", i)
        before = store.message_scans
        sub = await bus_subscribe(sys, cap, "t", history=3)
        got = [m.body for m in await _drain(sys, sub)]
        out = [got, store.message_scans - before]
        for bad in (-1, 1.5, "3", float("nan")):
            try:
                await bus_subscribe(sys, cap, "t", history=bad)
                out.append("accepted")
            except BadArgument:
                out.append("refused")
        return out

    _, res = run_bus(init, store=store)
    got, scans, *bad = res.value
    assert got == [47, 48, 49]
    assert scans == 0 or res is None   # live: read by key, never the whole topic (replay: the journal)
    assert bad == ["refused"] * 4


def test_an_exited_owner_s_dead_letters_are_dropped_and_counted() -> None:
    async def owner(sys: Any, args: Any) -> None:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "t")
        for i in range(5):
            await bus_publish(sys, cap, "t", i)   # nobody subscribes: dead letters kept for the owner

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        _, child = await sys.spawn(owner, caps=(cap,))
        await sys.waitpid(child)
        return "done"

    k, res = run_bus(init)
    stats = k.extensions["bus"].stats()
    assert res.value == "done"
    assert stats["dead"] == 5 and stats["dead_kept"] == 0 and stats["dead_dropped"] == 5
    assert all(not t.dead for t in k.extensions["bus"].topics.values()) and stats["dead_bytes"] == 0


def test_a_process_exit_ends_its_subscriptions_without_scanning_everyone_else_s() -> None:
    compared = [0]

    def counting_eq(self: Any, other: Any) -> bool:
        compared[0] += 1
        return self is other

    async def holder(sys: Any, args: Any) -> None:
        for _ in range(100):
            await bus_subscribe(sys, sys.caps[0], "jobs.*")
        await sys.recv(timeout=1)

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        for _ in range(100):
            await bus_subscribe(sys, cap, "jobs.*")   # subscribed first: a list scan passes them all
        _, child = await sys.spawn(holder, caps=(cap,))
        await sys.waitpid(child)
        return "done"

    mp = pytest.MonkeyPatch()
    mp.setattr(B._Sub, "__eq__", counting_eq, raising=False)
    mp.setattr(B._Sub, "__hash__", object.__hash__, raising=False)
    try:
        k, _ = run_bus(init)
    finally:
        mp.undo()
    assert compared[0] == 0


def test_topics_past_the_cap_forget_the_oldest_ownerless_one_else_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(B, "MAX_TOPICS", 3)

    async def owner(sys: Any, args: Any) -> None:
        for name in ("a", "b"):
            await bus_declare(sys, sys.caps[0], name)

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        _, child = await sys.spawn(owner, caps=(cap,))
        await sys.waitpid(child)
        out = []
        for name in ("c", "d", "e", "f"):
            try:
                await bus_declare(sys, cap, name)
                out.append(name)
            except QuotaExceeded as e:
                out.append(f"refused: {e}"[:40])
        return out

    k, res = run_bus(init)
    bus = k.extensions["bus"]
    assert res.value[:3] == ["c", "d", "e"] and res.value[3].startswith("refused")
    assert sorted(bus.topics) == ["c", "d", "e"] and bus.topics_dropped == 2


def test_dead_letters_are_bounded_per_topic_and_over_the_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(B, "DEAD_KEEP", 3)
    monkeypatch.setattr(B, "MAX_DEAD", 4)

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        for name in ("a", "b"):
            await bus_declare(sys, cap, name)
        for i in range(5):
            await bus_publish(sys, cap, "a", i)
        for i in range(2):
            await bus_publish(sys, cap, "b", i)
        dead_a = await bus_subscribe(sys, cap, "$dead.a")
        dead_b = await bus_subscribe(sys, cap, "$dead.b")
        return [m.body for m in await _drain(sys, dead_a)], [m.body for m in await _drain(sys, dead_b)]

    k, res = run_bus(init)
    bus = k.extensions["bus"]
    # "a" keeps its newest 3; "b" then needs room: the bus holds 4, so b's second letter
    # makes room from b's own (its oldest goes), never from a's
    assert res.value == ([2, 3, 4], [1])
    assert bus.dead_dropped == 3 and bus.dead_kept == 0


def test_dead_letters_are_bounded_in_bytes_over_the_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(B, "MAX_DEAD_BYTES", 3000)

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "a")
        for i in range(10):
            await bus_publish(sys, cap, "a", str(i) * 1000)   # about 1 KB each, nobody subscribes
        dead = await bus_subscribe(sys, cap, "$dead.a")
        return [m.body[0] for m in await _drain(sys, dead)]

    k, res = run_bus(init)
    assert res.value == ["8", "9"]        # the newest that fit in 3,000 bytes
    assert k.extensions["bus"].dead_dropped == 8


def test_declaring_a_durable_topic_passes_over_a_forged_row_key() -> None:
    store = MemoryStore()
    store.kv_put([("bus/m/t/0000000000000007", b"[0, 1]"), ("bus/m/t/zzzz", b"[0, 1]")])

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "t", durable=True)
        sub = await bus_subscribe(sys, cap, "t")
        await bus_publish(sys, cap, "t", "next")
        return [(m.body, m.seq) for m in await _drain(sys, sub)]

    _, res = run_bus(init, store=store)
    assert res.value == [("next", 1)]
    assert store.kv_get("bus/m/t/0000000000000008") is not None   # numbering went on after 7


_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=4),
    lambda c: st.lists(c, max_size=3) | st.tuples(c, c) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=12)


class _Sub(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        raise AssertionError("ran")


@settings(derandomize=True, max_examples=200, deadline=None)
@given(_DATA, st.integers(0, 2))
def test_a_body_is_accepted_exactly_when_it_is_built_in_data_the_log_can_hold(value: Any, where: int) -> None:
    from agentos.kernel import canon
    from agentos.services.bus_body import body

    try:
        canon.canonical_checked("v", value)
        holdable = True
    except BadArgument:
        holdable = False
    try:
        assert body("b", value) is value and holdable
    except BadArgument:
        assert not holdable
    wrapped = [_Sub([value]), [_Sub()], {"k": _Sub()}][where]
    with pytest.raises(BadArgument, match="_Sub is not built-in data"):
        body("b", wrapped)
