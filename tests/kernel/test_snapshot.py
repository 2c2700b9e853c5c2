"""Snapshots, restore, migration of a message-loop process between kernels, SIGUSR1 checkpoints."""
from __future__ import annotations

import json
from typing import Any

import pytest

from agentos import ABI_VERSION, AllowAll, Kernel, KernelError, ProcessImage, Quota, Signal
from agentos.abi.driver import Driver, DriverResult
from agentos.abi.errors import ABIMismatch
from agentos.drivers.kv import KVDriver
from agentos.store import MemoryStore, record_run


async def counter(sys: Any, args: Any) -> int:
    """A message loop whose state lives in its memory segments, so it can migrate."""
    await sys.register("counter")
    total = sum(s.body["add"] for s in await sys.working_set() if isinstance(s.body, dict))
    while True:
        m = await sys.recv()
        if m.body == "stop":
            return total
        total += m.body["add"]
        await sys.remember({"add": m.body["add"]})
        peer = await sys.lookup(m.body["reply_to"])
        if peer is not None:
            await sys.send(peer, {"seq": m.body["seq"], "total": total})


COUNTER = ProcessImage("counter", counter)


class Control(Driver):
    """Migration service: snapshot (and stop) a process, or restore one, on its kernel."""

    name = "control"

    def __init__(self) -> None:
        self.kernel: Kernel | None = None
        self.snaps: list[dict[str, Any]] = []

    def open(self, owner: int, params: Any) -> int:
        return owner

    def read(self, handle: Any, req: Any) -> DriverResult:
        raise NotImplementedError

    def write(self, handle: Any, data: Any) -> DriverResult:
        assert self.kernel is not None
        if "snapshot" in data:
            snap = self.kernel.snapshot(data["snapshot"])
            self.snaps.append(snap)
            return DriverResult(snap)
        return DriverResult(self.kernel.restore(data["restore"], COUNTER))


def kernel_with_control(seed: int) -> tuple[Kernel, Control]:
    k = Kernel(deterministic=True, seed=seed, policy=AllowAll())
    ctl = Control()
    ctl.kernel = k
    k.register_driver(ctl)
    k.register_driver(KVDriver())
    k.register_image(COUNTER)
    return k, ctl


async def first_half(sys: Any, args: Any) -> Any:
    await sys.register("client")
    pid, cap = await sys.spawn("counter", caps=["kv"])
    await sys.yield_()  # let it register
    srv = await sys.lookup("counter")
    replies = []
    for i in (1, 2, 3):
        await sys.send(srv, {"add": i, "seq": i, "reply_to": "client"})
        replies.append((await sys.recv()).body)
    # two more requests, then migrate before the server gets to run again
    await sys.send(srv, {"add": 4, "seq": 4, "reply_to": "client"})
    await sys.send(srv, {"add": 5, "seq": 5, "reply_to": "client"})
    ctl = await sys.open("control")
    snap = await sys.write(ctl, {"snapshot": pid})
    await sys.kill(cap)
    return replies, snap


async def second_half(sys: Any, snap: Any) -> Any:
    await sys.register("client")
    ctl = await sys.open("control")
    await sys.write(ctl, {"restore": snap})
    replies = [(await sys.recv()).body for _ in range(2)]  # the two requests that were in flight
    srv = await sys.lookup("counter")
    await sys.send(srv, {"add": 6, "seq": 6, "reply_to": "client"})
    replies.append((await sys.recv()).body)
    await sys.send(srv, "stop")
    return replies


@pytest.mark.live_only(reason="a driver restores a process into the second kernel: a change to "
                              "the kernel made outside any syscall, which no journal holds")
