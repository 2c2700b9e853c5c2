"""A sandboxed program's log line `[bold red]...[/]` used to print in bold red in agentctl:
text an agent wrote was parsed as rich markup. Now it is shown as written: markup escaped,
and control characters (ANSI escapes that could repaint or clear the operator's terminal)
shown as \\xNN."""
from __future__ import annotations

import io
import re

from rich.console import Console
from typer.testing import CliRunner

from agentos.cli.main import app
from agentos.cli.render import Narrator, history_table, untrusted

runner = CliRunner(env={"COLUMNS": "250"})
EVIL = "[bold red]pwned[/] [link=http://evil.example]click[/link] \x1b[2J\x1b]0;title\x07 done"


def test_sandboxed_log_lines_and_fault_messages_print_as_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "agent.py"
    f.write_text("async def main(sys, args):\n"
                 f"    await sys.log('info', {EVIL!r}, note={EVIL!r})\n"
                 "    raise RuntimeError('[blink]fault text[/blink]')\n")
    r = runner.invoke(app, ["sandbox", "run", str(f)])
    assert r.exit_code == 1, r.output
    assert "[bold red]pwned[/]" in r.output and "[link=http://evil.example]click[/link]" in r.output
    assert "[blink]fault text[/blink]" in r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert "\\x1b[2J" in r.output


def _rendered(fn) -> str:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    c = Console(file=buf, force_terminal=True, color_system="truecolor", width=250)
    fn(c)
    return buf.getvalue()


def _text(rendered: str) -> str:
    """What the operator reads: rich's own colour codes (SGR) taken out."""
    return re.sub(r"\x1b\[[0-9;]*m", "", rendered)


def test_the_live_narrator_escapes_names_messages_and_exit_reasons() -> None:
    def narrate(c: Console) -> None:
        n = Narrator(c)
        n.observe([(0.0, 2, "spawn", (1, "[red]name[/]", None)),
                   (1.0, 2, "log", ("info", EVIL, {})),
                   (2.0, 2, "exit", "fault([on red]boom[/])")])
    raw = _rendered(narrate)
    out = _text(raw)
    assert "[red]name[/]" in out and "[bold red]pwned[/]" in out and "[on red]boom[/]" in out
    assert "\x1b" not in out and "\x07" not in raw   # rich's own colours aside, no escape reaches the terminal


def test_untrusted_text_in_tables() -> None:
    class Row:
        pid, name, parent, exit, syscalls, tokens, tool_calls, usd, started, ended = (
            2, "[bold]agent[/bold]", 1, "fault([red]x[/red])", 1, 0, 0, 0.0, 0.0, 1.0)

    class History:
        def rows(self):  # type: ignore[no-untyped-def]
            return [Row()]
    out = _text(_rendered(lambda c: c.print(history_table(History()))))
    assert "[bold]agent[/bold]" in out and "[red]x[/red]" in out


def test_untrusted_handles_every_string() -> None:
    assert untrusted("a\ud800b") == "a\\ud800b"
    assert untrusted("x\\") .endswith("\\")
    assert untrusted("\x9b31m") == "\\x9b31m"   # the 8-bit CSI too
    assert len(untrusted("y" * 10_000)) < 2100
