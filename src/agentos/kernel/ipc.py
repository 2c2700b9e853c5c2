"""Mailboxes: send, recv (timeout, match), message deadlines, backpressure.

With `KernelConfig.message_events` (a recorded run turns it on), each receipt of a message
a process sent is a `recv` event of the receiver carrying (sender, seq of the sending
`sys` event): the event log links every effect of a message to its cause, which
provenance follows across processes. Off, it costs one truth test per receipt.

Invariants: a message is either in exactly one mailbox, handed straight to a waiting
receiver, or parked with its blocked sender; none is ever dropped for space. A sender
to a full mailbox (`max_mailbox`) parks, FIFO with other blocked senders, and is released
one message at a time as the receiver drains, so per-sender order is kept. A message a
receiver's parked `recv(match=...)` is waiting for is handed over at once whatever the
mailbox holds, and a selective `recv` also looks at the messages of blocked senders (a
reply must never wait behind the traffic it is not). Only a message
whose own `deadline` has passed is dropped, and that is counted.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ..abi.errors import BadArgument
from ..abi.syscalls import Recv, Send, SendDurable
from ..abi.types import KERNEL_PID, Down, Message, SignalMessage, WaitKind
from . import args as A
from .values import checked
from .caps import PIPE, PROC, R_ANY, R_SEND
from .process import EXITED, HIBERNATED, PARK, Process

if TYPE_CHECKING:
    from .kernel import Kernel


KERNEL_NOTICES = frozenset({Down, SignalMessage})
"""Bodies only the kernel makes: a monitor's `Down`, a catchable signal. A receiver that
acts on one (a supervisor restarting a child, a loop stopping at SIGTERM) must be able to
trust it, so a process can pass on one it received but never build one."""


def _received(proc: Process, body: Any) -> bool:
    """Is `body` the very notice `proc` last received (a forwarder passing it on)?"""
    last = proc.last_msg
    return last is not None and getattr(last, "body", None) is body


class IPC:
    __slots__ = ("k", "late_dropped", "dead_letters", "delivered", "_wake", "graph", "_on_abort_recv",
                 "_on_abort_send")

    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self.graph: Any = None  # the kernel's AgentGraph when the scheduler runs (sched/graph.py)
        self._wake = kernel.wake
        self.late_dropped = 0
        self.dead_letters = 0
        self.delivered = 0
        # bound once: a parked process holds its abort, and a million parked receivers would
        # otherwise hold a million bound-method objects of their own
        self._on_abort_recv = self._abort_recv
        self._on_abort_send = self._abort_send

    def handlers(self) -> dict[type, Callable[..., Any]]:
        return {Send: self.sys_send, SendDurable: self.sys_send, Recv: self.sys_recv}  # durable: see net/calls.py

    # -- send -----------------------------------------------------------------------
    def sys_send(self, proc: Process, req: Send) -> Any:
        body = req.body  # checked where it enters: the log must be able to hold it
        if body is not None and (type(body) is not int or body.bit_length() > 64) and body is not proc.last_msg:
            checked("send: body", body)
            if type(body) in KERNEL_NOTICES and not _received(proc, body):
                raise BadArgument(f"send: body: a {type(body).__name__} is a notice only the kernel sends "
                                  f"(a process may forward one it received, not make one)")
        if req.corr is not None:
            checked("send: corr", req.corr)
        ev = self.k.events
        sent = ev.seq + len(ev.buf)  # the seq of this call's `sys` event, the last one appended
        try:
            cap = proc.caps.get(req.cap)
        except TypeError:  # an unhashable "ref": resolve names the mistake
            cap = None
        if cap is None or not cap.rights & R_SEND or cap.expires is not None:
            cap = self.k.caps.resolve(proc, req.cap, R_SEND, "send")
        if cap.kind != PROC:
            if cap.kind != PIPE:
                return self.k.send_other(proc, cap, req)
            target: Process = cap.target.admit(req.body)  # a typed pipe: SchemaViolation to the sender
        else:
            target = cap.target
        if self.k.police_send and not self.k.authorize(proc, "send", {"to": target.pid, "body": req.body}, req):
            return PARK  # a rule names send; with none, this one bool is all the policy work
        if target.state is EXITED:
            self.dead_letters += 1
            return None
        if req.caps and target.state is HIBERNATED and type(target.caps) is not dict:
            target.caps = {}  # it held none: its shared empty table becomes its own
        caps = self._carry_caps(proc, A.sequence("send: caps", req.caps), target) if req.caps else ()
        if self.graph is not None:  # the one test a send pays when the scheduler is off
            self.graph.sent(proc, target)
        deadline = req.deadline
        if deadline is not None:
            deadline = self.k.clock.now() + A.number("send: deadline (ms)", deadline)
        msg = Message(proc.pid, req.body, caps, req.corr, deadline, sent)
        limit = target.max_mailbox
        if limit is not None:
            mb = target.mailbox
            if target.blocked_senders or (mb is not None and len(mb) >= limit) or limit == 0 or (
                    target.state is HIBERNATED and self.k.hibernation.deferred_messages(target) >= limit):
                # a receiver parked in recv for exactly this message takes it straight from
                # the sender: it occupies no slot, so neither a full mailbox nor the queue of
                # other blocked senders may hold it back (a `call` reply would never arrive)
                match = target.recv_match
                if match is None or not (match is True or self._matches(match, msg, target)):
                    # full: park the sender with its message, behind earlier blocked senders
                    bs = target.blocked_senders
                    if bs is None:
                        bs = target.blocked_senders = deque()
                    bs.append((proc, msg))
                    proc.blocked_on = target
                    return self.k.park(proc, WaitKind.SEND, self._on_abort_send)
        self.deliver(target, msg)
        return None

    def _carry_caps(self, proc: Process, refs: tuple[Any, ...], target: Process) -> tuple[int, ...]:
        resolve = self.k.caps.resolve
        srcs = [resolve(proc, r, R_ANY, "send caps") for r in refs]
        transfer = self.k.caps.transfer
        refs_out = tuple(transfer(src, target).ref for src in srcs)
        if self.graph is not None and refs_out:
            self.graph.granted(proc, target, len(refs_out))
        return refs_out

    def deliver(self, target: Process, msg: Message) -> None:
        """Put `msg` in `target`'s mailbox, or hand it over if target waits for it."""
        if target.state is HIBERNATED:
            hib = self.k.hibernation
            if not hib.thaw(target, "message"):
                hib.defer(target, ("msg", msg))  # its record cannot be read now: in order, later
                return
        self.delivered += 1
        match = target.recv_match
        if match is not None and (match is True or self._matches(match, msg, target)):
            if msg.deadline is not None and self.k.clock.now() > msg.deadline:
                self.late_dropped += 1
                self.k.events.emit(target.pid, "drop_late", msg.sender)
                return
            target.recv_match = None
            if target.timer is not None:
                self.k.timers.cancel(target.timer)
                target.timer = None
            if msg.sent and self.k.message_events:
                self.k.events.emit(target.pid, "recv", (msg.sender, msg.sent))
            target.last_msg = msg
            self._wake(target, msg)
            return
        mb = target.mailbox
        if mb is None:
            mb = target.mailbox = deque()
        mb.append(msg)

    def _matches(self, match: Callable[[Message], bool], msg: Message, target: Process) -> bool:
        try:
            return bool(match(msg))
        except BaseException as e:  # a broken matcher, whatever it raised, is the receiver's fault
            self.k.events.emit(target.pid, "match_error", _describe(e))
            return False

    def deliver_kernel(self, target: Process, body: Any) -> None:
        """Kernel messages (Down, signals) skip backpressure: the kernel never parks."""
        if target.state is EXITED:
            return
        self.deliver(target, Message(KERNEL_PID, body))

    # -- recv -----------------------------------------------------------------------
    def sys_recv(self, proc: Process, req: Recv) -> Any:
        mb = proc.mailbox
        match = req.match
        if match is not None and not callable(match):
            raise BadArgument(f"recv: match must be a callable taking a Message, got {type(match).__name__}")
        if not mb and proc.blocked_senders:  # a zero-size mailbox: take straight from a sender
            self._refill(proc)
            mb = proc.mailbox
        if mb:
            msg = self._take(proc, mb, match)
            if msg is not None:
                if msg.sent and self.k.message_events:
                    self.k.events.emit(proc.pid, "recv", (msg.sender, msg.sent))
                proc.last_msg = msg
                return msg
        if match is not None and proc.blocked_senders:
            msg = self._take_blocked(proc, match)
            if msg is not None:
                if msg.sent and self.k.message_events:
                    self.k.events.emit(proc.pid, "recv", (msg.sender, msg.sent))
                proc.last_msg = msg
                return msg
        timeout = req.timeout
        if timeout is not None:
            timeout = A.number("recv: timeout (ms)", timeout)
            if timeout <= 0:
                return None
        proc.recv_match = True if match is None else match
        if timeout is not None:
            proc.timer = self.k.timers.add(self.k.clock.now() + timeout, self._recv_timeout, proc)
        return self.k.park(proc, WaitKind.RECV, self._on_abort_recv)

    def _take(self, proc: Process, mb: deque[Message], match: Any) -> Message | None:
        now = None
        if match is None:
            while mb:
                msg = mb.popleft()
                self._refill(proc)
                if msg.deadline is not None:
                    now = self.k.clock.now() if now is None else now
                    if now > msg.deadline:
                        self._late(proc, msg)
                        continue
                return msg
            return None
        for i, msg in enumerate(mb):
            if self._matches(match, msg, proc):
                del mb[i]
                self._refill(proc)
                if msg.deadline is not None and self.k.clock.now() > msg.deadline:
                    self._late(proc, msg)
                    return self._take(proc, mb, match)
                return msg
        return None

    def _take_blocked(self, proc: Process, match: Any) -> Message | None:
        """A selective recv may take a matching message still held by a blocked sender.

        The message arrived while the mailbox was full of other traffic; it never took a
        slot, so taking it releases only its own sender and leaves every other sender's
        place (and so per-sender order) as it was."""
        bs = proc.blocked_senders
        assert bs is not None
        for i, (sender, msg) in enumerate(bs):
            if self._matches(match, msg, proc):
                del bs[i]
                sender.blocked_on = None
                self.k.wake(sender, None)
                if msg.deadline is not None and self.k.clock.now() > msg.deadline:
                    self._late(proc, msg)
                    return self._take_blocked(proc, match) if proc.blocked_senders else None
                return msg
        return None

    def _late(self, proc: Process, msg: Message) -> None:
        self.late_dropped += 1
        self.k.events.emit(proc.pid, "drop_late", msg.sender)

    def _refill(self, proc: Process) -> None:
        """A slot freed: admit the first blocked sender's message and release it."""
        bs = proc.blocked_senders
        if not bs:
            return
        sender, msg = bs.popleft()
        sender.blocked_on = None
        mb = proc.mailbox
        if mb is None:
            mb = proc.mailbox = deque()
        mb.append(msg)
        self.k.wake(sender, None)

    def _recv_timeout(self, proc: Process) -> None:
        proc.timer = None
        if proc.state is EXITED or proc.recv_match is None:
            return
        proc.recv_match = None
        self.k.wake(proc, None)

    # -- teardown -------------------------------------------------------------------
    def release(self, proc: Process) -> None:
        """`proc` is exiting: unpark whoever was blocked on its mailbox, drop its own send."""
        bs = proc.blocked_senders
        proc.blocked_senders = None
        if bs:
            for sender, _ in bs:
                sender.blocked_on = None
                self.dead_letters += 1
                self.k.wake(sender, None)
        self._unpark_send(proc)
        proc.mailbox = None
        proc.recv_match = None

    @staticmethod
    def _unpark_send(proc: Process) -> bool:
        """Withdraw `proc`'s parked send (its message is not delivered). True if there was one."""
        target = proc.blocked_on
        if target is None:
            return False
        proc.blocked_on = None
        tbs = target.blocked_senders
        if tbs:
            target.blocked_senders = deque(e for e in tbs if e[0] is not proc)
        return True

    def _abort_recv(self, proc: Process) -> bool:
        """Withdraw a parked recv (SIGINT, teardown)."""
        proc.recv_match = None
        self.k.timers.cancel(proc.timer)
        proc.timer = None
        return True

    def _abort_send(self, proc: Process) -> bool:
        """Withdraw a parked send; its message is not delivered."""
        self._unpark_send(proc)
        return True


def _describe(e: BaseException) -> str:
    """`Type(message)` of an exception from process code, bounded; never raises."""
    try:
        text = str(e)
    except BaseException:
        text = "?"
    return f"{type(e).__name__}({text[:200]!r})"


__all__ = ["IPC"]
