"""Shared harness for attacks on the flight recorder: make a log, run `agentctl audit`."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from agentos.audit import FlightRecorder, make_anchor, make_record
from agentos.cli.main import app

KEY = b"A" * 32
ENV = {"AGENTOS_AUDIT_KEY": KEY.hex()}


def make_log(d: Path, n: int = 10, *, checkpoint_every: int = 1024, sign: bool = True) -> FlightRecorder:
    """A closed log of `n` decision records in `d` (signed at close when `sign`)."""
    rec = FlightRecorder.open(d, key=KEY, sign=sign, checkpoint_every=checkpoint_every)
    for i in range(n):
        rec.append(i % 4, "decision", {"action": "tools.pay", "args": {"amount": i}, "allowed": True})
        if i % 3 == 2:
            rec.commit()
    rec.close()
    return rec


@dataclass
class Cli:
    code: int
    out: str
    err: str
    exception: Any


def cli(*args: str, secret: bool = True) -> Cli:
    """`agentctl audit ARGS`; with secret=False, no HMAC key in the environment."""
    r = CliRunner(env=ENV if secret else {"AGENTOS_AUDIT_KEY": ""}).invoke(app, ["audit", *args])
    return Cli(r.exit_code, r.stdout, r.stderr, r.exception)


def cli_process(*args: str) -> Cli:
    """The real command in a child process: what an operator's terminal would show."""
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run([sys.executable, "-m", "agentos.cli.main", "audit", *args], capture_output=True,
                       text=True, env=env, timeout=120)
    return Cli(p.returncode, p.stdout, p.stderr, None)


def clean_failure(r: Cli) -> bool:
    """Exited by choice with one line on stderr: no traceback, no escaped exception."""
    escaped = r.exception is not None and not isinstance(r.exception, SystemExit)
    return not escaped and "Traceback" not in r.err + r.out and len(r.err.strip().splitlines()) == 1


def db(d: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(d / "audit.db"), isolation_level=None)


def anchor_db(d: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(d / "audit-anchor.db"), isolation_level=None)


def rewrite_with_key(d: Path, edit: Any) -> None:
    """What a holder of the HMAC key can do: edit records, re-MAC the chain and the anchor."""
    con = db(d)
    rows = con.execute("SELECT seq, time, wall, pid, kind, data FROM audit ORDER BY seq").fetchall()
    rows = edit(rows)
    con.execute("DELETE FROM audit")
    prev = "0" * 64
    last = None
    for seq, time, wall, pid, kind, data in rows:
        last = make_record(KEY, seq, time, wall, pid, kind, data, prev)
        con.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)", (last.seq, last.time, last.wall, last.pid,
                                                                  last.kind, last.data, last.prev, last.mac))
        prev = last.mac
    con.close()
    a = make_anchor(KEY, last.seq if last else 0, last.mac if last else "0" * 64)
    ac = anchor_db(d)
    ac.execute("INSERT OR REPLACE INTO anchor VALUES (1, ?, ?, ?)", (a.count, a.last_mac, a.mac))
    ac.close()
