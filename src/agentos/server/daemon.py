"""`agentctl serve`: one long-lived kernel with a control API on 127.0.0.1.

The kernel, the HTTP server (uvicorn, started on a socket bound here) and the signal
handlers share one asyncio loop and one thread, so API handlers read and change the
kernel between its dispatch rounds, never during one. The kernel's init is `root`, a
process that only waits: programs submitted to the daemon run as its children, their
budgets carved from root's (so a submission can only narrow the daemon's budget) and their
actions checked by the daemon's policy and, when the program brings one, its own too.

Stopping (SIGINT, SIGTERM, `Daemon.stop`): root is sent SIGTERM and ends; the kernel then
shuts every process down, which cancels driver calls in flight, so no further side
effect starts; the run is marked `interrupted` in the store.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import signal as _signal
import socket
import time
from pathlib import Path
from typing import Any, Callable

from ..abi.types import Quota, Signal, SignalMessage
from .auth import STATE_FILE, load_or_create_token, write_state
from .hub import EventHub
from .program import ProgramError, load_program


async def root(sys: Any, args: Any) -> str:
    """The daemon's init: waits until the operator stops the daemon (SIGTERM)."""
    while True:
        msg = await sys.recv()
        body = getattr(msg, "body", None)
        if isinstance(body, SignalMessage) and body.signal is Signal.SIGTERM:
            return "stopped"


class _Setup:
    """What a submitted program's `setup(kernel)` sees: drivers it registers are added once
    (a second submission of the same program reuses them); everything else is the kernel's."""

    def __init__(self, kernel: Any) -> None:
        self._k = kernel

    def register_driver(self, driver: Any, name: str | None = None) -> None:
        if (name or driver.name) in self._k.drivers:
            return
        self._k.register_driver(driver, name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._k, name)


QUOTA_FIELDS = tuple(f.name for f in dataclasses.fields(Quota))


def narrow_quota(*quotas: Quota | dict[str, Any] | None) -> Quota | None:
    """The tightest of the given budgets, field by field (None: no limit of its own)."""
    out: dict[str, Any] = {}
    for q in quotas:
        if q is None:
            continue
        if isinstance(q, dict):
            unknown = sorted(set(q) - set(QUOTA_FIELDS))
            if unknown:
                raise ValueError(f"unknown quota field(s) {unknown}; known: {', '.join(QUOTA_FIELDS)}")
            q = Quota(**q)
        if not isinstance(q, Quota):
            raise ValueError(f"a quota must be an object of limits, got {type(q).__name__}")
        for name in QUOTA_FIELDS:
            v = getattr(q, name)
            if v is None:
                continue
            if v != v or v == float("inf"):
                raise ValueError(f"quota {name} must be finite, got {v!r}")
            out[name] = v if name not in out else min(out[name], v)
    return Quota(**out) if out else None


