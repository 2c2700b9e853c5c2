"""Workloads for the replay tests: a small interpreter process, live drivers whose timing
and failures are unseeded (so live runs differ), a policy with a coin in it, and drivers
that fail the test if a replaying kernel ever calls them."""
from __future__ import annotations

import asyncio
import random
from typing import Any

from agentos import AllowAll, Decision, DriverError, Kernel, SyscallError
from agentos.abi.driver import Driver, DriverResult
from agentos.abi.types import Cost, Quota
from agentos.drivers.kv import KVDriver
from agentos.drivers.tools import tool


class AsyncEcho(Driver):
    """Answers after a random number of event-loop turns; sometimes fails; costs tokens."""

    name = "echo"

    def __init__(self) -> None:
        self.rng = random.Random()  # unseeded on purpose
        self.calls = 0

    def open(self, owner: int, params: Any) -> int:
        return owner

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        return ("echo.say", req)

    def read(self, handle: Any, req: Any) -> Any:
        self.calls += 1
        turns = self.rng.randint(0, 3)
        fail = self.rng.random() < 0.1

        async def go() -> DriverResult:
            for _ in range(turns):
                await asyncio.sleep(0)
            if fail:
                raise DriverError(f"echo: upstream hiccup on {req!r}")
            return DriverResult({"echo": req, "n": self.calls}, Cost(tokens=7, usd=0.0005))
        return go()

    def write(self, handle: Any, data: Any) -> DriverResult:
        return DriverResult(None, Cost(tool_calls=1))


class CoinPolicy:
    """Deletes are refused, key 'forbidden' is a kill, and echoes are refused by a coin."""

    def __init__(self) -> None:
        self.rng = random.Random()

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        if action == "kv.delete":
            return Decision(False, "no-delete", "deletes are refused", effect="raise")
        if action == "kv.set" and isinstance(args, dict) and args.get("key") == "forbidden":
            return Decision(False, "no-forbidden", "that key is off limits", effect="kill")
        if action == "echo.say" and self.rng.random() < 0.2:
            return Decision(False, "coin", "the coin said no", effect="raise")
        return Decision(True, "ok", "allowed")


class Exploding(Driver):
    """A driver that must never be touched: replay answers from the journal."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _boom(self, *a: Any, **k: Any) -> Any:
        raise AssertionError(f"driver {self.name} was called during replay")

    open = read = write = close = action = _boom  # type: ignore[assignment]


async def interp(sys: Any, spec: dict[str, Any]) -> list[Any]:
    parent = sys.caps[0] if spec.get("child") else None
    kv = await sys.open("kv")
    echo = await sys.open("echo")
    kids = []
    out: list[Any] = []
    for op in spec["ops"]:
        kind = op[0]
        try:
            if kind == "set":
                out.append(await sys.write(kv, {"op": "set", "key": op[1], "value": op[2]}))
            elif kind == "get":
                out.append(await sys.read(kv, {"op": "get", "key": op[1]}))
            elif kind == "del":
                out.append(await sys.write(kv, {"op": "delete", "key": op[1]}))
            elif kind == "echo":
                out.append(await sys.read(echo, op[1]))
            elif kind == "echo_all":
                out.append(await sys.read_all(echo, op[1]))
            elif kind == "sleep":
                await sys.sleep(op[1])
            elif kind == "yield":
                await sys.yield_()
            elif kind == "remember":
                await sys.remember(op[1])
            elif kind == "check":
                out.append((await sys.check_policy(op[1], {})).allowed)
            elif kind == "spawn":
                me = await sys.self_cap()
                _, cap = await sys.spawn(interp, args={**op[1], "child": True}, caps=[me, "kv", "echo"])
                kids.append(cap)
            elif kind == "send" and parent is not None:
                await sys.send(parent, op[1])
            elif kind == "recv":
                m = await sys.recv(timeout=op[1])
                out.append(None if m is None else m.body)
            elif kind == "now":
                out.append(await sys.now())
        except SyscallError as e:
            out.append(type(e).__name__)
    for c in kids:
        out.append(str(await sys.waitpid(c)))
    return out


async def hib_child(sys: Any, args: Any) -> None:
    await sys.remember(f"notes of child {args}")
    m = await sys.recv()
    await sys.sleep(3)
    await sys.send(sys.caps[0], [args, m.body])


async def hibernating(sys: Any, args: Any) -> list[Any]:
    """Children that wait in recv and sleep past a resident watermark of 3 (format 7)."""
    me = await sys.self_cap()
    kids = [(await sys.spawn(hib_child, args=i, caps=[me]))[1] for i in range(5)]
    await sys.sleep(5)
    for i, c in enumerate(kids):
        await sys.send(c, f"wake {i}")
    return [(await sys.recv()).body for _ in kids]


def live_kernel(seed: int, **kw: Any) -> Kernel:
    k = Kernel(deterministic=True, seed=seed, policy=kw.pop("policy", CoinPolicy()), **kw)
    k.register_driver(KVDriver())
    k.register_driver(AsyncEcho())
    return k


def replay_kernel(seed: int, journal: Any, **kw: Any) -> Kernel:
    k = Kernel(deterministic=True, seed=seed, mode="replay", journal=journal, policy=AllowAll(), **kw)
    k.register_driver(Exploding("kv"))
    k.register_driver(Exploding("echo"))
    return k


BOOT = {"grant": ["kv", "echo"], "quota": Quota(tokens=400, usd=1.0)}


async def tools_agent(sys: Any, args: Any) -> Any:
    """Tool calls that succeed, fail validation, raise, and run concurrently (async tools)."""
    h = await sys.open("tools")
    out: list[Any] = [await sys.read(h, {"tool": "add", "args": {"a": 2, "b": 3}})]
    for bad in ({"tool": "add", "args": {"a": "x"}}, {"tool": "nope", "args": {}}, {"tool": "boom", "args": {}}):
        try:
            out.append(await sys.read(h, bad))
        except SyscallError as e:
            out.append(f"{type(e).__name__}: {e}")
    out.append(await sys.read_all(h, [{"tool": "slow", "args": {"x": i}} for i in range(4)]))
    out.append((await sys.budget()).used["tool_calls"])
    return out


class Typed(Driver):
    """Answers with values JSON alone cannot carry: tuples, bytes, keys that are not strings,
    keys that look like the journal's own tags, non-finite floats."""

    name = "typed"
    VALUES: list[Any] = [
        (1, "two", (3.0, None)),
        b"\x00\xffbytes",
        {1: "one", (2, 3): ["pair"], "s": {"nested": (True,)}},
        {"@tuple": [1, 2], "@": "looks like a tag"},
        [float("inf"), float("-inf")],
        {"plain": [1, 2, {"json": "stays json"}]},
    ]

    def open(self, owner: int, params: Any) -> int:
        return owner

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        return ("typed.read", req)

    def read(self, handle: Any, req: Any) -> DriverResult:
        return DriverResult(self.VALUES[req % len(self.VALUES)], Cost(tokens=1))

    def write(self, handle: Any, data: Any) -> DriverResult:
        return DriverResult(None)


