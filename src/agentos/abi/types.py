"""Plain types shared by the kernel, drivers and userland. No logic lives here.

Invariants: every type in this module is cheap to build (it sits on the syscall hot
path) and has a canonical, deterministic encoding (see `agentos.kernel.events`).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, TypeAlias

ABI_VERSION = 2
"""Bumped whenever a snapshot's layout or a syscall's meaning changes."""

Pid: TypeAlias = int
"""A process id, unique within one kernel for its lifetime."""
CapRef: TypeAlias = int
"""A capability reference: meaningful only in its holder's table."""
KERNEL_PID: Pid = 0


class Right(enum.IntFlag):
    """What a capability lets its holder do. Caveats only ever narrow these."""

    NONE = 0
    SEND = 1
    MONITOR = 2
    OPEN = 4
    READ = 8
    WRITE = 16
    SPAWN = 32
    KILL = 64
    ALL = 127

    @classmethod
    def parse(cls, rights: "Right | str | int | list[str] | tuple[str, ...]") -> "Right":
        """Accept `Right`, an int, "send,kill" or ["send", "kill"]; reject unknown names."""
        if isinstance(rights, Right):
            return rights
        if isinstance(rights, int):
            if rights & ~int(cls.ALL):
                raise ValueError(f"unknown right bits in {rights:#x}")
            return cls(rights)
        names = rights.split(",") if isinstance(rights, str) else list(rights)
        out = cls.NONE
        for name in names:
            name = name.strip().upper()
            if not name:
                continue
            if name not in cls.__members__ or name in ("NONE", "ALL"):
                valid = ", ".join(m.lower() for m in cls.__members__ if m not in ("NONE", "ALL"))
                raise ValueError(f"unknown right {name.lower()!r}; valid rights: {valid}")
            out |= cls[name]
        return out


class ProcState(enum.Enum):
    READY = "ready"
    RUNNING = "running"
    WAITING = "waiting"
    SUSPENDED = "suspended"
    HIBERNATED = "hibernated"
    EXITED = "exited"


class WaitKind(enum.Enum):
    """What a `waiting` process waits for (shown by `ps`). Every wait goes through the
    kernel's one park/wake primitive; the kind names who will wake it."""

    RECV = "recv"              # a message (or its recv timeout)
    SEND = "send"              # room in a full mailbox
    SLEEP = "sleep"            # a timer
    WAITPID = "waitpid"        # another process's exit
    IO = "io"                  # a driver operation in flight
    APPROVAL = "approval"      # a person or callback answering an approval request
    AUDIT = "audit"            # the flight recorder making a write-ahead record durable


class Signal(enum.IntEnum):
    SIGSTOP = 19
    SIGCONT = 18
    SIGINT = 2
    SIGTERM = 15
    SIGKILL = 9
    SIGUSR1 = 10
    SIGPOLICY = 64
    SIGTRUST = 65

    @property
    def maskable(self) -> bool:
        return self in _MASKABLE


_MASKABLE = frozenset({Signal.SIGSTOP, Signal.SIGCONT, Signal.SIGINT, Signal.SIGTERM, Signal.SIGUSR1})


class ExitKind(enum.Enum):
    NORMAL = "normal"
    KILLED = "killed"
    QUOTA = "quota"
    FAULT = "fault"
    DEADLINE = "deadline"
    POLICY = "policy"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class ExitReason:
    """Why a process ended. `detail` names the killer pid, resource, error or rule."""

    kind: ExitKind
    detail: str | None = None

    @property
    def normal(self) -> bool:
        return self.kind is ExitKind.NORMAL

    def __str__(self) -> str:
        return self.kind.value if self.detail is None else f"{self.kind.value}({self.detail})"

    @staticmethod
    def parse(text: str) -> "ExitReason":
        if "(" in text and text.endswith(")"):
            kind, detail = text[:-1].split("(", 1)
            return ExitReason(ExitKind(kind), detail)
        return ExitReason(ExitKind(text))


NORMAL = ExitReason(ExitKind.NORMAL)
SHUTDOWN = ExitReason(ExitKind.SHUTDOWN)
DEADLINE = ExitReason(ExitKind.DEADLINE)


def killed(by: int | str) -> ExitReason:
    return ExitReason(ExitKind.KILLED, str(by))


def quota(resource: str) -> ExitReason:
    return ExitReason(ExitKind.QUOTA, resource)


def fault(error: BaseException | str) -> ExitReason:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return ExitReason(ExitKind.FAULT, text)


def policy(rule: str) -> ExitReason:
    return ExitReason(ExitKind.POLICY, rule)


POOLED_RESOURCES = ("tokens", "tool_calls", "usd", "children", "mem")
"""Resources carved from the parent at spawn and returned at exit."""
LIMIT_RESOURCES = ("wall_ms", "max_mailbox")
"""Per-process limits: a child's may not exceed its parent's, nothing is carved."""
RESOURCES = POOLED_RESOURCES + LIMIT_RESOURCES

USD_SCALE = 1_000_000_000
"""USD is kept in integer nano-dollars so that conservation holds exactly."""


@dataclass(frozen=True, slots=True)
class Quota:
    """A budget. `None` means "draw from the parent's account" (unlimited at the root)."""

    tokens: int | None = None
    tool_calls: int | None = None
    usd: float | None = None
    wall_ms: float | None = None
    children: int | None = None
    mem: int | None = None
    max_mailbox: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise ValueError(f"quota {f.name} must be a non-negative number or None, got {v!r}")

    def as_units(self) -> dict[str, int | float | None]:
        """The quota in the kernel's integer units (usd → nano-dollars)."""
        out: dict[str, int | float | None] = {}
        for name in RESOURCES:
            v = getattr(self, name)
            if name == "usd" and v is not None:
                v = round(v * USD_SCALE)
            out[name] = v
        return out


UNLIMITED = Quota()


@dataclass(slots=True)
class Cost:
    """What a driver operation consumed; the kernel charges it to the caller."""

    tokens: int = 0
    tool_calls: int = 0
    usd: float = 0.0
    reductions: int = 0

    def __bool__(self) -> bool:
        return bool(self.tokens or self.tool_calls or self.usd or self.reductions)


@dataclass(slots=True)
class Message:
    """A delivered message. `caps` are refs valid in the receiver's own table."""

    sender: Pid
    body: Any
    caps: tuple[CapRef, ...] = ()
    corr: Any = None
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Down:
    """Body of the message a monitor or linked parent receives when a process ends."""

    pid: Pid
    reason: ExitReason
    name: str = ""


@dataclass(frozen=True, slots=True)
class SignalMessage:
    """Body of the message a catchable signal (SIGTERM, SIGUSR1) arrives as."""

    signal: Signal
    sender: Pid


class SegmentKind(enum.Enum):
    TOKENS = "tokens"
    PINNED = "pinned"
    SUMMARY = "summary"


@dataclass(slots=True)
class Segment:
    """One page of a process's context window."""

    id: int
    body: Any
    tokens: int
    kind: SegmentKind = SegmentKind.TOKENS
    created: float = 0.0
    covers: tuple[int, ...] = field(default=())

    @property
    def pinned(self) -> bool:
        return self.kind is SegmentKind.PINNED


@dataclass(frozen=True, slots=True)
class Budget:
    """What `sys.budget()` returns: per resource, the limit and what is left."""

    limits: dict[str, int | float | None]
    remaining: dict[str, int | float | None]
    used: dict[str, int | float]
