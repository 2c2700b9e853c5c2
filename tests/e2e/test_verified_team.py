"""examples/verified_team.py end to end through agentctl: run twice, read the store, replay.

Each `agentctl` call is its own process against one AGENTOS_HOME, as a user runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "verified_team.py"


def agentctl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTOS_HOME": str(home), "COLUMNS": "200"}
    env.pop("AGENTOS_STORE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "agentos.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=home.parent)


def logs(store: Any, run_id: str, msg: str) -> list[dict[str, Any]]:
    return [e.data[2] for e in store.events(run_id, kind="log") if e.data[1] == msg]


def test_verified_team_runs_prunes_the_injection_verifies_remembers_and_replays(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for _ in range(2):
        out = agentctl(home, "run", str(EXAMPLE), "--no-narrate")
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    from agentos.store import open_store

    store = open_store(str(home / "store.db"))
    try:
        first, second = sorted((r for r in store.runs() if r.name == "verified_team"), key=lambda r: r.created_at)
        for run in (first, second):
            assert run.status == "finished"
            journal = list(store.journal(run.run_id))
            tool_calls = [e.action for e in journal if (e.action or "").startswith("tools.") and e.op == "read"]
            # the injected transfer never reached the tool device; the email never ran either
            assert tool_calls == ["tools.fetch_report", "tools.calculator"], tool_calls
            failures = [(f["kind"], f["subject"]) for f in logs(store, run.run_id, "failure")]
            assert ("unsafe_action", "wire_transfer") in failures and ("policy_refusal", "send_email") in failures
            assert any(k == "disagreement" for k, _ in failures)
            verdict = logs(store, run.run_id, "team.verdict")[0]
            assert verdict["support"] == 2 and verdict["outliers"] == ["judge_c"] and verdict["consensus"]
            summary = logs(store, run.run_id, "team.summary")[0]
            assert summary["answer"].startswith("Revenue grew by 8 units") and summary["verified"] is True
            # the planner paid for its model calls from its own carved budget; it called no tool
            charges = [e.data for e in store.events(run.run_id, kind="charge")]
            assert charges
        # the second run recalled the first from the episodic ledger
        memory = logs(store, second.run_id, "team.memory")[0]
        assert memory["runs"] == 1 and memory["experiences"] >= 2
        assert {"unsafe_action", "policy_refusal"} <= set(memory["failures"])
        assert not logs(store, first.run_id, "team.memory")
    finally:
        store.close()
    for run in (first, second):
        rep = agentctl(home, "replay", run.run_id)
        assert rep.returncode == 0 and "replay identical" in rep.stdout, rep.stdout + rep.stderr
