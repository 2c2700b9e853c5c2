"""The agent message bus: topics, publish/subscribe with wildcards, priority lanes,
per-subscriber backpressure, dead letters and durable topics, as a kernel extension.

The bus is ring-1 code on the kernel's extension points: it installs the `bus_*`
syscalls (`Kernel.install_syscall`), so every publish and subscribe passes the kernel's
trap, is charged its reductions, appears in the event log as a `sys` event and is
re-enacted by a replaying kernel from the same program. It parks and wakes processes
only through `Kernel.park`/`wake`/`retry_syscall` (docs/design.md section 6).

Authority. A bus capability is a device capability: the operator's root grant names the
device "bus" (`boot(grant=["bus"])`) and covers every topic; `bus_narrow` derives a child
limited to a topic pattern (`BusScope`) and a subset of rights; the kernel's `derive`,
`attenuate`, `revoke` and passing on messages work on it unchanged. Rights: `write`
publishes, `read` subscribes, `open` declares (and so owns) a topic.

Invariants:
- a publish either queues its message for every live matching subscription or, on a
  topic its owner declared `block` with a matching lane full, parks the publisher and
  queues nothing; it is retried when that subscription drains;
- under `drop_oldest` (the default) a full lane drops its own oldest message, counted
  (`bus_drop` event, `Bus.dropped`); another lane's messages are never touched;
- a message that cannot be delivered (its subscriber went away, it expired, it was
  rejected, nobody subscribes) becomes a dead letter of its topic, kept (bounded) for the
  topic's owner on `$dead.<topic>`, and is counted (`bus_dead` event);
- a durable topic's messages are written to the store as they are published; what the
  store held is read back for a late subscriber asking for `history`. Both are journaled
  as the calling process's own ops, so a replay answers them from the journal and never
  touches the store;
- bodies are built-in data, checked where they enter (a publish, another node, the
  store: `services/bus_body.py`) and bounded in size (`MAX_BODY`); topics by
  `services/topics.py`; a stored row that fails the check is a `bus_store_bad` event and
  is never delivered;
- what the bus keeps is bounded and configurable: dead letters per topic (`dead_keep`)
  and over all topics (`max_dead`, `max_dead_bytes`), topics (`max_topics`); what a bound
  drops is counted.
"""
from __future__ import annotations

import enum
import functools
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..abi.driver import Driver
from ..abi.errors import BadArgument, BadHandle, CapError, QuotaExceeded
from ..abi.syscalls import (BusDeclare, BusNarrow, BusPublish, BusRecv, BusReject, BusSubscribe,
                            BusUnsubscribe)
from ..abi.types import ExitReason, Right, WaitKind
from ..kernel import args as A
from ..kernel.caps import DEVICE, R_ANY, R_OPEN, R_READ, R_WRITE, Cap
from ..kernel.observer import Observer
from ..kernel.process import EXITED, PARK, Process
from ..kernel.canon import trust
from . import topics as T
from .bus_calls import (bus_declare, bus_narrow, bus_publish, bus_recv, bus_reject, bus_subscribe,
                        bus_unsubscribe)
from .bus_body import MAX_BODY
from .bus_body import body as _body
from .bus_body import size as body_size
from .bus_store import DurableLog, row_error
from .lanes import LANES, LaneQueue

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel

DEVICE_NAME = "bus"
DEFAULT_CAPACITY = 1024
"""Messages one lane of a subscription holds before overflow applies."""
MAX_CAPACITY = 1 << 16
MAX_SUBS = 256
"""Subscriptions one process may hold at once."""
DEAD_KEEP = 1024
"""Dead letters a topic keeps for its owner (the oldest go first, counted); `Bus.dead_keep`."""
MAX_DEAD = 1 << 16
"""Dead letters the bus keeps over all topics (`Bus.max_dead`): past it a topic's oldest
goes first, or the new one is not kept; counted."""
MAX_DEAD_BYTES = 64 << 20
"""Bytes of dead letters' bodies the bus keeps over all topics (`Bus.max_dead_bytes`),
measured as a publish measures a body; past it as past `MAX_DEAD`."""
MAX_TOPICS = 1 << 16
"""Declared topics the bus keeps (`Bus.max_topics`): past it the oldest topic without an
owner is forgotten (counted); with none to forget, a declare is `QuotaExceeded`."""
MAX_KEEP = 1 << 20


