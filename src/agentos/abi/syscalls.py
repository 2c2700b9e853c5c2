"""The syscall table: one typed request class per call, in one registry.

A process yields one of these to the kernel's trampoline; the kernel finds its handler
by type. Requests are slotted dataclasses treated as immutable (the kernel never writes
to one). They are not `frozen=True` because a frozen dataclass's `__init__` costs about
four times as much, and a request is built on every syscall.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from .types import CapRef, Pid, Quota, Signal


@dataclass(frozen=True, slots=True)
class SyscallSpec:
    name: str
    group: str
    reductions: int
    request: type
    doc: str
    owner: str = "kernel"
    """The subsystem that provides it; a kernel without that subsystem answers the call
    with `NotSupported` naming this."""


SYSCALLS: dict[type, SyscallSpec] = {}


def syscall(group: str, reductions: int = 1, owner: str = "kernel") -> Callable[[type], type]:
    def register(cls: type) -> type:
        name = getattr(cls, "syscall_name", cls.__name__.lower())
        SYSCALLS[cls] = SyscallSpec(name, group, reductions, cls, (cls.__doc__ or "").strip(), owner)
        return cls

    return register


# -- identity -------------------------------------------------------------------------

@syscall("identity")
@dataclass(slots=True)
class GetPid:
    """Your own pid."""
    syscall_name: ClassVar[str] = "pid"


@syscall("identity")
@dataclass(slots=True)
class SelfCap:
    """A send+monitor capability to yourself, to hand to others for replies."""
    syscall_name: ClassVar[str] = "self_cap"


@syscall("identity")
@dataclass(slots=True)
class Now:
    """The kernel clock, in milliseconds since boot."""


@syscall("identity")
@dataclass(slots=True)
class GetBudget:
    """Your account: limits, remaining and used per resource."""
    syscall_name: ClassVar[str] = "budget"


@syscall("identity")
@dataclass(slots=True)
class Log:
    """Append a structured log event to the event stream."""
    level: str
    msg: str
    fields: dict[str, Any]


# -- IPC ----------------------------------------------------------------------------

@syscall("ipc")
@dataclass(slots=True)
class Send:
    """Send `body` through a capability with the send right; parks while the mailbox is full."""
    cap: CapRef
    body: Any
    caps: tuple[CapRef, ...] = ()
    corr: Any = None
    deadline: float | None = None


@syscall("ipc", reductions=5)
@dataclass(slots=True)
class Pipe:
    """A typed pipe: a send-only capability whose every message the kernel checks against
    `schema` (a JSON Schema subset) at send. To yourself, or narrowing `cap` (a process
    capability with the send right you hold); derived copies keep the schema."""
    schema: Any
    cap: CapRef | None = None


@syscall("ipc")
@dataclass(slots=True)
class SendDurable(Send):
    """`send(..., durable=True)`: to a process on another node, through the cluster's durable
    stream, delivered once even across a restart of the receiving kernel; locally, a send."""
    syscall_name: ClassVar[str] = "send_durable"


@syscall("ipc")
@dataclass(slots=True)
class Recv:
    """Take the first message (matching `match`, if given); waits up to `timeout` ms, then None."""
    timeout: float | None = None
    match: Callable[[Any], bool] | None = None


# -- names --------------------------------------------------------------------------

@syscall("names")
@dataclass(slots=True)
class Register:
    """Bind a name to yourself until you exit or unregister."""
    name: str


@syscall("names")
@dataclass(slots=True)
class Unregister:
    """Drop a name you hold."""
    name: str


@syscall("names")
@dataclass(slots=True)
class Lookup:
    """A send-only capability to the named process, or None."""
    name: str


# -- processes ----------------------------------------------------------------------

@syscall("processes", reductions=10)
@dataclass(slots=True)
class Spawn:
    """Start a child; its quota is carved from yours. Returns (pid, cap with send+monitor+kill)."""
    image: Any
    args: Any = None
    caps: tuple[Any, ...] = ()
    quota: Quota | None = None
    link: bool = False
    priority: int | None = None
    deadline: float | None = None
    name: str | None = None


@syscall("processes")
@dataclass(slots=True)
class Exit:
    """End yourself with a reason (normal by default)."""
    reason: Any = None


@syscall("processes")
@dataclass(slots=True)
class Monitor:
    """Receive a Down message when the process behind `cap` ends."""
    cap: CapRef


@syscall("processes")
@dataclass(slots=True)
class Waitpid:
    """Wait for the process behind `cap` to end; returns its ExitReason."""
    cap: CapRef


@syscall("processes")
@dataclass(slots=True)
class OnCleanup:
    """Run `fn(reason)` in the kernel when you end, whatever the reason."""
    fn: Callable[[Any], None]
    syscall_name: ClassVar[str] = "on_cleanup"


# -- signals ------------------------------------------------------------------------

@syscall("signals")
@dataclass(slots=True)
class SendSignal:
    """Deliver a signal; needs the kill right on the target capability."""
    cap: CapRef
    signal: Signal
    syscall_name: ClassVar[str] = "signal"


@syscall("signals")
@dataclass(slots=True)
class Sigmask:
    """Block or unblock maskable signals; returns the resulting mask."""
    block: tuple[Signal, ...] = ()
    unblock: tuple[Signal, ...] = ()


# -- capabilities -------------------------------------------------------------------

@syscall("capabilities")
@dataclass(slots=True)
class Derive:
    """A new capability, derived from one you hold, with at most its rights."""
    cap: CapRef
    rights: Any


@syscall("capabilities")
@dataclass(slots=True)
class Attenuate:
    """Like derive, and may add an expiry (`expires_in` ms) that narrows any inherited one."""
    cap: CapRef
    rights: Any = None
    expires_in: float | None = None


@syscall("capabilities")
@dataclass(slots=True)
class Revoke:
    """Revoke a capability and, transitively, everything derived from it."""
    cap: CapRef


@syscall("capabilities")
@dataclass(slots=True)
class CapInfo:
    """What a held capability designates and which rights it carries."""
    cap: CapRef
    syscall_name: ClassVar[str] = "cap_info"


# -- devices ------------------------------------------------------------------------

@syscall("devices", reductions=2)
@dataclass(slots=True)
class Open:
    """Open a device (a capability with the open right, or the name of one you hold)."""
    device: Any
    params: Any = None


@syscall("devices", reductions=2)
@dataclass(slots=True)
class Read:
    """One metered, journaled request to an open device."""
    handle: int
    req: Any


@syscall("devices", reductions=2)
@dataclass(slots=True)
class ReadAll:
    """Several requests issued concurrently under one park; results in order."""
    handle: int
    reqs: tuple[Any, ...]
    syscall_name: ClassVar[str] = "read_all"


@syscall("devices", reductions=2)
@dataclass(slots=True)
class Write:
    """One metered, journaled write to an open device."""
    handle: int
    data: Any


@syscall("devices")
@dataclass(slots=True)
class Close:
    """Close a handle."""
    handle: int


# -- memory -------------------------------------------------------------------------

@syscall("memory")
@dataclass(slots=True)
class Remember:
    """Add a segment to your context window; pages out past the `mem` watermark."""
    body: Any
    tokens: int | None = None
    pin: bool = False


@syscall("memory")
@dataclass(slots=True)
class WorkingSet:
    """The resident segments, oldest first."""
    syscall_name: ClassVar[str] = "working_set"


@syscall("memory", reductions=3)
@dataclass(slots=True)
class Recall:
    """The k segments (resident or swapped) most relevant to `query`; swapped ones page back in."""
    query: str
    k: int = 5


@syscall("memory")
@dataclass(slots=True)
class Forget:
    """Drop a segment from memory and swap."""
    segment_id: int


@syscall("memory")
@dataclass(slots=True)
class Pin:
    """Pin (or unpin) a segment so the pager never evicts it."""
    segment_id: int
    on: bool = True


# -- policy -------------------------------------------------------------------------

@syscall("policy")
@dataclass(slots=True)
class CheckPolicy:
    """What policy would decide for an action, with no side effect."""
    action: str
    args: Any = None
    syscall_name: ClassVar[str] = "check_policy"


# -- trust (installed by the trust service through the kernel's syscall hook) ---------------

@syscall("trust", reductions=5, owner="trust")
@dataclass(slots=True)
class Attest:
    """Your attestation, signed with the key the kernel holds for you: image, persona,
    parent, node, pid, issued-at. Hand it to a peer; it verifies it with `verify`."""


@syscall("trust", reductions=5, owner="trust")
@dataclass(slots=True)
class Verify:
    """Check an attestation against the key of the node it names; returns its claims, or
    raises `AttestationError` (forged, tampered, malformed, unknown_node)."""
    attestation: Any


@syscall("trust", reductions=2, owner="trust")
@dataclass(slots=True)
class Report:
    """Report misbehaviour of the process `cap` designates: `evidence` (a short text) with
    `weight` in (0, 1]. Weighted by your own trust and capped; returns the penalty applied."""
    cap: CapRef
    evidence: str
    weight: float = 1.0


@syscall("trust", owner="trust")
@dataclass(slots=True)
class TrustScore:
    """The trust score the kernel keeps for you, or for the process `cap` designates."""
    cap: CapRef | None = None
    syscall_name: ClassVar[str] = "trust"


# -- VFS (installed by the vfs package through the kernel's syscall hook) --------------

@syscall("vfs", owner="vfs")
@dataclass(slots=True)
class VfsRead:
    path: str
    syscall_name: ClassVar[str] = "vfs_read"


@syscall("vfs", owner="vfs")
@dataclass(slots=True)
class VfsWrite:
    path: str
    data: Any
    syscall_name: ClassVar[str] = "vfs_write"


@syscall("vfs", owner="vfs")
@dataclass(slots=True)
class VfsList:
    path: str
    syscall_name: ClassVar[str] = "vfs_list"


# -- scheduling ---------------------------------------------------------------------

@syscall("scheduling")
@dataclass(slots=True)
class Sleep:
    """Wait `ms` milliseconds of kernel clock."""
    ms: float


@syscall("scheduling")
@dataclass(slots=True)
class Yield:
    """Go to the back of your run queue."""
    syscall_name: ClassVar[str] = "yield_"


@syscall("scheduling")
@dataclass(slots=True)
class Sched:
    """Change your own priority and/or deadline (ms from now)."""
    priority: int | None = None
    deadline: float | None = None


# -- distribution (a net subsystem provides these; without it they are NotSupported) --

@syscall("distribution", owner="net")
@dataclass(slots=True)
class Dial:
    node: str
    pid: Pid


@syscall("distribution", owner="net")
@dataclass(slots=True)
class SpawnRemote:
    """Start an image `node` published; its quota is carved from yours and returned on exit.
    Returns (pid on that node, send+monitor proxy capability)."""
    node: str
    image_name: str
    args: Any = None
    quota: Quota | None = None
    link: bool = False
    syscall_name: ClassVar[str] = "spawn_remote"


# -- message bus (the `bus` service in agentos.services provides these) ----------------

@syscall("bus", owner="bus")
@dataclass(slots=True)
class BusDeclare:
    """Declare `topic` (a bus capability with the `open` right covering it): the first
    declarer owns it; only the owner may change it (`overflow` "drop_oldest" or "block",
    per-lane `capacity` for new subscriptions, `durable`, `keep` stored messages)."""
    cap: CapRef
    topic: str
    overflow: str = "drop_oldest"
    capacity: int | None = None
    durable: bool = False
    keep: int | None = None
    syscall_name: ClassVar[str] = "bus_declare"


@syscall("bus", owner="bus")
@dataclass(slots=True)
class BusPublish:
    """Publish `body` on `topic` (a bus capability with `write` covering it) in `lane`
    (0 most urgent); `ttl` ms after which an undelivered copy is a dead letter. Returns
    the number of subscriptions it was queued for."""
    cap: CapRef
    topic: str
    body: Any
    lane: int = 1
    ttl: float | None = None
    syscall_name: ClassVar[str] = "bus_publish"


@syscall("bus", owner="bus")
@dataclass(slots=True)
class BusSubscribe:
    """Subscribe to `pattern` (`*`, `>` wildcards; a bus capability with `read` covering
    it; `$dead.<topic>` for a topic you own). Returns a subscription id. `history`:
    first replay what durable topics matching it keep."""
    cap: CapRef
    pattern: str
    capacity: int | None = None
    history: bool = False
    syscall_name: ClassVar[str] = "bus_subscribe"


@syscall("bus", owner="bus")
@dataclass(slots=True)
class BusRecv:
    """The next message of subscription `sub` (lanes served by weight); waits up to
    `timeout` ms (None: forever, 0: poll), then None."""
    sub: int
    timeout: float | None = None
    syscall_name: ClassVar[str] = "bus_recv"


@syscall("bus", owner="bus")
@dataclass(slots=True)
class BusReject:
    """Refuse the message last received on `sub` (seq `seq`): it becomes a dead letter."""
    sub: int
    seq: int
    syscall_name: ClassVar[str] = "bus_reject"


@syscall("bus", owner="bus")
@dataclass(slots=True)
class BusUnsubscribe:
    """End subscription `sub`; what it still held becomes dead letters."""
    sub: int
    syscall_name: ClassVar[str] = "bus_unsubscribe"


@syscall("bus", owner="bus")
@dataclass(slots=True)
class BusNarrow:
    """A child of bus capability `cap` limited to topics `pattern` matches (which `cap`
    must cover) and to `rights` (a subset). Revoking `cap` revokes it."""
    cap: CapRef
    pattern: str
    rights: Any = None
    syscall_name: ClassVar[str] = "bus_narrow"


def table() -> list[SyscallSpec]:
    """The syscall table, in declaration order (for docs, tests and `agentctl syscalls`)."""
    return list(SYSCALLS.values())
