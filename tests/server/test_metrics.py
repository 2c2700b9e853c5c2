"""/metrics: Prometheus exposition that Prometheus's own `promtool check metrics` accepts,
with closed label sets (no pid, no agent-chosen names)."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Served

CHATTY = """
async def init(sys, args):
    await sys.log("info", "x")
    d = await sys.check_policy("web.fetch", {})
    while True:
        await sys.sleep(20)
"""


def _metrics(served: Served) -> str:
    st, body = served.request("GET", "/metrics")
    assert st == 200
    return str(body)


def test_metrics_count_processes_by_state_without_per_pid_series(served: Served, tmp_path: Path) -> None:
    for i in range(3):
        served.request("POST", "/v1/submit", {"path": served.program(tmp_path, CHATTY, f"p{i}"), "name": f"evil\"{i}"})
    time.sleep(0.3)
    text = _metrics(served)
    assert 'agentos_processes{state="waiting"} 4.0' in text
    assert "agentos_syscalls_total{" in text and "agentos_processes_spawned_total 4.0" in text
    assert 'agentos_policy_decisions_total{decision="allow"}' in text
    assert "evil" not in text and "pid=" not in text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert line.startswith("agentos_"), line


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Debian package prometheus) is not installed: run scripts/setup-system.sh")
def test_promtool_accepts_the_exposition(served: Served, tmp_path: Path) -> None:
    served.request("POST", "/v1/submit", {"path": served.program(tmp_path, CHATTY)})
    time.sleep(0.2)
    r = subprocess.run(["promtool", "check", "metrics"], input=_metrics(served), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