class Daemon:
    """A served kernel. `await daemon.serve()` runs until `stop()` (or a signal)."""

    def __init__(self, *, home: Path, port: int = 0, policy: Any = None, quota: Quota | None = None,
                 store: Any = None, record: bool = True, approval_timeout_ms: float = 300_000.0,
                 kernel: Any = None, narrate: Callable[[str], None] | None = None, audit: Any = None,
                 event_batch: int = 256, name: str = "serve", hibernation: Any = None) -> None:
        from .. import Kernel
        from ..policy.approvals import ApprovalChannel
        from .policy import SubmissionPolicy

        self.home = Path(home)
        self.port = port
        self.token = load_or_create_token(self.home)
        self.approvals = ApprovalChannel(timeout_ms=approval_timeout_ms)
        self.approvals.outside += 1  # the control API answers approvals
        self.policy = SubmissionPolicy(policy)
        self.kernel = kernel if kernel is not None else Kernel(policy=self.policy, approvals=self.approvals,
                                                               audit=audit, event_batch=event_batch,
                                                               hibernation=hibernation)
        from .metrics import Folder

        self.hub = EventHub()
        self.folder = Folder()
        self.hub.listeners.append(self.folder)
        self.kernel.add_observer(self.hub)
        self.policy.watch(self.kernel)
        self.quota = quota
        self.root_pid: int | None = None
        self.stopping: str | None = None
        self.interrupted = False  # stopped by a signal or the operator (not a finished job)
        self.started = time.time()
        self.run_id: str | None = None
        self.store = None
        self._own_store = False
        if record:
            from ..store import open_default_store, record_run

            self.store = store if store is not None else open_default_store()
            self._own_store = store is None
            self.run_id = record_run(self.kernel, self.store, name)
        self.narrate = narrate
        self.http: Any = None  # LoopServer
        self.result: Any = None
        self.extra: dict[str, Any] = {}
        self.cluster: Any = None  # agentos.net.Cluster: joined before the kernel boots, left after

    # -- operations the API calls ---------------------------------------------------------
    def submit(self, path: str | Path, *, args: Any = None, quota: dict[str, Any] | None = None,
               name: str | None = None, priority: int | None = None) -> dict[str, Any]:
        """Start the program at `path` under root; returns {"pid", "name"}."""
        if self.root_pid is None or self.stopping:
            raise RuntimeError("the daemon is not running")
        module = load_program(Path(path))
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(_Setup(self.kernel))
        q = narrow_quota(getattr(module, "QUOTA", None), quota)
        grant = list(getattr(module, "GRANT", []) or [])
        pname = name or getattr(module, "NAME", None) or Path(path).stem
        pid = self.kernel.start(module.init, parent=self.root_pid,
                                args=args if args is not None else getattr(module, "ARGS", None),
                                grant=grant, quota=q, name=pname, priority=priority)
        own = getattr(module, "POLICY", None)
        if own is not None:
            self.policy.narrow(pid, own)
        return {"pid": pid, "name": pname}

    def stop(self, why: str = "stopped", *, interrupted: bool = True) -> None:
        """End the daemon: root gets SIGTERM; the kernel then shuts every process down.
        `interrupted=False` is for a host whose job is done (the run is then `finished`)."""
        if self.stopping:
            return
        self.stopping = why
        self.interrupted = interrupted
        if self.root_pid is not None and self.root_pid in {r["pid"] for r in self.kernel.ps()}:
            self.kernel.signal(self.root_pid, Signal.SIGTERM)
        else:
            self.kernel.poke()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- running ----------------------------------------------------------------------------
    def bind(self) -> socket.socket:
        """Bind 127.0.0.1:port now (port 0: any free one), so the URL is known before serving."""
        if self.http is None:
            from .asgi import LoopServer

            self.http = LoopServer(None, "127.0.0.1", self.port)
        sock = self.http.bind()
        self.port = self.http.port
        return sock

    async def serve(self, *, signals: bool = True, on_ready: Callable[["Daemon"], None] | None = None) -> Any:
        """Serve until stopped; returns the kernel's RunResult for root."""
        from .app import make_app

        self.bind()
        assert self.http is not None
        self.http.app = make_app(self)
        # uvicorn's own serve() installs signal handlers; the daemon keeps its own, so it
        # runs the server's startup and shutdown around the kernel instead
        await self.http.start()
        loop = asyncio.get_running_loop()
        installed = []
        if signals:  # before the state file says the daemon is up: a stop from then on is ours
            for sig in (_signal.SIGINT, _signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, self.stop, _signal.Signals(sig).name)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):  # not the main thread
                    pass
        write_state(self.home, {"url": self.url, "pid": os.getpid(), "run": self.run_id,
                                "started": self.started})
        self.kernel.external_source(+1)  # the API can start and wake processes at any time

        def booted(kernel: Any, init: Any) -> None:
            self.root_pid = init.pid
            if self.stopping:  # stopped before root existed: root ends as soon as it starts
                kernel.signal(init.pid, Signal.SIGTERM)
            if on_ready is not None:
                on_ready(self)

        self.hub.on_boot = booted
        try:
            if self.cluster is not None:
                await self.cluster.join()
            self.result = await self.kernel.boot(root, name="root", quota=self.quota)
        finally:
            self.kernel.external_source(-1)
            # the kernel catches SIGINT/SIGTERM itself while it runs (request_stop); the
            # loop's handlers may run after it ended, or never: a stop the kernel was asked
            # for is the daemon's stop too (so the run is recorded as interrupted)
            if self.stopping is None and self.kernel.stop_requested:
                self.stopping, self.interrupted = self.kernel.stop_requested, True
            if self.cluster is not None:
                await self.cluster.leave()
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.close_http()
            self.finish()
        return self.result

    async def close_http(self) -> None:
        if self.http is not None:
            await self.http.close()  # streaming followers are cut, not awaited
            self.http = None
        try:
            (self.home / STATE_FILE).unlink()
        except FileNotFoundError:
            pass

    def finish(self) -> None:
        """Mark the stored run: interrupted when a signal or the operator stopped it."""
        if self.store is None or self.run_id is None:
            return
        from ..store.owners import release

        if self.stopping and self.interrupted:
            res = self.result
            self.store.update_run(self.run_id, status="interrupted", summary={
                "exit": str(res.reason) if res is not None else None, "stopped_by": self.stopping,
                "events": self.kernel.events.seq})
        release(self.store, self.run_id)
        self.store.flush()
        if self._own_store:
            self.store.close()


__all__ = ["Daemon", "ProgramError", "narrow_quota", "root"]
