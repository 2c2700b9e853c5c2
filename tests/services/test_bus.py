"""The message bus on one kernel: capabilities, lanes, backpressure, dead letters, and
hostile inputs. Every test runs live and record-then-replay (conftest.py)."""
from __future__ import annotations

from typing import Any

from agentos.abi.errors import BadArgument, BadHandle, CapError
from agentos.services import (bus_declare, bus_narrow, bus_publish, bus_recv, bus_reject, bus_subscribe,
                              bus_unsubscribe)
from tests.services.busboot import run_bus


def _caught(exc: BaseException) -> str:
    return type(exc).__name__


async def _result(sys: Any) -> Any:
    """What a child sent with `_report` (other traffic stays queued)."""
    m = await sys.recv(match=lambda m: type(m.body) is tuple and m.body[:1] == ("result",))
    return m.body[1]


async def _report(sys: Any, value: Any) -> None:
    await sys.send(sys.caps[-1], ("result", value))


async def _drain(sys: Any, sub: int) -> list[Any]:
    out = []
    while (m := await bus_recv(sys, sub, timeout=0)) is not None:
        out.append(m)
    return out


# -- publish / subscribe ------------------------------------------------------------------

def test_wildcard_subscriptions_get_exactly_the_topics_they_match() -> None:
    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        subs = {p: await bus_subscribe(sys, cap, p) for p in ("orders.*", "orders.>", "orders.eu.new", ">")}
        for t in ("orders.eu", "orders.eu.new", "orders.us.new", "billing.x"):
            await bus_publish(sys, cap, t, t)
        return {p: [m.body for m in await _drain(sys, s)] for p, s in subs.items()}

    _, res = run_bus(init)
    assert res.value == {
        "orders.*": ["orders.eu"],
        "orders.>": ["orders.eu", "orders.eu.new", "orders.us.new"],
        "orders.eu.new": ["orders.eu.new"],
        ">": ["orders.eu", "orders.eu.new", "orders.us.new", "billing.x"],
    }


def test_a_subscriber_waiting_in_recv_is_woken_by_a_publish() -> None:
    async def listener(sys: Any, args: Any) -> Any:
        sub = await bus_subscribe(sys, sys.caps[0], "news.>")
        parent = sys.caps[1]
        await sys.send(parent, "ready")
        m = await bus_recv(sys, sub)
        late = await bus_recv(sys, sub, timeout=50)
        await _report(sys, (m.body, m.sender, late))

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        me = await sys.self_cap()
        await sys.spawn(listener, caps=(cap, me))
        await sys.recv(match=lambda m: m.body == "ready")
        await bus_publish(sys, cap, "news.today", {"n": 1})
        return await _result(sys)

    _, res = run_bus(init)
    assert res.value == ({"n": 1}, 1, None)


# -- capabilities ----------------------------------------------------------------------------

def test_publish_without_a_bus_capability_is_refused() -> None:
    async def child(sys: Any, args: Any) -> Any:
        out = []
        for ref in (12345, sys.caps[0]):  # a made-up ref, and a process capability
            try:
                await bus_publish(sys, ref, "a.b", 1)
            except CapError as e:
                out.append(str(e))
        try:
            await bus_subscribe(sys, sys.caps[0], "a.b")
        except CapError as e:
            out.append(str(e))
        await _report(sys, out)

    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        await sys.spawn(child, caps=(me,))
        return await _result(sys)

    _, res = run_bus(init)
    errors = res.value
    assert len(errors) == 3 and "not held" in errors[0] and "lacks the write right" in errors[1]


def test_a_narrowed_capability_refuses_topics_and_rights_outside_it() -> None:
    async def init(sys: Any, args: Any) -> Any:
        root = sys.caps[0]
        ro = await bus_narrow(sys, root, "metrics.>", "read")
        out = [await bus_subscribe(sys, ro, "metrics.cpu") > 0]
        for call in (lambda: bus_publish(sys, ro, "metrics.cpu", 1),       # no write right
                     lambda: bus_subscribe(sys, ro, "logs.x"),               # outside the pattern
                     lambda: bus_subscribe(sys, ro, ">"),                    # wider than the pattern
                     lambda: bus_narrow(sys, ro, ">"),                       # widening
                     lambda: bus_narrow(sys, ro, "metrics.cpu", "read,write"),  # adding a right
                     lambda: bus_declare(sys, ro, "metrics.cpu")):          # no open right
            try:
                await call()
                out.append("allowed")
            except CapError as e:
                out.append(_caught(e))
        await sys.revoke(ro)
        try:
            await bus_subscribe(sys, ro, "metrics.cpu")
        except CapError:
            out.append("revoked")
        return out

    _, res = run_bus(init)
    assert res.value == [True] + ["CapError"] * 6 + ["revoked"]


