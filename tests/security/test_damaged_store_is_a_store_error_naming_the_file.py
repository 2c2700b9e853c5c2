"""A damaged store (malformed pages), a truncated file or garbage in place of the store is
a `StoreError` naming the file, from the API and from every agentctl command that touches
the store: one line on stderr, exit code 3, no traceback."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentos import AllowAll, Kernel, Quota
from agentos.cli.main import EXIT_STORE, app
from agentos.store import StoreError, open_store, record_run

runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
PAGE = 4096


async def chatty(sys, args):
    for i in range(2000):
        await sys.log("info", "x" * 60 + str(i))


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    d = tmp_path_factory.mktemp("stores")
    good = d / "good.db"
    st = open_store(str(good))
    k = Kernel(deterministic=True, policy=AllowAll())
    rid = record_run(k, st, "chatty")
    k.run(chatty)
    st.close()
    for suffix in ("-wal", "-shm"):
        assert not os.path.exists(str(good) + suffix) or os.path.getsize(str(good) + suffix) >= 0
    data = bytearray(good.read_bytes())
    assert len(data) > 20 * PAGE
    damaged = bytearray(data)
    for off in range(3 * PAGE, len(damaged), PAGE):  # keep the header and schema, wreck the b-trees
        damaged[off + 100: off + 300] = b"\xff" * 200
    out = {}
    for name, body in (("damaged", bytes(damaged)), ("truncated", bytes(data[: len(data) // 3])),
                       ("garbage", os.urandom(20_000))):
        p = d / f"{name}.db"
        p.write_bytes(body)
        out[name] = (p, rid)
    return out


def _api_touch(path: Path, rid: str) -> None:
    st = open_store(str(path))
    try:
        st.runs()
        list(st.events(rid))
        st.journal(rid)
    finally:
        st.close()


@pytest.mark.parametrize("kind", ["damaged", "truncated", "garbage"])
def test_api_raises_store_error_naming_the_file(stores, kind):
    path, rid = stores[kind]
    with pytest.raises(StoreError) as info:
        _api_touch(path, rid)
    assert str(path) in str(info.value)


def _commands(path: Path, rid: str, prog: Path, snap: Path) -> list[list[str]]:
    s = ["--store", str(path)]
    return [
        ["runs", *s],
        ["events", rid, *s],
        ["events", rid, "--json", *s],
        ["replay", rid, *s],
        ["export", "prov", rid, *s],
        ["snapshot", "1", "--run", rid, *s],
        ["restore", str(snap), "--allow-all", *s],
    ]


@pytest.mark.parametrize("kind", ["damaged", "truncated", "garbage"])
def test_every_store_command_prints_one_line_and_exits_3(stores, kind, tmp_path):
    path, rid = stores[kind]
    prog = tmp_path / "prog.py"
    prog.write_text("async def init(sys, args):\n    return 1\n")
    snap = tmp_path / "snap.json"
    snap.write_text(_a_snapshot())
    for argv in _commands(path, rid, prog, snap):
        res = runner.invoke(app, argv)
        err = res.stderr if res.stderr_bytes is not None else res.output
        assert res.exit_code == EXIT_STORE, (argv, res.exit_code, res.output, res.exception)
        assert "Traceback" not in res.output and "Traceback" not in err, argv
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], (argv, err)


def test_run_recording_to_a_damaged_default_store_exits_3(stores, tmp_path, monkeypatch):
    path, _ = stores["garbage"]
    monkeypatch.setenv("AGENTOS_STORE", str(path))
    prog = tmp_path / "prog.py"
    prog.write_text("async def init(sys, args):\n    return 1\n")
    res = runner.invoke(app, ["run", str(prog), "--allow-all"])
    assert res.exit_code == EXIT_STORE, (res.output, res.exception)
    err = res.stderr
    assert "Traceback" not in res.output and str(path) in err and len(err.strip().splitlines()) == 1


def _a_snapshot() -> str:
    import json

    holder = {}

    async def idle(sys, args):
        await sys.recv()

    async def init(sys, args):
        pid, cap = await sys.spawn(idle)
        await sys.yield_()
        holder["snap"] = k.snapshot(pid)
        await sys.kill(cap)

    k = Kernel(deterministic=True, policy=AllowAll())
    k.run(init, quota=Quota(tokens=10))
    snap = holder["snap"]
    snap["image"] = {"name": "idle", "module": __name__, "qualname": "_idle_image"}
    return json.dumps(snap)


async def _idle_image(sys, args):
    await sys.recv()


def test_one_damaged_page_no_write_touches_is_refused_at_open(stores, tmp_path):
    """Damage far from where the next write lands (one interior page of the events table)
    is still found: the store is checked before it accepts a write, so a run recorded into
    it cannot succeed and bury the damage."""
    path, _ = stores["damaged"]
    good = path.with_name("good.db")
    data = bytearray(good.read_bytes())
    middle = (len(data) // PAGE // 2) * PAGE
    data[middle + 8: middle + 40] = b"\xa5" * 32
    one = tmp_path / "one-page.db"
    one.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        open_store(str(one))
    assert str(one) in str(info.value) and "damaged" in str(info.value)


@pytest.mark.parametrize("summary", ["[1, 2]", '"text"', "null", "7"])
def test_a_run_row_whose_summary_is_not_an_object_is_a_store_error(tmp_path, summary):
    """A forged run row (its cost summary replaced by a list or a scalar) cannot crash
    `agentctl runs` with a traceback: the row is damaged, exit 3, naming the file."""
    import sqlite3

    path = tmp_path / "forged.db"
    st = open_store(f"sqlite:///{path}")
    k = Kernel(deterministic=True, policy=AllowAll())
    record_run(k, st, "forged")

    async def init(sys, args):
        return 1

    k.run(init, quota=Quota(tokens=10))
    st.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET summary=?", (summary,))
    conn.commit()
    conn.close()
    for argv in (["runs", "--store", str(path)], ["runs", "--json", "--store", str(path)]):
        res = runner.invoke(app, argv)
        assert res.exit_code == EXIT_STORE, (argv, res.output)
        assert str(path) in res.stderr and len(res.stderr.strip().splitlines()) == 1
