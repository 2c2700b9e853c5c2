"""`agentctl sandbox run` on hostile input: 100,000-deep `--args` used to print a
RecursionError traceback; a 20-digit `--mem-mb` or `--cpu-s` passed every check and
overflowed in the child's setrlimit (exit 1, the child's traceback in the reason); args
the kernel refuses printed "exit: None". Each is now one line on stderr and exit 2. The
bound on limits is the class fix: `SandboxLimits` refuses any value no rlimit can hold,
whoever builds it (trusted code, the CLI, or sandboxed code asking for a nested sandbox)."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentos.sandbox import SandboxLimits
from agentos.sandbox.driver import LIMIT_MAX

runner = CliRunner()


def _run(tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    from agentos.cli.main import app

    f = tmp_path / "agent.py"
    if not f.exists():
        f.write_text("async def main(sys, args):\n    return args\n")
    r = runner.invoke(app, ["sandbox", "run", str(f), "--allow-all", *extra])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize("extra, words", [
    (("--args", "[" * 100_000), "--args is not JSON"),
    (("--mem-mb", "9" * 20), "as_bytes"),
    (("--cpu-s", "9" * 20), "cpu_s"),
    (("--nofile", str(1 << 63)), "nofile"),
    (("--fsize-mb", "-1"), "fsize"),
    (("--args", '"\\udc80"'), "lone surrogate"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, extra: tuple[str, ...], words: str) -> None:
    code, out, err = _run(tmp_path, *extra)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert "Traceback" not in out + err


def test_source_with_a_nul_byte_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_bytes(b"x = 1\x00\n")
    code, out, err = _run(tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1, (out, err)


@pytest.mark.parametrize("field", ["as_bytes", "cpu_s", "nofile", "nproc", "fsize", "max_line"])
@pytest.mark.parametrize("value", [LIMIT_MAX + 1, 1 << 64, 10 ** 30, 0, -1, 1.5, float("nan"), True, "1"])
def test_no_limit_outside_what_an_rlimit_holds(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        SandboxLimits(**{field: value})  # type: ignore[arg-type]
    SandboxLimits(**{field: LIMIT_MAX})  # type: ignore[arg-type]
