"""The daemon's control API: submit, ps, signals, budgets, logs, events, stopping."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from agentos.server.daemon import narrow_quota
from agentos import Quota

from .conftest import Served, start, stop

SLEEPER = """
async def init(sys, args):
    await sys.log("info", "up")
    while True:
        await sys.sleep(20)
"""


def wait_for(pred, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def states(s: Served) -> dict[int, str]:
    return {r["pid"]: r["state"] for r in s.request("GET", "/v1/ps")[1]["processes"]}


def test_submit_shows_in_ps_under_root_and_signals_control_it(served: Served, tmp_path: Path) -> None:
    st, got = served.request("POST", "/v1/submit", {"path": served.program(tmp_path, SLEEPER), "name": "sleeper"})
    assert st == 201 and got["name"] == "sleeper"
    pid = got["pid"]
    rows = {r["pid"]: r for r in served.request("GET", "/v1/ps")[1]["processes"]}
    assert rows[pid]["parent"] == served.d.root_pid and rows[pid]["name"] == "sleeper"
    assert set(rows[pid]) == {"pid", "name", "state", "parent", "priority", "centrality", "effective_priority",
                              "reductions", "mailbox", "wait", "used", "reserved", "remaining", "trust"}
    assert rows[pid]["centrality"] == 0.0 and rows[pid]["effective_priority"] == rows[pid]["priority"]
    assert rows[pid]["trust"] == 1.0
    assert served.request("POST", f"/v1/procs/{pid}/signal", {"signal": "stop"})[0] == 200
    wait_for(lambda: states(served).get(pid) == "suspended")
    assert served.request("POST", f"/v1/procs/{pid}/signal", {"signal": "CONT"})[0] == 200
    wait_for(lambda: states(served).get(pid) in ("waiting", "ready", "running"))
    assert served.request("POST", f"/v1/procs/{pid}/signal", {"signal": "KILL"})[0] == 200
    wait_for(lambda: pid not in states(served))
    logs = served.request("GET", f"/v1/procs/{pid}/logs")[1]["events"]
    assert [e["data"][1] for e in logs if e["kind"] == "log"] == ["up"]
    assert logs[-1]["kind"] == "exit" and "killed" in str(logs[-1]["data"])


SLOW_TOOL = """
import asyncio
from agentos.drivers.tools import ToolsDriver, tool

@tool()
async def slow_search(q: str) -> str:
    await asyncio.sleep(30)
    return q

def setup(k):
    k.register_driver(ToolsDriver([slow_search]))

GRANT = ["tools"]

async def init(sys, args):
    h = await sys.open("tools")
    await sys.read(h, {"tool": "slow_search", "args": {"q": "x"}})
