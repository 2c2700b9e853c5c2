"""agentctl hibernate/wake through the control API of a served kernel."""
from __future__ import annotations

from pathlib import Path

from agentos.sched import HibernationConfig

from .conftest import start, stop
from .test_daemon import SLEEPER, states, wait_for

WAITER = """
async def init(sys, args):
    await sys.remember("context " * 512)
    msg = await sys.recv()
    await sys.log("info", f"got {msg.body}")
    await sys.recv()
"""


def test_hibernate_and_wake_a_served_process(tmp_path: Path) -> None:
    s = start(tmp_path, hibernation=HibernationConfig())
    try:
        pid = s.request("POST", "/v1/submit", {"path": s.program(tmp_path, WAITER)})[1]["pid"]
        wait_for(lambda: states(s).get(pid) == "waiting")
        st, got = s.request("POST", f"/v1/procs/{pid}/hibernate", {})
        assert (st, got["state"]) == (200, "hibernated")
        row = next(r for r in s.request("GET", "/v1/ps")[1]["processes"] if r["pid"] == pid)
        assert row["state"] == "hibernated" and row["used"] is None
        st, got = s.request("POST", f"/v1/procs/{pid}/wake", {})
        assert (st, got["state"]) == (200, "waiting")
        st, got = s.request("POST", f"/v1/procs/{s.d.root_pid}/hibernate", {})
        assert st == 409 and "root" in got["error"]
        assert s.request("POST", "/v1/procs/999/hibernate", {})[0] == 404
        assert s.request("POST", "/v1/procs/nan/wake", {})[0] == 400
        assert s.call(lambda: s.d.kernel.metrics()["hibernations"]) == 1
    finally:
        stop(s)


def test_hibernate_refused_when_the_daemon_has_it_off(tmp_path: Path) -> None:
    s = start(tmp_path)
    try:
        pid = s.request("POST", "/v1/submit", {"path": s.program(tmp_path, SLEEPER)})[1]["pid"]
        st, got = s.request("POST", f"/v1/procs/{pid}/hibernate", {})
        assert st == 409 and "hibernation is off" in got["error"]
    finally:
        stop(s)


