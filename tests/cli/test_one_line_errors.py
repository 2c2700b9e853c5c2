"""Whatever goes wrong inside a command, agentctl says it in one line on stderr and exits
non-zero: a refused setting, a file it cannot write, a damaged run row, a fault."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from agentos.cli import main as M

def _prog(tmp_path: Path) -> Path:
    prog = tmp_path / "prog.py"
    prog.write_text("async def init(sys, args):\n    return 1\n")
    return prog


def _one_line(res: object) -> str:
    out = res.stderr if hasattr(res, "stderr") else ""  # type: ignore[attr-defined]
    lines = [ln for ln in str(out).splitlines() if ln.strip()]
    assert len(lines) == 1, out
    assert "Traceback" not in str(out)
    return lines[0]


def test_a_seed_the_kernel_refuses_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "agentos.cli.main", "run", str(_prog(tmp_path)),
                          "--deterministic", "--seed", "1" + "0" * 90],
                         capture_output=True, text=True, timeout=120,
                         env={"AGENTOS_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == M.EXIT_ERROR
    line = _one_line(res)
    assert line.startswith("error: seed must be an integer in -2**256..2**256")


def test_an_unexpected_fault_is_one_line_naming_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: object, **kw: object) -> None:
        raise ZeroDivisionError("division by zero")

    guarded = M._store_errors_are_one_line(broken)
    with pytest.raises(M.typer.Exit) as exc:
        guarded()
    assert exc.value.exit_code == M.EXIT_ERROR
    monkeypatch.setenv("AGENTOS_TRACEBACK", "1")  # the operator asked for the traceback
    with pytest.raises(ZeroDivisionError):
        M._store_errors_are_one_line(broken)()


def test_a_file_error_names_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    def write(*a: object, **kw: object) -> None:
        open("/nonexistent-dir/x", "w")

    with pytest.raises(M.typer.Exit):
        M._store_errors_are_one_line(write)()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/nonexistent-dir/x" in err and err.startswith("error: ")


def test_typer_exits_pass_through_untouched() -> None:
    def leave(*a: object, **kw: object) -> None:
        raise M.typer.Exit(4)

    with pytest.raises(M.typer.Exit) as exc:
        M._store_errors_are_one_line(leave)()
    assert exc.value.exit_code == 4
