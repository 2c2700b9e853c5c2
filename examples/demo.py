"""The agentos demo: a small team of LLM agents, each a process under one kernel.

    python examples/demo.py                       # offline, on the embedded model
    python examples/demo.py --base-url URL        # any OpenAI-compatible endpoint
    AGENTOS_LLM_BASE_URL=URL agentctl demo        # the same, from the environment

The team: a *planner* asks the model for its plan (a JSON schema in `response_format`,
so the embedded model decodes it under a grammar; a reply that is no usable plan falls
back to the default plan, and the story and the table count it), spawns a ReAct *worker*
per step, each offered only the tool its step needs (a calculator, a file reader, an
email sender the policy forbids), and assembles the report from their answers; a
*supervisor* restarts a flaky *sensor* worker that crashes until its sensor answers; a
*budget* worker gets a token quota too small for its task and is stopped by the kernel
when it runs out. Every LLM and tool call is a metered, policy-checked syscall.

`main` runs the team inside a served kernel (the daemon of `agentctl serve`): while it
runs, the dashboard and `agentctl ps`/`top` show it, and the run is recorded in the
default store (`agentctl runs`). The narrative below is rendered from the kernel's event
log as it happens; the run ends with a process table and the cost of each process.
"""
from __future__ import annotations

import argparse
import ast
import operator
import os
import sys as _sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agentos import Decision, Down, Event, Kernel, Observer, ProcessImage, Quota
from agentos.abi import USD_SCALE
from agentos.drivers import Tool, ToolsDriver
from agentos.userland.react import react_agent
from agentos.userland.supervisor import ChildSpec, SupervisorSpec, supervisor

NOTES = """Launch date: 14 March 2027
Team size: 6 engineers
Budget: 120000 EUR
Open risk: the radio module supplier is late
"""

# -- tools: plain functions, schema-checked and metered by the tools driver ---------------

_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def calculate(expression: str) -> float | int:
    """Arithmetic on numbers only (+ - * / // % **), parsed, never eval'd."""
    expr = expression.strip().rstrip("=").strip()
    if len(expr) > 200:
        raise ValueError("expression longer than 200 characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expr!r}") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"only numbers and + - * / // % ** are allowed, not {type(node).__name__}")

    out = ev(tree)
    return int(out) if isinstance(out, float) and out.is_integer() else out


def make_tools(workdir: Path, sensor_failures: int = 2) -> ToolsDriver:
    root = workdir.resolve()

    def read_file(path: str) -> str:
        """Read a text file from the team's workspace."""
        p = (root / path.strip()).resolve()
        if root not in p.parents and p != root:
            raise ValueError(f"{path!r} is outside the workspace")
        if not p.is_file():
            names = ", ".join(sorted(x.name for x in root.iterdir())) or "none"
            raise FileNotFoundError(f"no file {path.strip()!r} (files: {names})")
        return p.read_text()[:4000]

    def list_files() -> list[str]:
        """List the files in the team's workspace."""
        return sorted(x.name for x in root.iterdir() if x.is_file())

    calls = {"n": 0}

    def read_sensor() -> dict[str, Any]:
        """Read the lab's temperature sensor (it is flaky at first)."""
        calls["n"] += 1
        if calls["n"] <= sensor_failures:
            raise TimeoutError(f"sensor did not answer (attempt {calls['n']})")
        return {"celsius": 21.5, "attempt": calls["n"]}

    outbox: list[dict[str, str]] = []

    def send_email(to: str, body: str) -> str:
        """Send an email (the demo's policy forbids agents to: this never runs there)."""
        outbox.append({"to": to, "body": body})
        return f"sent to {to}"

    return ToolsDriver([
        Tool("calculator", calculate, description="Evaluate an arithmetic expression such as 2*(3+4).",
             effect="read_only"),
        Tool("send_email", send_email, effect="read_write"),
        Tool("read_file", read_file, effect="read_only"),
        Tool("list_files", list_files, effect="read_only"),
        Tool("read_sensor", read_sensor, effect="read_only"),
    ])


class TeamPolicy:
    """The team's policy: everything is allowed but email. An agent that tries to send one
    is stopped by the kernel (effect "kill") before the tool runs: a person sends email."""

    RULE = "no-outbound-email"
    REASON = "agents may not send email; a person sends the status update"

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        if action == "tools.send_email":
            return Decision(False, self.RULE, self.REASON, effect="kill")
        return Decision(True, "team-allow")


