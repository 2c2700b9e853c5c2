"""The syscalls a process uses across nodes, and the frames that carry them.

`spawn_remote`, `dial`, `send` on a remote capability (plain or `durable=True`), `monitor`
of a remote process, and `register`/`lookup` made cluster-wide. Installed on the kernel by
`Cluster` through `install_syscall` and `install_sender`; the local behaviour of each call
is the kernel's own handler, which these wrap.

Budget: a `spawn_remote` carves its quota from the caller's account into a local *stub*
process that stands for the remote one (it ends when the remote process does, with its
reason, after being charged what the remote process used, so the rest returns to the
caller). On the receiving node the process is carved from the account that node grants
the calling peer (`ClusterConfig.grants`), held by a `peer:<node>` process: a peer can
never spend more there than it was granted, and what a process did not use returns to
that account when it ends.

Invariants: capabilities never cross the wire (a message from another node carries one
capability, a send-only proxy back to its sender, minted by the receiving kernel); a
remote process is acted on (kill) only by the node that spawned it; every parked caller is
woken exactly once: by the answer, by its timeout, or by its node being lost.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ..abi import syscalls as S
from ..abi.errors import BadArgument, CapError, DriverError, NameTaken, SyscallError
from ..abi.types import Down, ExitKind, ExitReason, Quota, WaitKind, killed, noconnection
from ..kernel.caps import REMOTE, R_MONITOR, R_SEND
from ..kernel.process import EXITED, PARK, ProcessImage
from .frames import Frame, RemoteAddr, wire_value
from .nats import check_node

if TYPE_CHECKING:
    from ..kernel.process import Process
    from .cluster import Cluster


class RemoteRefused(SyscallError):
    """The other node refused or could not answer (no such image, no account, unreachable)."""


async def _stub_main(sys: Any, args: Any) -> None:
    """Stands for a process on another node: holds its budget here until its Down comes."""
    while True:
        msg = await sys.recv()
        if isinstance(msg.body, Down):
            await sys.exit(msg.body.reason)


async def _peer_account_main(sys: Any, args: Any) -> None:
    """Holds the account a peer was granted on this node; its children are that peer's."""
    while True:
        await sys.recv()


STUB_IMAGE = ProcessImage("remote-stub", _stub_main)
PEER_ACCOUNT_IMAGE = ProcessImage("peer-account", _peer_account_main)
_QUOTA_FIELDS = ("tokens", "tool_calls", "usd", "wall_ms", "children", "mem", "max_mailbox")


