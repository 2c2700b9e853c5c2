"""The bare trampoline: the same process code, driven with no kernel work at all.

A benchmark's process body is written once against `Sys` and run twice: on the kernel,
and here. This loop dispatches the same typed requests by type, but a capability is just
the target's pid, a mailbox is a deque, a device read is a direct call, and there are no
capability tables, accounts, quotas, events, journal, policy or timers. The gap between
the two is exactly the kernel's work; the ratio is what we report.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

from agentos.abi import syscalls as S
from agentos import KeywordRecaller, Sys


class _Proc:
    __slots__ = ("pid", "coro", "box", "waiting", "done", "waiters", "mem")

    def __init__(self, pid: int, coro: Any) -> None:
        self.pid = pid
        self.coro = coro
        self.box: deque[Any] = deque()
        self.waiting = False
        self.done = False
        self.waiters: list[_Proc] = []
        self.mem: dict[int, Any] | None = None


class Bare:
    def __init__(self, drivers: dict[str, Any] | None = None, mem_limit: int | None = None) -> None:
        self.procs: dict[int, _Proc] = {}
        self.ready: deque[tuple[_Proc, Any]] = deque()
        self.next_pid = 1
        self.drivers = drivers or {}
        self.mem_limit = mem_limit
        self.recaller = KeywordRecaller()
        self.next_sid = 0
        self.handlers: dict[type, Callable[[_Proc, Any], Any]] = {
            S.Send: self._send, S.Recv: self._recv, S.Yield: self._yield, S.Spawn: self._spawn,
            S.SelfCap: lambda p, r: p.pid, S.GetPid: lambda p, r: p.pid, S.Open: lambda p, r: r.device,
            S.Read: self._read, S.Remember: self._remember, S.Recall: self._recall,
            S.Waitpid: self._waitpid,
        }

    def spawn(self, main: Any, args: Any = None, caps: tuple[Any, ...] = ()) -> int:
        pid = self.next_pid
        self.next_pid += 1
        p = _Proc(pid, None)
        p.coro = main(Sys(tuple(caps)), args)
        self.procs[pid] = p
        self.ready.append((p, None))
        return pid

    def run(self, main: Any, args: Any = None) -> None:
        self.spawn(main, args)
        ready = self.ready
        handlers = self.handlers
        PARK = self
        while ready:
            p, value = ready.popleft()
            coro = p.coro
            while True:
                try:
                    req = coro.send(value)
                except StopIteration:
                    p.done = True
                    for w in p.waiters:
                        ready.append((w, "normal"))
                    break
                value = handlers[type(req)](p, req)
                if value is PARK:
                    break

    def _send(self, p: _Proc, req: S.Send) -> Any:
        t = self.procs[req.cap]
        if t.waiting:
            t.waiting = False
            self.ready.append((t, req.body))
        else:
            t.box.append(req.body)
        return None

    def _recv(self, p: _Proc, req: S.Recv) -> Any:
        if p.box:
            return p.box.popleft()
        p.waiting = True
        return self

    def _yield(self, p: _Proc, req: Any) -> Any:
        self.ready.append((p, None))
        return self

    def _spawn(self, p: _Proc, req: S.Spawn) -> Any:
        caps = tuple(p.pid if c == "self" else c for c in req.caps)
        pid = self.spawn(req.image, req.args, caps)
        return pid, pid

    def _waitpid(self, p: _Proc, req: S.Waitpid) -> Any:
        t = self.procs[req.cap]
        if t.done:
            return "normal"
        t.waiters.append(p)
        return self

    def _read(self, p: _Proc, req: S.Read) -> Any:
        return self.drivers[req.handle].read(None, req.req).value

    def _remember(self, p: _Proc, req: S.Remember) -> Any:
        mem = p.mem
        if mem is None:
            mem = p.mem = {}
        self.next_sid += 1
        sid = self.next_sid
        mem[sid] = req.body
        self.recaller.add(sid, req.body)
        if self.mem_limit is not None and len(mem) > self.mem_limit:
            oldest = next(iter(mem))
            del mem[oldest]
        return sid

    def _recall(self, p: _Proc, req: S.Recall) -> Any:
        return self.recaller.search(req.query, req.k)
