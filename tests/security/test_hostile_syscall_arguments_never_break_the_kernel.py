"""Random sequences of syscalls with hostile arguments (NaN, infinities, negatives, huge
numbers, wrong types, lone surrogates, cycles, deep nesting, objects whose conversion
raises, callables that raise BaseException subclasses), from a process of a kernel that
records into a store. Whatever the sequence: the kernel returns, every refusal the process
sees is a SyscallError, no account is left open and the budget is conserved exactly."""
from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from agentos import AllowAll, Kernel, Quota, SyscallError
from agentos.abi.driver import Driver, DriverResult
from agentos.abi.types import Cost
from agentos.store import MemoryStore, record_run


class Boom(BaseException):
    pass


class RaisingStr:
    def __str__(self) -> str:
        raise Boom()

    __repr__ = __str__


def _cycle() -> Any:
    x: list[Any] = []
    x.append(x)
    return x


def _deep(n: int) -> Any:
    x: Any = 0
    for _ in range(n):
        x = [x]
    return x


def _raiser(exc: type[BaseException]) -> Any:
    def f(*a: Any) -> Any:
        raise exc()
    return f


HOSTILE = [math.nan, math.inf, -math.inf, -1, -(10**30), 10**30, 1 << 20000, 2.5, True, None, "x",
           "\ud800", b"\xff", [1, "\udfff"], {"k": math.nan}, {1: 2}, (), RaisingStr(),
           _raiser(KeyboardInterrupt), _raiser(SystemExit), _raiser(Boom), _raiser(GeneratorExit),
           object(), {"\ud800": 1}]
MAKERS = [_cycle, lambda: _deep(2000), lambda: _deep(999)]


class Echo(Driver):
    name = "echo"

    def read(self, handle: Any, req: Any) -> DriverResult:
        return DriverResult(req, Cost(tool_calls=1))


async def _child(sys: Any, args: Any) -> None:
    return None


def _value(i: int) -> Any:
    if i < len(HOSTILE):
        return HOSTILE[i]
    return MAKERS[i - len(HOSTILE)]()


CALLS = ["sleep", "recv", "send", "log", "spawn_quota", "spawn_args", "spawn_deadline", "remember",
         "remember_tokens", "recall", "forget", "pin", "check_policy", "read", "read_all", "write",
         "sched_deadline", "sched_priority", "on_cleanup", "recv_match", "exit_reason", "register",
         "vfs_write", "attenuate"]


async def _call(sys: Any, name: str, v: Any, me: Any, h: int) -> Any:
    if name == "sleep":
        return await sys.sleep(v)
    if name == "recv":
        return await sys.recv(timeout=0 if v is None else v)
    if name == "send":
        return await sys.send(me, v)
    if name == "log":
        return await sys.log("info", "m", v=v)
    if name == "spawn_quota":
        return await sys.spawn(_child, quota=v)
    if name == "spawn_args":
        return await sys.spawn(_child, args=v)
    if name == "spawn_deadline":
        return await sys.spawn(_child, deadline=v)
    if name == "remember":
        return await sys.remember(v)
    if name == "remember_tokens":
        return await sys.remember("abc", tokens=v)
    if name == "recall":
        return await sys.recall(v, k=3)
    if name == "forget":
        return await sys.forget(v)
    if name == "pin":
        return await sys.pin(v)
    if name == "check_policy":
        return await sys.check_policy("tools.x", v)
    if name == "read":
        return await sys.read(h, v)
    if name == "read_all":
        return await sys.read_all(h, [v, 1])
    if name == "write":
        return await sys.write(h, v)
    if name == "sched_deadline":
        return await sys.sched(deadline=v)
    if name == "sched_priority":
        return await sys.sched(priority=v)
    if name == "on_cleanup":
        return await sys.on_cleanup(v)
    if name == "recv_match":
        await sys.send(me, 1)
        return await sys.recv(match=v, timeout=0)
    if name == "exit_reason":
        return ("exit", v)  # exiting ends the program; checked separately below
    if name == "register":
        return await sys.register(v)
    if name == "vfs_write":
        p = await sys.pid()
        return await sys.vfs_write(f"/agent/{p}/mem/semantic/facts/x", v)
    if name == "attenuate":
        return await sys.attenuate(me, expires_in=v)
    raise AssertionError(name)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(CALLS), st.integers(0, len(HOSTILE) + len(MAKERS) - 1)),
                min_size=1, max_size=12))
def test_hostile_arguments_are_syscall_errors_and_the_budget_is_conserved(program: list[tuple[str, int]]) -> None:
    seen: list[str] = []

    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        h = await sys.open("echo")
        for name, i in program:
            try:
                await _call(sys, name, _value(i), me, h)
                seen.append("ok")
            except SyscallError as e:
                seen.append(type(e).__name__)
        await sys.sleep(10**6)  # let every child end
        b = await sys.budget()
        return b.remaining["tokens"], b.remaining["children"], b.used["tool_calls"] + b.remaining["tool_calls"]

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(Echo())
    store = MemoryStore()
    run_id = record_run(k, store, "fuzz")
    res = k.run(init, grant=["echo"], quota=Quota(tokens=1000, children=8, tool_calls=100, mem=10_000))
    # quota: a budget a hostile value legitimately exhausted; deadline: sched(deadline=-1)
    assert res.reason.kind.value in ("normal", "quota", "deadline"), (res.reason, program, seen)
    if res.reason.kind.value == "normal":
        assert res.value == (1000, 8, 100), (res.value, program)
    assert k.accounts.open_count == 0
    assert not any(e.kind == "internal_error" for e in store.events(run_id)), program
