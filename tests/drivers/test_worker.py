"""The `worker` driver: CPU work in pool processes, really stopped when its caller dies."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from agentos import AllowAll, Decision, Kernel, ToolError
from agentos.abi.errors import DriverError, DriverTimeout
from agentos.drivers import ToolsDriver, tool
from agentos.drivers.worker import WorkerDriver
from tests.drivers import worker_jobs as jobs

FUNCS = [jobs.fib, jobs.whoami, jobs.touch_global, jobs.boom, jobs.die, jobs.spin, jobs.unpicklable_result]


@pytest.fixture(scope="module")
def pool() -> Any:
    d = WorkerDriver(FUNCS, max_workers=2)
    d.start()
    yield d
    d.shutdown()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/status").exists() and "zombie" in Path(f"/proc/{pid}/status").read_text()


@tool(effect="read_only")
async def wait_file(path: str, timeout: float = 20.0) -> str:
    """Poll for a file (real I/O, so it is a tool) and return its text."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if os.path.exists(path):
            return Path(path).read_text()
        await asyncio.sleep(0.01)
    raise TimeoutError(path)


def run(d: WorkerDriver, init: Any, *, policy: Any = None, tools: bool = False) -> Any:
    k = Kernel(deterministic=True, policy=policy or AllowAll())
    k.register_driver(d)
    grant = ["worker"]
    if tools:
        k.register_driver(ToolsDriver([wait_file]))
        grant.append("tools")
    return k.run(init, grant=grant)


def test_runs_in_another_os_process_with_its_own_heap(pool: WorkerDriver) -> None:
    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("worker")
        f = await sys.read(h, {"fn": "fib", "args": [20]})
        pid, touched = await sys.read(h, {"fn": "touch_global"})
        b = await sys.budget()
        return f, pid, touched, b.used["tool_calls"]

    res = run(pool, init)
    f, pid, touched, calls = res.value
    assert f == 6765 and calls == 2
    assert pid != os.getpid() and pid in pool.worker_pids()
    assert touched is True and jobs.STATE["touched"] is False   # the worker's heap, not ours


def test_read_all_runs_jobs_in_parallel_workers(pool: WorkerDriver) -> None:
    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("worker")
        return await sys.read_all(h, [{"fn": "spin", "args": [f"/tmp/agentos-w-{os.getpid()}-{i}", 0.3]}
                                      for i in range(2)])

    import time

    t0 = time.monotonic()
    res = run(pool, init)
    assert res.value == ["finished", "finished"]
    assert time.monotonic() - t0 < 0.55 + 1.0   # two 0.3 s jobs side by side, not 0.6 s in a row
    pids = {Path(f"/tmp/agentos-w-{os.getpid()}-{i}").read_text() for i in range(2)}
    assert len(pids) == 2


def test_job_errors_are_typed_and_the_worker_survives(pool: WorkerDriver) -> None:
    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("worker")
        before = await sys.read(h, {"fn": "whoami"})
        errs = []
        for req in ({"fn": "boom", "args": ["bad input"]}, {"fn": "nope"}, {"fn": "fib", "args": 3},
                    {"fn": "fib", "argz": []}, "fib", {"fn": "unpicklable_result"},
                    {"fn": "fib", "args": [lambda: 1]}):
            try:
                await sys.read(h, req)
            except DriverError as e:
                errs.append(f"{type(e).__name__}: {e}")
        return errs, before, await sys.read(h, {"fn": "whoami"})

    errs, before, after = run(pool, init).value
    assert "ValueError: bad input" in errs[0]
    assert "unknown function 'nope'" in errs[1]
    assert "'args' must be a list" in errs[2]
    assert "unknown job key" in errs[3]
    assert "a job is" in errs[4]
    assert "cannot be sent back" in errs[5]
    assert "cannot be sent to a worker" in errs[6]
    assert len(errs) == 7 and all(e.startswith("ToolError: ") for e in errs) and pool.crashed == 0
    assert before == after                               # the same worker answered before and after


def test_registration_refuses_what_cannot_reach_a_worker() -> None:
    with pytest.raises(ValueError, match="module level"):
        WorkerDriver({"anon": lambda: 1})
    with pytest.raises(ValueError):
        WorkerDriver(FUNCS, max_workers=0)


def test_kill_stops_the_worker_os_process(pool: WorkerDriver, tmp_path: Path) -> None:
    flag = str(tmp_path / "pid")

    async def cruncher(sys: Any, args: Any) -> Any:
        return await sys.read(await sys.open("worker"), {"fn": "spin", "args": [flag, 60.0]})

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(cruncher, caps=["worker"])
        tools = await sys.open("tools")
        wpid = int(await sys.read(tools, {"tool": "wait_file", "args": {"path": flag}}))
        await sys.kill(cap)
        reason = str(await sys.waitpid(cap))
        h = await sys.open("worker")
        return wpid, reason, await sys.read(h, {"fn": "whoami"}), await sys.read(h, {"fn": "fib", "args": [10]})

    import time

    t0 = time.monotonic()
    wpid, reason, new_pid, f = run(pool, init, tools=True).value
    assert reason.startswith("killed")
    assert wpid in pool.killed and _gone(wpid)          # the OS process is really gone
    assert new_pid != wpid and f == 55                  # the pool replaced it and still works
    assert time.monotonic() - t0 < 30                   # nowhere near the job's 60 s
    assert pool.gate.in_use == 0


def test_timeout_kills_the_worker() -> None:
    d = WorkerDriver([jobs.spin, jobs.whoami], max_workers=1, timeout=0.5)
    try:
        async def init(sys: Any, args: Any) -> Any:
            h = await sys.open("worker")
            first = await sys.read(h, {"fn": "whoami"})
            try:
                await sys.read(h, {"fn": "spin", "args": [f"/tmp/agentos-wt-{os.getpid()}", 30.0]})
            except DriverTimeout as e:
                return first, str(e), await sys.read(h, {"fn": "whoami"})

        first, msg, second = run(d, init).value
        assert "still running after 0.5s" in msg
        assert d.killed == [first] and _gone(first) and second != first
    finally:
        d.shutdown()


def test_a_crashing_worker_fails_only_its_job() -> None:
    d = WorkerDriver([jobs.die, jobs.fib], max_workers=1)
    try:
        async def init(sys: Any, args: Any) -> Any:
            h = await sys.open("worker")
            try:
                await sys.read(h, {"fn": "die", "args": [3]})
            except DriverError as e:
                return str(e), await sys.read(h, {"fn": "fib", "args": [12]})

        msg, f = run(d, init).value
        assert "worker process died (exit code 3)" in msg and f == 144 and d.crashed == 1
    finally:
        d.shutdown()


def test_action_names_the_function_for_policy(pool: WorkerDriver) -> None:
    seen: list[tuple[str, Any]] = []

    class NoSpin:
        def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
            seen.append((action, args))
            return Decision(action != "worker.spin", "no-spin", effect="raise")

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("worker")
        await sys.read(h, {"fn": "fib", "args": [5]})
        try:
            await sys.read(h, {"fn": "spin", "args": ["/nonexistent", 1]})
        except Exception as e:
            return type(e).__name__

    assert run(pool, init, policy=NoSpin()).value == "PolicyDenied"
    assert seen[0] == ("worker.fib", {"args": [5], "kwargs": {}})


def test_shutdown_stops_every_worker() -> None:
    d = WorkerDriver([jobs.fib], max_workers=2)
    d.start()
    pids = d.worker_pids()
    assert len(pids) == 2
    d.shutdown()
    assert all(_gone(p) for p in pids) and d.worker_pids() == []
