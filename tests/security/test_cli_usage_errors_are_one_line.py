"""A bad option, a value of the wrong type, a missing argument or an unknown command used
to print click's usage box (several lines, or a framed panel): bad input from `agentctl`
is one line on stderr and exit 2, like every other refusal."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from agentos.cli.main import app

BAD = [
    ["audit", "prove", "-1"],
    ["audit", "prove", "abc"],
    ["audit", "verify", "--bogus"],
    ["audit", "verify", "--dir"],
    ["policy", "validate"],
    ["policy", "test", "only-one-file"],
    ["no-such-command"],
    ["--bogus"],
    ["sandbox", "run", "--no-such-flag", "x.py"],
]


@pytest.mark.parametrize("argv", BAD, ids=" ".join)
def test_usage_errors_are_one_line_and_exit_2(argv: list[str]) -> None:
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.output and "╭" not in r.output and "Usage:" not in r.stderr


def test_in_a_real_process_too() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run([sys.executable, "-m", "agentos.cli.main", "audit", "prove", "x"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "seq" in p.stderr, p.stderr


def test_help_still_works() -> None:
    r = CliRunner().invoke(app, ["audit", "--help"])
    assert r.exit_code == 0 and "verify" in r.output