"""


def test_ps_shows_the_budget_a_call_in_flight_holds_and_releases_it_on_kill(served: Served, tmp_path: Path) -> None:
    pid = served.request("POST", "/v1/submit", {"path": served.program(tmp_path, SLOW_TOOL, "slow"),
                                                "quota": {"tool_calls": 5}})[1]["pid"]

    def row() -> dict:  # type: ignore[type-arg]
        return {r["pid"]: r for r in served.request("GET", "/v1/ps")[1]["processes"]}.get(pid, {})

    got = wait_for(lambda: row() if row().get("wait") == "io" else None)
    # the call's bound (one tool call) is set aside: neither used nor left while it runs
    assert got["reserved"] == {"tokens": 0, "tool_calls": 1, "usd": 0.0}
    assert got["used"]["tool_calls"] == 0 and got["remaining"]["tool_calls"] == 4
    assert served.request("GET", f"/v1/procs/{pid}/budget")[1]["pid"] == pid
    assert served.request("POST", f"/v1/procs/{pid}/signal", {"signal": "KILL"})[0] == 200
    wait_for(lambda: pid not in states(served))


def test_bad_signals_and_pids_get_typed_refusals(served: Served, tmp_path: Path) -> None:
    pid = served.request("POST", "/v1/submit", {"path": served.program(tmp_path, SLEEPER)})[1]["pid"]
    assert served.request("POST", f"/v1/procs/{pid}/signal", {"signal": "SIGBOGUS"})[0] == 400
    assert served.request("POST", f"/v1/procs/{pid}/signal", {"signal": 9})[0] == 400
    assert served.request("POST", "/v1/procs/999/signal", {"signal": "KILL"})[0] == 404
    assert served.request("POST", "/v1/procs/-1/signal", {"signal": "KILL"})[0] == 400
    assert served.request("POST", "/v1/procs/nan/signal", {"signal": "KILL"})[0] == 400
    assert served.request("POST", f"/v1/procs/{served.d.root_pid}/signal", {"signal": "KILL"})[0] == 409
    assert served.request("GET", "/v1/procs/999/budget")[0] == 404
    assert served.request("POST", "/v1/submit", raw=b"[" * 10000)[0] == 400
    assert served.request("POST", "/v1/submit", raw=b"x" * 100_000)[0] == 413
    assert served.request("POST", "/v1/submit", {"path": "/nonexistent.py"})[0] == 400
    assert served.request("POST", "/v1/submit", {"path": "a\x00b"})[0] == 400
    assert served.request("GET", "/v1/events?after=-5")[0] == 400
    assert pid in states(served)  # the kernel kept running


def test_a_program_that_fails_to_import_gets_one_line_naming_file_and_line(served: Served, tmp_path: Path) -> None:
    path = served.program(tmp_path, "x = 1\nraise ValueError('broken on purpose')\n", "broken")
    st, got = served.request("POST", "/v1/submit", {"path": path})
    assert st == 400
    assert "\n" not in got["error"] and f"{path}:2:" in got["error"] and "broken on purpose" in got["error"]
    st, got = served.request("POST", "/v1/submit", {"path": served.program(tmp_path, "def init(:\n", "syntax")})
    assert st == 400 and "SyntaxError" in got["error"] and "\n" not in got["error"]


def test_submission_budget_only_narrows_the_daemons(tmp_path: Path) -> None:
    s = start(tmp_path, quota=Quota(tokens=100))
    try:
        prog = s.program(tmp_path, SLEEPER)
        pid = s.request("POST", "/v1/submit", {"path": prog, "quota": {"tokens": 10}})[1]["pid"]
        assert s.request("GET", f"/v1/procs/{pid}/budget")[1]["remaining"]["tokens"] == 10
        st, got = s.request("POST", "/v1/submit", {"path": prog, "quota": {"tokens": 10**9}})
        assert st == 400 and "tokens" in got["error"]  # more than the daemon has: refused, not widened
        for bad in ({"tokens": -1}, {"usd": float("nan")}, {"nope": 1}, {"tokens": "many"}):
            st, got = s.request("POST", "/v1/submit", {"path": prog, "quota": bad},
                                raw=json.dumps({"path": prog, "quota": bad}).encode())
            assert st == 400, bad
    finally:
        stop(s)


def test_narrow_quota_takes_the_tightest_field_and_refuses_non_finite() -> None:
    assert narrow_quota(Quota(tokens=5), {"tokens": 9, "usd": 1.0}) == Quota(tokens=5, usd=1.0)
    assert narrow_quota(None, None) is None
    for bad in ({"usd": float("inf")}, {"tokens": -3}, {"wat": 1}, "tokens"):
        try:
            narrow_quota(bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(bad)


def test_a_submissions_own_policy_narrows_the_daemons(served: Served, tmp_path: Path) -> None:
    prog = served.program(tmp_path, """
        from agentos import Decision

        class NoWeb:
            def check(self, pid, action, args, *, dry_run=False):
                if action.startswith("web."):
                    return Decision(False, "no-web", "this program may not browse", effect="raise")
                return Decision(True, "ok")

        POLICY = NoWeb()

        async def init(sys, args):
            d = await sys.check_policy("web.fetch", {})
            e = await sys.check_policy("calc.add", {})
            await sys.log("info", f"{d.allowed} {d.rule} {e.allowed}")
            while True:
                await sys.sleep(20)
    """)
    pid = served.request("POST", "/v1/submit", {"path": prog})[1]["pid"]
    logs = wait_for(lambda: [e for e in served.request("GET", f"/v1/procs/{pid}/logs")[1]["events"]
                             if e["kind"] == "log"])
    assert logs[0]["data"][1] == "False no-web True"


def test_events_follow_streams_new_events_as_ndjson_with_documented_fields(served: Served, tmp_path: Path) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", served.d.port, timeout=10)
    conn.request("GET", "/v1/events?follow=1&kind=log", headers={
        "Host": f"127.0.0.1:{served.d.port}", "Authorization": f"Bearer {served.d.token}"})
    r = conn.getresponse()
    assert r.status == 200
    served.request("POST", "/v1/submit", {"path": served.program(tmp_path, SLEEPER)})
    line = json.loads(r.readline())
    assert set(line) == {"seq", "time", "pid", "kind", "data"} and line["kind"] == "log" and line["data"][1] == "up"
    conn.close()


def test_token_is_private_and_a_readable_token_is_refused(tmp_path: Path) -> None:
    from agentos.server.auth import TokenError, load_or_create_token, read_token

    home = tmp_path / "h"
    tok = load_or_create_token(home)
    mode = stat.S_IMODE(os.stat(home / "serve.token").st_mode)
    assert mode == 0o600 and load_or_create_token(home) == tok and len(tok) >= 40
    os.chmod(home / "serve.token", 0o644)
    try:
        read_token(home)
    except TokenError as e:
        assert "readable by others" in str(e)
    else:
        raise AssertionError("a world-readable token was used")


def test_stop_ends_every_process_and_records_the_run_interrupted(tmp_path: Path) -> None:
    from agentos.store import effective_status, open_store

    store = open_store("memory:")
    s = start(tmp_path, store=store)
    pid = s.request("POST", "/v1/submit", {"path": s.program(tmp_path, SLEEPER)})[1]["pid"]
    assert s.request("POST", "/v1/stop", {})[0] == 200
    s.thread.join(20)
    assert not s.thread.is_alive()
    run = store.get_run(s.d.run_id)
    assert run.status == "interrupted" and effective_status(store, run.run_id, run.status) == "interrupted"
    assert pid not in {r["pid"] for r in s.d.kernel.ps()}
    assert not (tmp_path / "home" / "serve.json").exists()


def test_a_stop_the_kernel_caught_itself_is_the_daemons_and_recorded_interrupted(tmp_path: Path) -> None:
    """SIGINT/SIGTERM reach the kernel's own handler (request_stop) first; the daemon must
    still know it was stopped by the signal: its exit code and the run's status say so."""
    from agentos.store import open_store

    store = open_store("memory:")
    s = start(tmp_path, store=store)
    run_id = s.d.run_id
    s.loop.call_soon_threadsafe(s.d.kernel.request_stop, "SIGTERM")
    s.thread.join(20)
    assert not s.thread.is_alive()
    assert s.d.stopping == "SIGTERM" and s.d.interrupted
    assert store.get_run(run_id).status == "interrupted"


