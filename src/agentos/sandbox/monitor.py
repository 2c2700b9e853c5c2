"""The reference monitor: the kernel process that stands for a sandboxed agent.

Its body opens the `sandbox` device (which starts the child OS process), then loops: take
the child's next request off the pipe, check the syscall name against the allow-list,
decode the arguments into the kernel's types, and make the call *through its own `sys`*,
so the kernel's real dispatch applies every check it applies to any process: capability
and rights, policy (`authorize`), quota charges, journal and events. The answer (or the
typed error) goes back down the pipe.

Invariants: the child holds no capability of its own; every ref it names is resolved in
this process's table, so it can use exactly what this process was given. Nothing the
child sends is unpickled or evaluated: requests are JSON, names are checked against the
allow-list before `getattr`. When this process ends, for any reason, its device handle is
closed by the kernel's teardown, which SIGKILLs the child.
"""
from __future__ import annotations

import base64
import dataclasses
import enum
from typing import Any, Iterable

from ..abi.errors import SyscallError
from ..abi.types import ExitReason, Message, Quota, Signal, fault
from ..kernel.process import ProcessImage
from ..kernel.trap import Sys
from .driver import SandboxLimits

DEFAULT_ALLOW: frozenset[str] = frozenset({
    "pid", "self_cap", "now", "budget", "log", "send", "recv", "register", "unregister", "lookup",
    "cap_info", "open", "read", "read_all", "write", "close", "remember", "working_set", "recall",
    "forget", "pin", "check_policy", "vfs_read", "vfs_write", "vfs_list", "sleep", "yield_", "exit",
})
"""What a sandboxed agent may ask for by default. Not on it: spawn, signals, capability
derivation and revocation, monitor/waitpid, on_cleanup (a callable cannot cross a pipe),
sigmask, sched and the distribution calls; add them with `allow=` when an agent needs one."""

_SYS_METHODS = frozenset(n for n in dir(Sys) if not n.startswith("_") and callable(getattr(Sys, n)))


class SandboxViolation(SyscallError):
    """The sandboxed code asked for a syscall its allow-list does not hold."""


def sandbox(code: str, *, entry: str = "main", limits: SandboxLimits | None = None,
            allow: Iterable[str] = DEFAULT_ALLOW, name: str = "sandboxed", device: str = "sandbox",
            workdir: str | None = None, require_isolation: bool = True,
            namespaces: bool = True, seccomp: bool = True, fs_view: str = "minimal",
            pid_namespace: bool = True, preload: Iterable[str] = ()) -> ProcessImage:
    """An image whose process runs `code` (defining `async def main(sys, args)`) in a child
    OS process. Spawn it with the `sandbox` device among its caps, plus whatever it may use.

    `require_isolation`: refuse to run (fault) when the OS will not give the child a private
    network namespace and a read-only file system, instead of running it with less.
    `preload`: extra modules to import before the uid drop (see `_child.PRELOAD`).
    `fs_view`: "minimal" (default: only system directories and its own, read-only but its
    own) or "host" (the whole host file system, read-only but its own)."""
    allowed = frozenset(allow)
    unknown = sorted(allowed - _SYS_METHODS)
    if unknown:
        raise ValueError(f"sandbox: unknown syscalls in allow-list: {unknown}")
    if "on_cleanup" in allowed:
        raise ValueError("sandbox: on_cleanup takes a callable, which cannot cross the pipe")
    if fs_view not in ("minimal", "host"):
        raise ValueError(f"sandbox: fs_view is 'minimal' or 'host', got {fs_view!r}")
    if not isinstance(code, str):
        raise TypeError(f"sandbox: code must be Python source text, got {type(code).__name__}")
    compile(code, f"<sandboxed {name}>", "exec")  # a syntax error is the caller's, now
    params = {"code": code, "entry": entry, "limits": limits or SandboxLimits(), "workdir": workdir,
              "namespaces": namespaces, "seccomp": seccomp, "fs_view": fs_view,
              "pid_namespace": pid_namespace, "preload": tuple(preload)}

    async def monitor(sys: Sys, args: Any) -> Any:
        return await _monitor(sys, args, params, allowed, device, require_isolation)

    return ProcessImage(name, monitor)


