"""agentctl: run, demo, syscalls, bench, and a clean-venv install of the package."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentos.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})


def test_syscalls_lists_the_table():
    res = runner.invoke(app, ["syscalls"])
    assert res.exit_code == 0
    for name in ("send", "recv", "spawn", "read_all", "remember", "check_policy"):
        assert name in res.output


def test_run_boots_a_file_and_prints_a_table_and_summary(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent('''
        from agentos import Quota
        from agentos.drivers import ToolsDriver, tool

        @tool()
        def double(x: int) -> int:
            return 2 * x

        async def helper(sys, args):
            h = await sys.open("tools")
            return await sys.read(h, {"tool": "double", "args": {"x": args}})

        async def init(sys, args):
            _, c = await sys.spawn(helper, args=21, caps=["tools"], name="doubler")
            return str(await sys.waitpid(c))

        def setup(kernel):
            kernel.register_driver(ToolsDriver([double]))

        GRANT = ["tools"]
        QUOTA = Quota(tool_calls=5)
    '''))
    res = runner.invoke(app, ["run", str(prog), "--allow-all"], env={"AGENTOS_HOME": str(tmp_path / "home")})
    assert res.exit_code == 0, res.output
    assert "doubler" in res.output and "normal" in res.output
    assert "1 tool calls" in res.output
    import re
    run_id = re.search(r"recorded as run (\S+)", res.output).group(1)
    res = runner.invoke(app, ["replay", run_id], env={"AGENTOS_HOME": str(tmp_path / "home")})
    assert res.exit_code == 0, res.output
    assert "replay identical" in res.output


def test_run_without_policy_is_refused_by_the_strict_kernel(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent('''
        from agentos.drivers import ToolsDriver, tool

        @tool()
        def ping() -> str:
            return "pong"

        async def init(sys, args):
            h = await sys.open("tools")
            return await sys.read(h, {"tool": "ping"})

        def setup(kernel):
            kernel.register_driver(ToolsDriver([ping]))

        GRANT = ["tools"]
    '''))
    res = runner.invoke(app, ["run", str(prog), "--no-record"])
    assert res.exit_code == 1
    assert "strict kernel with no policy loaded refuses tools.ping" in res.output


def test_run_rejects_a_file_without_init(tmp_path):
    prog = tmp_path / "empty.py"
    prog.write_text("x = 1\n")
    res = runner.invoke(app, ["run", str(prog)])
    assert res.exit_code != 0
    assert "must define `async def init(sys, args)`" in res.output


def test_demo_shows_restart_budget_kill_and_refusals():
    res = runner.invoke(app, ["demo", "--kernel", "--no-record"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "restarting calculator after fault(RuntimeError: worker bug)" in out
    assert "quota(tool_calls)" in out
    assert "lacks the kill right" in out and "holds no capability for device 'tools'" in out
    assert "tour complete" in out


def test_bench_quick_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", "--quick", "--only", "bench_kernel", "--out", str(out)])
    assert res.exit_code == 0, res.output
    import json
    data = json.loads(out.read_text())
    names = {r["name"] for r in data["results"]}
    assert {"ipc_round_trips", "spawn_exit", "context_switches", "fan_in_recv", "driver_reads",
            "remember", "recall", "paging", "read_all_speedup"} <= names
    for r in data["results"]:
        assert "error" not in r, r
        assert r["ratio"] is None or r["ratio"] > 0


@pytest.mark.slow
def test_clean_venv_install_runs_the_cli(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = venv / "bin" / "pip"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([str(pip), "install", "-q", str(ROOT)], check=True, env=env, timeout=600)
    out = subprocess.run([str(venv / "bin" / "agentctl"), "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "syscalls" in out.stdout
    out = subprocess.run([str(venv / "bin" / "agentctl"), "demo", "--kernel", "--no-record"], capture_output=True,
                         text=True, check=True)
    assert "tour complete" in out.stdout