def test_revoking_the_parent_revokes_a_narrowed_child_passed_to_another_process() -> None:
    async def child(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        first = await bus_publish(sys, cap, "t.x", 1)
        await sys.send(sys.caps[1], "published")
        await sys.recv()
        try:
            await bus_publish(sys, cap, "t.x", 2)
        except CapError:
            await _report(sys, (first, "refused"))
            return
        await _report(sys, (first, "allowed"))

    async def init(sys: Any, args: Any) -> Any:
        root = sys.caps[0]
        mid = await sys.derive(root, "open,read,write")
        narrowed = await bus_narrow(sys, mid, "t.>", "write")
        me = await sys.self_cap()
        pid, ccap = await sys.spawn(child, caps=(narrowed, me))
        await sys.recv(match=lambda m: m.body == "published")
        await sys.revoke(mid)
        await sys.send(ccap, "go")
        return await _result(sys)

    _, res = run_bus(init)
    assert res.value == (0, "refused")


# -- lanes -----------------------------------------------------------------------------------------

def test_a_low_lane_flood_does_not_starve_the_high_lane() -> None:
    """A flooder fills lane 3 faster than the subscriber drains it, while another process
    publishes on lane 0 now and then. Every high-lane message is delivered within a few
    deliveries of being published (weighted round robin), not behind the flood."""
    async def flooder(sys: Any, args: Any) -> None:
        cap = sys.caps[0]
        for i in range(3000):
            await bus_publish(sys, cap, "work", ("low", i), lane=3)
            if i % 10 == 9:
                await sys.sleep(1)

    async def urgent(sys: Any, args: Any) -> None:
        cap = sys.caps[0]
        for i in range(40):
            await sys.sleep(7)
            await bus_publish(sys, cap, "work", ("high", i, await sys.now()), lane=0)

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        sub = await bus_subscribe(sys, cap, "work", capacity=4096)
        await sys.spawn(flooder, caps=(cap,))
        await sys.spawn(urgent, caps=(cap,))
        order, waits = [], []
        while len(waits) < 40:
            m = await bus_recv(sys, sub)
            order.append(m.body[0])
            if m.body[0] == "high":
                waits.append(await sys.now() - m.body[2])
            await sys.sleep(1)  # the subscriber is slower than the flood: a backlog builds
        return order.count("low"), max(waits), len(order)

    _, res = run_bus(init)
    lows, worst_wait, total = res.value
    assert lows > 0  # the flood was there and was served too
    assert worst_wait <= 2, res.value  # the high lane never waited behind the low backlog


def test_a_flooded_lane_drops_only_its_own_messages() -> None:
    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        sub = await bus_subscribe(sys, cap, "q", capacity=4)
        for i in range(3):
            await bus_publish(sys, cap, "q", ("high", i), lane=0)
        for i in range(100):
            await bus_publish(sys, cap, "q", ("low", i), lane=3)
        return [m.body for m in await _drain(sys, sub)]

    k, res = run_bus(init)
    got = res.value
    assert got[:3] == [("high", 0), ("high", 1), ("high", 2)]
    assert got[3:] == [("low", i) for i in range(96, 100)]  # drop-oldest kept the newest
    assert k.metrics()["events"]["bus_drop"] == 96
    assert k.extensions["bus"].dropped == 96


def test_nan_inf_and_out_of_range_lanes_are_refused() -> None:
    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        out = []
        for lane in (float("nan"), float("inf"), -1, 4, True, "0", 1.0):
            try:
                await bus_publish(sys, cap, "a", 1, lane=lane)
                out.append("allowed")
            except BadArgument:
                out.append("refused")
        for ttl in (float("nan"), -5, float("inf")):
            try:
                await bus_publish(sys, cap, "a", 1, ttl=ttl)
                out.append("allowed")
            except BadArgument:
                out.append("refused")
        return out, await bus_publish(sys, cap, "a", "still works")

    _, res = run_bus(init)
    assert res.value == (["refused"] * 10, 0)


# -- backpressure ----------------------------------------------------------------------------------

def test_block_declared_by_a_non_owner_is_refused() -> None:
    async def other(sys: Any, args: Any) -> Any:
        try:
            await bus_declare(sys, sys.caps[0], "jobs", overflow="block")
        except CapError as e:
            await _report(sys, str(e))
            return
        await _report(sys, "allowed")

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        got = await bus_declare(sys, cap, "jobs")
        me = await sys.self_cap()
        await sys.spawn(other, caps=(cap, me))  # holds `open` too, but is not the owner
        return got["owner"], await _result(sys)

    _, res = run_bus(init)
    owner, err = res.value
    assert owner == 1 and "owned by pid 1" in err and "only its owner" in err


def test_publishers_park_under_block_and_resume_as_the_subscriber_drains() -> None:
    async def slow(sys: Any, args: Any) -> Any:
        sub = await bus_subscribe(sys, sys.caps[0], "jobs", capacity=2)
        await sys.send(sys.caps[1], "subscribed")
        await sys.sleep(100)
        got = []
        for _ in range(6):
            m = await bus_recv(sys, sub)
            got.append((m.body, await sys.now()))
            await sys.sleep(10)
        await _report(sys, ("slow", got))

    async def producer(sys: Any, args: Any) -> Any:
        times = []
        for i in range(6):
            await bus_publish(sys, sys.caps[0], "jobs", i)
            times.append(await sys.now())
        await _report(sys, ("producer", times))

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "jobs", overflow="block")
        me = await sys.self_cap()
        await sys.spawn(slow, caps=(cap, me))
        await sys.recv(match=lambda m: m.body == "subscribed")
        await sys.spawn(producer, caps=(cap, me))
        got = dict([await _result(sys), await _result(sys)])
        return got["slow"], got["producer"]

    k, res = run_bus(init)
    got, times = res.value
    assert [b for b, _ in got] == list(range(6))       # nothing dropped, in order
    assert times[:2] == [0, 0]                           # room for two
    assert times[2] >= 100                               # the third waited for the subscriber
    assert k.metrics()["events"].get("bus_drop", 0) == 0


