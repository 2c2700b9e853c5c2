"""agentctl audit: bad input is one line on stderr with exit 2, never a traceback."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from agentos.audit import FlightRecorder
from agentos.cli.main import app

KEY = b"Q" * 32
runner = CliRunner(env={"AGENTOS_AUDIT_KEY": KEY.hex(), "AGENTOS_AUDIT_SIGNING_KEY": ""})


def _one_line_exit_2(args: list[str]) -> str:
    r = runner.invoke(app, ["audit", *args])
    assert r.exit_code == 2, (args, r.output)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output, r.output
    return r.stderr


def test_missing_log_key_or_checkpoint(tmp_path: Path) -> None:
    assert "no audit log" in _one_line_exit_2(["verify", "--dir", str(tmp_path / "none")])
    assert "no audit log" in _one_line_exit_2(["checkpoint", "--out", "-", "--dir", str(tmp_path / "none")])
    assert "no signing key" in _one_line_exit_2(["public-key", "--dir", str(tmp_path)])
    rec = FlightRecorder.open(tmp_path, key=KEY, sign=False)
    rec.append(1, "x", 1)
    rec.close()
    assert "no signed checkpoint" in _one_line_exit_2(["checkpoint", "--out", "-", "--dir", str(tmp_path)])
    assert "no signed checkpoint" in _one_line_exit_2(["prove", "1", "--dir", str(tmp_path)])


def test_options_that_go_together(tmp_path: Path) -> None:
    assert "go together" in _one_line_exit_2(["verify", "--public-key", str(tmp_path / "k")])
    assert "go together" in _one_line_exit_2(["verify", "--checkpoint", str(tmp_path / "c")])
    assert "cannot read" in _one_line_exit_2(["verify", "--public-key", str(tmp_path / "k"),
                                                        "--checkpoint", str(tmp_path / "c"), "--dir", str(tmp_path)])


def test_checkpoint_to_stdout_and_verify_round_trip(tmp_path: Path) -> None:
    rec = FlightRecorder.open(tmp_path, key=KEY)
    for i in range(5):
        rec.append(1, "decision", {"i": i})
    rec.close()
    r = runner.invoke(app, ["audit", "checkpoint", "--out", "-", "--dir", str(tmp_path)])
    assert r.exit_code == 0 and '"size": 5' in r.stdout, r.output
    (tmp_path / "cp.json").write_text(r.stdout)
    pub = runner.invoke(app, ["audit", "public-key", "--dir", str(tmp_path)])
    assert pub.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    (tmp_path / "pub.pem").write_text(pub.stdout)
    v = runner.invoke(app, ["audit", "verify", "--dir", str(tmp_path), "--public-key", str(tmp_path / "pub.pem"),
                            "--checkpoint", str(tmp_path / "cp.json")])
    assert v.exit_code == 0 and v.stdout.startswith("ok: 5 record(s)"), v.output
