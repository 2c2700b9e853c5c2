"""The kernel tour: a supervised team of agents with tools, showing enforcement at work.

No model needed: the agents are scripted, so the tour runs anywhere in a second. It shows
a supervisor restarting a worker that crashes, a process killed when its tool-call budget
runs out, and a process whose attempts to act beyond its capabilities are refused.
"""
from __future__ import annotations

import ast
import operator
from typing import Any

from ..abi.errors import CapError
from ..abi.types import Quota
from ..drivers.tools import ToolsDriver, tool
from ..userland.rpc import CallTimeout, call, reply
from ..userland.supervisor import ChildSpec, SupervisorSpec, supervisor

_OPS: dict[type, Any] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ValueError(f"unsupported expression element {type(node).__name__}")


@tool(effect="read_only")
def calc(expression: str) -> float:
    """Evaluate an arithmetic expression (+ - * / ** and parentheses)."""
    return _eval(ast.parse(expression, mode="eval"))


async def worker(sys: Any, args: Any) -> None:
    """Answers calculation requests; its third request makes it crash."""
    await sys.register("calculator")
    h = await sys.open("tools")
    served = 0
    while True:
        msg = await sys.recv()
        served += 1
        if msg.body == "2 ** 10" and served == 3:
            await sys.log("error", "worker hit a bug on its 3rd request and crashes")
            raise RuntimeError("worker bug")
        value = await sys.read(h, {"tool": "calc", "args": {"expression": msg.body}})
        await reply(sys, msg, value)


async def planner(sys: Any, args: Any) -> list[Any]:
    """Sends work to the calculator by name; retries once when the worker was restarted."""
    results = []
    for expr in ("6 * 7", "(1 + 2) * 3", "2 ** 10", "100 / 8"):
        answer = None
        for attempt in (1, 2, 3):
            cap = await sys.lookup("calculator")
            if cap is None:
                await sys.sleep(1)
                continue
            try:
                answer = await call(sys, cap, expr, timeout=20)
                break
            except CallTimeout:
                await sys.log("warning", f"no answer for {expr} (attempt {attempt}); retrying")
        await sys.log("info", f"{expr} = {answer}")
        results.append(answer)
    return results


async def spender(sys: Any, args: Any) -> None:
    """Calls tools in a loop: its budget of 3 tool calls ends it."""
    h = await sys.open("tools")
    for i in range(10):
        await sys.log("info", f"spender calls calc #{i + 1}")
        await sys.read(h, {"tool": "calc", "args": {"expression": f"{i} + 1"}})


async def intruder(sys: Any, args: Any) -> None:
    """Tries to act beyond its capabilities; every attempt is refused by the kernel."""
    await sys.sleep(2)
    cap = await sys.lookup("calculator")
    attempts = [("tries to kill the calculator with the send-only cap from lookup", sys.kill(cap)),
                ("tries to open the tools device it was never given", sys.open("tools")),
                ("tries a forged capability", sys.send(cap + 1, "forged"))]
    for what, attempt in attempts:
        await sys.log("warning", f"intruder {what}")
        try:
            await attempt
        except CapError:
            pass  # the kernel's refusal is in the event log


async def init(sys: Any, args: Any) -> str:
    spec = SupervisorSpec([ChildSpec("calculator", worker, caps=("tools",))], strategy="one_for_one",
                          intensity=3, period_ms=1000, name="sup")
    _, sup = await sys.spawn(supervisor, args=spec, caps=["tools", "spawn"], name="supervisor")
    await sys.sleep(1)
    _, p = await sys.spawn(planner, name="planner")
    _, s = await sys.spawn(spender, caps=["tools"], quota=Quota(tool_calls=3), name="spender")
    _, i = await sys.spawn(intruder, name="intruder")
    for cap in (p, s, i):
        await sys.waitpid(cap)
    await sys.term(sup)
    await sys.waitpid(sup)
    return "tour complete"


def setup(kernel: Any) -> None:
    kernel.register_driver(ToolsDriver([calc]))


GRANT = ["tools"]
QUOTA = Quota(tool_calls=100, usd=1.0)
