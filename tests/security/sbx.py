"""Shared harness: run code in the process sandbox next to an ordinary process."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from agentos import AllowAll, Kernel
from agentos.sandbox import SandboxLimits, install, sandbox


@dataclass
class Outcome:
    reason: str          # the sandboxed kernel process's ExitReason
    sibling: str         # an ordinary process that ran beside it
    init: str
    child_pid: int | None
    uid: int | None
    kernel: Kernel
    value: Any
    result: dict[str, Any]   # fields of the last `sys.log(..., "result", **fields)` the code made


async def _sibling(sys, _):
    for _ in range(5):
        await sys.sleep(5)
    return "alive"


def run_sandboxed(code: str, *, limits: SandboxLimits | None = None, policy: Any = None,
                  allow: Any = None, args: Any = None, grant: tuple[str, ...] = (), audit: Any = None,
                  setup: Any = None, **kw: Any) -> Outcome:
    k = Kernel(policy=policy or AllowAll(), audit=audit)
    install(k)
    if setup is not None:
        setup(k)
    opts = {} if allow is None else {"allow": allow}
    img = sandbox(code, limits=limits, **opts, **kw)

    async def init(sys, _):
        _p, cap = await sys.spawn(img, args=args, caps=["sandbox", *grant])
        _q, sib = await sys.spawn(_sibling)
        r = await sys.waitpid(cap)
        s = await sys.waitpid(sib)
        return str(r), str(s)

    res = k.run(init, grant=["sandbox", *grant])
    started = [e for e in k.events.events(kind="log") if e.data[1] == "sandbox started"]
    info = started[0].data[2] if started else {}
    exits = [e for e in k.events.events(kind="exit") if e.pid == 2]
    reason, sibling = res.value if isinstance(res.value, tuple) else (None, None)
    results = [e.data[2] for e in k.events.events(kind="log") if e.data[1] == "result"]
    return Outcome(reason, sibling, str(res.reason), info.get("child"), info.get("uid"), k,
                   exits[0].data if exits else None, results[-1] if results else {})


def uid_processes(uid: int) -> list[int]:
    """Pids of live (non-zombie) processes running as `uid`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                st = f.read()
        except OSError:
            continue
        uids = [l for l in st.splitlines() if l.startswith("Uid:")]
        state = [l for l in st.splitlines() if l.startswith("State:")]
        if uids and int(uids[0].split()[1]) == uid and not (state and "Z" in state[0]):
            out.append(int(d))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except OSError:
        return False


ROOT = os.geteuid() == 0


def uid_processes_after(uid: int, timeout: float = 5.0) -> list[int]:
    """`uid_processes`, once SIGKILLed processes have had time to finish dying (a kill
    is delivered at once, but exit and a pid namespace's teardown take a moment)."""
    import time

    deadline = time.monotonic() + timeout
    left = uid_processes(uid)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = uid_processes(uid)
    return left