def test_agentctl_hibernate_and_wake(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from agentos.cli.main import app

    s = start(tmp_path, hibernation=HibernationConfig())
    monkeypatch.setenv("AGENTOS_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    try:
        pid = s.request("POST", "/v1/submit", {"path": s.program(tmp_path, WAITER)})[1]["pid"]
        wait_for(lambda: states(s).get(pid) == "waiting")
        r = runner.invoke(app, ["hibernate", str(pid)])
        assert r.exit_code == 0 and r.stdout.strip() == f"pid {pid}: hibernated"
        r = runner.invoke(app, ["ps"])
        assert r.exit_code == 0 and "hibernated" in r.stdout
        r = runner.invoke(app, ["wake", str(pid), "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["state"] == "waiting"
        r = runner.invoke(app, ["hibernate", str(s.d.root_pid)])
        assert r.exit_code != 0 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "root" in r.stderr
    finally:
        stop(s)


def test_agentctl_hibernate_and_wake_of_a_bad_or_unknown_pid_is_one_typed_line(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from agentos.cli.main import app

    s = start(tmp_path, hibernation=HibernationConfig())
    monkeypatch.setenv("AGENTOS_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    try:
        pid = s.request("POST", "/v1/submit", {"path": s.program(tmp_path, WAITER)})[1]["pid"]
        wait_for(lambda: states(s).get(pid) == "waiting")
        cases = [(op, arg, code, needle) for op in ("hibernate", "wake") for arg, code, needle in (
            ("999", 1, "no live process 999"),             # unknown: the daemon refuses
            ("abc", 2, "Invalid value for 'pid'"),          # not a pid: bad usage
            ("2.5", 2, "Invalid value for 'pid'"),
            ("1" + "0" * 30, 1, "out of range"),
        )]
        for op, arg, code, needle in cases:
            r = runner.invoke(app, [op, arg])
            assert r.exit_code == code, (op, arg, r.exit_code, r.output)
            assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, (op, arg, r.stderr)
            assert "Traceback" not in r.output
        # a record gone bad in the store: the wake is refused with the typed error, in one line
        r = runner.invoke(app, ["hibernate", str(pid)])
        assert r.exit_code == 0

        def corrupt() -> None:
            s.d.kernel.hibernation.store.records[f"hib/{pid}"] = b"{corrupt"
        s.call(corrupt)
        r = runner.invoke(app, ["wake", str(pid)])
        assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r.output
        assert "HibernationRecordError" in r.stderr and "malformed" in r.stderr, r.stderr
        assert states(s).get(pid) == "hibernated"
        assert s.request("GET", "/v1/ps")[0] == 200   # the daemon carries on
    finally:
        stop(s)


def test_a_pid_in_a_path_is_ascii_decimal_digits_only(tmp_path: Path) -> None:
    s = start(tmp_path, hibernation=HibernationConfig())
    try:
        pid = s.request("POST", "/v1/submit", {"path": s.program(tmp_path, WAITER)})[1]["pid"]
        wait_for(lambda: states(s).get(pid) == "waiting")
        assert pid == 2
        for odd in ("%EF%BC%92", "+2", "2_0", "%202", "%D9%A2"):   # fullwidth 2, plus, underscore, space, Arabic 2
            st, got = s.request("POST", f"/v1/procs/{odd}/hibernate", {})
            assert st == 400 and "must be an integer" in got["error"], (odd, st, got)
        st, got = s.request("POST", "/v1/procs/" + "9" * 5000 + "/hibernate", {})
        assert st == 400 and "out of range" in got["error"] and len(got["error"]) < 100, got
        assert states(s).get(pid) == "waiting"   # none of them reached the process
    finally:
        stop(s)


LOOP_PROGRAM = """
from agentos.sched import message_loop


@message_loop(init=None)
async def tally(sys, state, msg):
    n = (state or 0) + 1
    if msg.caps:
        await sys.send(msg.caps[0], n)
    return n


def setup(kernel):
    kernel.register_image(tally)


async def init(sys, args):
    me = await sys.self_cap()
    _, cap = await sys.spawn(tally, name="tally")
    await sys.send(cap, "one", caps=[me])
    await sys.recv()
    await sys.recv()   # then waits: the operator exports and imports its loop
"""


def test_export_and_import_an_agent_through_the_daemon(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`agentctl export-agent PID` writes a message loop's agent file; `agentctl import-agent FILE` starts
    it again under the daemon's root. Bad files and non-loops are one line and exit 2."""
    import json

    from typer.testing import CliRunner

    from agentos.cli.main import app

    s = start(tmp_path, hibernation=HibernationConfig())
    monkeypatch.setenv("AGENTOS_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    try:
        s.request("POST", "/v1/submit", {"path": s.program(tmp_path, LOOP_PROGRAM)})
        wait_for(lambda: any(r["name"] == "tally" and r["state"] in ("waiting", "hibernated")
                             for r in s.request("GET", "/v1/ps")[1]["processes"]))
        pid = next(r["pid"] for r in s.request("GET", "/v1/ps")[1]["processes"] if r["name"] == "tally")
        out = tmp_path / "tally.agent"
        r = runner.invoke(app, ["export-agent", str(pid), "-o", str(out)])
        assert r.exit_code == 0, r.stderr
        doc = json.loads(out.read_text())
        assert doc["image"]["name"] == "tally" and doc["state"] == 1
        r = runner.invoke(app, ["import-agent", str(out), "--json"])
        assert r.exit_code == 0, r.stderr
        new = json.loads(r.stdout)["pid"]
        rows = {row["pid"]: row for row in s.request("GET", "/v1/ps")[1]["processes"]}
        assert new != pid and rows[new]["name"] == "tally" and rows[new]["parent"] == s.d.root_pid
        # a file that is not an agent file, one that is too deep, and a non-loop: one line each
        bad = tmp_path / "bad.agent"
        for text in ("not json", "[" * 10_000 + "]" * 10_000, json.dumps({**doc, "state": float("nan")})):
            bad.write_text(text)
            r = runner.invoke(app, ["import-agent", str(bad)])
            assert r.exit_code != 0 and "Traceback" not in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        st, got = s.request("POST", "/v1/import", {"file": out.read_text(), "parent": "root"})
        assert st == 400 and "parent must be a pid" in got["error"]
        r = runner.invoke(app, ["export-agent", str(s.d.root_pid)])
        assert r.exit_code != 0 and len(r.stderr.strip().splitlines()) == 1
        r = runner.invoke(app, ["import-agent", str(tmp_path / "missing.agent")])
        assert r.exit_code == 2 and "cannot read" in r.stderr
    finally:
        stop(s)
