"""`agentctl policy test` prints actions, rule names and reasons taken from files: an ANSI
escape in a case's action (clear screen, set title) reached the terminal as is. It is now
shown as \\xNN, and rich markup in it is shown as written."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from agentos.cli.main import app


def test_escapes_and_markup_in_cases_are_shown_not_obeyed(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text('kernel: {version: "1.0", mode: strict}\npolicies:\n  - action: tools.pay\n')
    (tmp_path / "c.yaml").write_text('- {action: "\\e[2J\\e]0;owned\\apay", expect: deny}\n'
                                     '- {action: "[blink]x[/blink]", expect: deny}\n')
    r = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["policy", "test", str(tmp_path / "p.yaml"),
                                                       str(tmp_path / "c.yaml")])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert "\\x1b[2J" in r.output and "[blink]x[/blink]" in r.output
