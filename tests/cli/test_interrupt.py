"""Ctrl-C and SIGTERM stop `agentctl run` cleanly while a driver call is in flight; a run
whose kernel was killed shows as `crashed`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

PROGRAM = """
import asyncio
from agentos.drivers.tools import ToolsDriver, tool

OUT = {out!r}

@tool()
async def side_effect(n: int) -> int:
    with open(OUT, "a") as f:
        f.write(f"start {{n}}\\n")
    await asyncio.sleep(2)  # long enough that a loaded machine still signals mid-call
    with open(OUT, "a") as f:
        f.write(f"done {{n}}\\n")
    return n

def setup(k):
    k.register_driver(ToolsDriver([side_effect]))

GRANT = ["tools"]

async def init(sys, args):
    h = await sys.open("tools")
    for n in range(20):
        await sys.read(h, {{"tool": "side_effect", "args": {{"n": n}}}})
    return "all done"
"""


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["AGENTOS_HOME"] = str(home)
    env.pop("AGENTOS_STORE", None)
    return env


def _agentctl(*args: str, env: dict[str, str], **kw) -> subprocess.Popen:  # type: ignore[no-untyped-def, type-arg]
    return subprocess.Popen([sys.executable, "-m", "agentos.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _runs(env: dict[str, str]) -> list[dict]:  # type: ignore[type-arg]
    p = _agentctl("runs", "--json", env=env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return [json.loads(x) for x in out.splitlines()]


def _wait_lines(path: Path, n: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_mid_call_and_no_further_side_effect_starts(tmp_path: Path, sig: int,
                                                                           code: int) -> None:
    out = tmp_path / "effects.txt"
    prog = tmp_path / "effects.py"
    prog.write_text(textwrap.dedent(PROGRAM.format(out=str(out))))
    env = _env(tmp_path / "home")
    p = _agentctl("run", str(prog), "--allow-all", "--no-narrate", env=env, cwd=tmp_path)
    _wait_lines(out, 3)  # the second call is in flight
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=20)
    assert p.returncode == code, stderr
    assert "Traceback" not in stderr and "interrupted" in stdout and "recorded as interrupted" in stdout
    lines = out.read_text().splitlines()
    time.sleep(0.5)
    assert out.read_text().splitlines() == lines  # nothing more happened after exit
    starts = [ln for ln in lines if ln.startswith("start")]
    assert len(starts) <= 3 and lines[-1].startswith("start")  # the call in flight was cancelled
    runs = _runs(env)
    assert [r["status"] for r in runs] == ["interrupted"]


@pytest.mark.slow
def test_a_run_whose_kernel_was_killed_shows_as_crashed(tmp_path: Path) -> None:
    out = tmp_path / "effects.txt"
    prog = tmp_path / "effects.py"
    prog.write_text(textwrap.dedent(PROGRAM.format(out=str(out))))
    env = _env(tmp_path / "home")
    p = _agentctl("run", str(prog), "--allow-all", "--no-narrate", env=env, cwd=tmp_path)
    _wait_lines(out, 2)
    assert _runs(env)[0]["status"] == "running"  # its owner is alive
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=20)
    assert _runs(env)[0]["status"] == "crashed"


def test_a_program_that_fails_to_import_is_one_line(tmp_path: Path) -> None:
    prog = tmp_path / "broken.py"
    prog.write_text("import json\nfrom nowhere_at_all import thing\n")
    p = _agentctl("run", str(prog), "--allow-all", env=_env(tmp_path / "home"), cwd=tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2
    assert err.count("\n") == 1 and f"{prog}:2:" in err and "ModuleNotFoundError" in err
