"""A syscall fuzzer: hostile programs against a kernel that must keep every promise.

Each example boots a kernel with bystander processes running a fixed workload (messages,
tool calls, sleeps) and one attacker issuing random syscalls with hostile arguments (NaN,
±inf, negatives, huge numbers, wrong types, lone surrogates, recursive and deep
structures, callables that raise, BaseException subclasses) against a driver whose
costs and replies are hostile too. After every run:

- the kernel returned (a hang trips an alarm, an escaping exception fails the test);
- the bystanders got exactly the results they get when the attacker exits at once;
- budgets are conserved exactly: what the root has left is its limit minus every charge;
- nothing is left: no process, account, timer, name or reservation;
- every error the attacker saw is a `SyscallError`.

The quick profile runs in the fast suite; the `slow` one runs a few thousand examples.
"""
from __future__ import annotations

import dataclasses
import signal
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos import AllowAll, Cost, Driver, DriverResult, Kernel, Quota, Signal, SyscallError
from agentos.abi import syscalls as S
from agentos.drivers import ToolsDriver, tool
from agentos.kernel.accounts import Accounts
from agentos.kernel.trap import trap


# -- hostile values --------------------------------------------------------------------

class Boom(BaseException):
    """Not an Exception: a process must not be able to unwind the kernel with it."""


class Nasty:
    """An object whose every conversion raises."""

    def __str__(self) -> str:
        raise Boom("str")

    def __repr__(self) -> str:
        raise Boom("repr")

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")

    def __hash__(self) -> int:
        raise Boom("hash")

    def __bool__(self) -> bool:
        raise Boom("bool")

    def __lt__(self, other: object) -> bool:
        raise Boom("lt")

    def __float__(self) -> float:
        raise Boom("float")

    def __index__(self) -> int:
        raise Boom("index")


def _recursive() -> list[Any]:
    x: list[Any] = []
    x.append(x)
    return x


def _deep(n: int) -> Any:
    v: Any = 0
    for _ in range(n):
        v = [v]
    return v


def _raiser(exc: BaseException) -> Any:
    def f(*a: Any, **k: Any) -> Any:
        raise exc
    return f


SPECIAL = [
    float("nan"), float("inf"), float("-inf"), -1, -10**30, 10**30, 2**63, 0, -0.0, 1e308, 5e-324,
    True, None, "", "\ud800", "x\udfffy", "a" * 10_000, b"\xff", bytearray(b"z"), [], {}, (), set(),
    object(), Signal.SIGKILL, Quota(), Cost(), 3.5, "pid", "spawn", "tools",
]


class Lazy:
    """A hostile value built only when the attack runs, so that hypothesis can print the
    example (a 10,000-deep list or an object whose repr raises cannot be printed)."""

    def __init__(self, kind: str, param: Any = None) -> None:
        self.kind = kind
        self.param = param

    def make(self) -> Any:
        if self.kind == "recursive":
            return _recursive()
        if self.kind == "deep":
            return _deep(self.param)
        if self.kind == "raiser":
            return _raiser(self.param())
        if self.kind == "nasty":
            return Nasty()
        if self.kind == "dict":
            return {k: v.make() if isinstance(v, Lazy) else v for k, v in self.param}
        if self.kind == "list":
            return [v.make() if isinstance(v, Lazy) else v for v in self.param]
        raise AssertionError(self.kind)

    def __repr__(self) -> str:
        return f"Lazy({self.kind!r}, {self.param!r})" if self.kind in ("deep", "dict", "list") else f"Lazy({self.kind!r})"


RAISES = [lambda: Boom("cb"), KeyboardInterrupt, lambda: SystemExit(3), GeneratorExit,
          lambda: ValueError("cb"), RecursionError]
PRINTABLE = st.one_of(st.sampled_from(SPECIAL), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                      st.text(max_size=8), st.binary(max_size=4))
ATOMS = st.one_of(PRINTABLE, st.just(Lazy("nasty")))


