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
    want = ('agentos_processes{state="waiting"} 4.0', 'agentos_policy_decisions_total{decision="allow",effect="allow"}')
    end = time.monotonic() + 20             # the three reach their sleep loop when the machine lets them
    text = _metrics(served)
    while time.monotonic() < end and not all(w in text for w in want):
        time.sleep(0.05)
        text = _metrics(served)
    assert 'agentos_processes{state="waiting"} 4.0' in text
    assert "agentos_syscalls_total{" in text and "agentos_processes_spawned_total 4.0" in text
    assert 'agentos_policy_decisions_total{decision="allow",effect="allow"}' in text
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


WALL = """
async def init(sys, args):
    while True:
        await sys.sleep(20)
"""

ASKS = """
async def init(sys, args):
    await sys.check_policy("web.fetch", {})
    await sys.check_policy("web.fetch", {})
    while True:
        await sys.sleep(20)
"""


class _RaiseOnFetch:
    def check(self, pid, action, args, *, dry_run=False):  # type: ignore[no-untyped-def]
        from agentos import Decision

        if action == "web.fetch":
            return Decision(False, "no-web", "no web here", effect="raise")
        return Decision(True, "ok")


def test_a_wall_clock_budget_kill_counts_as_a_quota_kill(served: Served, tmp_path: Path) -> None:
    st, got = served.request("POST", "/v1/submit", {"path": served.program(tmp_path, WALL, "slow"),
                                                    "quota": {"wall_ms": 100}})
    assert st == 201, got
    end = time.monotonic() + 10
    while time.monotonic() < end and 'agentos_quota_kills_total{resource="wall_ms"} 1.0' not in _metrics(served):
        time.sleep(0.05)
    assert 'agentos_quota_kills_total{resource="wall_ms"} 1.0' in _metrics(served)


def test_policy_decisions_are_counted_by_effect(tmp_path: Path) -> None:
    from .conftest import start, stop

    s = start(tmp_path, policy=_RaiseOnFetch())
    try:
        s.request("POST", "/v1/submit", {"path": s.program(tmp_path, ASKS, "asker")})
        end = time.monotonic() + 10
        want = 'agentos_policy_decisions_total{decision="deny",effect="raise"} 2.0'
        while time.monotonic() < end and want not in _metrics(s):
            time.sleep(0.05)
        assert want in _metrics(s)
    finally:
        stop(s)


FAILING = """
async def init(sys, args):
    await sys.log("warning", "failure", kind="disagreement", severity="warning", source="cmvk",
                  detector="rule:consensus", detail="two of three differ", subject="q", evidence={})
    await sys.log("info", "failure", kind="evil\\"kind{pid=1}")
    while True:
        await sys.sleep(20)
"""


def test_failures_are_counted_by_kind_with_a_closed_label_set(served: Served, tmp_path: Path) -> None:
    served.request("POST", "/v1/submit", {"path": served.program(tmp_path, FAILING, "failing")})
    end = time.monotonic() + 20
    text = _metrics(served)
    while time.monotonic() < end and 'agentos_failures_total{kind="disagreement"}' not in text:
        time.sleep(0.05)
        text = _metrics(served)
    assert 'agentos_failures_total{kind="disagreement"} 1.0' in text
    assert 'agentos_failures_total{kind="other"} 1.0' in text
    assert "evil" not in text and "pid=" not in text