def test_a_parked_publisher_is_released_when_the_subscriber_exits() -> None:
    async def quitter(sys: Any, args: Any) -> None:
        await bus_subscribe(sys, sys.caps[0], "jobs", capacity=1)
        await sys.send(sys.caps[1], "subscribed")
        await sys.sleep(50)

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "jobs", overflow="block")
        me = await sys.self_cap()
        await sys.spawn(quitter, caps=(cap, me))
        await sys.recv(match=lambda m: m.body == "subscribed")
        dead = await bus_subscribe(sys, cap, "$dead.jobs")
        await bus_publish(sys, cap, "jobs", 1)
        n = await bus_publish(sys, cap, "jobs", 2)   # parks until the subscriber is gone
        return n, await sys.now(), [(m.body, m.reason) for m in await _drain(sys, dead)]

    _, res = run_bus(init)
    n, when, dead = res.value
    assert n == 0 and when >= 50
    assert dead == [(1, "gone"), (2, "no_subscriber")]


# -- dead letters ----------------------------------------------------------------------------------

def test_dead_letters_reach_the_owner_with_their_reason() -> None:
    async def consumer(sys: Any, args: Any) -> None:
        sub = await bus_subscribe(sys, sys.caps[0], "jobs")
        await sys.send(sys.caps[1], "subscribed")
        m = await bus_recv(sys, sub)
        await bus_reject(sys, sub, m)
        await sys.sleep(20)                       # let the ttl of the next one pass
        assert await bus_recv(sys, sub, timeout=0) is None  # expired: not handed over
        await sys.send(sys.caps[1], "leaving")
        await sys.recv()                          # exit with one message still queued

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "jobs")
        dead = await bus_subscribe(sys, cap, "$dead.jobs")
        await bus_publish(sys, cap, "jobs", "nobody")
        me = await sys.self_cap()
        pid, ccap = await sys.spawn(consumer, caps=(cap, me))
        await sys.recv(match=lambda m: m.body == "subscribed")
        await bus_publish(sys, cap, "jobs", "bad")
        await bus_publish(sys, cap, "jobs", "stale", ttl=5)
        await sys.recv(match=lambda m: m.body == "leaving")
        await bus_publish(sys, cap, "jobs", "orphan")
        await sys.send(ccap, "bye")
        await sys.waitpid(ccap)
        return [(m.body, m.reason) for m in await _drain(sys, dead)]

    k, res = run_bus(init)
    assert res.value == [("nobody", "no_subscriber"), ("bad", "rejected"), ("stale", "expired"),
                         ("orphan", "gone")]
    assert k.metrics()["events"]["bus_dead"] == 4


