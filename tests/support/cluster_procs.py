"""Cluster nodes as OS processes, for tests: start, command, read events, kill, stop.

Each `NodeProc` runs tests/support/cluster_node.py in its own interpreter with this
worktree's `src` first on the path; a thread reads its stdout lines into a queue so a
test waits for one with a timeout instead of blocking on a pipe.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]


class NodeProc:
    def __init__(self, url: str, node: str, *, lease: float = 1.0, sink: str | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.node = node
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)] +
                                            ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        argv = [sys.executable, "-m", "tests.support.cluster_node", "--url", url, "--node", node,
                "--lease", str(lease), *extra]
        if sink:
            argv += ["--sink", sink]
        self.proc = subprocess.Popen(argv, cwd=str(ROOT), env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"raw": line})

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        """The first line (seen before or arriving within `timeout`) for which `pred` holds."""
        for obj in self.seen:
            if pred(obj):
                self.seen.remove(obj)
                return obj
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"node {self.node}: nothing matching within {timeout}s; "
                                     f"saw {self.seen[-10:]}; stderr: {''.join(self.stderr)[-3000:]}")
            try:
                obj = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if pred(obj):
                return obj
            self.seen.append(obj)

    def ev(self, name: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        return self.wait(lambda o: o.get("ev") == name and all(o.get(k) == v for k, v in match.items()),
                         timeout)

    def cmd(self, op: str, timeout: float = 60.0, **kw: Any) -> dict[str, Any]:
        """Send one command and wait up to `timeout` seconds for its answer (the node's own
        waits, such as a call's or await_down's, are 30 s unless the command says)."""
        rid = next(self._ids)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "id": rid, **kw}) + "\n")
        self.proc.stdin.flush()
        got = self.wait(lambda o: o.get("re") == rid, timeout)
        return got

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
                self.proc.wait(5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