def test_a_stop_that_comes_before_root_exists_still_stops_the_daemon(tmp_path: Path) -> None:
    import asyncio

    from agentos.server.daemon import Daemon

    d = Daemon(home=tmp_path / "home", port=0, record=False)
    d.stop("SIGTERM")   # as a signal arriving between the state file and root's start

    async def serve() -> object:
        return await asyncio.wait_for(d.serve(signals=False), timeout=20)

    res = asyncio.run(serve())
    assert d.stopping == "SIGTERM" and res is not None
    assert not (tmp_path / "home" / "serve.json").exists()


def test_a_nan_or_an_infinity_in_a_request_body_is_a_400_before_the_kernel(served: Served, tmp_path: Path) -> None:
    path = served.program(tmp_path, SLEEPER)
    before = {r["pid"] for r in served.request("GET", "/v1/ps")[1]["processes"]}
    for bad in (float("nan"), float("inf"), [1, {"x": float("-inf")}]):
        st, got = served.request("POST", "/v1/submit", {"path": path, "args": bad})
        assert st == 400 and "not JSON" in got["error"], (bad, st, got)
    st, got = served.request("POST", "/v1/submit", {"path": path, "quota": {"usd": float("nan")}})
    assert st == 400, (st, got)
    assert {r["pid"] for r in served.request("GET", "/v1/ps")[1]["processes"]} == before


def test_submit_args_with_a_nan_or_past_a_floats_range_are_refused_by_agentctl(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from agentos.cli.main import app

    monkeypatch.setenv("AGENTOS_HOME", str(tmp_path / "home"))
    prog = tmp_path / "p.py"
    prog.write_text("async def init(sys, args):\n    return args\n")
    for bad in ("NaN", '{"a": 1e400}', "[-Infinity]"):
        r = CliRunner().invoke(app, ["submit", str(prog), "--args", bad])
        assert r.exit_code == 2 and "--args is not JSON" in r.stderr, (bad, r.output)
