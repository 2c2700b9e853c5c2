"""Plain types shared by the kernel, drivers and userland. No logic lives here.

Invariants: every type in this module is cheap to build (it sits on the syscall hot
path) and has a canonical, deterministic encoding (see `agentos.kernel.events`).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields
from typing import Any, TypeAlias

from .errors import BadArgument, DriverError

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
        """Accept `Right`, an int, "send,kill" or ["send", "kill"]; reject unknown names.

        A subclass of int, str, list or tuple is read by its value through the builtin's
        own methods (its overridden comparisons or `__iter__` never run), and any other
        iterable is a TypeError (an endless one would never be read to its end)."""
        if type(rights) is Right:
            return rights
        if isinstance(rights, int) and not isinstance(rights, bool):
            bits = int.__index__(rights)
            if bits & ~int(cls.ALL) or bits < 0:
                raise ValueError(f"unknown right bits in {bits:#x}")
            return cls(bits)
        if isinstance(rights, str):
            names = str.split(str.__str__(rights), ",")
        elif isinstance(rights, (list, tuple)):
            items = list(list.__iter__(rights)) if isinstance(rights, list) else list(tuple.__iter__(rights))
            if not all(isinstance(n, str) for n in items):
                raise TypeError("rights named in a list must be strings")
            names = [str.__str__(n) for n in items]
        else:
            raise TypeError(f"rights are a Right, an int, \"send,kill\" or a list of names, "
                            f"got {type(rights).__name__}")
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
    NOCONNECTION = "noconnection"  # a remote process whose node was lost (Erlang's name)
    TRUST = "trust"                # the kernel's SIGTRUST: its trust score fell below the kill threshold


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


def noconnection(node: str) -> ExitReason:
    """The process lived on `node`, which this kernel lost (declared down or fenced)."""
    return ExitReason(ExitKind.NOCONNECTION, node)


def fault(error: BaseException | str) -> ExitReason:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return ExitReason(ExitKind.FAULT, text)


def policy(rule: str) -> ExitReason:
    return ExitReason(ExitKind.POLICY, rule)


def trust(detail: str) -> ExitReason:
    """SIGTRUST: the kernel ended the process because its trust score fell below the kill
    threshold; `detail` names the score and the evidence that took it there."""
    return ExitReason(ExitKind.TRUST, detail)


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
        # Checked at construction so that a budget can never hold NaN, an infinity, a
        # negative or a wrong type: "unlimited" is spelled None, never inf.
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                check_quota_field(f.name, v)

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

_INT_RESOURCES = frozenset({"tokens", "tool_calls", "children", "mem", "max_mailbox"})
_QUOTA_MAX = 1 << 62


def _num(v: Any) -> str:
    return repr(v) if isinstance(v, float) else (str(v) if v.bit_length() < 64 else f"an int of {v.bit_length()} bits")


class QuotaValueError(BadArgument, ValueError):
    """A quota value refused: a `BadArgument` (what a process sees) that is also a
    `ValueError` (what code building a Quota from data has always caught)."""


def check_quota_field(name: str, v: Any) -> None:
    """Refuse a quota value the accounts could not hold exactly (`BadArgument`, naming it).

    Counted resources (tokens, tool_calls, children, mem, max_mailbox) are non-negative
    ints; usd and wall_ms are non-negative finite numbers. An infinity is refused rather than
    read as "unlimited": None already means that, and one spelling keeps conservation exact.
    """
    t = type(v)
    if t is bool or not isinstance(v, (int, float)):
        raise QuotaValueError(f"quota {name} must be a number or None, got {type(v).__name__}")
    if t is not float and not -_QUOTA_MAX <= v <= _QUOTA_MAX:  # before isfinite: float(10**400) raises
        raise QuotaValueError(f"quota {name} is too large, got {_num(v)}")
    if not math.isfinite(v):
        raise QuotaValueError(f"quota {name} must be finite (None means unlimited), got {_num(v)}")
    if name in _INT_RESOURCES and not isinstance(v, int):
        raise QuotaValueError(f"quota {name} must be a whole number or None, got {_num(v)}")
    if v < 0:
        raise QuotaValueError(f"quota {name} must not be negative, got {_num(v)}")
    if (v * USD_SCALE if name == "usd" else v) > _QUOTA_MAX:
        raise QuotaValueError(f"quota {name} is too large, got {_num(v)}")


def check_quota(what: str, q: Any) -> "Quota | None":
    """A spawn's quota argument: None or a Quota whose fields all pass `check_quota_field`
    (re-checked: a frozen dataclass can still be changed with object.__setattr__)."""
    from .errors import BadArgument

    if q is None:
        return None
    if type(q) is not Quota:
        raise BadArgument(f"{what} must be a Quota or None, got {type(q).__name__}")
    for name in RESOURCES:
        v = getattr(q, name)
        if v is not None:
            check_quota_field(name, v)
    return q


@dataclass(slots=True)
class Cost:
    """What a driver operation consumed; the kernel charges it to the caller."""

    tokens: int = 0
    tool_calls: int = 0
    usd: float = 0.0
    reductions: int = 0

    def __post_init__(self) -> None:
        # a driver that builds a bad cost fails there, as a DriverError the kernel hands to
        # the caller; the kernel checks again where the cost enters (a Cost is mutable)
        problem = cost_units(self)
        if type(problem) is str:
            raise DriverError(problem)

    def __bool__(self) -> bool:
        return bool(self.tokens or self.tool_calls or self.usd or self.reductions)


COST_MAX = 1 << 53
"""No single operation reports more than this many tokens, calls or reductions."""


def cost_units(c: Any) -> tuple[int, int, int, int] | str:
    """A driver's reported cost as (tokens, tool_calls, usd in nano-dollars, reductions),
    or a message saying what is wrong with it. Counts are non-negative ints (a float, even
    2.0, is refused: a fractional token is a driver bug), usd a non-negative finite number.
    Never raises, whatever `c` is: the kernel calls it on a driver's reply."""
    if type(c) is not Cost:
        return f"cost must be a Cost, got {type(c).__name__}"
    tk, tc, usd, red = c.tokens, c.tool_calls, c.usd, c.reductions
    if type(tk) is int and type(tc) is int and type(red) is int and (type(usd) is float or type(usd) is int) \
            and 0 <= tk <= COST_MAX and 0 <= tc <= COST_MAX and 0 <= red <= COST_MAX and 0 <= usd <= COST_MAX:
        return (tk, tc, round(usd * USD_SCALE) if usd else 0, red)   # the common case
    out: list[int] = []
    for name in ("tokens", "tool_calls", "usd", "reductions"):
        v = getattr(c, name)
        t = type(v)
        if name == "usd":
            if t is not int and t is not float:
                return f"cost usd must be a number, got {t.__name__}"
            if not math.isfinite(v) or v < 0 or v * USD_SCALE > COST_MAX * USD_SCALE:
                return f"cost usd must be a non-negative finite number, got {_num(v)}"
            out.append(round(v * USD_SCALE))
            continue
        if t is not int:
            return f"cost {name} must be a non-negative int, got {t.__name__} {_num(v) if t is float else ''}".rstrip()
        if v < 0 or v > COST_MAX:
            return f"cost {name} must be between 0 and {COST_MAX}, got {_num(v)}"
        out.append(v)
    return (out[0], out[1], out[2], out[3])


@dataclass(slots=True)
class Message:
    """A delivered message. `caps` are refs valid in the receiver's own table."""

    sender: Pid
    body: Any
    caps: tuple[CapRef, ...] = ()
    corr: Any = None
    deadline: float | None = None
    sent: int = field(default=0, compare=False, repr=False)
    """The event seq of the `send` that made this message (0: from the kernel), so the
    `recv` event of its receipt names its cause (provenance follows it across processes)."""


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
