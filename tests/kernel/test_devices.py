"""Device syscalls: the cap → policy → driver → journal → charge pipeline."""
from __future__ import annotations

import asyncio

import pytest

from agentos import (
    BadHandle, CapError, Cost, Decision, Driver, DriverError, DriverResult, Journal, Kernel,
    NondeterminismError, PolicyDenied, Quota,
)
from tests.support.boot import boot


class Echo(Driver):
    name = "echo"

    def __init__(self):
        self.calls = 0

    def read(self, handle, req):
        self.calls += 1
        return DriverResult(req, Cost(tool_calls=1))

    def write(self, handle, data):
        self.calls += 1
        return DriverResult(("wrote", data), Cost(tool_calls=1))


class Slow(Driver):
    """Async driver: each read takes `delay` seconds of real time."""

    name = "slow"

    def __init__(self, delay=0.05):
        self.delay = delay
        self.started = 0
        self.cancelled = 0
        self.max_concurrent = 0
        self._now = 0

    def read(self, handle, req):
        return self._go(req)

    async def _go(self, req):
        self.started += 1
        self._now += 1
        self.max_concurrent = max(self.max_concurrent, self._now)
        try:
            await asyncio.sleep(self.delay)
            if req == "fail":
                raise RuntimeError("backend down")
            return DriverResult(req, Cost(tokens=10))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self._now -= 1


class Liar(Driver):
    """A malicious driver that reports absurd costs."""

    name = "liar"

    def read(self, handle, req):
        return DriverResult("free lunch", Cost(tokens=10**12, usd=10**6))


class Broken(Driver):
    name = "broken"

    def read(self, handle, req):
        if req == "type":
            return "not a DriverResult"
        raise KeyError("internal driver bug")


def test_read_all_is_concurrent_under_one_park_and_ordered():
    slow = Slow(delay=0.05)

    async def init(sys, args):
        h = await sys.open("slow")
        return await sys.read_all(h, [f"r{i}" for i in range(16)])

    k = Kernel(deterministic=True, policy=__import__("agentos").AllowAll())
    k.register_driver(slow)
    res = k.run(init, grant=["slow"])
    assert res.value == [f"r{i}" for i in range(16)]
    assert slow.max_concurrent == 16
    charges = [e.data[0] for e in k.events.events() if e.kind == "charge"]
    assert charges == list(range(1, 17))  # metered in order, one op index each (op 0 was the open)
    parks = [e for e in k.events.events() if e.kind == "sys" and type(e.data).__name__ == "ReadAll"]
    assert len(parks) == 1


def test_read_all_returns_errors_in_place():
    async def init(sys, args):
        h = await sys.open("slow")
        return await sys.read_all(h, ["a", "fail", "c"])

    k = Kernel(deterministic=True, policy=__import__("agentos").AllowAll())
    k.register_driver(Slow(delay=0.001))
    res = k.run(init, grant=["slow"])
    a, err, c = res.value
    assert (a, c) == ("a", "c")
    assert isinstance(err, DriverError) and "backend down" in str(err)


@pytest.mark.live_only(reason="a virtual clock stands still while real I/O is in flight, so the "
                              "kill must come from wall time")
def test_killing_a_process_cancels_its_inflight_io():
    slow = Slow(delay=5.0)

    async def reader(sys, args):
        h = await sys.open("slow")
        await sys.read(h, "forever")

    async def init(sys, args):
        _, c = await sys.spawn(reader, caps=["slow"])
        await sys.sleep(20)
        await sys.kill(c)
        return str(await sys.waitpid(c))

    from agentos import AllowAll, RealClock
    k = Kernel(policy=AllowAll(), clock=RealClock())
    k.register_driver(slow)
    res = k.run(init, grant=["slow"])
    assert res.value == "killed(1)"
    assert slow.started == 1 and slow.cancelled == 1


def test_malicious_driver_reporting_huge_costs_is_quota_killed():
    async def victim(sys, args):
        h = await sys.open("liar")
        await sys.read(h, "x")
        return "got away with it"

    async def init(sys, args):
        _, c = await sys.spawn(victim, caps=["liar"], quota=Quota(tokens=1000, usd=1))
        return str(await sys.waitpid(c)), (await sys.budget()).remaining

    _, res = boot(init, drivers=[Liar()], grant=["liar"], quota=Quota(tokens=5000, usd=5))
    assert res.value[0] == "quota(tokens)"
    assert res.value[1]["tokens"] == 5000 and res.value[1]["usd"] == 5.0


def test_driver_bugs_become_typed_errors_in_the_caller():
    async def init(sys, args):
        h = await sys.open("broken")
        out = []
        for req in ("type", "raise"):
            try:
                await sys.read(h, req)
            except DriverError as e:
                out.append(str(e))
        return out

    _, res = boot(init, drivers=[Broken()], grant=["broken"])
    assert res.value == ["broken.read returned str, not a DriverResult",
                         "broken.read failed: KeyError: 'internal driver bug'"]


