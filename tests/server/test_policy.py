"""The daemon's policy wrapper (server/policy.py) hands the kernel what a policy file says
besides its rules: a daemon served with a file runs as `agentctl run` with it does."""
from __future__ import annotations

from pathlib import Path

from agentos.policy import PolicyEngine
from agentos.server.daemon import Daemon

FILE = """kernel: {version: "1.0", mode: strict}
policies: []
scheduling: {alpha: 2, every_ms: 500}
trust: {initial: 0.9, kill_below: 0.1, report_floor: 0.5}
"""


def test_a_served_policy_files_scheduling_and_trust_sections_reach_the_daemons_kernel(tmp_path: Path) -> None:
    pol = PolicyEngine.from_text(FILE, path="security.yaml")
    d = Daemon(home=tmp_path, port=0, policy=pol, record=False)
    k = d.kernel
    assert k.graph is not None and k.sched_config.alpha == 2.0 and k.sched_config.every_ms == 500.0
    got = k.trust.describe()
    assert (got["kill_below"], got["report_floor"]) == (0.1, 0.5)
    assert d.policy.ontology is pol.ontology


def test_a_daemon_without_a_policy_file_runs_without_the_scheduler(tmp_path: Path) -> None:
    d = Daemon(home=tmp_path, port=0, record=False)
    assert d.kernel.graph is None and d.policy.scheduling is None and d.policy.trust_settings is None