class Overflow(enum.Enum):
    """What a full lane of a subscription does with one more message."""

    DROP_OLDEST = "drop_oldest"   # drop that lane's oldest message, count it
    BLOCK = "block"               # park the publisher (only the topic's owner may choose it)


class DeadReason(enum.Enum):
    GONE = "gone"                   # the subscriber exited or unsubscribed with it queued
    EXPIRED = "expired"             # its ttl passed before it was received
    REJECTED = "rejected"           # the subscriber refused it (`reject`)
    NO_SUBSCRIBER = "no_subscriber"  # nobody subscribed to its topic


@dataclass(frozen=True, slots=True)
class BusScope:
    """The target of a narrowed bus capability: the topics `pattern` matches."""

    pattern: str

    def __str__(self) -> str:
        return f"bus:{self.pattern}"


class BusMessage(NamedTuple):
    """What `recv` hands a subscriber. `sender` is the publisher's pid (-1: another node
    or the store); `seq` is the bus's publish counter, or the durable topic's stored
    sequence for a `replayed` message; `reason` is set on dead letters. Immutable (one
    message object is handed to every subscriber) and a tuple, so it is cheap to make."""

    topic: str
    body: Any
    seq: int
    sender: int
    lane: int
    replayed: bool = False
    reason: str | None = None


trust(BusMessage)  # the kernel's own tuple: a subscriber may send it on


class _Topic:
    __slots__ = ("name", "owner", "overflow", "capacity", "durable", "keep", "dead", "dseq",
                 "dead_dropped")

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: int | None = None
        self.overflow = Overflow.DROP_OLDEST
        self.capacity: int | None = None
        self.durable = False
        self.keep = 0
        self.dead: deque[tuple[BusMessage, int]] = deque()   # (letter, its body's size)
        self.dseq = 0
        self.dead_dropped = 0


class _Sub:
    __slots__ = ("id", "proc", "pattern", "queue", "dead_of", "waiter", "timer", "last", "blocked")

    def __init__(self, sid: int, proc: Process, pattern: str, capacity: int, dead_of: str | None) -> None:
        self.id = sid
        self.proc = proc
        self.pattern = pattern
        self.queue = LaneQueue(capacity)
        self.dead_of = dead_of
        self.waiter = False
        self.timer: list[Any] | None = None
        self.last: BusMessage | None = None
        self.blocked: deque[tuple[Process, Any]] = deque()   # publishers parked on our room


class BusDevice(Driver):
    """The device whose capability is the bus's root authority (`boot(grant=["bus"])`).
    It has no operations of its own: the bus is used through the `bus_*` syscalls."""

    name = DEVICE_NAME


class _ExitWatch(Observer):
    def __init__(self, bus: "Bus") -> None:
        self.bus = bus

    def exited(self, proc: Process, reason: ExitReason) -> None:
        self.bus._exited(proc)