class RemoteCalls:
    """Handlers and frame handling for cross-node calls. One per `Cluster`."""

    def __init__(self, cluster: "Cluster") -> None:
        self.c = cluster
        self.k = cluster.k
        self._orig: dict[type, Any] = {}
        self._prev_sender: Any = None
        self._rid = 0
        self.pending: dict[int, dict[str, Any]] = {}     # spawn_remote calls awaiting an answer
        self.stubs: dict[int, RemoteAddr] = {}            # stub pid → the process it stands for
        self.spawned_by: dict[int, str] = {}              # local pid → node that spawned it
        self.peer_accounts: dict[str, int] = {}           # peer node → pid holding its account
        self._proxies: dict[int, dict[RemoteAddr, int]] = {}  # holder pid → its send proxies
        self._durable_seen: OrderedDict[str, None] = OrderedDict()

    # -- installation --------------------------------------------------------------------
    def install(self) -> None:
        k = self.k
        for req, fn in ((S.Register, self.sys_register), (S.Unregister, self.sys_unregister),
                        (S.Lookup, self.sys_lookup), (S.Monitor, self.sys_monitor),
                        (S.Dial, self.sys_dial)):
            self._orig[req] = k._table[req][0]
            k.install_syscall(req, fn)
        k.install_syscall(S.SpawnRemote, self.sys_spawn_remote)
        self._prev_sender = k._senders.get(REMOTE)
        k.install_sender("remote", self.send_remote)

    def proxy_for(self, holder: "Process", addr: RemoteAddr, rights: int) -> int:
        """A capability held by `holder` designating `addr` (reused while `holder` has it)."""
        held = self._proxies.get(holder.pid)
        ref = held.get(addr) if held is not None and rights == R_SEND else None
        if ref is not None:
            cap = holder.caps.get(ref)
            if cap is not None and cap.target == addr and cap.rights == R_SEND and cap.expires is None:
                return ref
        cap = self.k.caps.grant(holder, REMOTE, addr, rights)
        if rights == R_SEND:
            if held is None:
                held = self._proxies[holder.pid] = {}
            if len(held) < 4096:  # a cache, not a record: a process talking to many peers pays a grant
                held[addr] = cap.ref
        return cap.ref

    def _remote_cap(self, proc: "Process", ref: Any, right: int, what: str) -> Any:
        """The cap behind `ref` if it is a cluster proxy, else None (the local path)."""
        try:
            cap = proc.caps.get(ref)
        except TypeError:
            return None
        if cap is None or cap.kind != REMOTE or not isinstance(cap.target, RemoteAddr):
            return None
        return self.k.caps.resolve(proc, ref, right, what)

    # -- dial ----------------------------------------------------------------------------
    def sys_dial(self, proc: "Process", req: S.Dial) -> Any:
        node = req.node
        if type(node) is str and (node in self.c.members.peers or node == self.c.node):
            _node(node, "dial")
            pid = _pid(req.pid, "dial")
            if node == self.c.node:
                raise BadArgument("dial: that is this node; a local process is reached by a capability")
            if not self.c._is_up(node):
                raise RemoteRefused(f"dial: node {node!r} is not a live member of the cluster")
            return self.proxy_for(proc, RemoteAddr(node, pid), R_SEND)
        return self._orig[S.Dial](proc, req)

    # -- send ----------------------------------------------------------------------------
    def send_remote(self, proc: "Process", cap: Any, req: S.Send) -> Any:
        addr = cap.target
        if not isinstance(addr, RemoteAddr):
            if self._prev_sender is not None:
                return self._prev_sender(proc, cap, req)
            raise CapError("send: this capability designates nothing this kernel can reach")
        if req.caps:
            raise BadArgument("send: capabilities cannot be sent to another node "
                              "(it gets a reply proxy to you; names reach the rest)")
        body = wire_value("send: body", req.body)
        corr = wire_value("send: corr", req.corr)
        c = self.c
        if self.k.police_send and not self.k.authorize(proc, "send", {"to": str(addr), "body": req.body}, req):
            return PARK
        payload = {"body": body, "corr": corr}
        if not getattr(req, "durable", False):
            if not c.send_frame(addr.node, "msg", payload, src_pid=proc.pid, dst_pid=addr.pid):
                self.k.ipc.dead_letters += 1
                c.counters["dead_letters"] += 1
            return None
        if c.check_fence():
            raise RemoteRefused("send: this node is fenced (its lease lapsed); it rejoins shortly")
        data, nonce = c.codec.seal(c.node, c.members.incarnation, proc.pid, addr.node, addr.pid, "msg", payload)
        self.k.io_started()
        c._spawn_task(self._durable(proc, addr.node, data, nonce))
        return self.k.park(proc, WaitKind.IO, None)

    async def _durable(self, proc: "Process", node: str, data: bytes, nonce: str) -> None:
        """Publish until the stream has it (the same id each time: stored once)."""
        c = self.c
        deadline = time.monotonic() + c.config.durable_retry
        err: BaseException | None = None
        while True:
            try:
                await c.link.publish_durable(node, data, nonce)
                c.counters["durable_sent"] += 1
                err = None
                break
            except asyncio.CancelledError:
                err = RemoteRefused("send: the cluster connection closed before the stream took the message")
                break
            except Exception as e:  # noqa: BLE001 - NATS away: try again until the deadline
                err = e
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        self.k.io_finished()
        if proc.state is not EXITED:
            if err is None:
                self.k.wake(proc, None)
            else:
                self.k.wake(proc, None, DriverError(f"send: durable send to {node} failed: "
                                                    f"{type(err).__name__}: {err}"))
        c._poke()

    # -- monitor -------------------------------------------------------------------------
    def sys_monitor(self, proc: "Process", req: S.Monitor) -> Any:
        cap = self._remote_cap(proc, req.cap, R_MONITOR, "monitor")
        if cap is None:
            return self._orig[S.Monitor](proc, req)
        addr: RemoteAddr = cap.target
        self.monitor(proc.pid, addr)
        return None

    def monitor(self, pid: int, addr: RemoteAddr) -> None:
        c = self.c
        c.monitors.setdefault(addr, []).append(pid)
        if not c.send_frame(addr.node, "mon", {"pid": addr.pid}, src_pid=pid, dst_pid=addr.pid):
            c._lost(addr, noconnection(addr.node))

    # -- names ---------------------------------------------------------------------------
    def sys_register(self, proc: "Process", req: S.Register) -> Any:
        c = self.c
        name = req.name
        rec = c.names.get(name) if type(name) is str else None
        if rec is not None and rec.get("node") != c.node and c.holder_alive(rec):
            raise NameTaken(f"register: {name!r} is held by {rec.get('node')}/{rec.get('pid')}")
        self._orig[S.Register](proc, req)  # checks the name, binds it here
        if c.members.fenced:
            return None  # local only until this node rejoins
        c.claimed[name] = proc.pid
        record = c.name_record(proc.pid)
        self.k.io_started()
        c._spawn_task(self._claim(proc, name, record))
        return self.k.park(proc, WaitKind.IO, None)

    async def _claim(self, proc: "Process", name: str, record: dict[str, Any]) -> None:
        c = self.c
        try:
            ok = await asyncio.wait_for(
                c.link.claim_name(name, record, steal_from=lambda held: not c.holder_alive(held)),
                timeout=c.config.lease)
            err: SyscallError | None = None if ok else NameTaken(f"register: {name!r} is held on another node")
        except Exception as e:  # noqa: BLE001
            err = RemoteRefused(f"register: the cluster's name table did not answer: {type(e).__name__}")
        self.k.io_finished()
        if err is not None:
            if c.claimed.get(name) == proc.pid:
                del c.claimed[name]
            if self.k.names.get(name) is proc:
                del self.k.names[name]
                if proc.names:
                    proc.names.discard(name)
        else:
            c.names[name] = record
        if proc.state is not EXITED:
            self.k.wake(proc, None, err)
        c._poke()

    def sys_unregister(self, proc: "Process", req: S.Unregister) -> Any:
        out = self._orig[S.Unregister](proc, req)
        c = self.c
        if c.claimed.get(req.name) == proc.pid:
            del c.claimed[req.name]
            rec = c.name_record(proc.pid)
            c._spawn_task(c.link.drop_name(req.name, lambda held: held == rec))
        return out

    def sys_lookup(self, proc: "Process", req: S.Lookup) -> Any:
        ref = self._orig[S.Lookup](proc, req)
        if ref is not None:
            return ref
        c = self.c
        rec = c.names.get(req.name)
        if rec is None or c.members.fenced:
            return None
        node, pid = rec.get("node"), rec.get("pid")
        if type(node) is not str or node == c.node or type(pid) is not int \
                or not c.members.accepts(node, rec.get("incarnation")):
            return None
        return self.proxy_for(proc, RemoteAddr(node, pid), R_SEND)

    # -- spawn_remote --------------------------------------------------------------------
    def sys_spawn_remote(self, proc: "Process", req: S.SpawnRemote) -> Any:
        c = self.c
        node = _node(req.node, "spawn_remote")
        if node == c.node:
            raise BadArgument("spawn_remote: that is this node; use spawn")
        if type(req.image_name) is not str or not req.image_name or len(req.image_name) > 256:
            raise BadArgument(f"spawn_remote: image_name must be a non-empty string, got {req.image_name!r}")
        args = wire_value("spawn_remote: args", req.args)
        q = req.quota if req.quota is not None else c.config.remote_quota
        if q is not None and not isinstance(q, Quota):
            raise BadArgument(f"spawn_remote: quota must be a Quota, got {type(q).__name__}")
        if req.link is not True and req.link is not False:
            raise BadArgument(f"spawn_remote: link must be True or False, got {req.link!r}")
        self.k._spawn_right(proc)
        if c.check_fence() or not c._is_up(node):
            raise RemoteRefused(f"spawn_remote: node {node!r} is not a live member of the cluster")
        # carved here first: a quota the caller cannot cover is refused before anything is sent
        stub = self.k._create(proc, STUB_IMAGE, None, (), q, req.link, None, None, f"remote:{node}")
        self._rid += 1
        rid = self._rid
        quota = {f: getattr(q, f) for f in _QUOTA_FIELDS if getattr(q, f) is not None} if q else None
        sent = c.send_frame(node, "spawn", {"rid": rid, "image": req.image_name, "args": args,
                                            "quota": quota, "stub": stub.pid}, src_pid=proc.pid)
        if not sent:
            self.k.terminate(stub, noconnection(node))
            raise RemoteRefused(f"spawn_remote: could not reach node {node!r}")
        handle = asyncio.get_running_loop().call_later(c.config.spawn_timeout, self._spawn_timeout, rid)
        self.pending[rid] = {"caller": proc.pid, "stub": stub.pid, "node": node, "timer": handle}
        self.k.io_started()
        return self.k.park(proc, WaitKind.IO, None)

    def _spawn_answer(self, rid: Any, pid: Any, error: Any) -> None:
        p = self.pending.pop(rid, None) if type(rid) is int else None
        if p is None:
            return
        p["timer"].cancel()
        self.k.io_finished()
        caller = self.k.procs.get(p["caller"])
        stub = self.k.procs.get(p["stub"])
        node = p["node"]
        if error is not None or type(pid) is not int:
            if stub is not None:
                self.k.terminate(stub, noconnection(node))
            if caller is not None:
                self.k.wake(caller, None, RemoteRefused(f"spawn_remote: node {node!r} refused: {error}"))
            return
        addr = RemoteAddr(node, pid)
        if stub is not None and stub.state is not EXITED:
            self.stubs[stub.pid] = addr
            self.c.monitors.setdefault(addr, []).append(stub.pid)  # its Down ends the stub
        if caller is None or caller.state is EXITED:
            return
        self.k.wake(caller, (pid, self.proxy_for(caller, addr, R_SEND | R_MONITOR)))

    def _spawn_timeout(self, rid: int) -> None:
        if rid in self.pending:
            self._spawn_answer(rid, None, "no answer in time")
            self.c._poke()

    def _peer_account(self, peer: str) -> "Process":
        pid = self.peer_accounts.get(peer)
        proc = self.k.procs.get(pid) if pid is not None else None
        if proc is not None and proc.state is not EXITED:
            return proc
        grants = self.c.config.grants
        grant = grants.get(peer, grants.get("*"))
        if grant is None:
            raise RemoteRefused(f"node {self.c.node!r} grants no account to {peer!r}")
        init = self.k.init
        if init is None or init.state is EXITED:
            raise RemoteRefused(f"node {self.c.node!r} is not running")
        proc = self.k._create(init, PEER_ACCOUNT_IMAGE, None, (), grant, False, None, None, f"peer:{peer}")
        self.peer_accounts[peer] = proc.pid
        return proc

    def _spawn_here(self, f: Frame) -> None:
        body = f.body if isinstance(f.body, dict) else {}
        rid = body.get("rid")
        try:
            img = self.c.published.get(body.get("image"))  # type: ignore[arg-type]
            if img is None:
                raise RemoteRefused(f"no image named {body.get('image')!r} is published on {self.c.node!r}")
            q = body.get("quota")
            if q is not None:
                if not isinstance(q, dict) or not set(q) <= set(_QUOTA_FIELDS):
                    raise BadArgument(f"bad quota {q!r}")
                q = Quota(**q)
            holder = self._peer_account(f.src)
            child = self.k._create(holder, img, body.get("args"), (), q, False, None, None, None)
        except (SyscallError, ValueError, TypeError) as e:
            self.c.send_frame(f.src, "spawned", {"rid": rid, "error": f"{type(e).__name__}: {e}"},
                              dst_pid=f.src_pid)
            return
        ref = self.proxy_for(child, RemoteAddr(f.src, f.src_pid), R_SEND)
        child.spawn_caps = (ref,)
        if child.sys is not None:
            child.sys.caps = (ref,)
        self.spawned_by[child.pid] = f.src
        self.c.watched.setdefault(child.pid, set()).add((f.src, 0))
        self.c.send_frame(f.src, "spawned", {"rid": rid, "pid": child.pid}, dst_pid=f.src_pid)

    # -- frames --------------------------------------------------------------------------
    def handle(self, f: Frame) -> None:
        kind = f.kind
        body = f.body if isinstance(f.body, dict) else {}
        c = self.c
        if kind == "msg":
            target = self.k.procs.get(f.dst_pid)
            if target is None or target.state is EXITED:
                c.counters["dead_letters"] += 1
                return
            if not c.deliver_remote(target, RemoteAddr(f.src, f.src_pid), body.get("body"), body.get("corr")):
                c.counters["dropped"] += 1
        elif kind == "spawn":
            self._spawn_here(f)
        elif kind == "spawned":
            self._spawn_answer(body.get("rid"), body.get("pid"), body.get("error"))
        elif kind == "mon":
            pid: Any = body.get("pid")
            target = self.k.procs.get(pid) if type(pid) is int else None
            if target is None or target.state is EXITED:
                reason = target.exit_reason if target is not None else None
                c.send_frame(f.src, "down", {"pid": pid, "reason": str(reason or _NOPROC), "name": "",
                                             "used": [0, 0, 0]}, dst_pid=f.src_pid)
                return
            c.watched.setdefault(pid, set()).add((f.src, 0))
        elif kind == "down":
            self._down(f.src, body)
        elif kind == "kill":
            pid = body.get("pid")
            target = self.k.procs.get(pid) if type(pid) is int else None
            if target is not None and target.state is not EXITED and self.spawned_by.get(pid) == f.src:
                self.k.terminate(target, killed(f"{f.src}/{f.src_pid}"))
        else:
            c.counters["dropped"] += 1

    def _down(self, node: str, body: dict[str, Any]) -> None:
        pid = body.get("pid")
        if type(pid) is not int:
            return
        try:
            reason = ExitReason.parse(str(body.get("reason")))
        except (ValueError, TypeError):
            reason = ExitReason(ExitKind.FAULT, "unreadable exit reason")
        addr = RemoteAddr(node, pid)
        used = body.get("used")
        for wpid in self.c.monitors.get(addr, ()):
            if self.stubs.get(wpid) == addr:
                self._charge(wpid, used)
        name = body.get("name")
        self.c._lost(addr, reason, name if type(name) is str else "")

    def _charge(self, stub_pid: int, used: Any) -> None:
        """Charge a stub what its remote process used (tokens, tool calls, nano-USD)."""
        stub = self.k.procs.get(stub_pid)
        if stub is None or stub.account is None or not isinstance(used, list) or len(used) != 3:
            return
        if not all(type(x) is int and 0 <= x < 1 << 62 for x in used):
            return
        short = self.k.accounts.charge(stub.account, used[0], used[1], used[2])
        if short is not None:
            self.k.events.emit(stub_pid, "remote_overspent", short)

    def deliver_durable(self, f: Frame) -> bool:
        if f.kind != "msg":
            return True
        if f.nonce in self._durable_seen:
            return True  # handed over again (an ack that did not arrive): already in a mailbox
        target = self.k.procs.get(f.dst_pid)
        if target is None or target.state is EXITED:
            self.c.counters["dead_letters"] += 1
            return True
        body = f.body if isinstance(f.body, dict) else {}
        if not self.c.deliver_remote(target, RemoteAddr(f.src, f.src_pid), body.get("body"), body.get("corr")):
            return False
        self._durable_seen[f.nonce] = None
        while len(self._durable_seen) > 100_000:
            self._durable_seen.popitem(last=False)
        return True

    # -- losses --------------------------------------------------------------------------
    def node_lost(self, node: str | None) -> None:
        """`node` (None: every node, we fenced) is gone: its pending spawns fail."""
        for rid, p in list(self.pending.items()):
            if node is None or p["node"] == node:
                self._spawn_answer(rid, None, "the node was lost")
        if node is None:
            self.spawned_by.clear()
        else:
            for pid, src in list(self.spawned_by.items()):
                if src == node:
                    del self.spawned_by[pid]

    def local_exit(self, proc: "Process") -> None:
        addr = self.stubs.pop(proc.pid, None)
        if addr is not None:
            watchers = self.c.monitors.get(addr)
            if watchers and proc.pid in watchers:
                watchers.remove(proc.pid)
                if not watchers:
                    del self.c.monitors[addr]
                # the stub ended first (its caller went): the process it stood for goes too
                self.c.send_frame(addr.node, "kill", {"pid": addr.pid}, src_pid=proc.pid, dst_pid=addr.pid)
        self.spawned_by.pop(proc.pid, None)
        self._proxies.pop(proc.pid, None)


_NOPROC = ExitReason(ExitKind.NOCONNECTION, "noproc")


def _node(node: Any, what: str) -> str:
    try:
        return check_node(node)
    except ValueError as e:
        raise BadArgument(f"{what}: {e}") from None


def _pid(pid: Any, what: str) -> int:
    if type(pid) is not int or pid <= 0 or pid.bit_length() > 62:
        raise BadArgument(f"{what}: pid must be a positive int, got {pid!r}")
    return pid


__all__ = ["RemoteCalls", "RemoteRefused"]
