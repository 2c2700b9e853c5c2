"""OTP-style supervisors, in userland: ordinary processes built on link, Down and kill.

A supervisor starts its children linked (so they die with it), waits for `Down`
messages, and restarts per strategy: `one_for_one` restarts the child that ended,
`one_for_all` kills and restarts every child, `rest_for_one` the ended child and those
started after it. Restart kinds: `permanent` (always), `transient` (only after an
abnormal exit), `temporary` (never). More than `intensity` restarts within `period_ms`
and the supervisor gives up: it exits with a fault, which kills its linked children, and
its own supervisor (if any) decides what happens next.

Starting children is authority: spawn a supervisor with the spawn capability passed on
(`sys.spawn(supervisor, args=spec, caps=["spawn", ...])`).

Control messages (sent to the supervisor, replies go to `msg.caps[0]`):
`{"op": "which_children"}` → `[(name, pid), ...]`; SIGTERM → orderly shutdown.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..abi.types import Down, ExitKind, ExitReason, Quota, Signal, SignalMessage
from ..kernel.trap import Sys

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS = ("permanent", "transient", "temporary")


@dataclass
class ChildSpec:
    name: str
    image: Any
    args: Any = None
    quota: Quota | None = None
    caps: tuple[Any, ...] = ()
    restart: str = "permanent"
    priority: int | None = None

    def __post_init__(self) -> None:
        if self.restart not in RESTARTS:
            raise ValueError(f"child {self.name!r}: restart must be one of {RESTARTS}, got {self.restart!r}")


@dataclass
class SupervisorSpec:
    children: list[ChildSpec] = field(default_factory=list)
    strategy: str = "one_for_one"
    intensity: int = 3
    period_ms: float = 5000.0
    name: str | None = None   # register the supervisor under this name

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.intensity < 0 or self.period_ms <= 0:
            raise ValueError("intensity must be >= 0 and period_ms > 0")
        names = [c.name for c in self.children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique, got {names}")


class _Running:
    __slots__ = ("spec", "pid", "cap")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.pid: int | None = None
        self.cap: int | None = None


async def supervisor(sys: Sys, spec: SupervisorSpec) -> str:
    if spec.name:
        await sys.register(spec.name)
    running = [_Running(c) for c in spec.children]
    restarts: deque[float] = deque()

    async def start(r: _Running) -> None:
        c = r.spec
        r.pid, r.cap = await sys.spawn(c.image, args=c.args, caps=c.caps, quota=c.quota, link=True,
                                       priority=c.priority, name=c.name)
        await sys.log("info", f"supervisor started {c.name}", child=c.name, pid=r.pid)

    async def stop(r: _Running) -> None:
        if r.cap is not None:
            await sys.kill(r.cap)
        r.pid = r.cap = None

    for r in running:
        await start(r)

    while True:
        msg = await sys.recv()
        assert msg is not None  # no timeout: recv only returns with a message
        body = msg.body
        if isinstance(body, SignalMessage) and body.signal is Signal.SIGTERM:
            for r in reversed(running):
                await stop(r)
            return "shutdown"
        if isinstance(body, dict) and body.get("op") == "which_children" and msg.caps:
            await sys.send(msg.caps[0], [(r.spec.name, r.pid) for r in running], corr=msg.corr)
            continue
        if not isinstance(body, Down):
            continue
        idx = next((i for i, r in enumerate(running) if r.pid == body.pid), None)
        if idx is None:
            continue  # a child we already replaced or stopped
        failed = running[idx]
        failed.pid = failed.cap = None
        if not _should_restart(failed.spec, body.reason):
            await sys.log("info", f"{failed.spec.name} ended ({body.reason}); not restarted",
                          child=failed.spec.name, reason=str(body.reason))
            continue
        now = await sys.now()
        restarts.append(now)
        while restarts and restarts[0] <= now - spec.period_ms:
            restarts.popleft()
        if len(restarts) > spec.intensity:
            await sys.log("error", "restart intensity exceeded; supervisor gives up",
                          restarts=len(restarts), period_ms=spec.period_ms)
            for r in reversed(running):
                await stop(r)
            await sys.exit(ExitReason(ExitKind.FAULT, f"restart intensity exceeded "
                                                      f"({spec.intensity} in {spec.period_ms} ms)"))
        await sys.log("warning", f"restarting {failed.spec.name} after {body.reason}",
                      child=failed.spec.name, reason=str(body.reason), strategy=spec.strategy)
        if spec.strategy == "one_for_one":
            group = [failed]
        elif spec.strategy == "one_for_all":
            group = running
        else:
            group = running[idx:]
        for r in reversed(group):
            if r is not failed:
                await stop(r)
        for r in group:
            await start(r)


def _should_restart(c: ChildSpec, reason: ExitReason) -> bool:
    if c.restart == "temporary":
        return False
    if c.restart == "transient":
        return not (reason.normal or reason.kind is ExitKind.SHUTDOWN)
    return True


async def which_children(sys: Sys, sup_cap: int, timeout: float | None = None) -> list[tuple[str, int | None]]:
    """Ask a supervisor for its children (name, pid)."""
    from .rpc import call

    return await call(sys, sup_cap, {"op": "which_children"}, timeout=timeout)
