"""A kernel as a node of a NATS cluster: membership, failure detection, fencing, remote IPC.

`Cluster(kernel, config)` plugs into a kernel through its extension points (syscall
handlers for `spawn_remote`, `register`, `unregister`, `lookup` and `monitor`, the sender
for remote capabilities, an observer for exits); `await cluster.join()` before the kernel
boots, in the same event loop, and `await cluster.leave()` after. The work is split by
idea: membership.py decides who is up, nats.py moves bytes, frames.py seals them, and
remote.py holds the syscalls a process uses. This module holds the node's state and its
loops: renew our lease, read everyone's, act on changes, take frames in.

Invariants:
- Nothing from a node is acted on unless it is a live member at the incarnation the frame
  carries (`Membership.accepts`); a fenced node acts on nothing and sends nothing.
- When a node is declared down (or we fence ourselves), every local monitor of one of its
  processes gets exactly one `Down(pid, noconnection(node))`, and every stub standing for a
  process spawned there ends with that reason, returning the budget it held.
- Frames arrive in asyncio callbacks, never while a process runs; a callback touches the
  kernel only through the calls a driver's completion would (deliver, wake, create).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..abi import syscalls as S
from ..abi.types import KERNEL_PID, Down, ExitReason, Message, Quota, noconnection
from ..kernel.caps import REMOTE, R_SEND
from ..kernel.observer import Observer
from ..kernel.process import EXITED
from .frames import FrameCodec, RemoteAddr
from .membership import Change, Membership
from .nats import NatsLink, check_node

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel
    from ..kernel.process import Process

log = logging.getLogger("agentos.net.cluster")


@dataclass
class ClusterConfig:
    """How this node joins: where, as whom, with which key, lease and grants."""

    url: str
    node: str
    key: bytes
    cluster: str = "agentos"
    lease: float = 1.0                  # seconds a lease holds without renewal
    period: float | None = None         # renew/read period; default lease / 4
    grants: dict[str, Quota] = field(default_factory=dict)
    """The account each peer may spend on this node (remote spawns and migrations into it
    are carved from it); "*" is the grant of a peer not named. No grant: no remote spawns."""
    remote_quota: Quota | None = None   # what a spawn_remote without a quota carves here
    spawn_timeout: float = 10.0         # seconds a spawn_remote waits for the peer's answer
    durable_retry: float = 30.0         # seconds a durable send keeps trying the stream

    def __post_init__(self) -> None:
        check_node(self.node)
        check_node(self.cluster)
        if not isinstance(self.key, bytes) or len(self.key) < 16:
            raise ValueError("the cluster key must be at least 16 bytes")
        if self.period is None:
            self.period = self.lease / 4
        if not 0 < self.period < self.lease:
            raise ValueError(f"period must be positive and shorter than the lease, got {self.period}")
        for peer, q in self.grants.items():
            if not isinstance(q, Quota):
                raise ValueError(f"grant for {peer!r} must be a Quota, got {type(q).__name__}")


class _ExitWatch(Observer):
    """Tells the cluster when a local process ends (remote monitors, names, stubs)."""

    def __init__(self, cluster: "Cluster") -> None:
        self.cluster = cluster

    def exited(self, proc: "Process", reason: ExitReason) -> None:
        self.cluster._local_exit(proc, reason)


class Cluster:
    """This kernel's membership of a cluster. See the module docstring."""

    def __init__(self, kernel: "Kernel", config: ClusterConfig) -> None:
        from .remote import RemoteCalls

        self.k = kernel
        self.config = config
        self.node = config.node
        self.link = NatsLink(config.url, config.cluster, config.node)
        self.members = Membership(config.node, config.lease)
        self.codec = FrameCodec(config.key)
        self.published: dict[str, Any] = {}          # image name → image, spawnable by peers
        self.monitors: dict[RemoteAddr, list[int]] = {}   # remote process → local watcher pids
        self.watched: dict[int, set[tuple[str, int]]] = {}  # local pid → remote (node, pid) watchers
        self.names: dict[str, dict[str, Any]] = {}    # the cluster's names, as last seen
        self.claimed: dict[str, int] = {}             # names this node holds: name → pid
        self.counters: dict[str, int] = {"sent": 0, "received": 0, "refused": 0, "dropped": 0,
                                         "dead_letters": 0, "durable_sent": 0, "durable_received": 0,
                                         "nodes_down": 0, "fenced": 0}
        self.calls = RemoteCalls(self)
        self._tasks: list[asyncio.Task[Any]] = []
        self._stamp = 0
        self._joined = False
        self._attached_source = False
        self._on_change: list[Callable[[Change], None]] = []
        kernel.add_observer(_ExitWatch(self))
        self.calls.install()
        kernel.extensions["cluster"] = self

    # -- publishing ----------------------------------------------------------------------
    def register_image(self, name: str, main: Any) -> None:
        """Publish `main` under `name`: peers may start it here with `spawn_remote`."""
        from ..kernel.process import ProcessImage

        if type(name) is not str or not name or len(name) > 256:
            raise ValueError(f"an image name is a non-empty string of at most 256 characters, got {name!r}")
        self.published[name] = ProcessImage(name, main) if not isinstance(main, ProcessImage) else main

    def on_change(self, fn: Callable[[Change], None]) -> None:
        """Call `fn(change)` whenever a peer goes up or down, and when this node fences
        itself (a Change for its own name, up=False) and rejoins (up=True)."""
        self._on_change.append(fn)

    # -- joining and leaving -------------------------------------------------------------
    async def join(self) -> None:
        """Connect, take the next incarnation, read the table, then start taking frames."""
        await self.link.connect()
        prev = await self.link.get_member(self.node)
        if prev is not None and type(prev.get("incarnation")) is int:
            self.members.incarnation = prev["incarnation"] + 1
        await self._renew()
        await self._scan()
        await self.link.watch_names(self._name_changed)
        await self.link.listen(self._on_frame)
        await self.link.listen_durable(self._on_durable)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._lease_loop()), loop.create_task(self._scan_loop())]
        self.k.external_source(+1)
        self._attached_source = True
        self._joined = True
        self.k.events.emit(KERNEL_PID, "cluster_join", {"node": self.node,
                                                        "incarnation": self.members.incarnation})

    async def leave(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        if self._attached_source:
            self.k.external_source(-1)
            self._attached_source = False
        await self.link.close()
        self._joined = False

    # -- the lease -----------------------------------------------------------------------
    async def _renew(self, incarnation: int | None = None) -> None:
        self._stamp += 1
        rec = {"incarnation": incarnation or self.members.incarnation, "stamp": [time.time(), self._stamp],
               "lease": self.config.lease, "pid": _os_pid()}
        assert self.config.period is not None
        await asyncio.wait_for(self.link.put_member(rec), timeout=max(self.config.period, 0.05) * 2)
        if incarnation is None:
            self.members.renewed(time.monotonic())

    async def _lease_loop(self) -> None:
        period = self.config.period
        assert period is not None
        while True:
            self.check_fence()
            try:
                if self.members.fenced:
                    await self._renew(self.members.incarnation + 1)  # first written, then held
                    self.members.rejoin(time.monotonic())
                    await self._scan()  # know the others again before taking their frames
                    self.k.events.emit(KERNEL_PID, "cluster_rejoin", self.members.incarnation)
                    self._tell(Change(self.node, self.members.incarnation, True))
                else:
                    await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS away: the fence check decides
                log.debug("lease renewal failed: %s", e)
            self.check_fence()
            await asyncio.sleep(period)

    def check_fence(self) -> bool:
        """Fence now if our lease lapsed; True if this node is fenced. Called before acting
        on any frame and before any send, so a node woken from a long stop never acts on
        what it learnt before it was declared down."""
        m = self.members
        if m.must_fence(time.monotonic()):
            self._fence()
        return m.fenced

    def _fence(self) -> None:
        self.members.fence()
        self.counters["fenced"] += 1
        self.k.events.emit(KERNEL_PID, "cluster_fenced", {"node": self.node,
                                                          "incarnation": self.members.incarnation})
        self._tell(Change(self.node, self.members.incarnation, False))
        for name, pid in list(self.claimed.items()):
            proc = self.k.procs.get(pid)
            if proc is not None and self.k.names.get(name) is proc:
                del self.k.names[name]
                if proc.names:
                    proc.names.discard(name)
        self.claimed.clear()
        self.names.clear()
        self.watched.clear()
        for addr in list(self.monitors):
            self._lost(addr, noconnection(addr.node))
        self.calls.node_lost(None)
        # what we knew of the others is void: after the rejoin each is read afresh (and is
        # not held against them: it was us who lost touch)
        self.members.peers.clear()
        self._poke()

    # -- reading the table ---------------------------------------------------------------
    async def _scan(self) -> None:
        records = await self.link.read_members()
        now = time.monotonic()
        if self.check_fence():  # woken from a stop: we are the stale one, not our peers
            return
        table: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
        for node, rec in records.items():
            table[node] = (rec.get("incarnation"), rec.get("stamp"), {"pid": rec.get("pid")})
        for change in self.members.observe(table, now):
            self._changed(change)

    async def _scan_loop(self) -> None:
        period = self.config.period
        assert period is not None
        while True:
            await asyncio.sleep(period)
            if self.check_fence():
                continue
            try:
                await asyncio.wait_for(self._scan(), timeout=period * 2)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - cannot read: no evidence about anyone
                log.debug("membership read failed: %s", e)

    def _changed(self, change: Change) -> None:
        if change.up:
            self.k.events.emit(KERNEL_PID, "node_up", {"node": change.node, "incarnation": change.incarnation})
        else:
            self.counters["nodes_down"] += 1
            self.k.events.emit(KERNEL_PID, "node_down", {"node": change.node, "incarnation": change.incarnation})
            self._node_down(change.node)
        self._tell(change)

    def _tell(self, change: Change) -> None:
        for fn in list(self._on_change):
            try:
                fn(change)
            except Exception:  # noqa: BLE001
                log.exception("on_change callback failed")

    def _node_down(self, node: str) -> None:
        reason = noconnection(node)
        for addr in [a for a in self.monitors if a.node == node]:
            self._lost(addr, reason)
        for pid, watchers in list(self.watched.items()):
            watchers.difference_update({w for w in watchers if w[0] == node})
            if not watchers:
                del self.watched[pid]
        for name, rec in list(self.names.items()):
            if rec.get("node") == node:
                del self.names[name]
        self.calls.node_lost(node)
        self._poke()

    def _lost(self, addr: RemoteAddr, reason: ExitReason, name: str = "") -> None:
        """Process `addr` is gone (or unreachable): one Down to each local monitor of it."""
        for pid in self.monitors.pop(addr, ()):
            proc = self.k.procs.get(pid)
            if proc is not None and proc.state is not EXITED:
                self.k.ipc.deliver_kernel(proc, Down(addr.pid, reason, name or f"{addr.node}/{addr.pid}"))

    # -- names ---------------------------------------------------------------------------
    def _name_changed(self, name: str, rec: dict[str, Any] | None) -> None:
        if rec is None:
            self.names.pop(name, None)
            return
        self.names[name] = rec
        pid = self.claimed.get(name)
        if pid is not None and (rec.get("node") != self.node or rec.get("pid") != pid):
            self.claimed.pop(name, None)  # taken over (we were declared down meanwhile)

    def name_record(self, pid: int) -> dict[str, Any]:
        return {"node": self.node, "pid": pid, "incarnation": self.members.incarnation}

    def holder_alive(self, rec: dict[str, Any]) -> bool:
        """Whether the holder in a name record is still a live member we know of."""
        node, inc = rec.get("node"), rec.get("incarnation")
        if node == self.node:
            if inc != self.members.incarnation:
                return False
            proc = self.k.procs.get(rec.get("pid"))  # type: ignore[arg-type]
            return proc is not None and proc.state is not EXITED
        return type(node) is str and self.members.accepts(node, inc)

    # -- frames in -----------------------------------------------------------------------
    async def _on_frame(self, data: bytes) -> None:
        frame = self.codec.open(data, self.node)
        if frame is None:
            self.counters["dropped"] += 1
            return
        if self.check_fence() or not self.members.accepts(frame.src, frame.inc):
            self.counters["refused"] += 1
            return
        self.counters["received"] += 1
        self.calls.handle(frame)
        self._poke()

    async def _on_durable(self, data: bytes) -> bool:
        """A durable frame: True once delivered or refused for good (acknowledged), False to
        have the stream hand it over again later (a full mailbox, or fenced right now)."""
        frame = self.codec.open(data, self.node, replay_ok=True)
        if frame is None:
            self.counters["dropped"] += 1
            return True
        if self.check_fence():
            return False
        peer = self.members.peers.get(frame.src)
        if peer is None or frame.inc > peer.incarnation:
            return False  # a sender we have not read yet: wait for the table
        self.counters["durable_received"] += 1
        done = self.calls.deliver_durable(frame)
        self._poke()
        return done

    # -- frames out ----------------------------------------------------------------------
    def send_frame(self, node: str, kind: str, body: dict[str, Any], *, src_pid: int = 0,
                   dst_pid: int = 0) -> bool:
        """Seal and publish a frame to `node` (at most once). False if not sent: we are
        fenced, or `node` is not a live member."""
        if self.check_fence():
            return False
        if node != self.node and not self._is_up(node):
            return False
        data, _nonce = self.codec.seal(self.node, self.members.incarnation, src_pid, node, dst_pid, kind, body)
        self.counters["sent"] += 1
        self._spawn_task(self._publish(node, data))
        return True

    def _is_up(self, node: str) -> bool:
        peer = self.members.peers.get(node)
        return peer is not None and peer.up

    async def _publish(self, node: str, data: bytes) -> None:
        try:
            await self.link.publish(node, data)
        except Exception as e:  # noqa: BLE001 - at most once: a lost frame is lost
            self.counters["dropped"] += 1
            log.debug("publish to %s failed: %s", node, e)

    def _spawn_task(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        try:
            self._tasks.remove(task)
        except ValueError:
            pass

    def _poke(self) -> None:
        """Wake the kernel's loop: a callback made a process runnable."""
        wake = self.k._wakeup
        if wake is not None:
            wake.set()

    # -- local exits ---------------------------------------------------------------------
    def _local_exit(self, proc: "Process", reason: ExitReason) -> None:
        watchers = self.watched.pop(proc.pid, None)
        if watchers:
            used = list(proc.account.used[:3]) if proc.account is not None else [0, 0, 0]
            for node in sorted({w[0] for w in watchers}):
                self.send_frame(node, "down", {"pid": proc.pid, "reason": str(reason),
                                               "name": proc.name, "used": used}, src_pid=proc.pid)
        for name, pid in list(self.claimed.items()):
            if pid == proc.pid:
                del self.claimed[name]
                self._spawn_task(self.link.drop_name(name, _same(self.name_record(pid))))
        self.calls.local_exit(proc)

    def deliver_remote(self, target: "Process", src: RemoteAddr, body: Any, corr: Any) -> bool:
        """Put a message from a remote process in `target`'s mailbox, with a reply proxy as
        its first capability. False if the mailbox is full (the receiver's own bound)."""
        limit = target.max_mailbox
        if limit is not None and target.mailbox is not None and len(target.mailbox) >= limit:
            return False
        ref = self.calls.proxy_for(target, src, R_SEND)
        self.k.ipc.deliver(target, Message(src.pid, body, (ref,), corr))
        return True


def _same(rec: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda held: held == rec


def _os_pid() -> int:
    import os

    return os.getpid()


__all__ = ["Cluster", "ClusterConfig", "REMOTE"]