async def _monitor(sys: Sys, args: Any, params: dict[str, Any], allowed: frozenset[str],
                   device: str, require_isolation: bool) -> Any:
    h = await sys.open(device, {**params, "args": to_wire(args), "caps": list(sys.caps)})
    hello = await sys.read(h, "next")
    if hello.get("t") != "hello":
        return await _dead(sys, hello, "before it started")
    no_net = hello.get("net") == "private" or hello.get("seccomp") == "on"
    no_filter = params.get("seccomp", True) and hello.get("seccomp") != "on"
    if require_isolation and (not no_net or hello.get("fs") == "shared" or no_filter):
        why = (hello.get("net_error") or hello.get("fs_error")
               or (f"seccomp {hello.get('seccomp')}" if no_filter else "namespaces were not requested"))
        await sys.exit(fault(f"sandbox: the OS gave the child no private network (namespace or seccomp), "
                             f"no read-only file system or no seccomp filter ({why}); refusing to run it "
                             f"(require_isolation=False runs it with file permissions and rlimits only)"))
    await sys.log("info", "sandbox started", child=hello.get("pid"), net=hello.get("net"),
                  fs=hello.get("fs"), uid=hello.get("uid"), seccomp=hello.get("seccomp"),
                  pids=hello.get("pids", "shared"))
    while True:
        msg = await sys.read(h, "next")
        t = msg.get("t")
        if t == "call":
            await sys.write(h, await _forward(sys, msg, allowed))
        elif t == "exit":
            await sys.close(h)  # SIGKILLs anything the child left behind
            if msg.get("ok"):
                return msg.get("value")
            await sys.exit(fault(f"sandboxed code raised {msg.get('error')}: {msg.get('msg')}"))
        else:
            return await _dead(sys, msg, "")


async def _dead(sys: Sys, msg: dict[str, Any], when: str) -> Any:
    status = msg.get("status", f"sent {msg.get('t')!r} out of turn")
    tail = (msg.get("stderr") or "").strip().splitlines()[-3:]
    detail = f"; stderr: {' | '.join(tail)}" if tail else ""
    await sys.exit(fault(f"sandboxed child {status}{(' ' + when) if when else ''}{detail}"))


async def _forward(sys: Sys, msg: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """Make one call for the child. A refusal goes back as {"ok": false, "call", "error",
    "msg"}; the device records every such reply in the flight recorder."""
    name = msg.get("name")
    if not isinstance(name, str) or name not in allowed:
        await sys.log("warning", "sandbox: syscall refused by allow-list", syscall=str(name)[:64])
        return {"ok": False, "call": str(name)[:64], "error": "SandboxViolation",
                "msg": f"syscall {str(name)[:64]!r} is not on this sandbox's allow-list"}
    args, kw = msg.get("args", []), msg.get("kw", {})
    if not isinstance(args, list) or not isinstance(kw, dict):
        return {"ok": False, "call": name, "error": "TypeError", "msg": "args must be a list and kw an object"}
    try:
        args, kw = _decode(name, args, kw)
        value = await getattr(sys, name)(*args, **kw)
    except (SyscallError, TypeError, ValueError, NotImplementedError, OverflowError) as e:
        return {"ok": False, "call": name, "error": type(e).__name__, "msg": str(e)[:2000]}
    try:
        return {"ok": True, "value": to_wire(value)}
    except Exception as e:  # too deep, or an object whose repr raises
        return {"ok": False, "call": name, "error": "ValueError",
                "msg": f"the result of {name} cannot cross the pipe: {e}"}


def _decode(name: str, args: list[Any], kw: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Turn wire values into the kernel's types where a call needs them."""
    if "match" in kw:
        raise TypeError("recv(match=...) takes a callable, which cannot cross the pipe")
    if name == "spawn" and isinstance(kw.get("quota"), dict):
        kw["quota"] = Quota(**kw["quota"])
    if name == "signal" and len(args) == 2:
        args[1] = Signal(args[1])
    if name == "exit" and args and isinstance(args[0], str):
        args[0] = ExitReason.parse(args[0])
    return [_unwire(a) for a in args], {k: _unwire(v) for k, v in kw.items()}


def _unwire(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"$bytes"}:
        return base64.b64decode(v["$bytes"])
    return v


WIRE_DEPTH = 200
"""Deepest value `to_wire` renders; a deeper one is a ValueError, never a RecursionError."""


def to_wire(v: Any, _depth: int = 0) -> Any:
    """A JSON-safe rendering of a syscall result (messages, segments, decisions, budgets)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if _depth >= WIRE_DEPTH:
        raise ValueError(f"a value nested more than {WIRE_DEPTH} deep")
    d = _depth + 1
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, ExitReason):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, Message):
        return {"sender": v.sender, "body": to_wire(v.body, d), "caps": list(v.caps),
                "corr": to_wire(v.corr, d), "deadline": v.deadline}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: to_wire(getattr(v, f.name), d) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): to_wire(x, d) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [to_wire(x, d) for x in v]
    return repr(v)


__all__ = ["DEFAULT_ALLOW", "SandboxViolation", "sandbox", "to_wire"]