def test_handle_rights_follow_the_capability():
    async def reader_only(sys, args):
        h = await sys.open(sys.caps[0])
        await sys.read(h, 1)
        try:
            await sys.write(h, 2)
        except CapError as e:
            return str(e)

    got = []

    async def wrapper(sys, args):
        got.append(await reader_only(sys, args))

    # a shim receives the device cap at spawn and hands a read-only copy on
    async def shim(sys, args):
        ro = await sys.derive(sys.caps[0], "open,read")
        _, c = await sys.spawn(wrapper, caps=[ro])
        await sys.waitpid(c)

    async def root(sys, args):
        _, s = await sys.spawn(shim, caps=["echo", "spawn"])
        await sys.waitpid(s)

    boot(root, drivers=[Echo()], grant=["echo"])
    assert got == ["write: the capability behind handle 1 lacks the write right"]


def test_revoking_a_device_cap_invalidates_open_handles():
    async def user(sys, args):
        h = await sys.open(sys.caps[0])
        await sys.read(h, "ok")
        await sys.send(sys.caps[1], "opened")
        await sys.recv()
        try:
            await sys.read(h, "after revoke")
        except CapError as e:
            return str(e)

    got = []

    async def wrapped(sys, args):
        got.append(await user(sys, args))

    async def shim(sys, args):
        dev = await sys.derive(sys.caps[0], "open,read")
        me = await sys.self_cap()
        _, u = await sys.spawn(wrapped, caps=[dev, me])
        await sys.recv()
        await sys.revoke(dev)
        await sys.send(u, "go")
        await sys.waitpid(u)

    async def root(sys, args):
        _, s = await sys.spawn(shim, caps=["echo", "spawn"])
        await sys.waitpid(s)

    boot(root, drivers=[Echo()], grant=["echo"])
    assert got == ["read: the capability behind handle 1 was revoked"]


def test_bad_handle_is_a_typed_error():
    async def init(sys, args):
        try:
            await sys.read(99, "x")
        except BadHandle as e:
            return str(e)

    _, res = boot(init)
    assert res.value == "read: handle 99 is not open in pid 1"


class DenyEchoWrites:
    def check(self, pid, action, args, *, dry_run=False):
        if action == "echo.write":
            return Decision(False, "no-writes", "writes are not allowed")
        return Decision(True, "default")


def test_policy_deny_kills_with_sigpolicy_before_the_driver_runs():
    echo = Echo()

    async def writer(sys, args):
        h = await sys.open("echo")
        await sys.read(h, "fine")
        await sys.write(h, "forbidden")
        return "unreachable"

    async def init(sys, args):
        _, c = await sys.spawn(writer, caps=["echo"])
        d = await sys.check_policy("echo.write", {})
        return str(await sys.waitpid(c)), d.allowed

    k, res = boot(init, drivers=[echo], grant=["echo"], policy=DenyEchoWrites())
    assert res.value == ("policy(no-writes)", False)
    assert echo.calls == 1  # the write never reached the driver


def test_strict_kernel_without_policy_refuses_actions_with_a_clear_error():
    echo = Echo()

    async def init(sys, args):
        h = await sys.open("echo")
        try:
            await sys.read(h, "x")
        except PolicyDenied as e:
            return str(e)

    _, res = boot(init, drivers=[echo], grant=["echo"], policy=None)
    assert "strict kernel with no policy loaded refuses echo.read" in res.value
    assert echo.calls == 0


def test_every_operation_is_journaled_and_replays_without_the_driver():
    async def init(sys, args):
        h = await sys.open("echo")
        a = await sys.read(h, {"q": 1})
        b = await sys.write(h, [1, 2])
        return a, b

    k, res = boot(init, drivers=[Echo()], grant=["echo"])
    entries = k.journal.entries
    assert [(e.pid, e.index, e.op) for e in entries if e.op in ("read", "write")] == [(1, 1, "read"), (1, 2, "write")]
    # under a constant policy (AllowAll) each op's entry names its action and no decision is
    # journaled; one entry names the policy the run must be replayed under
    assert [e.action for e in entries if e.op in ("read", "write")] == ["echo.read", "echo.write"]
    assert [e.op for e in entries if e.op in ("policy", "run_policy")] == ["run_policy"]

    class Exploding(Driver):
        name = "echo"

        def read(self, h, r):
            raise AssertionError("replay must not call a driver")

        write = read

    k2, res2 = boot(init, drivers=[Exploding()], grant=["echo"], mode="replay", journal=Journal(entries))
    assert res2.value == res.value
    from agentos import digest
    assert digest(k2.events.events()) == digest(k.events.events())


def test_replay_divergence_is_a_named_error():
    async def rec(sys, args):
        h = await sys.open("echo")
        return await sys.read(h, "recorded")

    async def other(sys, args):
        h = await sys.open("echo")
        return await sys.read(h, "something else")

    import pytest

    k, _ = boot(rec, drivers=[Echo()], grant=["echo"])
    with pytest.raises(NondeterminismError, match="replay diverged at pid 1 op #1"):
        boot(other, grant=["echo"], mode="replay", journal=Journal(k.journal.entries))