# -- the agents (process bodies: they touch the world only through `sys`) -------------------

async def worker(sys: Any, args: dict[str, Any]) -> dict[str, Any]:
    """A ReAct worker: solves one task with its tools, reports to whoever asked."""
    res = await react_agent(sys, args["task"], args["tools"], llm=args["llm"], max_steps=args.get("max_steps", 4),
                            max_tokens=96, on_delta=args.get("on_delta"))
    out = {"task": args["task"], **res.to_dict()}
    boss = await sys.lookup(args["report_to"]) if args.get("report_to") else None
    if boss is not None:
        await sys.send(boss, {"worker": await sys.pid(), **out})
    return out


def plan_format(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The plan's JSON schema: one boolean per candidate step (does the goal need it?)."""
    return {"type": "json_schema", "json_schema": {"name": "plan", "schema": {
        "type": "object", "properties": {st["key"]: {"type": "boolean"} for st in steps},
        "required": [st["key"] for st in steps], "additionalProperties": False}}}


async def make_plan(sys: Any, args: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """Ask the model which steps the goal needs; (steps, None), or (the default plan, why)
    when its reply is no usable plan (an endpoint that ignores response_format, no step)."""
    import json

    steps = args["steps"]
    prompt = (f"You plan the work for: {args['goal']}. Each step is done by one worker with one tool. "
              + " ".join(f"Step {st['key']}: {st['task']} (tool: {st['tools'][0]})." for st in steps)
              + " For each step, answer true if the goal needs it.")
    try:
        h = await sys.open(args["llm"])
        reply = await sys.read(h, {"messages": [{"role": "user", "content": prompt}],
                                   "response_format": plan_format(steps), "max_tokens": 64, "temperature": 0.0})
        chosen = json.loads(reply.get("content") or "")
    except ValueError as e:
        return steps, f"the reply is not JSON ({str(e)[:60]})"
    except Exception as e:  # a refused or failed call: the team still has a plan
        return steps, f"{type(e).__name__}: {str(e)[:80]}"
    if not isinstance(chosen, dict) or not all(isinstance(chosen.get(st["key"]), bool) for st in steps):
        return steps, f"the reply does not follow the plan's schema: {str(chosen)[:60]}"
    picked = [st for st in steps if chosen[st["key"]]]
    if not picked:
        return steps, "the model chose no step"
    return picked, None


async def planner(sys: Any, args: dict[str, Any]) -> str:
    """Ask the model for a plan, run a ReAct worker per step in parallel (each offered only
    the tool its step needs), collect their answers as messages, and report."""
    await sys.register("planner")
    steps, fallback = await make_plan(sys, args)
    await sys.log("info", "planner.plan", steps=[st["key"] for st in steps], fallback=fallback)
    pending: dict[int, str] = {}
    for st in steps:
        pid, cap = await sys.spawn(WORKER, name="worker", caps=[args["llm"], "tools"],
                                   quota=Quota(tokens=args.get("worker_tokens", 6000), tool_calls=6),
                                   args={"task": st["task"], "tools": st["tools"], "llm": args["llm"],
                                         "report_to": "planner", "on_delta": args.get("on_delta")})
        await sys.monitor(cap)
        pending[pid] = st["task"]
    answers: dict[str, str] = {}
    while pending:
        msg = await sys.recv(timeout=args.get("timeout_ms", 600_000))
        if msg is None:
            break
        body = msg.body
        if isinstance(body, dict) and body.get("worker") in pending:
            answers[pending[body["worker"]]] = body.get("answer") or f"(no answer: {body.get('stop')})"
        elif isinstance(body, Down) and body.pid in pending:
            task = pending.pop(body.pid)
            answers.setdefault(task, f"(worker ended: {body.reason})")
    # The report is assembled here, not written by the model: a 270M base model cannot
    # summarise (it answers "1000000…"); the workers' answers are the substance.
    report = "; ".join(f"{t.split(' and ')[0].rstrip('.')} → {a}" for t, a in answers.items())
    await sys.log("info", "planner.report", report=report, findings=answers)
    return report


DEFAULT_STEPS = [
    {"key": "compute", "task": "Use the calculator to compute 17 * 23 + 4.", "tools": ["calculator"]},
    {"key": "launch_date", "task": "Read the file notes.txt and tell me the launch date.", "tools": ["read_file"]},
    {"key": "email_team", "task": "Send the status update by email to team@aurora.example.",
     "tools": ["send_email"]},
]


async def sensor(sys: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Let it crash: no error handling; the supervisor restarts it until the sensor answers."""
    th = await sys.open("tools")
    reading = await sys.read(th, {"tool": "read_sensor", "args": {}})   # raises: a fault, the process ends
    h = await sys.open(args["llm"], {"on_delta": args["on_delta"]} if args.get("on_delta") else None)
    reply = await sys.read(h, {"messages": [
        {"role": "user", "content": f"The lab's normal range is 18 to 24 degrees Celsius. The sensor reads "
                                    f"{reading['celsius']} degrees. Is the reading within the normal range?"}],
        "response_format": VERDICT_FORMAT, "max_tokens": 24, "temperature": 0.0})
    verdict = _json_field(reply.get("content"), "within_range")
    await sys.log("info", "sensor.verdict", celsius=reading["celsius"], within_range=verdict)
    team = await sys.lookup("team")
    if team is not None:
        await sys.send(team, {"sensor": reading, "within_range": verdict})
    return {"reading": reading, "within_range": verdict}


VERDICT_FORMAT = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": {
    "type": "object", "properties": {"within_range": {"type": "boolean"}},
    "required": ["within_range"], "additionalProperties": False}}}


def _json_field(text: Any, key: str) -> Any:
    import json

    try:
        return json.loads(text or "")[key]
    except (ValueError, TypeError, KeyError):
        return text   # an endpoint that ignored response_format: keep its words


WORKER = ProcessImage("worker", worker)
SENSOR = ProcessImage("sensor", sensor)


async def team(sys: Any, args: dict[str, Any]) -> dict[str, Any]:
    """init: start the planner, the supervised sensor and the budget-starved worker."""
    await sys.register("team")
    llm, delta = args["llm"], args.get("on_delta")
    _, planner_cap = await sys.spawn(planner, name="planner", caps=[llm, "tools", "spawn"],
                                     quota=Quota(tokens=40_000, tool_calls=20, children=4), args={
        "goal": "the Aurora status update", "llm": llm, "on_delta": delta, "steps": DEFAULT_STEPS})
    spec = SupervisorSpec(children=[ChildSpec("sensor", SENSOR, args={"llm": llm, "on_delta": delta},
                                              quota=Quota(tokens=3000, tool_calls=2),
                                              caps=(llm, "tools"), restart="transient")],
                          strategy="one_for_one", intensity=3, period_ms=60_000)
    sup_pid, sup_cap = await sys.spawn(supervisor, name="supervisor", args=spec, caps=[llm, "tools", "spawn"],
                                 quota=Quota(tokens=12_000, tool_calls=8, children=4))
    _, budget_cap = await sys.spawn(WORKER, name="budget", caps=[llm, "tools"],
                                    quota=Quota(tokens=args.get("budget_tokens", 2000), tool_calls=4), args={
        "task": "List the files, read every one of them and summarise each in detail.",
        "tools": ["list_files", "read_file"], "llm": llm, "max_steps": 6, "on_delta": delta})
    await sys.monitor(sup_cap)
    msg = await sys.recv(timeout=args.get("timeout_ms", 600_000),
                         match=lambda m: (isinstance(m.body, dict) and "sensor" in m.body)
                         or (isinstance(m.body, Down) and m.body.pid == sup_pid))
    verdict = msg if msg is not None and isinstance(msg.body, dict) else None
    budget_end = await sys.waitpid(budget_cap)
    planner_end = await sys.waitpid(planner_cap)
    await sys.term(sup_cap)
    await sys.waitpid(sup_cap)
    return {"sensor": verdict.body if verdict else None, "budget": str(budget_end), "planner": str(planner_end)}


# -- the narrative: rendered from the event stream as it happens -------------------------------

@dataclass
class Proc:
    pid: int
    name: str
    parent: int
    tokens: int = 0
    tool_calls: int = 0
    usd_nano: int = 0
    llm_calls: int = 0
    refused: int = 0          # tokens of the call the budget could not pay
    fallbacks: int = 0        # plans that fell back to the default plan
    exit: str = "running"


class Narrator(Observer):
    """An observer of the event log that tells the story, plus the `on_delta` stream of model text."""

    COLORS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")

    def __init__(self, console: Any, llm_device: str, stream: bool = True) -> None:
        self.c = console
        self.llm_device = llm_device
        self.stream = stream
        self.procs: dict[int, Proc] = {}
        self._streaming = False
        self.kernel: Any = None
        self.sent: dict[int, tuple[int, Any]] = {}     # seq of a Send → (sender, body)
        self.denied: dict[int, tuple[str, str]] = {}   # pid → (action, rule) of its last refusal
        self.fallbacks = 0

    def attached(self, kernel: Any) -> None:
        self.kernel = kernel
        kernel.message_events = True   # a `recv` event per message: who told whom what

    def _action(self, pid: int, index: int) -> str:
        """The action a charged operation was (the journal has it): llm.chat, tools.calculator."""
        j = getattr(self.kernel, "journal", None)
        e = j.lookup(pid, index) if j is not None else None
        return (e.action or f"{e.device}.{e.op}") if e is not None else "?"

    def tag(self, pid: int) -> str:
        p = self.procs.get(pid)
        name = p.name if p else "kernel" if pid == 0 else "?"
        return f"[{self.COLORS[pid % len(self.COLORS)]}]{name}#{pid}[/]"

    def delta(self, text: str) -> None:
        if not self.stream:
            return
        if not self._streaming:
            self.c.print("      [dim]model ›[/] ", end="")
            self._streaming = True
        self.c.print(text.replace("\n", " "), end="", style="dim", markup=False, highlight=False)

    def end_stream(self) -> None:
        if self._streaming:
            self.c.print()
            self._streaming = False

    def say(self, pid: int, text: str) -> None:
        self.end_stream()
        self.c.print(f"{self.tag(pid)} {text}", highlight=False)

    def flushed(self, batch: list[Event]) -> None:
        for ev in batch:
            try:
                self.on_event(ev)
            except Exception as e:  # the story must never break the run
                self.c.print(f"[red]narrator: {type(e).__name__}: {e}[/]")

    def on_event(self, ev: Event) -> None:
        k, pid, d = ev.kind, ev.pid, ev.data
        if k == "spawn":
            parent, name, q = d
            self.procs[pid] = Proc(pid, name, parent)
            budget = ", ".join(f"{f}={getattr(q, f)}" for f in ("tokens", "tool_calls") if getattr(q, f) is not None)
            by = f" by {self.tag(parent)}" if parent else ""
            self.say(pid, f"[bold]started[/]{by}" + (f"  [dim]budget {budget}[/]" if budget else ""))
        elif k == "sys" and type(d).__name__ == "Send":
            self.sent[ev.seq] = (pid, d.body)
        elif k == "recv":
            sender, seq = d
            got = self.sent.pop(seq, None)
            if got is not None and sender in self.procs and not _is_signal(got[1]):
                self.say(pid, f"[blue]message from {self.tag(sender)}:[/] {_brief(got[1])}")
        elif k == "policy":
            action, allowed, rule = d
            if not allowed:
                self.denied[pid] = (action, rule)
                self.say(pid, f"[red]policy rule {rule} refused {action}[/]")
        elif k == "charge":
            idx, tokens, tool_calls, usd = d
            p = self.procs.get(pid)
            if p:
                p.tokens += tokens
                p.tool_calls += tool_calls
                p.usd_nano += usd
                p.llm_calls += 1 if tokens else 0
            what = self._action(pid, idx)
            if tokens:
                self.say(pid, f"[dim]charged {tokens} tokens for {what} (total {p.tokens if p else tokens})[/]")
            elif tool_calls:
                self.say(pid, f"[dim]charged {tool_calls} tool call for {what} "
                              f"(total {p.tool_calls if p else tool_calls})[/]")
        elif k == "quota":
            # the call's bound did not fit what is left: it never starts, and the process ends
            p = self.procs.get(pid)
            if p:
                p.refused += d[2]  # (resource, op index, tokens, tool calls, nano-usd)
            self.say(pid, f"[bold red]out of budget: {d[0]}[/] — the next call could cost {d[2]} tokens, "
                          f"more than is left: the kernel never starts it and stops the process")
        elif k == "log":
            self.on_log(pid, d[1], d[2])
        elif k == "exit":
            p = self.procs.get(pid)
            if p:
                p.exit = d
            kind = d.split("(")[0]
            if kind == "policy":
                action, rule = self.denied.get(pid, ("an action", d[7:-1]))
                self.say(pid, f"[bold red]stopped by the policy:[/] rule {rule} forbids {action}, with effect "
                              f"kill; the kernel ended the process before the call ran (nothing was sent)")
            color = {"normal": "green", "shutdown": "dim"}.get(kind, "red")
            self.say(pid, f"[{color}]exited: {d}[/]")

    def on_log(self, pid: int, msg: str, f: dict[str, Any]) -> None:
        if msg == "react.task":
            self.say(pid, f"task: [italic]{f['task']}[/]  [dim]tools: {', '.join(f['tools']) or 'none'}[/]")
        elif msg == "react.call":
            args = ", ".join(f"{k}={v!r}" for k, v in (f.get("arguments") or {}).items())
            self.say(pid, f"→ [bold]{f['tool']}[/]({args})")
        elif msg == "react.observe":
            text = " ⏎ ".join(str(f.get("result")).strip().splitlines())
            text = text if len(text) < 90 else text[:87] + "…"
            self.say(pid, f"← {f['tool']}: " + (text if f.get("ok") else f"[red]{text}[/]"))
        elif msg == "react.answer":
            self.say(pid, f"[bold green]answer:[/] {f.get('answer')!s}")
        elif msg == "planner.plan":
            steps = ", ".join(f.get("steps") or [])
            if f.get("fallback"):
                self.fallbacks += 1
                p = self.procs.get(pid)
                if p:
                    p.fallbacks += 1
                self.say(pid, f"[yellow]fell back to the default plan[/] ({f['fallback']}): {steps}")
            else:
                self.say(pid, f"[bold]plan[/] (the model's, decoded under the plan's JSON schema): {steps}")
        elif msg == "planner.report":
            self.say(pid, f"[bold]report:[/] {f.get('report')}")
        elif msg == "sensor.verdict":
            self.say(pid, f"sensor reads {f.get('celsius')} °C; within range: [bold]{f.get('within_range')}[/]")
        elif msg == "react.repeat":
            self.say(pid, f"[yellow]repeats an earlier call ({', '.join(f['tools'])}): not run again; "
                          f"next step must answer[/]")
        elif msg.startswith("react."):
            self.say(pid, f"[yellow]{msg[6:]}[/] {f}")
        else:
            self.say(pid, f"[yellow]{msg}[/]")

    def table(self) -> Any:
        from rich.table import Table

        t = Table(title="ps -a: every process of this run and what it cost")
        for col in ("pid", "name", "parent", "exit", "llm", "tokens", "tools", "usd", "fallbacks"):
            t.add_column(col, no_wrap=True,
                         justify="left" if col in ("name", "exit") else "right")
        tot = Proc(0, "total", 0)
        for p in sorted(self.procs.values(), key=lambda p: p.pid):
            t.add_row(str(p.pid), p.name, str(p.parent or "-"), _short(p.exit), str(p.llm_calls), str(p.tokens),
                      str(p.tool_calls), f"{p.usd_nano / USD_SCALE:.6f}", str(p.fallbacks))
            tot.tokens += p.tokens
            tot.tool_calls += p.tool_calls
            tot.usd_nano += p.usd_nano
            tot.llm_calls += p.llm_calls
        t.add_row("", "[bold]total[/]", "", "", str(tot.llm_calls), str(tot.tokens), str(tot.tool_calls),
                  f"{tot.usd_nano / USD_SCALE:.6f}", str(self.fallbacks))
        return t


def _is_signal(body: Any) -> bool:
    return type(body).__name__ in ("SignalMessage", "Down", "Exit")


def _brief(body: Any, width: int = 100) -> str:
    """A message body on one line: a worker's report shows its answer."""
    if isinstance(body, dict) and "answer" in body:
        text = f"answer {body.get('answer')!r}" + (f" ({body['stop']})" if body.get("stop") not in (None, "answer") else "")
    elif isinstance(body, dict) and "sensor" in body:
        text = f"sensor {body['sensor']}, within range: {body.get('within_range')}"
    else:
        text = repr(body)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(reason: str, width: int = 28) -> str:
    """`fault(ToolError: tool 'x' failed: ...)` → `fault(ToolError…)`: the table stays one line."""
    if len(reason) <= width:
        return reason
    kind, _, detail = reason.partition("(")
    return f"{kind}({detail.split(':')[0][: width - len(kind) - 3]}…)"


# -- wiring ------------------------------------------------------------------------------------

def make_driver(base_url: str | None, model: str | None, api_key: str | None) -> Any:
    if base_url:
        from agentos.drivers.llm import LLMDriver  # the OpenAI-compatible driver

        return LLMDriver(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none",
                         model=model)
    from agentos.drivers.local import LocalDriver

    # answers capped at 60 characters: a 270M model otherwise tends to run on ("3954444…")
    # until max_tokens cuts its JSON short
    return LocalDriver(max_tokens=96, answer_chars=60)


@dataclass
class DemoRun:
    kernel: Kernel
    result: Any
    narrator: Narrator
    seconds: float
    run_id: str | None = None       # the recorded run, when served
    url: str | None = None          # the daemon's dashboard, when served
    interrupted: str | None = None  # the signal that stopped a served run


def _workspace() -> tempfile.TemporaryDirectory[str]:
    tmp = tempfile.TemporaryDirectory(prefix="agentos-demo-")
    (Path(tmp.name) / "notes.txt").write_text(NOTES)
    (Path(tmp.name) / "todo.txt").write_text("Order radio modules from a second supplier.\nBook the launch venue.\n")
    return tmp


def _team_args(driver: Any, narrator: Narrator, budget_tokens: int, timeout_ms: float) -> dict[str, Any]:
    return {"llm": driver.name, "on_delta": narrator.delta, "budget_tokens": budget_tokens, "timeout_ms": timeout_ms}


QUOTA = Quota(tokens=200_000, tool_calls=60)


def run_demo(driver: Any, console: Any, *, workdir: Path | None = None, stream: bool = True,
             budget_tokens: int = 2000, timeout_ms: float = 600_000, serve: Path | None = None,
             store: Any = None) -> DemoRun:
    """Run the team to the end with `driver` as the LLM device: as a kernel's init, or with
    `serve=HOME` inside a served kernel (the daemon of `agentctl serve`, its state under
    HOME) that records the run to `store` (default: the default store)."""
    if serve is not None:
        return _run_served(driver, console, serve, workdir=workdir, stream=stream, budget_tokens=budget_tokens,
                           timeout_ms=timeout_ms, store=store)
    tmp = _workspace() if workdir is None else None
    k = Kernel(policy=TeamPolicy(), event_batch=1)   # event_batch=1: the story is told as it happens
    k.register_driver(driver)
    k.register_driver(make_tools(workdir or Path(tmp.name)))  # type: ignore[union-attr]
    narrator = Narrator(console, driver.name, stream)
    k.add_observer(narrator)
    t0 = time.perf_counter()
    res = k.run(team, grant=[driver.name, "tools"], quota=QUOTA,
                args=_team_args(driver, narrator, budget_tokens, timeout_ms), name="team")
    secs = time.perf_counter() - t0
    narrator.end_stream()
    if tmp is not None:
        tmp.cleanup()
    return DemoRun(k, res, narrator, secs)


def _run_served(driver: Any, console: Any, home: Path, *, workdir: Path | None, stream: bool, budget_tokens: int,
                timeout_ms: float, store: Any) -> DemoRun:
    """The team as a job of a daemon: started under its root once it serves; when the team
    ends, the daemon stops and the run is recorded as finished (a signal: interrupted)."""
    import asyncio

    from agentos import ExitKind, ExitReason, RunResult
    from agentos.server import Daemon

    tmp = _workspace() if workdir is None else None
    d = Daemon(home=home, policy=TeamPolicy(), quota=QUOTA, event_batch=1, name="demo", store=store)
    k = d.kernel
    k.register_driver(driver)
    k.register_driver(make_tools(workdir or Path(tmp.name)))  # type: ignore[union-attr]
    narrator = Narrator(console, driver.name, stream)
    k.add_observer(narrator)
    box: dict[str, Any] = {}

    async def job(sys: Any, args: dict[str, Any]) -> Any:
        box["value"] = await team(sys, args)
        return box["value"]

    class _Done(Observer):
        def exited(self, proc: Any, reason: Any) -> None:
            if proc.pid == box.get("pid"):
                box["reason"] = reason
                asyncio.get_running_loop().call_soon(lambda: d.stop("the team finished", interrupted=False))

    k.add_observer(_Done())

    def ready(daemon: Any) -> None:
        narrator.end_stream()
        console.print(f"The team runs inside a served kernel. Dashboard: [bold]{daemon.url}/#token=$(cat "
                      f"{home / 'serve.token'})[/]  Meanwhile, in another terminal: "
                      f"[bold]AGENTOS_HOME={home} agentctl ps[/] (or [bold]top[/], [bold]events --follow[/]).")
        box["pid"] = k.start(job, parent=daemon.root_pid, grant=[driver.name, "tools"], name="team",
                             args=_team_args(driver, narrator, budget_tokens, timeout_ms))

    t0 = time.perf_counter()
    asyncio.run(d.serve(on_ready=ready))
    secs = time.perf_counter() - t0
    narrator.end_stream()
    if tmp is not None:
        tmp.cleanup()
    reason = box.get("reason") or ExitReason(ExitKind.SHUTDOWN, d.stopping or "stopped")
    return DemoRun(k, RunResult(reason, box.get("value"), box.get("pid", 0)), narrator, secs, run_id=d.run_id,
                   url=d.url, interrupted=d.stopping if d.interrupted else None)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.rule import Rule

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", default=os.environ.get("AGENTOS_LLM_BASE_URL"),
                    help="an OpenAI-compatible endpoint (default: the embedded model, offline)")
    ap.add_argument("--model", default=os.environ.get("AGENTOS_LLM_MODEL"), help="model name at that endpoint")
    ap.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY)")
    ap.add_argument("--no-stream", action="store_true", help="do not stream the model's tokens")
    a = ap.parse_args(argv)
    console = Console() if Console().is_terminal else Console(width=110)
    console.print(Rule("[bold]agentos demo[/]: a team of agents, each a process under one kernel"))
    driver = make_driver(a.base_url, a.model, a.api_key)
    if a.base_url:
        console.print(f"LLM: OpenAI-compatible endpoint [bold]{a.base_url}[/] (model {a.model or 'default'})")
    else:
        with console.status("loading the embedded model (gemma3-270m, Q4_K_M, CPU) …"):
            secs = driver.load()
        console.print(f"LLM: embedded [bold]gemma3-270m[/] loaded in {secs:.1f} s  "
                      f"[dim](a 270M base model: tool calls are kept well-formed by a JSON grammar, "
                      f"not by its wisdom)[/]")
    from agentos.store import agentos_home

    run = run_demo(driver, console, stream=not a.no_stream, serve=agentos_home())
    console.print(Rule("the end"))
    console.print(run.narrator.table())
    for p in run.narrator.procs.values():
        if p.refused:
            console.print(f"{p.name}#{p.pid}: its last LLM call ({p.refused} tokens) would have passed its "
                          f"token quota; the kernel refused the charge and ended it (not counted above)")
    console.print(f"the team ended: {run.result.reason}; wall time {run.seconds:.1f} s")
    if run.narrator.fallbacks:
        console.print(f"[yellow]{run.narrator.fallbacks} plan(s) fell back to the default plan[/] (see the table)")
    if run.run_id:
        console.print(f"recorded as run [bold]{run.run_id}[/] ({'interrupted by ' + run.interrupted if run.interrupted else 'finished'}): "
                      f"agentctl runs; agentctl events {run.run_id}")
    stats = getattr(driver, "stats", None)
    if stats is not None and getattr(stats, "calls", 0):
        console.print(f"model: {stats.calls} generations, prompt {stats.prompt_tokens_per_s:.0f} tok/s, "
                      f"generation {stats.gen_tokens_per_s:.1f} tok/s")
    if run.interrupted:
        return 143 if run.interrupted == "SIGTERM" else 130
    return 0 if run.result.reason.normal else 1


if __name__ == "__main__":
    _sys.exit(main())