def test_dead_letters_are_refused_to_a_non_owner() -> None:
    async def snoop(sys: Any, args: Any) -> Any:
        try:
            await bus_subscribe(sys, sys.caps[0], "$dead.jobs")
        except CapError as e:
            await _report(sys, str(e))
            return
        await _report(sys, "allowed")

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "jobs")
        me = await sys.self_cap()
        await sys.spawn(snoop, caps=(cap, me))
        return await _result(sys)

    _, res = run_bus(init)
    assert "only the owner" in res.value


def test_a_subscription_is_usable_only_by_its_holder() -> None:
    async def thief(sys: Any, args: Any) -> Any:
        out = []
        for call in (lambda: bus_recv(sys, args, timeout=0), lambda: bus_unsubscribe(sys, args),
                     lambda: bus_recv(sys, 10**30, timeout=0), lambda: bus_recv(sys, [1], timeout=0)):
            try:
                await call()
            except BadHandle:
                out.append("refused")
        await _report(sys, out)

    async def init(sys: Any, args: Any) -> Any:
        sub = await bus_subscribe(sys, sys.caps[0], "x")
        me = await sys.self_cap()
        await sys.spawn(thief, args=sub, caps=(me,))
        return await _result(sys)

    _, res = run_bus(init)
    assert res.value == ["refused"] * 4


# -- hostile bodies ----------------------------------------------------------------------------------

def test_a_10000_deep_body_is_refused_and_the_kernel_runs_on() -> None:
    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        deep: Any = 0
        for _ in range(10_000):
            deep = [deep]
        try:
            await bus_publish(sys, cap, "a", deep)
            return "allowed"
        except BadArgument as e:
            return str(e)[:60], await bus_publish(sys, cap, "a", "fine")

    _, res = run_bus(init)
    assert "body" in res.value[0] and res.value[1] == 0


def test_a_50mb_body_is_refused_by_the_size_bound() -> None:
    big = "x" * (50 * 1024 * 1024)

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        out = []
        for body in (big, [big[:1000]] * 60_000, {"k": big.encode()}):
            try:
                await bus_publish(sys, cap, "a", body)
                out.append("allowed")
            except BadArgument as e:
                out.append("limit" in str(e))
        return out

    _, res = run_bus(init)
    assert res.value == [True, True, True]


def test_cycles_and_lone_surrogates_in_bodies_and_topics_are_refused() -> None:
    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        loop: list[Any] = []
        loop.append(loop)
        out = []
        for topic, body in (("a", loop), ("a", "\ud800"), ("a.\udfff", 1), ("a.*", 1), ("", 1)):
            try:
                await bus_publish(sys, cap, topic, body)
                out.append("allowed")
            except BadArgument:
                out.append("refused")
        return out

    _, res = run_bus(init)
    assert res.value == ["refused"] * 5


# -- policy ----------------------------------------------------------------------------------------

def test_bus_operations_ask_policy_when_a_rule_names_them() -> None:
    from agentos import AllowAll, Decision
    from agentos.abi.errors import PolicyDenied

    class NoSecrets(AllowAll):
        governs_kernel = frozenset({"bus"})

        def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
            if action == "bus.publish" and args["topic"].startswith("secret."):
                return Decision(False, "no-secrets", "nothing is published under secret.", effect="raise")
            return Decision(True, "ok")

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        sub = await bus_subscribe(sys, cap, ">")
        await bus_publish(sys, cap, "public.x", 1)
        try:
            await bus_publish(sys, cap, "secret.x", 2)
        except PolicyDenied as e:
            return e.rule, [m.body for m in await _drain(sys, sub)]

    _, res = run_bus(init, policy=NoSecrets())
    assert res.value == ("no-secrets", [1])


