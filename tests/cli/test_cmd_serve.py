"""agentctl against a live daemon, end to end in subprocesses: serve, submit, ps --json,
kill, logs, --version, exit codes, and Ctrl-C on serve."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

SLEEPER = """
async def init(sys, args):
    await sys.log("info", "\\x1b[31mred\\x1b[0m")
    while True:
        await sys.sleep(50)
"""


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["AGENTOS_HOME"] = str(home)
    env.pop("AGENTOS_STORE", None)
    return env


def ctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "agentos.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_version_and_no_daemon_exit_code(tmp_path: Path) -> None:
    env = _env(tmp_path / "home")
    r = ctl(env, "--version")
    assert r.returncode == 0 and "agentos" in r.stdout
    r = ctl(env, "ps", "--json")
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "agentctl serve" in r.stderr


@pytest.mark.slow
def test_serve_submit_ps_kill_and_ctrl_c(tmp_path: Path) -> None:
    env = _env(tmp_path / "home")
    prog = tmp_path / "sleeper.py"
    prog.write_text(SLEEPER)
    serve = subprocess.Popen([sys.executable, "-m", "agentos.cli.main", "serve", "--allow-all"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        end = time.monotonic() + 60
        while not (tmp_path / "home" / "serve.json").exists():
            assert serve.poll() is None and time.monotonic() < end, serve.stderr.read() if serve.stderr else ""
            time.sleep(0.05)
        r = ctl(env, "submit", str(prog), "--json", "--tokens", "50")
        assert r.returncode == 0, r.stderr
        pid = json.loads(r.stdout)["pid"]
        rows = {p["pid"]: p for p in json.loads(ctl(env, "ps", "--json").stdout)["processes"]}
        assert rows[pid]["remaining"]["tokens"] == 50 and rows[pid]["name"] == "sleeper"
        top = ctl(env, "top", "--json", "--iterations", "2", "--interval", "0.1")
        snaps = [json.loads(x) for x in top.stdout.splitlines()]
        assert top.returncode == 0 and len(snaps) == 2 and pid in {p["pid"] for p in snaps[0]["processes"]}
        assert ctl(env, "top", "--interval", "nan").returncode == 2
        assert ctl(env, "stop", str(pid), "--json").returncode == 0
        assert ctl(env, "budget", str(pid)).returncode == 0
        assert ctl(env, "cont", str(pid)).returncode == 0
        logs = ctl(env, "logs", str(pid))
        assert "\x1b" not in logs.stdout and "\\x1b[31mred" in logs.stdout
        assert ctl(env, "kill", str(pid)).returncode == 0
        r = ctl(env, "kill", str(pid))
        assert r.returncode == 1 and "no live process" in r.stderr
        assert ctl(env, "submit", str(tmp_path / "missing.py")).returncode == 1
        serve.send_signal(signal.SIGINT)
        out, err = serve.communicate(timeout=30)
        assert serve.returncode == 130 and "Traceback" not in err and "interrupted" in out
        # the full table, one row per process, not a one-line summary
        assert "every process of this daemon" in out, out
        row = next(line for line in out.splitlines() if [c.strip() for c in line.split("│")[1:2]] == [str(pid)])
        assert "sleeper" in row and "killed" in row
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
    runs = [json.loads(x) for x in ctl(env, "runs", "--json").stdout.splitlines()]
    assert [r["status"] for r in runs] == ["interrupted"]
    # a served run cannot be replayed (its programs came through the API): one clear line
    r = ctl(env, "replay", runs[0]["run"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "was served" in r.stderr, r.stderr
    assert not (tmp_path / "home" / "serve.json").exists()


@pytest.mark.slow
def test_sigterm_to_serve_stops_it_with_143_and_the_table(tmp_path: Path) -> None:
    env = _env(tmp_path / "home")
    serve = subprocess.Popen([sys.executable, "-m", "agentos.cli.main", "serve", "--allow-all"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        end = time.monotonic() + 60
        while not (tmp_path / "home" / "serve.json").exists():
            assert serve.poll() is None and time.monotonic() < end
            time.sleep(0.05)
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
    assert serve.returncode == 143, (serve.returncode, out, err)
    assert "Traceback" not in err and "every process of this daemon" in out and "root" in out


def test_approvals_listed_and_answered_through_agentctl(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from agentos.cli.main import app
    from tests.server.conftest import start, stop
    from tests.server.test_dashboard_browser import PROGRAM, PayNeedsAPerson

    s = start(tmp_path, policy=PayNeedsAPerson())
    monkeypatch.setenv("AGENTOS_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    try:
        r = runner.invoke(app, ["submit", s.program(tmp_path, PROGRAM, "payer"), "--name", "pay\x1b[2Jer"])
        assert r.exit_code == 0, r.output
        end = time.monotonic() + 15
        while time.monotonic() < end:
            listed = json.loads(runner.invoke(app, ["approvals", "--json"]).output)["pending"]
            if listed:
                break
            time.sleep(0.05)
        [req] = listed
        assert {"id", "pid", "process", "action", "args", "rule", "reason", "expires_in_ms"} <= set(req)
        text = runner.invoke(app, ["approvals"])
        assert text.exit_code == 0 and "tools.pay" in text.output and "\x1b" not in text.output
        r = runner.invoke(app, ["approvals", "--approve", req["id"], "--json"])
        assert r.exit_code == 0 and json.loads(r.output)["approved"] is True
        r = runner.invoke(app, ["approvals", "--deny", req["id"]])
        assert r.exit_code == 1  # already answered: one line, no traceback
        assert runner.invoke(app, ["approvals", "--approve", "a", "--deny", "b"]).exit_code == 2
    finally:
        stop(s)


@pytest.mark.parametrize("args,needle", [
    (["--hibernate", "--max-resident", "0"], ">= 1"),
    (["--hibernate", "--max-resident", "-5"], ">= 1"),
    (["--hibernate", "--max-resident", "1" + "0" * 400], "--max-resident"),
    (["--hibernate", "--max-resident", "many"], "--max-resident"),
    (["--hibernate", "--max-resident", "2.5"], "--max-resident"),
    (["--max-resident", "10"], "needs --hibernate"),
    (["--port", "65536"], "--port must be in 0..65535"),
    (["--port", "-1"], "--port must be in 0..65535"),
    (["--port", "1" + "0" * 400], "--port"),
], ids=["zero", "negative", "huge", "not-a-number", "float", "without-hibernate", "port-too-large", "port-negative",
        "port-huge"])
def test_a_bad_max_resident_or_port_is_one_line_and_exit_2(tmp_path: Path, monkeypatch, args, needle) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from agentos.cli.main import app

    monkeypatch.setenv("AGENTOS_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(app, ["serve", "--allow-all", *args])
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "home" / "serve.json").exists()


def test_ps_shows_the_effective_priority_the_scheduler_gave_and_survives_odd_rows() -> None:
    from agentos.cli.cmd_serve import _prio_cell

    assert _prio_cell({"priority": 5, "effective_priority": 5}) == "5"
    assert _prio_cell({"priority": 5, "effective_priority": 7.5}) == "5→7.50"
    for odd in (float("nan"), float("inf"), True, "9", None):
        assert _prio_cell({"priority": 5, "effective_priority": odd}) == "5"
    assert _prio_cell({}) == "None"
