"""`agentctl model` refuses to expose the model beyond loopback unless told to."""
from __future__ import annotations

from typer.testing import CliRunner

from agentos.cli.cmd_model import _is_loopback
from agentos.cli.main import app


def test_non_loopback_host_is_refused_before_anything_loads():
    r = CliRunner().invoke(app, ["model", "serve", "--host", "0.0.0.0", "--port", "1"])
    assert r.exit_code == 2
    assert "not a loopback address" in r.output


def test_loopback_detection():
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("10.0.0.1") and not _is_loopback("example.com")
