"""A kernel as a node of a NATS cluster: membership, failure detection, fencing, routes.

`Cluster(kernel, config)` plugs into a kernel: the cross-node syscalls (calls.py) and a
handler per cluster envelope kind (`Kernel.on_envelope`). `await cluster.join()` (live,
before the kernel boots, in the same event loop) connects to NATS, takes the next
incarnation of this node, gives the kernel its node identity (`Kernel.connect`) and starts
the two loops: renew our lease, read everyone's. `await cluster.leave()` after the run.
A replaying kernel gets a `Cluster` built the same way and never joins: everything the
live one learnt from outside reaches the kernel as an envelope, so the replay applies the
same inputs from the journal.

The split between *live* and *view*: the failure detector (`Membership`, the loops, the
NATS callbacks) runs in asyncio and decides; what the kernel acts on (which peers are up,
whether we are fenced, the cluster's names, answers and timeouts of `spawn_remote`, the
outcome of `register`) changes only when an envelope of ours is applied at a turn of the
kernel's loop (`cl_node`, `cl_fence`, `cl_rejoin`, `cl_name`, `cl_claimed`, `cl_timeout`).
Those are journaled as `net.in` like any remote delivery, so a node's run replays byte for
byte from its own journal, `Down`s from the failure detector included.

Invariants:
- When a node is declared down, frames from the incarnation it had are refused from then on
  (`NetNode.refuse_incarnations_below`); it comes back only as a higher incarnation.
- A node that could not renew its lease for a lease period fences itself before it acts on
  anything else: frames are dropped before ingress, sends are refused, and on applying
  `cl_fence` every local monitor of a remote process gets `Down(pid, noconnection(node))`
  and its cluster names are dropped. It rejoins as the next incarnation.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..abi.errors import SyscallError
from ..abi.types import KERNEL_PID, Down, ExitReason, Quota, noconnection
from ..kernel.observer import Observer
from ..kernel.process import EXITED
from ..kernel.remote import RemoteAddr
from .envelope import MAX_FRAME, NonceGuard, verify
from .errors import EnvelopeRejected, RemoteRefused
from .membership import Change, Membership
from .nats import NatsLink, check_node

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel
    from ..kernel.process import Process

log = logging.getLogger("agentos.net.cluster")

PS_ROWS = 100
"""How many of its processes a node publishes with its lease (the lowest pids)."""
PS_NAME = 64
PS_STATES = frozenset({"ready", "running", "waiting", "suspended", "exited", "hibernated"})

DURABLE_WINDOW_S = 7 * 24 * 3600.0
"""How old a durable frame may be and still be delivered (the stream keeps it meanwhile)."""


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
    durable_retry: float = 60.0         # seconds a durable send keeps trying the stream
    node_keys: dict[str, Any] = field(default_factory=dict)
    """Peers' published trust keys (`kernel.trust.node_public_key()`: 32 bytes, or 64 hex
    digits), pinned at join: sends from a node named here must carry an attestation that
    verifies against its key, or they are dropped at ingress (services/trust.py)."""

    def __post_init__(self) -> None:
        check_node(self.node)
        check_node(self.cluster)
        if not isinstance(self.key, bytes) or len(self.key) < 16:
            raise ValueError("the cluster key must be at least 16 bytes")
        for name in ("lease", "spawn_timeout", "durable_retry"):
            v = getattr(self, name)
            if type(v) not in (int, float) or not 0 < v < float("inf"):
                raise ValueError(f"{name} must be a positive finite number of seconds, got {v!r}")
        if self.period is None:
            self.period = self.lease / 4
        if type(self.period) not in (int, float) or not 0 < self.period < self.lease:
            raise ValueError(f"period must be positive and shorter than the lease, got {self.period!r}")
        for peer, q in self.grants.items():
            if not isinstance(q, Quota):
                raise ValueError(f"grant for {peer!r} must be a Quota, got {type(q).__name__}")
        for peer, key in self.node_keys.items():
            check_node(peer)
            ok = (type(key) is bytes and len(key) == 32) or (
                type(key) is str and len(key) == 64 and all(c in "0123456789abcdef" for c in key))
            if not ok:
                raise ValueError(f"the trust key of node {peer!r} must be 32 bytes or 64 lowercase hex digits")


class _ExitWatch(Observer):
    """Tells the cluster when a local process ends (remote monitors, names, stubs)."""

    def __init__(self, cluster: "Cluster") -> None:
        self.cluster = cluster

    def exited(self, proc: "Process", reason: ExitReason) -> None:
        self.cluster._local_exit(proc, reason)


class NatsRoute:
    """The kernel's route to one peer (a `Transport`): frames go to that node's subject."""

    def __init__(self, cluster: "Cluster", node: str) -> None:
        self.cluster = cluster
        self.node = node

    def send(self, frame: bytes) -> bool:
        c = self.cluster
        if c.check_fence():
            return False
        c._queue(self.node, frame)
        return True


class _NoRoute:
    def send(self, frame: bytes) -> bool:
        return False


class Cluster:
    """This kernel's membership of a cluster. See the module docstring."""

    def __init__(self, kernel: "Kernel", config: ClusterConfig) -> None:
        from .calls import ClusterCalls
        from .migrate import Migrations

        if "cluster" in kernel.extensions:
            raise ValueError("this kernel is already a node of a cluster")
        self.k = kernel
        self.config = config
        self.node = config.node
        self.members = Membership(config.node, config.lease)  # live: the failure detector
        # the view: what the kernel acts on, changed only by applied envelopes
        self.view: dict[str, int] = {}                # up peers → incarnation
        self.fenced = False
        self.incarnation = 0
        self.names: dict[str, dict[str, Any]] = {}    # the cluster's names, as applied
        self.claimed: dict[str, int] = {}             # names this node holds: name → pid
        self.monitors: dict[RemoteAddr, list[int]] = {}       # remote process → local watchers
        self.watched: dict[int, set[str]] = {}        # local pid → nodes watching it
        self.published: dict[str, Any] = {}           # image name → image, spawnable by peers
        self.counters: dict[str, int] = {"refused_fenced": 0, "durable_sent": 0, "durable_received": 0,
                                         "durable_dropped": 0, "nodes_down": 0, "fenced": 0}
        self.link = NatsLink(config.url, config.cluster, config.node)
        self.durable_guard = NonceGuard(DURABLE_WINDOW_S, 200_000)
        self.calls = ClusterCalls(self)
        self.migrations = Migrations(self)
        self._tasks: list[asyncio.Task[Any]] = []
        self._out: deque[tuple[str, bytes]] = deque()
        self._out_ready: asyncio.Event | None = None
        self._stamp = 0
        self.joined = False  # live: connected to NATS (join ran, leave did not)
        self._on_change: list[Callable[[Change], None]] = []
        kernel.add_observer(_ExitWatch(self))
        self.calls.install()
        for kind, fn in (("cl_node", self._apply_node), ("cl_fence", self._apply_fence),
                         ("cl_rejoin", self._apply_rejoin), ("cl_name", self._apply_name)):
            kernel.on_envelope(kind, fn)
        kernel.extensions["cluster"] = self

    # -- publishing ----------------------------------------------------------------------
    def register_image(self, name: str, main: Any) -> None:
        """Publish `main` under `name`: peers may start it here with `spawn_remote`."""
        from ..kernel.process import ProcessImage

        if type(name) is not str or not name or len(name) > 256:
            raise ValueError(f"an image name is a non-empty string of at most 256 characters, got {name!r}")
        self.published[name] = main if isinstance(main, ProcessImage) else ProcessImage(name, main)

    async def migrate(self, pid: int, node: str, *, timeout: float = 10.0) -> tuple[str, int]:
        """Move message-loop process `pid` to `node` (see migrate.py); returns (node, pid)
        where it runs now. The old pid forwards what reaches it afterwards."""
        return await self.migrations.migrate(pid, node, timeout=timeout)

    def on_change(self, fn: Callable[[Change], None]) -> None:
        """Call `fn(change)` whenever the detector sees a peer go up or down, and when this
        node fences itself (a Change naming itself, up=False) and rejoins (up=True)."""
        self._on_change.append(fn)

    # -- joining and leaving (live) ------------------------------------------------------
    async def join(self) -> None:
        """Connect, take the next incarnation, read the table, then start taking frames."""
        if self.k.replaying:
            raise RemoteRefused("join: a replaying kernel takes the cluster's input from its journal")
        if self.config.node_keys:
            trust = self.k.trust
            if trust is None:
                raise RemoteRefused("join: node_keys are pinned by the trust service, which this kernel lacks")
            for peer, key in self.config.node_keys.items():
                trust.trust_node(peer, key)
        await self.link.connect()
        prev = await self.link.get_member(self.node)
        if prev is not None and type(prev.get("incarnation")) is int:
            self.members.incarnation = prev["incarnation"] + 1
        self.k.connect(self.node, _NoRoute(), node=self.node, key=self.config.key,
                       incarnation=self.members.incarnation)
        self._input("cl_rejoin", {"incarnation": self.members.incarnation})
        await self._renew()
        await self._scan()
        await self.link.watch_names(self._name_seen)
        await self.link.listen(self._on_frame)
        await self.link.listen_durable(self._on_durable)
        loop = asyncio.get_running_loop()
        self._out_ready = asyncio.Event()
        self._tasks = [loop.create_task(self._lease_loop()), loop.create_task(self._scan_loop()),
                       loop.create_task(self._pump())]
        self.joined = True

    async def leave(self) -> None:
        self.joined = False
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        await self.link.close()

    def _input(self, kind: str, body: Any) -> None:
        """Hand the kernel something the cluster learnt, as an envelope from this node to
        itself: verified, applied at a loop turn and journaled like any remote input."""
        net = self.k.net
        if net is None:
            return
        try:
            net.ship(KERNEL_PID, self.node, KERNEL_PID, body, kind=kind)
        except SyscallError as e:  # pragma: no cover - our own bodies are plain data
            log.error("cluster input %s refused: %s", kind, e)

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        try:
            self._tasks.remove(task)
        except ValueError:
            pass

    # -- the lease (live) ----------------------------------------------------------------
    async def _renew(self, incarnation: int | None = None) -> None:
        self._stamp += 1
        rec = {"incarnation": incarnation or self.members.incarnation, "stamp": [time.time(), self._stamp],
               "lease": self.config.lease, "os_pid": os.getpid(), "procs": len(self.k.procs),
               "ps": self._ps_digest()}
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
                    inc = self.members.rejoin(time.monotonic())
                    net = self.k.net
                    if net is not None:
                        net.incarnation = inc
                    self._input("cl_rejoin", {"incarnation": inc})
                    self._tell(Change(self.node, inc, True))
                    await self._scan()  # know the others again before taking their frames
                else:
                    await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS away: the fence check decides
                log.debug("lease renewal failed: %s", e)
            self.check_fence()
            await asyncio.sleep(period)

    def check_fence(self) -> bool:
        """Fence now if our lease lapsed; True if this node is fenced. Called before taking
        any frame in and before any send, so a node woken from a long stop never acts on
        what it learnt before it was declared down."""
        m = self.members
        if m.must_fence(time.monotonic()):
            m.fence()
            self.counters["fenced"] += 1
            net = self.k.net
            if net is not None:
                for peer in list(net.routes):
                    if peer != self.node:
                        net.remove_route(peer)
            m.peers.clear()  # what we knew of the others is void; read afresh on rejoin
            self._out.clear()
            self._input("cl_fence", {"incarnation": m.incarnation})
            self._tell(Change(self.node, m.incarnation, False))
        return m.fenced

    # -- reading the table (live) --------------------------------------------------------
    async def _scan(self) -> None:
        records = await self.link.read_members()
        now = time.monotonic()
        if self.check_fence():  # woken from a stop: we are the stale one, not our peers
            return
        table: dict[str, tuple[Any, Any, dict[str, Any]]] = {}
        for node, rec in records.items():
            table[node] = (rec.get("incarnation"), rec.get("stamp"),
                           {"os_pid": rec.get("os_pid"), "procs": rec.get("procs"), "ps": rec.get("ps")})
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
        net = self.k.net
        if change.up:
            if net is not None:
                if change.incarnation > 1:
                    net.refuse_incarnations_below(change.node, change.incarnation)
                self.k.connect(change.node, NatsRoute(self, change.node))
        else:
            self.counters["nodes_down"] += 1
            if net is not None:
                net.refuse_incarnations_below(change.node, change.incarnation + 1)
                net.remove_route(change.node)
        self._input("cl_node", {"node": change.node, "incarnation": change.incarnation, "up": change.up})
        self._tell(change)

    def _tell(self, change: Change) -> None:
        for fn in list(self._on_change):
            try:
                fn(change)
            except Exception:  # noqa: BLE001
                log.exception("on_change callback failed")

    def _name_seen(self, name: str, rec: dict[str, Any] | None) -> None:
        self._input("cl_name", {"name": name, "record": rec})

    # -- frames in and out (live) --------------------------------------------------------
    async def _on_frame(self, data: bytes) -> None:
        if self.check_fence():
            self.counters["refused_fenced"] += 1
            return
        self.k.ingress(data)

    async def _on_durable(self, data: bytes) -> bool:
        """A durable frame: True once it is in the kernel's input (or refused for good), so
        the stream forgets it; False to have it handed over again (we are fenced now)."""
        if self.check_fence():
            return False
        try:
            env = verify(self.config.key, data, self.durable_guard, time.time(), max_frame=MAX_FRAME)
        except EnvelopeRejected as e:
            if e.reason != "replayed":  # a replay is a redelivery of one already taken in
                self.counters["durable_dropped"] += 1
            return True
        if env.to_node != self.node:
            self.counters["durable_dropped"] += 1
            return True
        self.counters["durable_received"] += 1
        self.k.ingress_verified(env)
        return True

    def _queue(self, node: str, frame: bytes) -> None:
        self._out.append((node, frame))
        ready = self._out_ready
        if ready is not None:
            ready.set()

    async def _pump(self) -> None:
        """Publish queued frames in order (at most once: a frame NATS refuses is lost)."""
        ready = self._out_ready
        assert ready is not None
        out = self._out
        link = self.link
        while True:
            await ready.wait()
            ready.clear()
            while out:
                node, frame = out.popleft()
                try:
                    await link.publish(node, frame)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001
                    log.debug("publish to %s failed: %s", node, e)

    async def publish_durable(self, node: str, frame: bytes, nonce: str) -> None:
        """Store `frame` for `node` in the stream, trying until it is stored (the nonce is the
        de-duplication id, so a retry after a lost answer is stored once)."""
        deadline = time.monotonic() + self.config.durable_retry
        while True:
            try:
                await self.link.publish_durable(node, frame, nonce)
                self.counters["durable_sent"] += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS away: again, until the deadline
                if time.monotonic() > deadline:
                    self.counters["durable_dropped"] += 1
                    self.k.events.emit(KERNEL_PID, "durable_lost", {"to": node, "nonce": nonce,
                                                                    "error": f"{type(e).__name__}: {e}"[:200]})
                    return
                await asyncio.sleep(0.1)

    def ship(self, src_pid: int, node: str, dst_pid: int, body: Any, kind: str) -> bool:
        """Send a cluster envelope now (live only; a replay ships nothing). False if it could
        not go: no route (the node is down), or we are fenced."""
        net = self.k.net
        if net is None or self.k.replaying:
            return False
        try:
            net.ship(src_pid, node, dst_pid, body, kind=kind)
            return True
        except SyscallError:
            return False

    # -- applying inputs (live and replay alike) -----------------------------------------
    def _apply_node(self, env: dict[str, Any]) -> None:
        b = env["body"]
        if env["from_node"] != self.node or not isinstance(b, dict):
            return  # only this node's own detector speaks of membership
        node, inc, up = b.get("node"), b.get("incarnation"), b.get("up")
        if type(node) is not str or type(inc) is not int:
            return
        if up:
            self.view[node] = inc
            self.k.events.emit(KERNEL_PID, "node_up", {"node": node, "incarnation": inc})
            return
        if self.view.get(node, inc) != inc:
            return  # an older incarnation than the one we know is up
        self.view.pop(node, None)
        self.k.events.emit(KERNEL_PID, "node_down", {"node": node, "incarnation": inc})
        self._node_lost(node)

    def _apply_fence(self, env: dict[str, Any]) -> None:
        if env["from_node"] != self.node:
            return
        self.fenced = True
        self.k.events.emit(KERNEL_PID, "cluster_fenced", {"node": self.node, "incarnation": self.incarnation})
        for name, pid in list(self.claimed.items()):
            proc = self.k.procs.get(pid)
            if proc is not None and self.k.names.get(name) is proc:
                del self.k.names[name]
                if proc.names:
                    proc.names.discard(name)
        self.claimed.clear()
        self.names.clear()
        self.watched.clear()
        self.view.clear()
        self._node_lost(None)

    def _apply_rejoin(self, env: dict[str, Any]) -> None:
        b = env["body"]
        if env["from_node"] != self.node or not isinstance(b, dict) or type(b.get("incarnation")) is not int:
            return
        self.fenced = False
        self.incarnation = b["incarnation"]
        self.k.events.emit(KERNEL_PID, "cluster_join", {"node": self.node, "incarnation": self.incarnation})

    def _apply_name(self, env: dict[str, Any]) -> None:
        b = env["body"]
        if env["from_node"] != self.node or not isinstance(b, dict) or type(b.get("name")) is not str:
            return
        name, rec = b["name"], b.get("record")
        if not isinstance(rec, dict):
            self.names.pop(name, None)
            return
        self.names[name] = rec
        pid = self.claimed.get(name)
        if pid is not None and (rec.get("node") != self.node or rec.get("pid") != pid):
            self.claimed.pop(name, None)  # taken over while we were declared down

    def _node_lost(self, node: str | None) -> None:
        """`node` (None: all of them; we fenced) is gone: Downs, stubs, names, pending calls."""
        for addr in [a for a in self.monitors if node is None or a.node == node]:
            self.lost(addr, noconnection(addr.node))
        if node is not None:
            for pid, nodes in list(self.watched.items()):
                nodes.discard(node)
                if not nodes:
                    del self.watched[pid]
            for name, rec in list(self.names.items()):
                if rec.get("node") == node:
                    del self.names[name]
        self.calls.node_lost(node)

    def lost(self, addr: RemoteAddr, reason: ExitReason, name: str = "") -> None:
        """Process `addr` ended (or cannot be reached): one Down to each local monitor of it."""
        ends = self.calls.stubs
        for pid in self.monitors.pop(addr, ()):
            proc = self.k.procs.get(pid)
            if proc is None or proc.state is EXITED:
                continue
            if ends.get(pid) == addr or pid in self.migrations.forwarders:
                self.k.terminate(proc, reason)  # it stood for that process: it ends as that one did
            else:
                self.k.ipc.deliver_kernel(proc, Down(addr.pid, reason, name or str(addr)))

    def is_up(self, node: str) -> bool:
        return not self.fenced and node in self.view

    def name_record(self, pid: int) -> dict[str, Any]:
        return {"node": self.node, "pid": pid, "incarnation": self.incarnation}

    def holder_alive(self, rec: dict[str, Any]) -> bool:
        """Whether the holder named in a name record is alive, as this kernel's view has it."""
        node, inc = rec.get("node"), rec.get("incarnation")
        if node == self.node:
            if inc != self.incarnation:
                return False
            proc = self.k.procs.get(rec.get("pid"))  # type: ignore[arg-type]
            return proc is not None and proc.state is not EXITED
        return type(node) is str and self.view.get(node) == inc and not self.fenced

    # -- local exits ---------------------------------------------------------------------
    def _local_exit(self, proc: "Process", reason: ExitReason) -> None:
        nodes = self.watched.pop(proc.pid, None)
        if nodes:
            used = list(proc.account.used[:3]) if proc.account is not None else [0, 0, 0]
            for node in sorted(nodes):
                self.ship(proc.pid, node, 0, {"pid": proc.pid, "reason": str(reason), "name": proc.name,
                                              "used": used}, "cl_down")
        for name, pid in list(self.claimed.items()):
            if pid == proc.pid:
                del self.claimed[name]
                if not self.k.replaying and self.k.net is not None:
                    self._spawn_task(self.link.drop_name(name, _same(self.name_record(pid))))
        self.calls.local_exit(proc)

    def nodes(self) -> list[dict[str, Any]]:
        """Every node this one knows of (itself first), as the detector sees it now: for
        `agentctl ps` and the dashboard. `procs` is what each node last published;
        `lease_age` is the seconds since its lease last changed, on this node's monotonic
        clock (our own: since we last renewed; null when unknown)."""
        m = self.members
        now = time.monotonic()

        def age(at: float | None) -> float | None:  # seconds since the lease last changed, as seen here
            return None if at is None or at == math.inf else round(max(0.0, now - at), 3)

        rows = [{"node": self.node, "incarnation": m.incarnation, "state": "fenced" if m.fenced else "self",
                 "procs": len(self.k.procs), "lease_age": age(m.last_renewed)}]
        for peer in sorted(m.peers.values(), key=lambda p: p.node):
            procs = peer.info.get("procs")
            rows.append({"node": peer.node, "incarnation": peer.incarnation, "state": "up" if peer.up else "down",
                         "procs": procs if type(procs) is int else None, "lease_age": age(peer.changed_at)})
        for node, inc in sorted(m.refused.items()):
            if node not in m.peers:
                rows.append({"node": node, "incarnation": inc, "state": "down", "procs": None, "lease_age": None})
        return rows

    def _ps_digest(self) -> list[list[Any]]:
        """The first `PS_ROWS` processes of this node (pid, name, state, wait), published
        with each lease renewal so that every node's `ps` can list them."""
        out: list[list[Any]] = []
        for pid, p in itertools.islice(self.k.procs.items(), PS_ROWS):
            state = "suspended" if p.stopped and p.state is not EXITED else p.state.value
            out.append([pid, str(p.name)[:PS_NAME], state, p.wait_kind.value if p.wait_kind is not None else None])
        return out

    def remote_ps(self) -> list[dict[str, Any]]:
        """The processes of every peer that is up, as each last published them (at most
        `PS_ROWS` a node, the lowest pids): rows `node`, `pid`, `name`, `state`, `wait`.
        The membership table is not sealed, so every field is checked and bounded here."""
        rows: list[dict[str, Any]] = []
        for peer in sorted(self.members.peers.values(), key=lambda p: p.node):
            got = peer.info.get("ps")
            if not peer.up or type(got) is not list:
                continue
            for r in got[:PS_ROWS]:
                if type(r) is not list or len(r) != 4:
                    continue
                pid, name, state, wait = r
                if type(pid) is not int or not 0 < pid < 1 << 63 or type(name) is not str \
                        or state not in PS_STATES or not (wait is None or type(wait) is str):
                    continue
                rows.append({"node": peer.node, "pid": pid, "name": _text(name, PS_NAME), "state": state,
                             "wait": None if wait is None else _text(wait, 32)})
        return rows

    def stats(self) -> dict[str, Any]:
        """For operations: this node, its view of the others, and its counters."""
        net = self.k.net
        return {"node": self.node, "incarnation": self.incarnation, "fenced": self.fenced,
                "up": dict(sorted(self.view.items())), "counters": dict(self.counters),
                "net": net.stats() if net is not None else None}


def _text(s: str, n: int) -> str:
    """At most `n` characters of `s`, lone surrogates replaced (they cannot be encoded)."""
    return s[:n].encode("utf-8", "replace").decode("utf-8")


def _same(rec: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda held: held == rec


__all__ = ["Cluster", "ClusterConfig", "NatsRoute"]
