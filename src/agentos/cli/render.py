"""Rendering shared by commands: process tables, run summaries, a live event narrator.

Text that agents or sandboxed programs wrote (log lines, process names, exit reasons,
fault messages) is never rendered as terminal markup: it goes through `untrusted`, which
escapes rich markup and shows control characters (ANSI escapes included) as \\xNN.
"""
from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def untrusted(value: Any, limit: int = 2000) -> str:
    """`value` as text safe to hand to rich: markup escaped, control characters and lone
    surrogates made visible, at most `limit` characters."""
    s = value if isinstance(value, str) else repr(value)
    if len(s) > limit:
        s = s[:limit] + "..."
    s = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return escape(s)


def plain(value: Any, limit: int = 2000) -> str:
    """`value` as text safe for a plain terminal: control characters (ANSI escapes) and lone
    surrogates shown as escapes, at most `limit` characters. No rich markup handling."""
    s = value if isinstance(value, str) else repr(value)
    if len(s) > limit:
        s = s[:limit] + "..."
    s = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def console() -> Console:
    """A console wide enough for our tables even when output is piped."""
    c = Console()
    return c if c.is_terminal else Console(width=120)

_EXIT_STYLE = {"normal": "green", "shutdown": "dim", "killed": "red", "quota": "magenta",
               "fault": "red", "deadline": "yellow", "policy": "bold red"}


def exit_style(reason: str | None) -> str:
    if not reason:
        return "cyan"
    return _EXIT_STYLE.get(reason.split("(", 1)[0], "white")


def history_table(history: Any, title: str = "processes") -> Table:
    t = Table(title=title)
    for col in ("pid", "name", "parent", "exit", "syscalls", "tokens", "tool calls", "usd", "ms"):
        t.add_column(col, justify="right" if col not in ("name", "exit") else "left")
    for r in history.rows():
        ms = "" if r.ended is None else f"{r.ended - r.started:.1f}"
        t.add_row(str(r.pid), untrusted(r.name), str(r.parent),
                  f"[{exit_style(r.exit)}]{untrusted(r.exit or 'running')}[/]",
                  str(r.syscalls), str(r.tokens), str(r.tool_calls), f"{r.usd:.6f}", ms)
    return t


def trust_cell(score: Any) -> str:
    """A trust score as ps shows it ("" when the kernel keeps none)."""
    return f"{score:.3f}" if isinstance(score, float) else ""


def ps_table(rows: list[dict[str, Any]], title: str = "ps") -> Table:
    t = Table(title=title)
    for col in ("pid", "name", "state", "parent", "prio", "reductions", "mailbox", "tokens", "tool calls", "usd",
                "trust"):
        t.add_column(col)
    for r in rows:
        u = r["used"]
        spent = ("-", "-", "-") if u is None else (  # hibernated: its usage is in the store
            str(u["tokens"]), str(u["tool_calls"]), f"{u['usd']:.6f}")
        t.add_row(str(r["pid"]), untrusted(r["name"]), r["state"], str(r["parent"]), str(r["priority"]),
                  str(r["reductions"]), str(r["mailbox"]), *spent, trust_cell(r.get("trust")))
    return t


class Narrator:
    """Prints what processes do as the events flush: spawns, logs, charges, denials, exits."""

    def __init__(self, console: Console, names: dict[int, str] | None = None) -> None:
        self.console = console
        self.names: dict[int, str] = names if names is not None else {}

    def who(self, pid: int) -> str:
        return f"[bold]{untrusted(self.names.get(pid, '?'))}[/]#{pid}" if pid else "[bold]kernel[/]"

    def observe(self, batch: list[tuple[float, int, str, Any]], first_seq: int = 0) -> None:
        out = self.console.print
        for t, pid, kind, data in batch:
            stamp = f"[dim]{t:9.1f}ms[/]"
            if kind == "spawn":
                self.names[pid] = data[1]
                parent = f" by {self.who(data[0])}" if data[0] else ""
                out(f"{stamp} [cyan]spawn[/]  {self.who(pid)}{parent}")
            elif kind == "log":
                level, msg, fields = data
                style = {"error": "red", "warning": "yellow"}.get(level, "white")
                out(f"{stamp} [{style}]{untrusted(level):7}[/] {self.who(pid)}: {untrusted(msg)}")
            elif kind == "charge":
                _, tokens, calls, usd = data
                parts = [p for p in (f"{tokens} tokens" if tokens else "", f"{calls} tool call(s)" if calls else "",
                                     f"${usd / 1e9:.6f}" if usd else "") if p]
                out(f"{stamp} [magenta]charge[/] {self.who(pid)}: {', '.join(parts)}")
            elif kind == "quota":
                out(f"{stamp} [bold magenta]budget[/] {self.who(pid)}: {data[0]} exhausted")
            elif kind == "error":
                out(f"{stamp} [red]refused[/] {self.who(pid)}: {untrusted(data[0])}: {untrusted(data[1])}")
            elif kind == "policy" and not data[1]:
                out(f"{stamp} [bold red]policy[/] {self.who(pid)}: {untrusted(data[0])} denied by "
                    f"{untrusted(data[2])}")
            elif kind == "signal":
                out(f"{stamp} [yellow]signal[/] {untrusted(data[0])} → {self.who(pid)} (from {self.who(data[1])})")
            elif kind == "fault" and isinstance(data, dict):
                frames = data.get("frames") or []
                at = f" at {untrusted(frames[-1][0], 300)}:{frames[-1][1]}" if frames else ""
                out(f"{stamp} [red]fault[/]  {self.who(pid)}: {untrusted(data.get('error'))}: "
                    f"{untrusted(data.get('message'), 300)}{at}")
            elif kind == "exit":
                out(f"{stamp} [{exit_style(str(data))}]exit[/]   {self.who(pid)}: {untrusted(str(data))}")
