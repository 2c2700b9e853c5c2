"""Start a throwaway PostgreSQL server on 127.0.0.1 from Debian's packages, for tests.

PostgreSQL refuses to run as root, so as root the data directory is handed to the
`postgres` user and the server runs under `runuser`. `start()` returns None and a reason
when no server binaries are installed.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


@dataclass
class PgServer:
    dsn: str
    datadir: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.datadir, ignore_errors=True)


def _bindir() -> str | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "postgres")):
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_db(dsn: str) -> str:
    """A new, empty database on the server; returns its DSN."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:10]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return dsn.rsplit("/", 1)[0] + "/" + name


def start() -> tuple[PgServer | None, str]:
    bindir = _bindir()
    if bindir is None:
        return None, "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (scripts/setup-system.sh installs them)"
    root = os.geteuid() == 0
    if root:
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root and there is no `postgres` user to run the server as"
    datadir = tempfile.mkdtemp(prefix="agentos-pg-")
    os.chmod(datadir, 0o700)
    if root:
        os.chown(datadir, pw.pw_uid, pw.pw_gid)
    pre = ["runuser", "-u", "postgres", "--"] if root else []
    r = subprocess.run(pre + [f"{bindir}/initdb", "-D", datadir, "-A", "trust", "-U", "agentos",
                              "--no-sync", "-E", "UTF8"], capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(datadir, ignore_errors=True)
        return None, f"initdb failed: {r.stderr.strip()[-400:]}"
    port = _free_port()
    proc = subprocess.Popen(pre + [f"{bindir}/postgres", "-D", datadir, "-h", "127.0.0.1", "-p", str(port),
                                   "-k", datadir, "-c", "fsync=off", "-c", "full_page_writes=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dsn = f"postgresql://agentos@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            shutil.rmtree(datadir, ignore_errors=True)
            return None, f"postgres exited at start: {err[-400:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
            import psycopg

            with psycopg.connect(dsn, connect_timeout=2):
                return PgServer(dsn, datadir, proc), ""
        except Exception:
            time.sleep(0.2)
    proc.kill()
    shutil.rmtree(datadir, ignore_errors=True)
    return None, "postgres did not accept connections within 30 s"
