"""The only way user code reaches the kernel: one trap, and `Sys` built on it.

`trap(req)` yields a typed request to the kernel's trampoline, which handles it and
resumes the coroutine with the result (or throws the error into it). Each `Sys` method is
a real `async def` around the trap, so a call someone forgot to `await` is a coroutine
that never ran: Python warns "coroutine ... was never awaited", and nothing was sent.
`Sys` holds no kernel object: only the process's spawn capabilities (plain refs).
"""
from __future__ import annotations

import types
from typing import Any, Callable, Generator, Iterable, Sequence

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
    async def pid(self) -> Pid:
        return await trap(S.GetPid())

    async def self_cap(self) -> CapRef:
        return await trap(S.SelfCap())

    async def now(self) -> float:
        return await trap(S.Now())

    async def budget(self) -> Any:
        return await trap(S.GetBudget())

    async def log(self, level: str, msg: str, **fields: Any) -> None:
        return await trap(S.Log(level, msg, fields))

    # IPC
    async def send(self, cap: CapRef, body: Any, *, caps: Sequence[CapRef] = (), corr: Any = None,
                   deadline: float | None = None, durable: bool = False) -> None:
        if durable:
            return await trap(S.SendDurable(cap, body, tuple(caps) if caps else (), corr, deadline))
        return await trap(S.Send(cap, body, tuple(caps) if caps else (), corr, deadline))

    async def pipe(self, schema: Any, cap: CapRef | None = None) -> CapRef:
        """A typed pipe: a send capability (to yourself, or narrowing `cap`) whose messages
        the kernel checks against the JSON schema `schema` at send (`SchemaViolation`)."""
        return await trap(S.Pipe(schema, cap))

    async def recv(self, *, timeout: float | None = None,
                   match: Callable[[Message], bool] | None = None) -> Message | None:
        return await trap(S.Recv(timeout, match))

    # names
    async def register(self, name: str) -> None:
        return await trap(S.Register(name))

    async def unregister(self, name: str) -> None:
        return await trap(S.Unregister(name))

    async def lookup(self, name: str) -> CapRef | None:
        return await trap(S.Lookup(name))

    # processes
    async def spawn(self, image: Any, *, args: Any = None, caps: Iterable[Any] = (),
                    quota: Quota | None = None, link: bool = False, priority: int | None = None,
                    deadline: float | None = None, name: str | None = None) -> tuple[Pid, CapRef]:
        return await trap(S.Spawn(image, args, tuple(caps), quota, link, priority, deadline, name))

    async def exit(self, reason: ExitReason | str | None = None) -> None:
        return await trap(S.Exit(reason))

    async def monitor(self, cap: CapRef) -> None:
        return await trap(S.Monitor(cap))

    async def waitpid(self, cap: CapRef) -> ExitReason:
        return await trap(S.Waitpid(cap))

    async def on_cleanup(self, fn: Callable[[ExitReason], Any]) -> None:
        return await trap(S.OnCleanup(fn))

    # signals
    async def signal(self, cap: CapRef, sig: Signal) -> None:
        return await trap(S.SendSignal(cap, sig))

    async def kill(self, cap: CapRef) -> None:
        return await trap(S.SendSignal(cap, Signal.SIGKILL))

    async def suspend(self, cap: CapRef) -> None:
        return await trap(S.SendSignal(cap, Signal.SIGSTOP))

    async def resume(self, cap: CapRef) -> None:
        return await trap(S.SendSignal(cap, Signal.SIGCONT))

    async def term(self, cap: CapRef) -> None:
        return await trap(S.SendSignal(cap, Signal.SIGTERM))

    async def sigmask(self, *, block: Iterable[Signal] = (), unblock: Iterable[Signal] = ()) -> frozenset[Signal]:
        return await trap(S.Sigmask(tuple(block), tuple(unblock)))

    # capabilities
    async def derive(self, cap: CapRef, rights: Right | str | Iterable[str]) -> CapRef:
        return await trap(S.Derive(cap, rights))

    async def attenuate(self, cap: CapRef, *, rights: Right | str | Iterable[str] | None = None,
                        expires_in: float | None = None) -> CapRef:
        return await trap(S.Attenuate(cap, rights, expires_in))

    async def revoke(self, cap: CapRef) -> int:
        return await trap(S.Revoke(cap))

    async def cap_info(self, cap: CapRef) -> dict[str, Any]:
        return await trap(S.CapInfo(cap))

    # devices
    async def open(self, device: CapRef | str, params: Any = None) -> int:
        return await trap(S.Open(device, params))

    async def read(self, handle: int, req: Any) -> Any:
        return await trap(S.Read(handle, req))

    async def read_all(self, handle: int, reqs: Iterable[Any]) -> list[Any]:
        return await trap(S.ReadAll(handle, tuple(reqs)))

    async def write(self, handle: int, data: Any) -> Any:
        return await trap(S.Write(handle, data))

    async def close(self, handle: int) -> None:
        return await trap(S.Close(handle))

    # memory
    async def remember(self, body: Any, *, tokens: int | None = None, pin: bool = False) -> int:
        return await trap(S.Remember(body, tokens, pin))

    async def working_set(self) -> list[Segment]:
        return await trap(S.WorkingSet())

    async def recall(self, query: str, k: int = 5) -> list[Segment]:
        return await trap(S.Recall(query, k))

    async def forget(self, segment_id: int) -> bool:
        return await trap(S.Forget(segment_id))

    async def pin(self, segment_id: int, on: bool = True) -> bool:
        return await trap(S.Pin(segment_id, on))

    # policy
    async def check_policy(self, action: str, args: Any = None) -> Any:
        return await trap(S.CheckPolicy(action, args))

    # trust (the trust service)
    async def attest(self) -> dict[str, Any]:
        return await trap(S.Attest())

    async def verify(self, attestation: Any) -> dict[str, Any]:
        return await trap(S.Verify(attestation))

    async def report(self, cap: CapRef, evidence: str, weight: float = 1.0) -> float:
        return await trap(S.Report(cap, evidence, weight))

    async def trust(self, cap: CapRef | None = None) -> float:
        return await trap(S.TrustScore(cap))

    # VFS
    async def vfs_read(self, path: str) -> Any:
        return await trap(S.VfsRead(path))

    async def vfs_write(self, path: str, data: Any) -> None:
        return await trap(S.VfsWrite(path, data))

    async def vfs_list(self, path: str) -> list[str]:
        return await trap(S.VfsList(path))

    # scheduling
    async def sleep(self, ms: float) -> None:
        return await trap(S.Sleep(ms))

    async def yield_(self) -> None:
        return await trap(S.Yield())

    async def sched(self, *, priority: int | None = None, deadline: float | None = None) -> None:
        return await trap(S.Sched(priority, deadline))

    # distribution
    async def dial(self, node: str, pid: Pid) -> CapRef:
        return await trap(S.Dial(node, pid))

    async def spawn_remote(self, node: str, image_name: str, args: Any = None, *,
                           quota: Quota | None = None, link: bool = False) -> tuple[Pid, CapRef]:
        return await trap(S.SpawnRemote(node, image_name, args, quota, link))
