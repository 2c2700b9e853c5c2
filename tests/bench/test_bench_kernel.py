"""The kernel benchmark reports what users get: timed with the collector on (off only as a
second column), and idle memory read from outside a fresh interpreter."""
from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
bk = pytest.importorskip("bench_kernel")


def test_the_headline_column_times_with_the_collector_on() -> None:
    seen: list[bool] = []
    bk._best(lambda: seen.append(gc.isenabled()), 1)
    bk._best(lambda: seen.append(gc.isenabled()), 1, False)
    assert seen == [True, False] and gc.isenabled()
    assert bk.GC_MODES[0] == "on"


def test_idle_memory_is_read_from_a_fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    pids: list[int] = []
    real = bk._status
    monkeypatch.setattr(bk, "_status", lambda pid: pids.append(pid) or real(pid))
    per, bare_per, peak = bk.idle_memory(2000)
    assert pids and all(p != __import__("os").getpid() for p in pids)
    assert 200 < per < 20_000 and 100 < bare_per < 20_000 and peak > 10 * 2**20