def test_a_policy_file_rule_on_bus_subscribe_kills_and_leaves_publish_to_capabilities() -> None:
    from agentos.policy import PolicyEngine

    policy = PolicyEngine.from_text('kernel: {version: "1.0", mode: strict}\npolicies:\n'
                                    '  - {name: no-listening, action: bus.subscribe, effect: deny}\n')

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_publish(sys, cap, "a", 1)        # no rule names bus.publish: capabilities decide
        await bus_subscribe(sys, cap, "a")
        return "subscribed"

    _, res = run_bus(init, policy=policy)
    assert res.reason.kind.value == "policy" and res.reason.detail == "no-listening"


def test_an_interrupted_parked_publisher_sends_nothing() -> None:
    from agentos.abi.errors import Interrupted
    from agentos.abi.types import Signal

    async def producer(sys: Any, args: Any) -> None:
        cap = sys.caps[0]
        await bus_publish(sys, cap, "jobs", 1)
        try:
            await bus_publish(sys, cap, "jobs", 2)     # parks: the lane is full
            await _report(sys, "published")
        except Interrupted:
            await _report(sys, "interrupted")

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        await bus_declare(sys, cap, "jobs", overflow="block", capacity=1)
        sub = await bus_subscribe(sys, cap, "jobs")
        me = await sys.self_cap()
        _, child = await sys.spawn(producer, caps=(cap, me))
        await sys.sleep(10)
        await sys.signal(child, Signal.SIGINT)
        outcome = await _result(sys)
        return outcome, [m.body for m in await _drain(sys, sub)]

    _, res = run_bus(init)
    assert res.value == ("interrupted", [1])


def test_a_process_cannot_hold_unbounded_subscriptions() -> None:
    from agentos.abi.errors import QuotaExceeded
    from agentos.services.bus import MAX_SUBS

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        for i in range(MAX_SUBS):
            await bus_subscribe(sys, cap, f"t.{i}")
        try:
            await bus_subscribe(sys, cap, "one.more")
        except QuotaExceeded as e:
            return e.resource
        return "allowed"

    _, res = run_bus(init)
    assert res.value == "bus_subscriptions"


def test_hostile_arguments_to_every_bus_call_are_refused_with_typed_errors() -> None:
    from agentos.abi.errors import SyscallError

    nan, inf = float("nan"), float("inf")

    async def init(sys: Any, args: Any) -> Any:
        cap = sys.caps[0]
        sub = await bus_subscribe(sys, cap, "ok")
        calls = [
            lambda: bus_subscribe(sys, cap, "x", capacity=nan),
            lambda: bus_subscribe(sys, cap, "x", capacity=0),
            lambda: bus_subscribe(sys, cap, "x", capacity=10**9),
            lambda: bus_subscribe(sys, cap, "x", history="yes"),
            lambda: bus_subscribe(sys, cap, "$dead.a.*"),
            lambda: bus_subscribe(sys, cap, "\ud800"),
            lambda: bus_recv(sys, sub, timeout=nan),
            lambda: bus_recv(sys, sub, timeout=inf),
            lambda: bus_recv(sys, -1, timeout=0),
            lambda: bus_declare(sys, cap, "t", overflow="explode"),
            lambda: bus_declare(sys, cap, "t", overflow=None),
            lambda: bus_declare(sys, cap, "t", capacity=-3),
            lambda: bus_declare(sys, cap, "t", keep=nan),
            lambda: bus_declare(sys, cap, "t", durable=1),
            lambda: bus_declare(sys, cap, "t.*"),
            lambda: bus_narrow(sys, cap, "a", rights="fly"),
            lambda: bus_narrow(sys, cap, "a", rights=True),
            lambda: bus_narrow(sys, cap, "a", rights=0),
            lambda: bus_narrow(sys, cap, ["a"]),
        ]
        out = []
        for call in calls:
            try:
                await call()
                out.append("allowed")
            except SyscallError as e:
                out.append(type(e).__name__)
        return out, await bus_publish(sys, cap, "ok", "the bus still works")

    _, res = run_bus(init)
    kinds, n = res.value
    assert "allowed" not in kinds, kinds
    assert n == 1