def test_message_loop_migrates_between_kernels_mid_conversation() -> None:
    a, ctl_a = kernel_with_control(1)
    res = a.run(first_half, grant=["control", "kv"], quota=Quota(tokens=1000, usd=2.0))
    replies, snap = res.value
    assert [r["total"] for r in replies] == [1, 3, 6]
    assert snap["abi_version"] == ABI_VERSION and snap["name"] == "counter"
    assert [m["body"]["seq"] for m in snap["mailbox"]] == [4, 5]  # pending work goes along
    assert len(snap["memory"]["resident"]) == 3
    wire = json.loads(json.dumps(snap))  # it travels as plain JSON
    b, _ = kernel_with_control(2)
    res_b = b.run(second_half, args=wire, grant=["control", "kv"])
    assert [(r["seq"], r["total"]) for r in res_b.value] == [(4, 10), (5, 15), (6, 21)]
    assert any(e.kind == "restore" for e in b.events)


def test_snapshot_describes_caps_budget_and_devices() -> None:
    holder: dict[str, Any] = {}

    async def idle(sys: Any, args: Any) -> None:
        await sys.remember("pinned note", pin=True)
        await sys.recv()

    async def init(sys: Any, args: Any) -> None:
        pid, cap = await sys.spawn(idle, caps=["kv"], quota=Quota(tokens=50, usd=0.5))
        await sys.yield_()
        await sys.send(cap, {"hello": [1, 2]})
        holder["snap"] = k.snapshot(pid)
        await sys.kill(cap)

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(KVDriver())
    k.run(init, grant=["kv"], quota=Quota(tokens=100, usd=1.0))
    snap = holder["snap"]
    assert snap["devices"] == ["kv"]
    assert [c["kind"] for c in snap["caps"]] == ["device"]
    assert snap["caps"][0]["target"] == "kv"
    assert snap["budget"]["limits"]["tokens"] == 50 and snap["budget"]["limits"]["usd"] == 0.5
    assert snap["mailbox"][0]["body"] == {"hello": [1, 2]}
    assert snap["memory"]["resident"][0]["kind"] == "pinned"
    json.dumps(snap)


def test_restore_refuses_another_abi_version() -> None:
    a, _ = kernel_with_control(1)
    replies, snap = a.run(first_half, grant=["control", "kv"]).value
    snap["abi_version"] = ABI_VERSION + 1
    b = Kernel(deterministic=True, policy=AllowAll())
    with pytest.raises(ABIMismatch, match=f"ABI version {ABI_VERSION + 1}.*speaks version {ABI_VERSION}"):
        b.restore(snap, COUNTER)
    snap["abi_version"] = ABI_VERSION
    with pytest.raises(KernelError, match="image 'counter', not 'other'"):
        b.restore(snap, ProcessImage("other", counter))
    with pytest.raises(KernelError, match="not an agentos snapshot"):
        b.restore({"pid": 3}, COUNTER)


def test_snapshot_of_unknown_pid_is_an_error() -> None:
    k = Kernel(deterministic=True)
    with pytest.raises(KernelError, match="no live process 42"):
        k.snapshot(42)


async def usr1_target(sys: Any, args: Any) -> str:
    await sys.remember({"progress": 3})
    m = await sys.recv()
    return str(m.body)


async def usr1_init(sys: Any, args: Any) -> None:
    pid, cap = await sys.spawn(usr1_target)
    await sys.yield_()
    await sys.signal(cap, Signal.SIGUSR1)
    await sys.waitpid(cap)


def test_sigusr1_writes_a_checkpoint_to_the_store_and_replays() -> None:
    store = MemoryStore()
    k = Kernel(deterministic=True, policy=AllowAll())
    rid = record_run(k, store, "usr1")
    k.run(usr1_init)
    snaps = store.snapshots(rid)
    assert len(snaps) == 1 and snaps[0]["pid"] == 2
    snap = store.get_snapshot(snaps[0]["snap_id"])
    assert snap["memory"]["resident"][0]["body"] == {"progress": 3}
    assert [e for e in store.events(rid, kind="checkpoint")]
    assert Kernel.replay_from(store, rid).identical
