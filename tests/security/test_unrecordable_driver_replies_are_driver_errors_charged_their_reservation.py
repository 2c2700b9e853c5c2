"""A driver (or the endpoint behind it) answering with a value no record can hold (a
cycle, nesting past 1,000, a lone surrogate, an object whose conversion raises) would
reach the agent as it is while the journal kept a placeholder, so a replay would hand the
agent something else. Such a reply is a `DriverError` where it enters, charged the
operation's full reservation; the run records and replays byte for byte."""
from __future__ import annotations

from typing import Any

import pytest

from agentos import AllowAll, Cost, Driver, DriverError, DriverResult, Journal, Kernel, Quota
from agentos.kernel.events import encode_event
from agentos.store import MemoryStore, record_run


class Raises:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def cycle() -> Any:
    x: list[Any] = []
    x.append(x)
    return x


def deep() -> Any:
    v: list[Any] = []
    for _ in range(5_000):
        v = [v]
    return v


REPLIES = {"cycle": cycle, "deep": deep, "lone_surrogate": lambda: {"text": "ok \ud800"},
           "raising_object": lambda: {"x": Raises()}, "surrogate_key": lambda: {"\udfff": 1}}


class Hostile(Driver):
    name = "hostile"

    def __init__(self, kind: str, asynchronous: bool) -> None:
        self.kind = kind
        self.asynchronous = asynchronous
        self.calls = 0

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        return Cost(tokens=10)

    def read(self, handle: Any, req: Any) -> Any:
        self.calls += 1
        value = REPLIES[self.kind]() if req == "bad" else "fine"
        if not self.asynchronous:
            return DriverResult(value, Cost(tokens=1))

        async def later() -> DriverResult:
            return DriverResult(value, Cost(tokens=1))
        return later()


async def program(sys: Any, args: Any) -> Any:
    h = await sys.open("hostile")
    out: list[Any] = []
    for req in ("bad", "good"):
        try:
            out.append(await sys.read(h, req))
        except DriverError as e:
            out.append(("DriverError", "cannot be recorded" in str(e)))
    out.append((await sys.budget()).remaining["tokens"])
    return out


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind", sorted(REPLIES))
def test_an_unrecordable_reply_is_a_driver_error_charged_its_reservation(kind: str, asynchronous: bool) -> None:
    drv = Hostile(kind, asynchronous)
    live = Kernel(deterministic=True, seed=3, policy=AllowAll())
    live.register_driver(drv)
    store = MemoryStore()
    record_run(live, store, "hostile-reply", keep_in_memory=True)   # as `agentctl run` records
    res = live.run(program, grant=["hostile"], quota=Quota(tokens=100))
    assert res.value == [("DriverError", True), "fine", 100 - 10 - 1]
    assert drv.calls == 2
    assert live.journal is not None
    replay = Kernel(deterministic=True, seed=3, mode="replay", journal=Journal(live.journal.entries),
                    policy=AllowAll())
    again = replay.run(program, grant=["hostile"], quota=Quota(tokens=100))
    assert again.value == res.value
    assert [encode_event(e) for e in replay.events] == [encode_event(e) for e in live.events]
