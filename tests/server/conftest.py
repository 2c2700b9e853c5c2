"""A daemon on 127.0.0.1 in a thread of its own (kernel and HTTP share that thread's loop);
stopped and joined by the fixture."""
from __future__ import annotations

import asyncio
import http.client
import json
import textwrap
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from agentos import AllowAll  # noqa: E402
from agentos.server.daemon import Daemon  # noqa: E402
from agentos.store import open_store  # noqa: E402


class Served:
    def __init__(self, daemon: Daemon, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.d = daemon
        self.loop = loop
        self.thread = thread

    def call(self, fn: Any, *args: Any) -> Any:
        """Run fn(*args) on the daemon's thread and return its result."""
        fut = asyncio.run_coroutine_threadsafe(_wrap(fn, *args), self.loop)
        return fut.result(10)

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = "ok",
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        h = {"Host": f"127.0.0.1:{self.d.port}"}
        if token == "ok":
            h["Authorization"] = f"Bearer {self.d.token}"
        elif token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        ctype = r.getheader("content-type", "")
        return r.status, json.loads(payload) if ctype.startswith("application/json") and payload else payload.decode()

    def program(self, tmp: Path, source: str, name: str = "prog") -> str:
        p = tmp / f"{name}.py"
        p.write_text(textwrap.dedent(source))
        return str(p)


async def _wrap(fn: Any, *args: Any) -> Any:
    return fn(*args)


def start(tmp_path: Path, prepare: Any = None, **kw: Any) -> Served:
    """Serve a Daemon(**kw); `prepare(daemon)` runs on its thread before it serves (to make
    it a node of a cluster, say)."""
    kw.setdefault("policy", AllowAll())
    kw.setdefault("store", open_store("memory:"))
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        asyncio.set_event_loop(loop)
        d = Daemon(home=tmp_path / "home", **kw)
        box["d"] = d
        try:
            if prepare is not None:
                prepare(d)
            loop.run_until_complete(d.serve(signals=False, on_ready=lambda _: ready.set()))
        except BaseException as e:  # noqa: BLE001 - reported to the test
            box["error"] = e
            ready.set()
        finally:
            loop.close()

    t = threading.Thread(target=main, daemon=True)
    t.start()
    assert ready.wait(20), "daemon did not start"
    if "error" in box:
        raise box["error"]
    return Served(box["d"], box["loop"], t)


def stop(s: Served) -> None:
    if s.thread.is_alive():
        s.loop.call_soon_threadsafe(s.d.stop, "test")
        s.thread.join(20)
    assert not s.thread.is_alive(), "daemon did not stop"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path)
    try:
        yield s
    finally:
        stop(s)
