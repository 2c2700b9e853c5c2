"""The live + replay conformance machinery catches what it claims to: a program whose
replay differs from its live run, in its syscalls, its result or what it leaves in the
test's variables; an unmarked real-clock kernel; a live_only mark without a reason."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


ROOT = Path(__file__).resolve().parents[2]

CONFTEST = '''
import pytest
pytest_plugins = ["tests.support.conformance"]

@pytest.fixture(autouse=True)
def _both(conformance):
    yield conformance
'''

TESTS = '''
import pytest
from agentos import AllowAll, Kernel
from tests.support.boot import boot

RUNS = [0]   # module state: not copied with the program, so it differs between live and replay


def test_same_in_both_modes():
    seen = []

    async def child(sys, args):
        seen.append(("child", await sys.now()))
        return args * 2

    async def init(sys, args):
        _, c = await sys.spawn(child, args=21)
        await sys.sleep(5)
        seen.append(("parent", await sys.now()))
        return str(await sys.waitpid(c))

    _, res = boot(init)
    assert res.value == "normal" and seen == [("child", 0.0), ("parent", 5.0)]


def test_outside_state_changes_syscalls():
    async def init(sys, args):
        RUNS[0] += 1
        for _ in range(RUNS[0]):
            await sys.now()

    boot(init)


def test_outside_state_changes_result():
    async def init(sys, args):
        RUNS[0] += 1
        return RUNS[0]

    boot(init)


def test_outside_state_changes_observation():
    seen = []

    async def init(sys, args):
        RUNS[0] += 1
        seen.append(RUNS[0])
        await sys.now()

    boot(init)


def test_real_clock_kernel_unmarked():
    async def init(sys, args):
        return await sys.pid()

    assert Kernel(policy=AllowAll()).run(init).value == 1


@pytest.mark.live_only(reason="it says why")
def test_real_clock_kernel_marked():
    async def init(sys, args):
        return await sys.pid()

    assert Kernel(policy=AllowAll()).run(init).value == 1


def test_no_kernel_at_all():
    assert 1 + 1 == 2
'''


def run_inner(tmp: Path, tests: str) -> tuple[int, str, dict[str, str]]:
    """Run `tests` under the conformance plugin in a pytest of its own; outcome per test id."""
    (tmp / "conftest.py").write_text(CONFTEST)
    (tmp / "test_inner.py").write_text(tests)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--import-mode=importlib",
                          "-o", "addopts=", "--rootdir", str(tmp), str(tmp)], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    rank = {"PASSED": 0, "SKIPPED": 1, "FAILED": 2, "ERROR": 3}
    outcomes: dict[str, str] = {}
    for m in re.finditer(r"^test_inner\.py::(\S+) (PASSED|FAILED|ERROR|SKIPPED)", text, re.M):
        name, word = m.group(1), m.group(2)
        if rank[word] >= rank.get(outcomes.get(name, "PASSED"), 0):
            outcomes[name] = word
    return out.returncode, text, outcomes


@pytest.fixture(scope="module")
def inner(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    _, text, outcomes = run_inner(tmp_path_factory.mktemp("inner"), TESTS)
    return text, outcomes


def test_identical_runs_pass_in_both_modes(inner: Any) -> None:
    outcomes = inner[1]
    assert outcomes["test_same_in_both_modes[live]"] == "PASSED", inner[0]
    assert outcomes["test_same_in_both_modes[replay]"] == "PASSED", inner[0]


@pytest.mark.parametrize("case", ["syscalls", "result", "observation"])
def test_a_replay_that_differs_from_the_live_run_fails_the_test_in_replay_mode(inner: Any, case: str) -> None:
    name = f"test_outside_state_changes_{case}"
    assert inner[1][f"{name}[live]"] == "PASSED", inner[0]
    assert inner[1][f"{name}[replay]"] == "FAILED", inner[0]


def test_an_unmarked_real_clock_kernel_is_an_error_saying_how_to_fix_it(inner: Any) -> None:
    assert inner[1]["test_real_clock_kernel_unmarked[replay]"] == "ERROR", inner[0]
    assert "cannot be replayed (it runs a real clock)" in inner[0] and "live_only(reason=" in inner[0]


def test_a_live_only_test_runs_once_and_is_listed_with_its_reason(inner: Any) -> None:
    assert inner[1]["test_real_clock_kernel_marked[live]"] == "PASSED", inner[0]
    assert "test_real_clock_kernel_marked[replay]" not in inner[1]
    assert "live only: test_inner.py::test_real_clock_kernel_marked: it says why" in inner[0]


def test_a_test_that_runs_no_kernel_is_not_replayed(inner: Any) -> None:
    assert inner[1]["test_no_kernel_at_all[live]"] == "PASSED", inner[0]
    assert inner[1]["test_no_kernel_at_all[replay]"] == "SKIPPED", inner[0]


def test_live_only_without_a_reason_is_refused(tmp_path: Path) -> None:
    code, text, _ = run_inner(tmp_path, "import pytest\n\n@pytest.mark.live_only\ndef test_x():\n    pass\n")
    assert code != 0 and "live_only needs a reason" in text
