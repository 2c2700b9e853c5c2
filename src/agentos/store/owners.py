"""Which stored runs have a live owner: a run whose kernel died shows as `crashed`.

`record_run` claims its run for the operating-system process recording it: a key
`owner/<run_id>` holding the host, pid and that pid's start time (so a recycled pid is not
mistaken for the owner). `release` drops the claim when the run ends. `effective_status`
turns a `running` row whose owner is gone (no claim, another boot, a dead or recycled pid)
into `crashed`. Runs owned by another host are reported as stored: their owner cannot be
checked from here.
"""
from __future__ import annotations

import json
import os
import socket
from typing import Any

PREFIX = "owner/"


def _start_time(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot (Linux), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    try:
        return stat.rsplit(")", 1)[1].split()[19]
    except IndexError:
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def me() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid), "boot": _boot_id()}


def claim(store: Any, run_id: str) -> None:
    """Mark `run_id` as owned by this process."""
    store.kv_put([(PREFIX + run_id, json.dumps(me()).encode())])


def release(store: Any, run_id: str) -> None:
    store.kv_delete([PREFIX + run_id])


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """True/False when it can be told from this host; None for another host."""
    if owner.get("host") != socket.gethostname():
        return None
    if owner.get("boot") and _boot_id() and owner["boot"] != _boot_id():
        return False
    pid = owner.get("pid")
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = owner.get("start")
    return start is None or _start_time(pid) == start


def effective_status(store: Any, run_id: str, status: str) -> str:
    """`status`, except that a `running` run with no live owner is `crashed`."""
    if status != "running":
        return status
    raw = store.kv_get(PREFIX + run_id)
    if raw is None:
        return "crashed"
    try:
        owner = json.loads(raw)
    except ValueError:
        return "crashed"
    alive = owner_alive(owner) if isinstance(owner, dict) else False
    return "crashed" if alive is False else status


__all__ = ["claim", "effective_status", "owner_alive", "release"]
