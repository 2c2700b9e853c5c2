"""The only way user code reaches the kernel: one trap, and `Sys` built on it.

`trap(req)` yields a typed request to the kernel's trampoline, which handles it and
resumes the coroutine with the result (or throws the error into it). Each `Sys` method
builds a request and returns the trap itself, so a syscall costs one generator frame.
`Sys` holds no kernel object: only the process's spawn capabilities (plain refs).
"""
from __future__ import annotations

import types
from typing import Any, Awaitable, Callable, Generator, Iterable, Sequence

from ..abi import syscalls as S
from ..abi.types import CapRef, ExitReason, Message, Pid, Quota, Right, Segment, Signal


@types.coroutine
def trap(req: Any) -> Generator[Any, Any, Any]:
    return (yield req)


class Sys:
    """A process's syscall interface. `caps` are the capabilities it was spawned with."""

    __slots__ = ("caps", "_seq")

    def __init__(self, caps: tuple[CapRef, ...] = ()) -> None:
        self.caps = caps
        self._seq = 0

    def next_corr(self) -> int:
        """A correlation id unique within this process (deterministic across runs)."""
        self._seq += 1
        return self._seq

    # identity
    def pid(self) -> Awaitable[Pid]:
        return trap(S.GetPid())

    def self_cap(self) -> Awaitable[CapRef]:
        return trap(S.SelfCap())

    def now(self) -> Awaitable[float]:
        return trap(S.Now())

    def budget(self) -> Awaitable[Any]:
        return trap(S.GetBudget())

    def log(self, level: str, msg: str, **fields: Any) -> Awaitable[None]:
        return trap(S.Log(level, msg, fields))

    # IPC
    def send(self, cap: CapRef, body: Any, *, caps: Sequence[CapRef] = (), corr: Any = None,
             deadline: float | None = None) -> Awaitable[None]:
        return trap(S.Send(cap, body, tuple(caps) if caps else (), corr, deadline))

    def recv(self, *, timeout: float | None = None,
             match: Callable[[Message], bool] | None = None) -> Awaitable[Message | None]:
        return trap(S.Recv(timeout, match))

    # names
    def register(self, name: str) -> Awaitable[None]:
        return trap(S.Register(name))

    def unregister(self, name: str) -> Awaitable[None]:
        return trap(S.Unregister(name))

    def lookup(self, name: str) -> Awaitable[CapRef | None]:
        return trap(S.Lookup(name))

    # processes
    def spawn(self, image: Any, *, args: Any = None, caps: Iterable[Any] = (),
              quota: Quota | None = None, link: bool = False, priority: int | None = None,
              deadline: float | None = None, name: str | None = None) -> Awaitable[tuple[Pid, CapRef]]:
        return trap(S.Spawn(image, args, tuple(caps), quota, link, priority, deadline, name))

    def exit(self, reason: ExitReason | str | None = None) -> Awaitable[None]:
        return trap(S.Exit(reason))

    def monitor(self, cap: CapRef) -> Awaitable[None]:
        return trap(S.Monitor(cap))

    def waitpid(self, cap: CapRef) -> Awaitable[ExitReason]:
        return trap(S.Waitpid(cap))

    def on_cleanup(self, fn: Callable[[ExitReason], Any]) -> Awaitable[None]:
        return trap(S.OnCleanup(fn))

    # signals
    def signal(self, cap: CapRef, sig: Signal) -> Awaitable[None]:
        return trap(S.SendSignal(cap, sig))

    def kill(self, cap: CapRef) -> Awaitable[None]:
        return trap(S.SendSignal(cap, Signal.SIGKILL))

    def suspend(self, cap: CapRef) -> Awaitable[None]:
        return trap(S.SendSignal(cap, Signal.SIGSTOP))

    def resume(self, cap: CapRef) -> Awaitable[None]:
        return trap(S.SendSignal(cap, Signal.SIGCONT))

    def term(self, cap: CapRef) -> Awaitable[None]:
        return trap(S.SendSignal(cap, Signal.SIGTERM))

    def sigmask(self, *, block: Iterable[Signal] = (), unblock: Iterable[Signal] = ()) -> Awaitable[frozenset[Signal]]:
        return trap(S.Sigmask(tuple(block), tuple(unblock)))

    # capabilities
    def derive(self, cap: CapRef, rights: Right | str | Iterable[str]) -> Awaitable[CapRef]:
        return trap(S.Derive(cap, rights))

    def attenuate(self, cap: CapRef, *, rights: Right | str | Iterable[str] | None = None,
                  expires_in: float | None = None) -> Awaitable[CapRef]:
        return trap(S.Attenuate(cap, rights, expires_in))

    def revoke(self, cap: CapRef) -> Awaitable[int]:
        return trap(S.Revoke(cap))

    def cap_info(self, cap: CapRef) -> Awaitable[dict[str, Any]]:
        return trap(S.CapInfo(cap))

    # devices
    def open(self, device: CapRef | str, params: Any = None) -> Awaitable[int]:
        return trap(S.Open(device, params))

    def read(self, handle: int, req: Any) -> Awaitable[Any]:
        return trap(S.Read(handle, req))

    def read_all(self, handle: int, reqs: Iterable[Any]) -> Awaitable[list[Any]]:
        return trap(S.ReadAll(handle, tuple(reqs)))

    def write(self, handle: int, data: Any) -> Awaitable[Any]:
        return trap(S.Write(handle, data))

    def close(self, handle: int) -> Awaitable[None]:
        return trap(S.Close(handle))

    # memory
    def remember(self, body: Any, *, tokens: int | None = None, pin: bool = False) -> Awaitable[int]:
        return trap(S.Remember(body, tokens, pin))

    def working_set(self) -> Awaitable[list[Segment]]:
        return trap(S.WorkingSet())

    def recall(self, query: str, k: int = 5) -> Awaitable[list[Segment]]:
        return trap(S.Recall(query, k))

    def forget(self, segment_id: int) -> Awaitable[bool]:
        return trap(S.Forget(segment_id))

    def pin(self, segment_id: int, on: bool = True) -> Awaitable[bool]:
        return trap(S.Pin(segment_id, on))

    # policy
    def check_policy(self, action: str, args: Any = None) -> Awaitable[Any]:
        return trap(S.CheckPolicy(action, args))

    # VFS
    def vfs_read(self, path: str) -> Awaitable[Any]:
        return trap(S.VfsRead(path))

    def vfs_write(self, path: str, data: Any) -> Awaitable[None]:
        return trap(S.VfsWrite(path, data))

    def vfs_list(self, path: str) -> Awaitable[list[str]]:
        return trap(S.VfsList(path))

    # scheduling
    def sleep(self, ms: float) -> Awaitable[None]:
        return trap(S.Sleep(ms))

    def yield_(self) -> Awaitable[None]:
        return trap(S.Yield())

    def sched(self, *, priority: int | None = None, deadline: float | None = None) -> Awaitable[None]:
        return trap(S.Sched(priority, deadline))

    # distribution
    def dial(self, node: str, pid: Pid) -> Awaitable[CapRef]:
        return trap(S.Dial(node, pid))

    def spawn_remote(self, node: str, image_name: str, args: Any = None) -> Awaitable[tuple[str, Pid]]:
        return trap(S.SpawnRemote(node, image_name, args))
