"""The kernel's side of distribution: `dial`, sends on remote proxies, and remote deliveries.

A kernel on a network has a *node* (`agentos.net.NetNode`, made by `Kernel.connect`): its
name, its key, its routes to peers. What crosses the wire is a sealed envelope, never a
capability. `dial(node, pid)` is an action on the world (policy decides, then the node must
have a route) and hands out a send-only capability of kind "remote". A `send` on one seals
the body and ships it; a reply capability the sender offers (`call` passes its own
`self_cap`) becomes a flag in the envelope, and the receiving kernel mints a proxy back.

Remote deliveries are inputs from outside the program, so they are applied at a point
the kernel's loop defines: `ingress` verifies a frame and queues it; at the top of each
turn of the dispatch loop the queue is applied and journaled with the turn number (op
"net.in"), drops are summed per reason (op "net.drop") and a change of the kernel's
external sources is noted (op "net.sources"). A replaying kernel, which has no node and
no transport, applies the same entries at the same turns, and answers `dial` and remote
`send` from their journaled outcomes (ops "net.dial", "net.send"), so a node's run replays
byte for byte from its own journal.

Delivery runs the receiving kernel's own checks: the target must be alive, policy is
asked where a rule names `send` (as pid 0, with the sender's node and pid in the
arguments), and a bounded mailbox that is full drops the message (the remote sender
cannot be parked; remote sends are at most once). Every outcome is an event.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, cast

from ..abi.errors import BadArgument, CapError, KernelError, NondeterminismError, SyscallError
from ..abi.syscalls import Dial
from ..abi.types import KERNEL_PID, Message
from . import args as A
from .caps import PROC, REMOTE, R_SEND
from .journal import TURN_OPS, JournalEntry
from .process import EXITED, PARK, Process
from .state import KernelState
from .values import canonical_checked

if TYPE_CHECKING:
    from .kernel import Kernel

REMOTE_SENDER = -1
"""`Message.sender` of a message that came from another node (no local pid sent it; the
event log's `remote_recv` event names the node and pid it came from)."""

NET_OPS = TURN_OPS
"""Journal ops applied at a loop turn (`at`), not keyed by a process's op index."""


@dataclass(frozen=True, slots=True)
class RemoteAddr:
    """What a remote capability designates: a pid on a named node."""

    node: str
    pid: int

    def __str__(self) -> str:
        return f"{self.node}/{self.pid}"


class Remote(KernelState):
    """Mixed into `Kernel`."""

    net: Any
    replaying: bool
    _net_on: bool
    _net_turn: int
    _net_inbox: "deque[tuple[str, Any]]"
    _net_drops: dict[str, int]
    _net_handlers: "dict[str, Callable[[Any], None]]"
    _net_replay: "dict[int, list[JournalEntry]] | None"
    _net_seq: int
    _net_name: str | None
    _net_incarnation: int
    _net_self_pending: bool
    _wakeup: Any
    _external_sources: int
    external_source: Callable[[int], None]
    _senders: "dict[int, Callable[[Process, Any, Any], Any]]"

    def _init_remote(self) -> None:
        self.net = None                 # the live node (agentos.net.NetNode), once connected
        self._net_on = False            # anything to do at the top of a loop turn
        self._net_turn = 0
        self._net_seq = 0               # journal index of turn-applied net entries
        self._net_inbox = deque()
        self._net_drops = {}
        self._net_handlers = {}
        self._net_replay = None
        self._net_name = None            # this node's name (replay: from the "net.sources" entry)
        self._net_incarnation = 0        # and its incarnation (what attestations name)
        self._net_self_pending = False   # a send to this very node this turn: deliver before time moves
        self._senders[REMOTE] = self._remote_send
        journal = self.journal
        if self.replaying and journal is not None:
            by_turn: dict[int, list[JournalEntry]] = {}
            for e in journal.entries:
                if e.op in NET_OPS:
                    by_turn.setdefault(int(e.at or 0), []).append(e)
            if by_turn:
                self._net_replay = by_turn
                self._net_on = True

    # -- the public face: Kernel.connect / Kernel.ingress -----------------------------------
    def connect(self, peer: str, transport: Any, *, node: str | None = None, key: bytes | None = None,
                **options: Any) -> Any:
        """Route frames for node `peer` ("*": any node without a route of its own) through
        `transport` (anything with `send(frame: bytes) -> bool`). The first call gives this
        kernel its node identity: `node` (its name) and `key` (the shared HMAC key, bytes)
        are required then, with the node's options (`incarnation`, `window_s`, `max_nonces`,
        `skew_s`, `max_frame`, `wall`; see `agentos.net.NetNode`). Frames the transport
        receives go to `kernel.ingress`. Returns the node."""
        from ..net.node import NetNode

        if self.replaying:
            raise KernelError("connect: a replaying kernel takes its network input from its journal")
        net = self.net
        if net is None:
            if node is None or key is None:
                raise KernelError("connect: the first connect names this kernel's node and key "
                                  "(connect(peer, transport, node='a', key=b'...'))")
            net = NetNode(cast("Kernel", self), node, key, **options)
            net.add_route(peer, transport)  # a bad route leaves the kernel off the network
            self.net = net
            self.external_source(1)  # a kernel on a network waits for messages: it is never idle-dead
            self._net_name = net.name
            self._net_inbox.append(("sources", {"node": net.name, "sources": 1, "incarnation": net.incarnation}))
            self._net_on = True      # from now on every loop turn looks at the inbox
        elif node is not None and node != net.name or options or key is not None and key != net.key:
            raise KernelError(f"connect: this kernel is already node {net.name!r}; its identity "
                              f"and options are set by the first connect")
        net.add_route(peer, transport)
        return net

    def ingress(self, frame: Any) -> bool:
        """A frame from the network: verified now, delivered at the next loop turn. False if
        it was dropped (counted by reason in `kernel.net.dropped`); never raises for what
        the frame holds."""
        net = self.net
        if net is None:
            raise KernelError("ingress: this kernel is on no network (connect it first)")
        env = net.accept(frame)
        if env is None:
            self._net_dropped(net.last_reason)
            return False
        self._net_inbox.append(("in", env))
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.set()
        return True

    def _net_dropped(self, reason: str) -> None:
        """Count a dropped frame for the next turn's `net_drop` event."""
        self._net_drops[reason] = self._net_drops.get(reason, 0) + 1

    def ingress_verified(self, env: Any) -> None:
        """An envelope a layer verified under its own guard (the cluster's durable stream,
        whose frames may be older than the node's window): delivered at the next loop turn
        and journaled like any other."""
        self._net_inbox.append(("in", env))
        if self._wakeup is not None:
            self._wakeup.set()

    def on_envelope(self, kind: str, handler: Callable[[Any], None]) -> None:
        """Have `handler(fields)` apply verified envelopes of `kind` (not "send", which the
        kernel delivers itself) at the loop turn they are applied at. `fields` is the
        envelope as journaled: a dict with from_node, from_pid, incarnation, to_node,
        to_pid, sent_at, nonce, kind, corr, reply, body (the same dict in replay). A layer
        that adds kinds (the cluster: "down", "spawn", ...) installs its handlers on
        replaying kernels too; a handler that raises is a `net_error` event."""
        if type(kind) is not str or not kind or kind == "send":
            raise KernelError(f"on_envelope: kind must be a name other than 'send', got {kind!r}")
        if not callable(handler):
            raise KernelError(f"on_envelope: handler must be callable, got {type(handler).__name__}")
        self._net_handlers[kind] = handler

    # -- the loop turn ----------------------------------------------------------------------
    def _net_tick(self) -> None:
        """Top of a loop turn: apply what arrived since the last one (live: the inbox and the
        drop counts, journaled; replay: the entries journaled at this turn)."""
        turn = self._net_turn  # counted by the loop, every turn, from boot
        self._net_self_pending = False
        replay = self._net_replay
        if replay is not None:
            for e in replay.pop(turn, ()):
                self._net_apply_entry(e)
            return
        inbox = self._net_inbox
        journal = self.journal
        while inbox:
            what, item = inbox.popleft()
            if what == "in":
                value = _envelope_fields(item)
                if journal is not None:
                    journal.record(JournalEntry(item.to_pid, self._next_net_seq(), "net.in", item.from_node,
                                                item.kind, None, True, value, at=turn))
                self._net_deliver(value)
            else:
                if journal is not None:
                    journal.record(JournalEntry(KERNEL_PID, self._next_net_seq(), "net.sources", "", None,
                                                None, True, item, at=turn))
        drops = self._net_drops
        if drops:
            self._net_drops = {}
            counts = {k: drops[k] for k in sorted(drops)}
            if journal is not None:
                journal.record(JournalEntry(KERNEL_PID, self._next_net_seq(), "net.drop", "", None, None,
                                            True, counts, at=turn))
            self.events.emit(KERNEL_PID, "net_drop", counts)

    def _next_net_seq(self) -> int:
        self._net_seq += 1
        return self._net_seq

    def _net_apply_entry(self, e: JournalEntry) -> None:
        if e.op == "net.in":
            self._net_deliver(e.value)
        elif e.op == "net.drop":
            self.events.emit(KERNEL_PID, "net_drop", dict(e.value))
        elif e.op == "net.sources":
            self._net_name = e.value["node"]
            inc = e.value.get("incarnation", 0)  # recorded since attestations name it
            self._net_incarnation = inc if type(inc) is int else 0
            self.external_source(int(e.value["sources"]))

    def _net_input_waiting(self) -> bool:
        """Whether network input will be applied at the next turn: live, something is queued;
        in replay, the journal holds entries for that turn (the same answer, by construction:
        under a virtual clock nothing else can arrive before the next turn's top)."""
        replay = self._net_replay
        if replay is not None:
            return self._net_turn + 1 in replay
        return bool(self._net_inbox or self._net_drops)

    def _net_replay_wait(self) -> None:
        """Replay, where the live loop waited on the network: the recorded input comes at a
        later turn; with none left, the replay has left the recorded path."""
        if not self._net_replay:
            raise NondeterminismError(
                f"replay diverged at loop turn {self._net_turn}: the replay waits for network "
                f"input that the recorded run never received")

    def _net_deliver(self, env: dict[str, Any]) -> None:
        """Deliver one verified envelope (as its journaled fields) under this kernel's checks."""
        kind = env["kind"]
        origin = (env["from_node"], env["from_pid"], env["nonce"])
        if kind != "send":
            handler = self._net_handlers.get(kind)
            if handler is None:
                self.events.emit(KERNEL_PID, "net_undeliverable", (*origin, f"no handler for kind {kind!r}"))
                return
            try:
                handler(env)
            except Exception as e:  # the layer's bug is recorded, never the kernel's crash
                self.events.emit(KERNEL_PID, "net_error", (*origin, f"{type(e).__name__}: {e}"[:300]))
            return
        pid = env["to_pid"]
        target = self.procs.get(pid)
        if target is None or target.state is EXITED:
            self.ipc.dead_letters += 1
            self.events.emit(pid, "net_undeliverable", (*origin, "no such process"))
            return
        if self.police_send:
            d = self.policy.check(KERNEL_PID, "send", {"to": pid, "from_node": env["from_node"],
                                                       "from_pid": env["from_pid"], "body": env["body"]})
            self._append((self._now(), KERNEL_PID, "policy", ("send", d.allowed, d.rule)))
            if not d.allowed:
                self.events.emit(pid, "net_undeliverable", (*origin, f"policy: {d.rule}"))
                return
        msg = Message(REMOTE_SENDER, env["body"], (), env["corr"])
        limit = target.max_mailbox
        if limit is not None:
            mb = target.mailbox
            full = limit == 0 or bool(target.blocked_senders) or (mb is not None and len(mb) >= limit)
            match = target.recv_match
            if full and not (match is True or (match is not None and self.ipc._matches(match, msg, target))):
                self.events.emit(pid, "net_undeliverable", (*origin, f"mailbox full ({limit})"))
                return
        if env["reply"]:
            msg.caps = (self.caps.grant(target, REMOTE, RemoteAddr(env["from_node"], env["from_pid"]), R_SEND).ref,)
        self.events.emit(pid, "remote_recv", origin)
        self.ipc.deliver(target, msg)

    # -- syscalls ---------------------------------------------------------------------------
    def _sys_dial(self, proc: Process, req: Dial) -> Any:
        node = A.text("dial: node", req.node, empty=False, max_len=128)
        pid = A.integer("dial: pid", req.pid, minimum=1, maximum=(1 << 63) - 1)
        if not self.authorize(proc, "dial", {"node": node, "pid": pid}, req):
            return PARK
        idx = proc.op_index
        proc.op_index = idx + 1
        self._net_outcome(proc, idx, "net.dial", [node, pid], lambda: self._live_dial(node))
        return self.caps.grant(proc, REMOTE, RemoteAddr(node, pid), R_SEND).ref

    def _live_dial(self, node: str) -> None:
        net = self.net
        if net is None:
            from ..net.errors import NoRoute
            raise NoRoute(f"dial: this kernel is on no network, so node {node!r} cannot be reached")
        net.check_route(node)

    def _remote_send(self, proc: Process, cap: Any, req: Any) -> Any:
        addr = cap.target
        if type(addr) is not RemoteAddr:  # a cap some other layer made: not ours to ship
            raise CapError(f"send: the remote capability designates {addr!r:.60}, not a node and pid")
        reply = self._remote_send_checked(proc, req, addr)
        if self.police_send and not self.authorize(
                proc, "send", {"to": addr.pid, "node": addr.node, "body": req.body}, req):
            return PARK
        idx = proc.op_index
        proc.op_index = idx + 1
        body, corr = req.body, req.corr
        nonce = self._net_outcome(proc, idx, "net.send", [addr.node, addr.pid],
                                  lambda: self._live_ship(proc, addr, body, corr, reply))
        if addr.node == self._net_name:
            self._net_self_pending = True  # the loop takes another turn before time moves
        self.events.emit(proc.pid, "remote_send", (addr.node, addr.pid, nonce))
        return None

    def _remote_send_checked(self, proc: Process, req: Any, addr: RemoteAddr) -> bool:
        """What every send to another node refuses, plain or durable: caps other than the
        sender's own (which travels as a reply marker: the returned flag), a deadline, and
        capability refs or unencodable values in the body or corr."""
        reply = False
        if req.caps:
            reply = self._reply_marker(proc, A.sequence("send: caps", req.caps))
        if req.deadline is not None:
            raise BadArgument(f"send: a deadline does not cross nodes (sending to {addr})")
        _no_caps_inside(proc, canonical_checked("send: body", req.body), "body")
        if req.corr is not None:
            _no_caps_inside(proc, canonical_checked("send: corr", req.corr), "corr")
        return reply

    def _live_ship(self, proc: Process, addr: RemoteAddr, body: Any, corr: Any, reply: bool) -> str:
        net = self.net
        if net is None:
            from ..net.errors import NoRoute
            raise NoRoute(f"send: this kernel is on no network, so {addr} cannot be reached")
        trust = self.trust  # the sender's attestation travels with it (verified at ingress)
        att = trust.wire_attestation(proc.pid) if trust is not None else None
        return str(net.ship(proc.pid, addr.node, addr.pid, body, corr=corr, reply=reply, att=att))

    def _reply_marker(self, proc: Process, refs: tuple[Any, ...]) -> bool:
        """The one capability a remote send may carry: the sender's own send capability (a
        reply address); it travels as a flag, never as a capability."""
        if len(refs) == 1:
            cap = self.caps.resolve(proc, refs[0], R_SEND, "send caps")
            if cap.kind == PROC and cap.target is proc:
                return True
        raise BadArgument("send: capabilities never cross to another node; the only one a remote send "
                          "may carry is the sender's own (self_cap(), as a reply address)")

    def _net_outcome(self, proc: Process, idx: int, op: str, request: list[Any], live: Callable[[], Any]) -> Any:
        """Run `live` (the outcome depends on the network) and journal it; in replay, the
        journaled outcome instead. A refusal is raised into the caller either way."""
        journal = self.journal
        if self.replaying:
            assert journal is not None
            e = journal.replay(proc.pid, idx, op, "net", request)
            if not e.ok:
                raise _rebuild(e)
            return e.value
        try:
            value = live()
        except SyscallError as err:
            if journal is not None:
                journal.record(JournalEntry(proc.pid, idx, op, "net", None, request, False, str(err),
                                            error_type=type(err).__name__))
            raise
        if journal is not None:
            journal.record(JournalEntry(proc.pid, idx, op, "net", None, request, True, value))
        return value


def _envelope_fields(env: Any) -> dict[str, Any]:
    return {"from_node": env.from_node, "from_pid": env.from_pid, "incarnation": env.incarnation,
            "to_node": env.to_node, "to_pid": env.to_pid, "sent_at": env.sent_at, "nonce": env.nonce,
            "kind": env.kind, "corr": env.corr, "reply": env.reply, "body": env.body}


def _no_caps_inside(proc: Process, rendered: Any, what: str) -> None:
    """A capability ref the sender holds, inside the body, is refused: it would mean nothing
    on the other node, and a program that puts one there expects it to."""
    held = proc.caps
    stack = [rendered]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is int:
            if x in held:
                raise BadArgument(f"send: the {what} holds capability ref {x:#x}; capabilities never "
                                  f"cross to another node (dial there, or send data)")
        elif t is list:
            stack.extend(x)
        elif t is dict:
            stack.extend(x.values())


def _rebuild(e: JournalEntry) -> SyscallError:
    from ..abi import errors
    from ..net import errors as net_errors

    name = e.error_type or "SyscallError"
    cls = getattr(net_errors, name, None) or getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SyscallError)):
        cls = SyscallError
    try:
        return cls(e.value)
    except TypeError:
        return SyscallError(e.value)


__all__ = ["NET_OPS", "REMOTE_SENDER", "Remote", "RemoteAddr"]
