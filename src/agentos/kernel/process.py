"""The process control block, and the images processes are started from.

A PCB is a slotted object the kernel owns; user code never sees it, only `Sys`. Fields
that most processes never use (memory, links) stay None until first needed, and the
rarest (cleanups, signal mask, cached self cap) share one slot, `cold`, whose object is
made on first need: this keeps an idle process small enough for a million of them.
"""
from __future__ import annotations

import inspect
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine

from ..abi.errors import shown
from ..abi.types import ExitReason, Message, ProcState, WaitKind

if TYPE_CHECKING:
    from .accounts import Account
    from .caps import Cap
    from .devices import Handle
    from .memory import MemorySpace
    from .trap import Sys

ProcessMain = Callable[..., Awaitable[Any]]


class _Park:
    """Returned by a syscall handler that has parked, requeued or ended the caller."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PARK"


PARK: Any = _Park()


@dataclass(frozen=True, slots=True)
class ProcessImage:
    """A named program: what remote spawn, restore and supervisor restarts start again."""

    name: str
    main: ProcessMain

    def __post_init__(self) -> None:
        if not inspect.iscoroutinefunction(self.main):
            raise TypeError(f"image {self.name!r}: main must be an async function taking (sys, args)")

    @staticmethod
    def of(image: "ProcessImage | ProcessMain") -> "ProcessImage":
        if isinstance(image, ProcessImage):
            return image
        if inspect.iscoroutinefunction(image):
            return ProcessImage(getattr(image, "__name__", "anonymous"), image)
        what = getattr(image, "__qualname__", None)
        what = what if isinstance(what, str) and len(what) < 200 else f"a {type(image).__name__}"
        raise TypeError(f"cannot run {what}: expected a ProcessImage or an async function (sys, args)")

    def entry(self) -> dict[str, Any]:
        """Where to find this image's code again (name, module, qualname, file): what runs
        and snapshots record, so that replay and restore can import it."""
        from .images import image_entry

        return image_entry(self)

    @staticmethod
    def from_entry(entry: dict[str, Any]) -> "ProcessImage":
        """Import the image an `entry()` describes; a `KernelError` says why it cannot be found."""
        from ..abi.errors import KernelError
        from .images import load_image

        if not isinstance(entry, dict):
            raise KernelError(f"an image entry is a dict (name, module, qualname, file), got "
                              f"{type(entry).__name__}")
        try:
            return load_image(entry)
        except KernelError:
            raise
        except Exception as e:
            raise KernelError(f"cannot find image {entry.get('name')!r} "
                              f"({entry.get('module')}.{entry.get('qualname')}): {type(e).__name__}: {e}") from None


ZERO = 0.0  # the one shared zero float: a default (start time, centrality) no process pays for


class Cold:
    """The PCB's rarely used fields, in one object made on first need (`Process.warm`).

    Nothing here is read per message or per dispatch: atexit cleanups (run at exit),
    the signal mask and the signals it holds back (read when a signal is delivered),
    and the cap `SelfCap` handed out (read by `SelfCap`)."""

    __slots__ = ("cleanups", "sigmask", "pending_signals", "self_ref")

    def __init__(self) -> None:
        self.cleanups: list[Callable[[ExitReason], Any]] | None = None
        self.sigmask = 0
        self.pending_signals: list[tuple[Any, int]] | None = None
        self.self_ref: int | None = None

    def empty(self) -> bool:
        """All fields at their defaults: the object can go."""
        return (self.cleanups is None and self.sigmask == 0 and self.pending_signals is None
                and self.self_ref is None)


READY = ProcState.READY
RUNNING = ProcState.RUNNING
WAITING = ProcState.WAITING
SUSPENDED = ProcState.SUSPENDED
EXITED = ProcState.EXITED
HIBERNATED = ProcState.HIBERNATED


class Process:
    __slots__ = (
        "pid", "name", "image", "coro", "state", "parent", "account", "caps", "devices",
        "handles", "mailbox", "recv_match", "blocked_senders", "blocked_on", "priority",
        "deadline", "wall_deadline", "max_mailbox", "resume_value", "resume_exc", "in_queue",
        "stopped", "handlers", "timer", "waiters", "watchers", "links",
        "names", "memory", "op_index", "io",
        "exit_reason", "result", "started", "reductions", "syscalls", "sys", "cold",
        "spawn_caps", "wait_kind", "abort", "wait_held", "args", "dl_timer", "wait_target",
        "last_msg", "level", "cent", "gnode",
    )

    def __init__(self, pid: int, name: str, image: ProcessImage, parent: "Process | None") -> None:
        self.pid = pid
        self.name = name
        self.image = image
        self.coro: Any = None  # the process body's coroutine
        self.state = READY
        self.parent = parent
        self.account: Account | None = None
        self.caps: dict[int, Cap] = {}
        self.devices: dict[str, int] | None = None       # device name → held cap ref
        self.handles: dict[int, Handle] | None = None        # open devices, by handle number
        self.mailbox: deque[Message] | None = None         # made on first queued message
        self.recv_match: Any = None                        # waiting in recv: matcher or True
        self.blocked_senders: deque[tuple[Process, Message]] | None = None
        self.blocked_on: Process | None = None             # parked sending to this full mailbox
        self.priority = 5                                   # base priority (0..9)
        self.level = 5                                      # run-queue level: the effective priority
        self.cent = ZERO                                    # centrality in the agent graph (sched/)
        self.gnode: int | None = None                       # its node there, while it has one
        self.deadline: float | None = None
        self.wall_deadline: float | None = None
        self.max_mailbox: int | None = None
        self.resume_value: Any = None
        self.resume_exc: BaseException | None = None
        self.in_queue = False
        self.stopped = False
        self.handlers: Any = None
        self.timer: list[Any] | None = None
        self.waiters: list[Process] | None = None          # parked in waitpid on me
        self.watchers: list[Process] | None = None         # monitors: get Down
        self.links: set[Process] | None = None
        self.names: set[str] | None = None
        self.memory: MemorySpace | None = None
        self.op_index = 0
        self.io: Any = None                                 # in-flight asyncio task(s)
        self.exit_reason: ExitReason | None = None
        self.result: Any = None
        self.started = ZERO
        self.reductions = 0
        self.syscalls = 0
        self.sys: Sys | None = None
        self.cold: Cold | None = None                       # rarely used fields, made by warm()
        self.spawn_caps: tuple[int, ...] = ()
        self.wait_kind: WaitKind | None = None              # set by Kernel.park, cleared by wake
        self.abort: Callable[[Process], bool] | None = None # withdraws the wait (SIGINT, teardown)
        self.wait_held = False                              # an outside party will wake it (counted)
        self.args: Any = None
        self.dl_timer: list[Any] | None = None              # deadline / wall_ms timer
        self.wait_target: Process | None = None             # parked in waitpid on this one
        self.last_msg: Any = None   # the Message recv last handed over: the kernel made it from
                                    # a checked body, so sending it on needs no second check

    def warm(self) -> Cold:
        """The process's `Cold` fields, made now if it has none yet."""
        c = self.cold
        if c is None:
            c = self.cold = Cold()
        return c

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.name} {self.state.value}>"
