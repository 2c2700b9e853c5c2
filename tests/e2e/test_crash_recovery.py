"""Kill -9 a recording kernel at seeded random points; nothing acknowledged may be lost.

Each round starts `crash_workload.py` in a subprocess against a SQLite store, reads the
`ACK <seq>` lines its store prints after each commit, SIGKILLs it after a seeded random
number of them, then checks: the file opens cleanly (integrity_check), every acknowledged
event is there with no gaps, and `Kernel.replay_from` reproduces the committed prefix.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agentos import Kernel
from agentos.store.sqlite import SqliteStore

HERE = Path(__file__).resolve().parent
ROUNDS = int(os.environ.get("AGENTOS_CRASH_ROUNDS", "12"))


def _one_round(tmp: Path, seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    mode = ("fsync", "group", "off")[seed % 3]
    db = tmp / f"crash-{seed}.db"
    proc = subprocess.Popen([sys.executable, str(HERE / "crash_workload.py"), str(db), mode, str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    kill_after = rng.randint(1, 40)
    acked = 0
    seen = 0
    try:
        for line in proc.stdout:
            if line.startswith("ACK "):
                acked = max(acked, int(line.split()[1]))
                seen += 1
                if seen >= kill_after:
                    break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert acked > 0, "the child acknowledged nothing before the kill"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store = SqliteStore(db, "fsync")
    try:
        (run,) = store.runs()
        assert run.status == "running"  # it never finished: it was killed
        seqs = [e.seq for e in store.events(run.run_id)]
        assert seqs == list(range(1, len(seqs) + 1)), "the committed log has a gap"
        assert len(seqs) >= acked, f"acknowledged seq {acked} but only {len(seqs)} events survived"
        rep = Kernel.replay_from(store, run.run_id)
        assert rep.identical and not rep.complete and rep.matched == len(seqs), str(rep)
    finally:
        store.close()
    return acked, len(seqs)


@pytest.mark.parametrize("seed", range(ROUNDS))
def test_kill9_loses_nothing_acknowledged(tmp_path: Path, seed: int) -> None:
    _one_round(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(ROUNDS, ROUNDS + 40))
def test_kill9_many_more_rounds(tmp_path: Path, seed: int) -> None:
    _one_round(tmp_path, seed)