def shape(v: Any) -> str:
    """The value's type structure: what a program that looks at types sees."""
    if isinstance(v, (list, tuple)):
        return f"{type(v).__name__}[{','.join(shape(x) for x in v)}]"
    if isinstance(v, dict):
        return "dict{" + ",".join(f"{shape(k)}:{shape(x)}" for k, x in v.items()) + "}"
    return type(v).__name__


async def typed_values(sys: Any, args: Any) -> list[str]:
    """Logs the type structure of every value it reads: a replay that hands it a list for
    a tuple logs something else, and the event logs differ."""
    h = await sys.open("typed")
    seen = []
    for i in range(len(Typed.VALUES)):
        v = await sys.read(h, i)
        seen.append(shape(v))
        await sys.log("info", seen[-1])
        if isinstance(v, tuple):  # the program's path depends on the type
            await sys.sleep(1)
    return seen


@tool()
def add(a: int, b: int) -> int:
    return a + b


@tool()
def boom() -> int:
    raise RuntimeError("the tool broke")


@tool()
async def slow(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


TOOLS = [add, boom, slow]   # the tools `tools_agent` calls (each bounded: reserved, then settled)


NET_KEY = b"golden-node-key-0123456789abcdef"


def net_kernel(seed: int) -> Kernel:
    """A kernel on a network of its own (node "golden"): its sends to itself go through
    seal, ingress and the loop turn like any remote message (format 6)."""
    from agentos.net import Loopback

    k = live_kernel(seed)
    k.connect("golden", Loopback(k), node="golden", key=NET_KEY)
    return k


async def net_self_loop(sys: Any, args: Any) -> Any:
    """Dial itself, send typed values with a reply address, answer, and dial nowhere."""
    from agentos.net import NoRoute

    me = await sys.pid()
    cap = await sys.dial("golden", me)
    await sys.send(cap, ("tuple", b"bytes", 1.5, {"k": [1, 2]}), caps=[await sys.self_cap()], corr=("c", 1))
    msg = await sys.recv(timeout=100)
    await sys.log("info", "got", sender=msg.sender, corr=list(msg.corr))
    await sys.send(msg.caps[0], "answer", corr=msg.corr)
    answer = await sys.recv(timeout=100)
    try:
        await sys.dial("nowhere", 1)
    except NoRoute as e:
        await sys.log("info", str(e))
    return [msg.body, answer.body]