class Bus:
    """One kernel's message bus (`kernel.extensions["bus"]`)."""

    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self.log = DurableLog(kernel)
        self.bridge: Any = None          # across nodes: services.bus_nats.NatsBridge
        self.topics: dict[str, _Topic] = {}
        self.unowned: dict[str, None] = {}            # declared topics whose owner exited, oldest first
        self.subs: dict[int, _Sub] = {}
        # subscriptions by id everywhere, so ending one is O(1) and a process exit is linear
        # in what it held (dicts keep insertion order: delivery order is subscription order)
        self.exact: dict[str, dict[int, _Sub]] = {}
        self.wild: dict[int, _Sub] = {}
        self.by_pid: dict[int, dict[int, _Sub]] = {}
        self.owned: dict[int, set[str]] = {}          # pid → topics it owns
        self.dead_keep = DEAD_KEEP
        self.max_dead = MAX_DEAD
        self.max_topics = MAX_TOPICS
        self.max_dead_bytes = MAX_DEAD_BYTES
        self.dead_kept = 0                            # dead letters held, over all topics
        self.dead_bytes = 0                           # and the size of their bodies
        self.dead_dropped = 0                         # dead letters not kept (caps, owner gone)
        self.topics_dropped = 0
        self.store_bad = 0                            # stored rows refused (`bus_store_bad`)
        self._watch: _ExitWatch | None = None
        self._retrying: Process | None = None   # the publisher `_room` is retrying (skips the FIFO rule)
        self.seq = 0
        self._next_sub = 0
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        self.dead = 0

    def install(self) -> None:
        k = self.k
        k.install_syscall(BusDeclare, self.sys_declare)
        k.install_syscall(BusPublish, self.sys_publish)
        k.install_syscall(BusSubscribe, self.sys_subscribe)
        k.install_syscall(BusRecv, self.sys_recv)
        k.install_syscall(BusReject, self.sys_reject)
        k.install_syscall(BusUnsubscribe, self.sys_unsubscribe)
        k.install_syscall(BusNarrow, self.sys_narrow)

    @property
    def store(self) -> Any:
        """Where durable topics are kept (an `agentos.store` Store), or None."""
        return self.log.store

    @store.setter
    def store(self, value: Any) -> None:
        self.log.store = value

    # -- the operator's side ------------------------------------------------------------
    def attach(self, *, store: Any = None) -> "Bus":
        """Register the "bus" device (so `boot(grant=["bus"])` hands init the root bus
        capability) and keep durable topics in `store` (any `agentos.store` Store)."""
        if DEVICE_NAME not in self.k.drivers and not self.k.replaying:
            self.k.register_driver(BusDevice(), DEVICE_NAME)
        if store is not None:
            self.store = store
        return self

    def stats(self) -> dict[str, Any]:
        return {"topics": len(self.topics), "subscriptions": len(self.subs), "published": self.published,
                "delivered": self.delivered, "dropped": self.dropped, "dead": self.dead,
                "dead_kept": self.dead_kept, "dead_bytes": self.dead_bytes, "dead_dropped": self.dead_dropped,
                "topics_dropped": self.topics_dropped, "store_bad": self.store_bad}

    # -- authority ------------------------------------------------------------------------
    def _scope(self, proc: Process, ref: Any, right: int, what: str) -> tuple[Cap, str]:
        cap = self.k.caps.resolve(proc, ref, right, what)
        target = cap.target
        if cap.kind == DEVICE and target == DEVICE_NAME:
            return cap, ">"
        if cap.kind == DEVICE and type(target) is BusScope:
            return cap, target.pattern
        raise CapError(f"{what}: capability {A.shown(ref)} is not a bus capability")

    def _covered(self, proc: Process, ref: Any, right: int, what: str, pat: str) -> Cap:
        cap, scope = self._scope(proc, ref, right, what)
        if not T.covers(scope, pat):
            raise CapError(f"{what}: the capability covers topics {scope!r}, not {pat!r}")
        return cap

    def _policy(self, proc: Process, action: str, args: dict[str, Any], req: Any) -> bool:
        """Asked only when a policy rule names `bus.*` (False: parked or killed)."""
        if "bus" not in self.k.governs:
            return True
        return bool(self.k.authorize(proc, action, args, req))

    # -- syscalls ---------------------------------------------------------------------------
    def sys_narrow(self, proc: Process, req: BusNarrow) -> int:
        pat = T.pattern("bus_narrow: pattern", req.pattern)
        cap, scope = self._scope(proc, req.cap, R_ANY, "bus_narrow")
        if not T.covers(scope, pat):
            raise CapError(f"bus_narrow: {pat!r} is not within the capability's topics {scope!r}")
        rights = cap.rights
        if req.rights is not None:
            try:
                rights = int(Right.parse(req.rights)) if not isinstance(req.rights, bool) else -1
            except (TypeError, ValueError, AttributeError) as e:
                raise BadArgument(f"bus_narrow: bad rights {A.shown(req.rights)}: {e}") from None
            if rights <= 0 or rights & ~cap.rights:
                raise CapError(f"bus_narrow: rights must be a non-empty subset of the capability's")
        return self.k.caps.grant(proc, DEVICE, BusScope(pat), rights, cap.expires, cap).ref

    def sys_declare(self, proc: Process, req: BusDeclare) -> dict[str, Any]:
        name = T.topic("bus_declare: topic", req.topic)
        try:
            overflow = Overflow(req.overflow) if type(req.overflow) is str else None
        except ValueError:
            overflow = None
        if overflow is None:
            raise BadArgument(f"bus_declare: overflow must be 'drop_oldest' or 'block', got {A.shown(req.overflow)}")
        capacity = (None if req.capacity is None else
                    A.integer("bus_declare: capacity", req.capacity, minimum=1, maximum=MAX_CAPACITY))
        durable = A.flag("bus_declare: durable", req.durable)
        keep = (DEFAULT_CAPACITY if req.keep is None else
                A.integer("bus_declare: keep", req.keep, minimum=1, maximum=MAX_KEEP))
        self._covered(proc, req.cap, R_OPEN, "bus_declare", name)
        t = self.topics.get(name)
        if t is not None and t.owner is not None and t.owner != proc.pid:
            raise CapError(f"bus_declare: topic {name!r} is owned by pid {t.owner}; only its owner "
                           f"may change it (asked for overflow {overflow.value!r})")
        if not self._policy(proc, "bus.declare", {"topic": name, "overflow": overflow.value,
                                                   "durable": durable}, req):
            return PARK
        if t is None and len(self.topics) >= self.max_topics and not self.unowned:
            raise QuotaExceeded("bus_topics", f"bus_declare: the bus holds {len(self.topics)} topics, all owned "
                                              f"(at most {self.max_topics})")
        dseq = None
        if durable and (t is None or not t.durable or t.keep != keep):
            dseq = self.log.declare(proc, name, keep)   # first: a store failure changes nothing
        if t is None:
            while len(self.topics) >= self.max_topics and self.unowned:
                self._forget(next(iter(self.unowned)))
            t = self.topics[name] = _Topic(name)
        self.unowned.pop(name, None)
        t.owner = proc.pid
        self.owned.setdefault(proc.pid, set()).add(name)
        t.overflow, t.capacity, t.keep = overflow, capacity, keep
        if dseq is not None:
            t.dseq = dseq
        t.durable = durable
        self._watching()
        return {"topic": name, "owner": proc.pid, "overflow": overflow.value, "durable": durable}

    def sys_publish(self, proc: Process, req: BusPublish) -> Any:
        name = T.topic("bus_publish: topic", req.topic)
        lane = A.integer("bus_publish: lane", req.lane, minimum=0, maximum=LANES - 1)
        ttl = A.optional_number("bus_publish: ttl (ms)", req.ttl, minimum=0)
        body = _body("bus_publish: body", req.body)
        self._covered(proc, req.cap, R_WRITE, "bus_publish", name)
        if "bus" in self.k.governs and not self.k.authorize(proc, "bus.publish", {"topic": name, "lane": lane}, req):
            return PARK  # a rule names bus.publish; with none, this one test is all the policy work
        t = self.topics.get(name)
        targets = self._matching(name)
        if t is not None and t.overflow is Overflow.BLOCK:
            for sub in targets:
                if sub.queue.full(lane) or (sub.blocked and self._retrying is not proc):
                    # all or nothing: queue for nobody, wait for this subscriber's room
                    sub.blocked.append((proc, req))
                    return self.k.park(proc, WaitKind.SEND, functools.partial(self._unblock, sub))
        if t is not None and t.durable:  # the store first: if it fails, no counter has moved
            self.log.append(proc, name, t.dseq + 1, t.keep, lane, body)
            t.dseq += 1
        self.seq += 1
        self.published += 1
        msg = BusMessage(name, body, self.seq, proc.pid, lane)
        expires = None if ttl is None else self.k.clock.now() + ttl
        n = self._fan_out(targets, msg, expires)
        if not n:
            self._dead(msg, DeadReason.NO_SUBSCRIBER)
        if self.bridge is not None and not self.k.replaying:
            self.bridge.publish(msg, durable=t is not None and t.durable)
        return n

    def sys_subscribe(self, proc: Process, req: BusSubscribe) -> int:
        raw = req.pattern
        dead_of = None
        if type(raw) is str and raw.startswith(T.DEAD_PREFIX):
            dead_of = T.topic("bus_subscribe: dead-letter topic", raw[len(T.DEAD_PREFIX):])
            pat = dead_of
        else:
            pat = T.pattern("bus_subscribe: pattern", raw)
        history = req.history
        if type(history) is not bool:  # True (all kept), or the newest n of each topic
            history = A.integer("bus_subscribe: history (True, False or a count)", history, minimum=0,
                                maximum=MAX_KEEP)
        capacity = (None if req.capacity is None else
                    A.integer("bus_subscribe: capacity", req.capacity, minimum=1, maximum=MAX_CAPACITY))
        self._covered(proc, req.cap, R_READ, "bus_subscribe", pat)
        if dead_of is not None:
            t = self.topics.get(dead_of)
            if t is None or t.owner != proc.pid:
                raise CapError(f"bus_subscribe: only the owner of {dead_of!r} may read its dead letters")
        mine = self.by_pid.get(proc.pid)
        if mine is not None and len(mine) >= MAX_SUBS:
            raise QuotaExceeded("bus_subscriptions", f"bus_subscribe: pid {proc.pid} already holds "
                                                     f"{MAX_SUBS} subscriptions")
        if not self._policy(proc, "bus.subscribe", {"pattern": raw}, req):
            return PARK
        if capacity is None:
            t = self.topics.get(pat)
            capacity = t.capacity if t is not None and t.capacity is not None else DEFAULT_CAPACITY
        rows: list[list[Any]] = []
        if dead_of is None and history is not False:
            # read before the subscription exists: a store failure leaves nothing behind, and
            # nothing published can fall between the history and the live messages (journaled
            # even with no store, so a replay asks the journal either way)
            limit = None if history is True else history
            last = {n: t.dseq for n, t in self.topics.items() if t.durable and T.matches(pat, n)}
            rows = self.log.history(proc, pat, limit, last)
        self._next_sub += 1
        sub = _Sub(self._next_sub, proc, pat, capacity, dead_of)
        self.subs[sub.id] = sub
        self.by_pid.setdefault(proc.pid, {})[sub.id] = sub
        self._watching()
        if dead_of is not None:
            t = self.topics[dead_of]
            while t.dead:
                self._enqueue(sub, self._pop_dead(t), None)
            return sub.id
        if T.is_literal(pat):
            self.exact.setdefault(pat, {})[sub.id] = sub
        else:
            self.wild[sub.id] = sub
        for row in rows if type(rows) is list else ():
            why = row_error(row)
            if why is not None:  # corrupted or forged: reported, never delivered
                self.store_bad += 1
                top, key = (row[0], row[1]) if type(row) is list and len(row) >= 2 else (None, None)
                self.k.events.emit(proc.pid, "bus_store_bad", (A.shown(top, 300), A.shown(key, 300), why[:300]))
                continue
            top, seq, lane, body = row
            self._enqueue(sub, BusMessage(top, body, seq, -1, lane, True), None)
        return sub.id

    def sys_recv(self, proc: Process, req: BusRecv) -> Any:
        sub = self._own(proc, req.sub, "bus_recv")
        timeout = A.optional_number("bus_recv: timeout (ms)", req.timeout)
        if sub.waiter:
            raise BadArgument(f"bus_recv: subscription {sub.id} is already being waited on")
        msg = self._take(sub)
        if msg is not None:
            self._room(sub)
            return msg
        if timeout is not None and timeout <= 0:
            self._room(sub)
            return None
        res = self.k.park(proc, WaitKind.RECV, functools.partial(self._abort_recv, sub))
        sub.waiter = True
        if timeout is not None:
            sub.timer = self.k.timers.add(self.k.clock.now() + timeout, self._recv_timeout, sub)
        self._room(sub)  # expired messages made room: blocked publishers may go now
        return res

    def sys_reject(self, proc: Process, req: BusReject) -> None:
        sub = self._own(proc, req.sub, "bus_reject")
        seq = A.integer("bus_reject: seq", req.seq)
        last = sub.last
        if last is None or last.seq != seq:
            raise BadArgument(f"bus_reject: message {seq} is not the last one received on subscription {sub.id}")
        sub.last = None
        self._dead(last, DeadReason.REJECTED)

    def sys_unsubscribe(self, proc: Process, req: BusUnsubscribe) -> int:
        sub = self._own(proc, req.sub, "bus_unsubscribe")
        return self._close(sub)

    # -- delivery -----------------------------------------------------------------------------
    def _matching(self, name: str) -> list[_Sub]:
        exact = self.exact.get(name)
        out = list(exact.values()) if exact is not None else []
        for sub in self.wild.values():
            if T.matches(sub.pattern, name):
                out.append(sub)
        return out

    def _fan_out(self, targets: list[_Sub], msg: BusMessage, expires: float | None) -> int:
        n = 0
        for sub in targets:
            if sub.proc.state is EXITED:
                continue  # the exit watch closes it
            self._enqueue(sub, msg, expires)
            n += 1
        return n

    def _enqueue(self, sub: _Sub, msg: BusMessage, expires: float | None) -> None:
        if sub.waiter:
            sub.waiter = False
            self.k.timers.cancel(sub.timer)
            sub.timer = None
            self.delivered += 1
            sub.last = msg
            self.k.wake(sub.proc, msg)
            return
        dropped = sub.queue.push(msg.lane, (msg, expires))
        if dropped is not None:
            self.dropped += 1
            old = dropped[0]
            self.k.events.emit(sub.proc.pid, "bus_drop", (old.topic, old.lane, old.seq, sub.id))

    def _take(self, sub: _Sub) -> BusMessage | None:
        now = None
        while True:
            item = sub.queue.pop()
            if item is None:
                return None
            msg, expires = item
            if expires is not None:
                if now is None:
                    now = self.k.clock.now()
                if now > expires:
                    self._dead(msg, DeadReason.EXPIRED)
                    continue
            self.delivered += 1
            sub.last = msg
            return msg

    def _room(self, sub: _Sub) -> None:
        """Room appeared in `sub`: retry publishers parked on it, oldest first, while it has
        room in the lane the next one publishes on (a retried publish may park again, here or
        on another subscriber)."""
        k = self.k
        while sub.blocked:
            proc, req = sub.blocked[0]
            lane = req.lane if type(req.lane) is int and 0 <= req.lane < LANES else 0
            if sub.queue.full(lane) and sub.proc.state is not EXITED and sub.id in self.subs:
                return
            sub.blocked.popleft()
            self._retrying = proc
            try:
                k.retry_syscall(proc, req)
            finally:
                self._retrying = None

    def _unblock(self, sub: _Sub, proc: Process) -> bool:
        """Abort of a parked publisher (SIGINT, teardown): it leaves the queue, sends nothing."""
        for i, (p, _) in enumerate(sub.blocked):
            if p is proc:
                del sub.blocked[i]
                break
        return True

    def _abort_recv(self, sub: _Sub, proc: Process) -> bool:
        sub.waiter = False
        self.k.timers.cancel(sub.timer)
        sub.timer = None
        return True

    def _recv_timeout(self, sub: _Sub) -> None:
        sub.timer = None
        if sub.waiter:
            sub.waiter = False
            self.k.wake(sub.proc, None)

    def _dead(self, msg: BusMessage, reason: DeadReason) -> None:
        self.dead += 1
        self.k.events.emit(msg.sender if msg.sender > 0 else 0, "bus_dead", (msg.topic, msg.seq, reason.value))
        t = self.topics.get(msg.topic)
        if t is None or t.owner is None:
            return  # nobody owns the topic: counted, not kept
        letter = msg._replace(reason=reason.value)
        for sub in self.by_pid.get(t.owner, {}).values():
            if sub.dead_of == msg.topic:
                self._enqueue(sub, letter, None)
                return
        try:
            nbytes = body_size("a dead letter", letter.body, MAX_BODY)
        except BadArgument:  # (bodies are checked where they enter: not reached)
            nbytes = MAX_BODY
        while t.dead and (len(t.dead) >= self.dead_keep or self.dead_kept >= self.max_dead
                          or self.dead_bytes + nbytes > self.max_dead_bytes):
            self._pop_dead(t)  # this topic's own oldest makes room, never another topic's
            t.dead_dropped += 1
            self.dead_dropped += 1
        if self.dead_keep <= 0 or self.dead_kept >= self.max_dead or self.dead_bytes + nbytes > self.max_dead_bytes:
            t.dead_dropped += 1  # the bus holds its cap and this topic none: not kept, counted
            self.dead_dropped += 1
            return
        t.dead.append((letter, nbytes))
        self.dead_kept += 1
        self.dead_bytes += nbytes

    def _pop_dead(self, t: _Topic) -> BusMessage:
        letter, nbytes = t.dead.popleft()
        self.dead_kept -= 1
        self.dead_bytes -= nbytes
        return letter

    # -- subscriptions ending -----------------------------------------------------------------
    def _own(self, proc: Process, sid: Any, what: str) -> _Sub:
        sub = self.subs.get(sid) if type(sid) is int else None
        if sub is None or sub.proc is not proc:
            raise BadHandle(f"{what}: subscription {A.shown(sid)} is not held by pid {proc.pid}")
        return sub

    def _close(self, sub: _Sub) -> int:
        del self.subs[sub.id]
        mine = self.by_pid.get(sub.proc.pid)
        if mine is not None:
            mine.pop(sub.id, None)
            if not mine:
                del self.by_pid[sub.proc.pid]
        if sub.dead_of is None:
            if T.is_literal(sub.pattern):
                same = self.exact[sub.pattern]
                del same[sub.id]
                if not same:
                    del self.exact[sub.pattern]
            else:
                del self.wild[sub.id]
        self.k.timers.cancel(sub.timer)
        sub.timer = None
        n = 0
        for msg, _ in list(sub.queue.drain()):
            n += 1
            if sub.dead_of is None:
                self._dead(msg, DeadReason.GONE)
        self._room(sub)  # whoever waited on its room publishes without it now
        return n

    def _exited(self, proc: Process) -> None:
        for sub in list(self.by_pid.get(proc.pid, {}).values()):
            self._close(sub)
        for name in sorted(self.owned.pop(proc.pid, ())):
            t = self.topics.get(name)
            if t is None or t.owner != proc.pid:
                continue
            t.owner = None  # another holder of `open` may claim it
            self.unowned[name] = None
            while t.dead:  # nobody may read them now: dropped, counted
                self._pop_dead(t)
                t.dead_dropped += 1
                self.dead_dropped += 1

    def _forget(self, name: str) -> None:
        """Drop an ownerless topic's settings to make room for a new one (counted)."""
        del self.unowned[name]
        t = self.topics.pop(name, None)
        if t is not None:
            while t.dead:
                self._pop_dead(t)
            self.topics_dropped += 1

    def _watching(self) -> None:
        if self._watch is None:
            self._watch = _ExitWatch(self)
            self.k.add_observer(self._watch)

    # -- remote input (services/bus_nats.py) ------------------------------------------------------
    def ingest(self, name: str, lane: int, body: Any) -> int:
        """A message published on another node: fan it out to local subscribers (called at
        a loop turn from a journaled envelope, so a replay ingests the same)."""
        self.seq += 1
        msg = BusMessage(name, body, self.seq, -1, lane)
        return self._fan_out(self._matching(name), msg, None)

def install(kernel: "Kernel", *, store: Any = None) -> Bus:
    """Give `kernel` a bus, or reuse the one it has (`kernel.extensions["bus"]`)."""
    bus = kernel.extensions.get("bus")
    if not isinstance(bus, Bus):
        bus = Bus(kernel)
        bus.install()
        kernel.extensions["bus"] = bus
    if store is not None:
        bus.store = store
    return bus


def extension(kernel: "Kernel") -> Bus:
    """The default kernel extension: every kernel has the bus syscalls; the "bus" device
    and a store are added by `Bus.attach`."""
    return install(kernel)


def attach(kernel: "Kernel", *, store: Any = None) -> Bus:
    """The bus of `kernel`, with its device registered and (optionally) a store."""
    return install(kernel).attach(store=store)


__all__ = ["MAX_BODY", "Bus", "BusDevice", "BusMessage", "BusScope", "DeadReason", "Overflow", "attach", "bus_declare",
           "bus_narrow", "bus_publish", "bus_recv", "bus_reject", "bus_subscribe", "bus_unsubscribe", "extension",
           "install"]