@st.composite
def hostile(draw: Any) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return Lazy("recursive")
    if kind == 1:
        return Lazy("deep", draw(st.sampled_from([50, 1_001, 10_000])))
    if kind == 2:
        return Lazy("raiser", draw(st.sampled_from(RAISES)))
    if kind == 3:
        keys = draw(st.lists(st.one_of(st.text(max_size=3), st.integers(), st.sampled_from([None, 1.5, True])),
                             max_size=3))
        return Lazy("dict", [(key, draw(ATOMS)) for key in keys])
    if kind == 4:
        return Lazy("list", [draw(ATOMS) for _ in range(draw(st.integers(0, 4)))])
    return draw(ATOMS)


class Req:
    """A syscall request to build when the attack runs."""

    def __init__(self, cls: type, values: list[Any]) -> None:
        self.cls = cls
        self.values = values

    def make(self) -> Any:
        return self.cls(*[v.make() if isinstance(v, Lazy) else v for v in self.values])

    def __repr__(self) -> str:
        return f"{self.cls.__name__}{tuple(self.values)!r}"


def _build(cls: type, draw: Any) -> Req:
    return Req(cls, [draw(hostile()) for _ in dataclasses.fields(cls)])


REQUESTS = [c for c in S.SYSCALLS if c is not S.Exit]


@st.composite
def attack(draw: Any) -> list[Req]:
    """A list of requests, each with hostile values in its fields."""
    return [_build(draw(st.sampled_from(REQUESTS)), draw) for _ in range(draw(st.integers(1, 12)))]


class Hostile(Driver):
    """Declares a bound it keeps or breaks; returns hostile costs and replies."""

    name = "hostile"

    def __init__(self, plan: list[tuple[Any, Any, Any]]) -> None:
        self.plan = plan
        self.i = 0

    def bound(self, op: str, handle: Any, req: Any) -> Any:
        return self.plan[self.i % len(self.plan)][0] if self.plan else None

    def read(self, handle: Any, req: Any) -> Any:
        _, cost, value = self.plan[self.i % len(self.plan)] if self.plan else (None, Cost(), None)
        self.i += 1
        if isinstance(value, BaseException):
            raise value
        return DriverResult(value, cost)

    write = read


def _bad(**fields: Any) -> Cost:
    """A Cost with fields no constructor would accept (a driver can mutate one)."""
    c = Cost()
    for k, v in fields.items():
        object.__setattr__(c, k, v)
    return c


COSTS = st.one_of(
    st.builds(Cost, st.integers(0, 200), st.integers(0, 3), st.floats(0, 1e-3), st.integers(0, 5)),
    st.sampled_from([_bad(tokens=-1000), _bad(usd=float("nan")), _bad(usd=float("inf")), _bad(tokens=2.5),
                     _bad(tool_calls=-1), _bad(usd=-1.0), None, "free", _bad(tokens=10**12)]),
)
DRIVER_PLAN = st.lists(st.tuples(st.one_of(st.none(), COSTS), COSTS,
                                 st.one_of(PRINTABLE, st.sampled_from([Boom("drv"), ValueError("drv"),
                                                                       KeyboardInterrupt()]))),
                       min_size=0, max_size=4)


# -- the run ---------------------------------------------------------------------------

BUDGET = Quota(tokens=100_000, tool_calls=1_000, usd=10.0)


@tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def bystander(sys: Any, args: Any) -> Any:
    """A fixed workload: ping-pong with a child, a few tool calls, a sleep."""
    out = []

    async def echo(sys2: Any, args2: Any) -> None:
        for _ in range(3):
            m = await sys2.recv()
            await sys2.send(m.caps[0], m.body * 2)

    me = await sys.self_cap()
    _, peer = await sys.spawn(echo)
    h = await sys.open("tools")
    for i in range(3):
        await sys.send(peer, i + args, caps=[me])
        out.append((await sys.recv()).body)
        out.append(await sys.read(h, {"tool": "add", "args": {"a": i, "b": args}}))
        await sys.sleep(5)
    out.append(await sys.now())
    await sys.send(sys.caps[-1], ("bystander", args, out))


