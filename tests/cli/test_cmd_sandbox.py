"""agentctl sandbox run: limits from flags, exit status from the sandboxed agent's end."""
from __future__ import annotations

from typer.testing import CliRunner

from agentos.cli.main import app

runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})


def test_sandbox_run_reports_a_normal_end_and_isolation(tmp_path):
    f = tmp_path / "agent.py"
    f.write_text("async def main(sys, args):\n    await sys.log('info', 'got', v=args['v'])\n")
    res = runner.invoke(app, ["sandbox", "run", str(f), "--args", '{"v": 5}'])
    assert res.exit_code == 0, res.output
    assert "got {'v': 5}" in res.output and "network private" in res.output and "exit: normal" in res.output


def test_sandbox_run_fails_when_a_limit_bites(tmp_path):
    f = tmp_path / "bomb.py"
    f.write_text("async def main(sys, args):\n    x = bytearray(1 << 30)\n")
    res = runner.invoke(app, ["sandbox", "run", str(f), "--mem-mb", "128"])
    assert res.exit_code == 1 and "MemoryError" in res.output, res.output


def test_sandbox_run_refuses_bad_input(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def (:\n")
    assert runner.invoke(app, ["sandbox", "run", str(f)]).exit_code == 2
    assert runner.invoke(app, ["sandbox", "run", str(tmp_path / "missing.py")]).exit_code == 2
    f.write_text("async def main(sys, args):\n    pass\n")
    assert runner.invoke(app, ["sandbox", "run", str(f), "--allow", "pid,format_disk"]).exit_code == 2