def attacker_for(reqs: list[Any], errors: list[type]) -> Any:
    """The attack program (a closure: its hostile values never pass through spawn's args)."""
    async def attacker(sys: Any, args: Any) -> Any:
        for spec in reqs:
            try:
                req = spec.make()
            except Exception:  # noqa: BLE001 - a request class refusing its own fields is fine
                continue
            try:
                await trap(req)
            except Exception as e:  # noqa: BLE001 - the point is to see what comes back
                errors.append(type(e))
    return attacker


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the kernel did not return within {seconds} s")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class WatchedAccounts(Accounts):
    """Keeps the root's balances as they are when it closes (after every other account)."""

    __slots__ = ("root_final",)

    def close(self, acct: Any, parent: Any) -> None:
        if parent is None and not acct.closed:
            self.root_final = list(acct.balance)
        super().close(acct, parent)


def run(reqs: list[Any] | None, plan: list[Any]) -> tuple[Kernel, Any]:
    seen: dict[str, Any] = {"errors": []}

    async def init(sys: Any, args: Any) -> Any:
        caps = ["tools", "spawn", await sys.self_cap()]
        _, b1 = await sys.spawn(bystander, args=1, caps=caps, quota=Quota(tool_calls=10))
        _, b2 = await sys.spawn(bystander, args=2, caps=caps)
        if reqs is not None:
            _, a = await sys.spawn(attacker_for(reqs, seen["errors"]), caps=["hostile", "tools", "spawn"],
                                   quota=Quota(tokens=5_000, tool_calls=20, usd=1.0))
            seen["attacker"] = str(await sys.waitpid(a))
        seen["b1"] = str(await sys.waitpid(b1))
        seen["b2"] = str(await sys.waitpid(b2))
        while True:
            m = await sys.recv(timeout=0, match=lambda m: isinstance(m.body, tuple) and m.body[:1] == ("bystander",))
            if m is None:
                break
            seen[f"out{m.body[1]}"] = m.body[2]
        return None

    k = Kernel(deterministic=True, seed=1, policy=AllowAll())
    k.accounts = WatchedAccounts()
    k.register_driver(ToolsDriver([add]))
    k.register_driver(Hostile(plan))
    with alarm(60):
        res = k.run(init, grant=["tools", "hostile"], quota=BUDGET)
    return k, (res, seen)


def bystander_results(k: Kernel) -> list[Any]:
    return [e.data for e in k.events.events() if e.kind == "exit" and e.pid in (2, 3)]


def check(reqs: list[Any], plan: list[Any]) -> None:
    k, (res, seen) = run(reqs, plan)
    assert res.reason.normal, res.reason
    # nothing is left behind
    assert k.procs == {} and k.names == {}
    assert k.accounts.open_count == 0
    assert k.timers.next_due() is None
    # budgets conserved exactly: the root's balance is its limit minus every charge
    charged = [0, 0, 0]
    for e in k.events.events():
        if e.kind == "charge":
            charged = [charged[0] + e.data[1], charged[1] + e.data[2], charged[2] + e.data[3]]
    final = k.accounts.root_final  # type: ignore[attr-defined]
    assert final[0] == 100_000 - charged[0]
    assert final[1] == 1_000 - charged[1]
    assert final[2] == 10 * 10**9 - charged[2]
    # every error the attacker saw was a SyscallError, and no handler failed
    assert all(issubclass(t, SyscallError) for t in seen["errors"]), seen["errors"]
    bugs = [e for e in k.events.events() if e.kind == "internal_error"]
    assert bugs == [], bugs
    # bystanders saw what they see without the attacker
    _, (clean_res, clean_seen) = run(None, [])
    assert seen["b1"] == clean_seen["b1"] == "normal" and seen["b2"] == clean_seen["b2"] == "normal"
    assert seen["out1"] == clean_seen["out1"] and seen["out2"] == clean_seen["out2"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(reqs=attack(), plan=DRIVER_PLAN)
def test_hostile_syscalls_keep_every_promise(reqs: list[Any], plan: list[Any]) -> None:
    check(reqs, plan)


@pytest.mark.slow
@pytest.mark.live_only(reason="every example already runs twice and compares the bystanders; its "
                              "quick twin above runs record-then-replay as well")
@settings(max_examples=2_000, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(reqs=attack(), plan=DRIVER_PLAN)
def test_hostile_syscalls_keep_every_promise_many(reqs: list[Any], plan: list[Any]) -> None:
    check(reqs, plan)
