"""The cluster's syscalls and the envelopes that carry them between nodes.

`spawn_remote`; `send(..., durable=True)` on a remote capability (through JetStream);
`monitor` of a remote process; `register`/`lookup` made cluster-wide. Installed by
`Cluster` through `install_syscall` and `install_sender`; each wraps the kernel's own
handler, which keeps the local behaviour. Envelope kinds: `cl_spawn` → `cl_spawned`,
`cl_mon`, `cl_down`, `cl_kill` between nodes; `cl_claimed`, `cl_timeout` from this node's
own live side (see cluster.py for why those travel as envelopes too).

Budget: a `spawn_remote` carves its quota from the caller's account into a local *stub*
process that stands for the remote one. The stub monitors it and ends with its exit
reason, after being charged what the remote process used, so the rest returns to the
caller. On the receiving node the process is carved from the account that node grants
the calling peer (`ClusterConfig.grants`), held by a `peer:<node>` process: a peer can
never spend more there than it was granted, and what its processes leave returns to that
account when they end.

Invariants: capabilities never cross the wire (a process spawned from another node gets a
send-only proxy back to its caller, minted here); a remote process is killed only by the
node that spawned it; a caller parked in `spawn_remote` or `register` is woken exactly
once: by the answer, by its timeout, or by the node's loss.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ..abi import syscalls as S
from ..abi.errors import BadArgument, CapError, KernelError, NameTaken, SyscallError
from ..abi.types import KERNEL_PID, NORMAL, Down, ExitKind, ExitReason, Quota, WaitKind, killed, noconnection
from ..kernel import args as A
from ..kernel.caps import REMOTE, R_MONITOR, R_SEND
from ..kernel.process import EXITED, PARK, ProcessImage
from ..kernel.remote import RemoteAddr, _no_caps_inside
from ..kernel.values import canonical_checked
from .envelope import Envelope, fresh_nonce, seal
from .errors import RemoteRefused
from .nats import check_node

if TYPE_CHECKING:
    from ..kernel.process import Process
    from .cluster import Cluster


async def _stub_main(sys: Any, args: Any) -> None:
    """Stands for a process on another node: holds its budget here until the kernel ends it
    with that process's exit reason (Cluster.lost)."""
    while True:
        await sys.recv()


async def _peer_account_main(sys: Any, args: Any) -> None:
    """Holds the account a peer was granted on this node; its children are that peer's."""
    while True:
        await sys.recv()


STUB_IMAGE = ProcessImage("remote-stub", _stub_main)
PEER_ACCOUNT_IMAGE = ProcessImage("peer-account", _peer_account_main)
QUOTA_FIELDS = ("tokens", "tool_calls", "usd", "wall_ms", "children", "mem", "max_mailbox")
_NOPROC = ExitReason(ExitKind.NOCONNECTION, "noproc")


class ClusterCalls:
    """Handlers and envelope handling for cross-node calls. One per `Cluster`."""

    def __init__(self, cluster: "Cluster") -> None:
        self.c = cluster
        self.k = cluster.k
        self._orig: dict[type, Any] = {}
        self._prev_sender: Any = None
        self._rid = 0
        self.pending: dict[int, dict[str, Any]] = {}     # spawn_remote calls awaiting an answer
        self.claims: dict[tuple[str, int], bool] = {}     # claims awaiting the table: True, a
                                                          # register call waits on it
        self.stubs: dict[int, RemoteAddr] = {}            # stub pid → the process it stands for
        self.spawned_by: dict[int, str] = {}              # local pid → node that spawned it
        self.peer_accounts: dict[str, int] = {}           # peer node → pid holding its account

    def install(self) -> None:
        k = self.k
        wraps: tuple[tuple[type, Any], ...] = ((S.Register, self.sys_register), (S.Unregister, self.sys_unregister),
                        (S.Lookup, self.sys_lookup), (S.Monitor, self.sys_monitor))
        for req, fn in wraps:
            self._orig[req] = k._table[req][0]
            k.install_syscall(req, fn)
        k.install_syscall(S.SpawnRemote, self.sys_spawn_remote)
        self._prev_sender = k._senders.get(REMOTE)
        k.install_sender("remote", self.send_remote)
        handlers: tuple[tuple[str, Any], ...] = (("cl_spawn", self._on_spawn), ("cl_spawned", self._on_spawned),
                         ("cl_mon", self._on_mon), ("cl_down", self._on_down), ("cl_kill", self._on_kill),
                         ("cl_claimed", self._on_claimed), ("cl_timeout", self._on_timeout))
        for kind, handler in handlers:
            k.on_envelope(kind, handler)

    def _proxy(self, holder: "Process", addr: RemoteAddr, rights: int) -> int:
        return self.k.caps.grant(holder, REMOTE, addr, rights).ref

    # -- send: durable through the stream, the rest as the kernel does it ------------------
    def send_remote(self, proc: "Process", cap: Any, req: S.Send) -> Any:
        if type(req) is not S.SendDurable:
            if self._prev_sender is None:
                raise CapError("send: this kernel cannot reach other nodes")
            return self._prev_sender(proc, cap, req)
        addr: RemoteAddr = cap.target
        k = self.k
        reply = k._remote_send_checked(proc, req, addr)
        if k.police_send and not k.authorize(proc, "send", {"to": addr.pid, "node": addr.node,
                                                              "body": req.body, "durable": True}, req):
            return PARK
        idx = proc.op_index
        proc.op_index = idx + 1
        body, corr = req.body, req.corr
        nonce = k._net_outcome(proc, idx, "net.durable", [addr.node, addr.pid],
                               lambda: self._live_durable(proc, addr, body, corr, reply))
        k.events.emit(proc.pid, "remote_send", (addr.node, addr.pid, nonce))
        return None

    def _live_durable(self, proc: "Process", addr: RemoteAddr, body: Any, corr: Any, reply: bool) -> str:
        c = self.c
        if c.check_fence() or c.fenced:
            raise RemoteRefused("send: this node is fenced (its lease lapsed); it rejoins shortly")
        net = self.k.net
        if net is None or not c.joined:
            raise RemoteRefused("send: a durable send needs this node to have joined a cluster")
        env = Envelope(c.node, proc.pid, addr.node, addr.pid, time.time(), fresh_nonce(), body,
                       net.incarnation, "send", corr, reply)
        frame = seal(c.config.key, env, max_frame=net.max_frame)
        c._spawn_task(c.publish_durable(addr.node, frame, env.nonce))
        return env.nonce

    # -- monitor -------------------------------------------------------------------------
    def sys_monitor(self, proc: "Process", req: S.Monitor) -> Any:
        try:
            cap = proc.caps.get(req.cap)
        except TypeError:
            cap = None
        if cap is None or cap.kind != REMOTE or not isinstance(cap.target, RemoteAddr):
            return self._orig[S.Monitor](proc, req)
        addr: RemoteAddr = self.k.caps.resolve(proc, req.cap, R_MONITOR, "monitor").target
        self.monitor(proc.pid, addr)
        return None

    def monitor(self, pid: int, addr: RemoteAddr) -> None:
        c = self.c
        c.monitors.setdefault(addr, []).append(pid)
        if not c.is_up(addr.node):
            c.lost(addr, noconnection(addr.node))
            return
        c.ship(pid, addr.node, addr.pid, {"pid": addr.pid}, "cl_mon")  # lost: the node's Down covers it

    def _on_mon(self, env: dict[str, Any]) -> None:
        pid = env["to_pid"]
        target = self.k.procs.get(pid)
        if target is None or target.state is EXITED:
            reason = target.exit_reason if target is not None else None
            self.c.ship(0, env["from_node"], env["from_pid"],
                        {"pid": pid, "reason": str(reason or _NOPROC), "name": "", "used": [0, 0, 0]}, "cl_down")
            return
        self.c.watched.setdefault(pid, set()).add(env["from_node"])

    def _on_down(self, env: dict[str, Any]) -> None:
        b = env["body"]
        if not isinstance(b, dict) or type(b.get("pid")) is not int:
            return
        try:
            reason = ExitReason.parse(str(b.get("reason")))
        except (ValueError, TypeError):
            reason = ExitReason(ExitKind.FAULT, "unreadable exit reason")
        addr = RemoteAddr(env["from_node"], b["pid"])
        for wpid in self.c.monitors.get(addr, ()):
            if self.stubs.get(wpid) == addr:
                self._charge(wpid, b.get("used"))
        name = b.get("name")
        self.c.lost(addr, reason, name if type(name) is str else "")

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

    # -- names ---------------------------------------------------------------------------
    def sys_register(self, proc: "Process", req: S.Register) -> Any:
        c = self.c
        name = req.name
        if type(name) is str and self.k.names.get(name) is proc:
            return self._orig[S.Register](proc, req)  # its own already (a restored process)
        rec = c.names.get(name) if type(name) is str else None
        if rec is not None and rec.get("node") != c.node and c.holder_alive(rec):
            raise NameTaken(f"register: {name!r} is held by {rec.get('node')}/{rec.get('pid')}")
        self._orig[S.Register](proc, req)  # checks the name, binds it here
        if c.fenced or (self.k.net is None and not self.k.replaying):
            return None  # local only: not a member right now
        c.claimed[name] = proc.pid
        self.claims[(name, proc.pid)] = True
        if not self.k.replaying:
            c._spawn_task(self._claim(name, proc.pid, c.name_record(proc.pid)))
        return self.k.park(proc, WaitKind.IO, None)

    async def _claim(self, name: str, pid: int, record: dict[str, Any]) -> None:
        c = self.c
        live = c.members

        def dead(held: dict[str, Any]) -> bool:
            node = held.get("node")
            if node == c.node:
                return held.get("incarnation") != live.incarnation or held.get("pid") != pid
            return not (type(node) is str and live.accepts(node, held.get("incarnation")))

        try:
            ok = await asyncio.wait_for(c.link.claim_name(name, record, steal_from=dead), timeout=c.config.lease)
            why = "" if ok else "held on another node"
        except Exception as e:  # noqa: BLE001
            ok, why = False, f"the cluster's name table did not answer ({type(e).__name__})"
        c._input("cl_claimed", {"name": name, "pid": pid, "ok": ok, "why": why, "record": record})

    def _on_claimed(self, env: dict[str, Any]) -> None:
        b = env["body"]
        if env["from_node"] != self.c.node or not isinstance(b, dict):
            return
        name, pid, rec = b.get("name"), b.get("pid"), b.get("record")
        waiter = self.claims.pop((name, pid), None) if type(name) is str and type(pid) is int else None
        if waiter is None or type(name) is not str or type(pid) is not int:
            return
        c = self.c
        proc = self.k.procs.get(pid)
        err: SyscallError | None = None
        if b.get("ok") and isinstance(rec, dict):
            c.names[name] = rec
        else:
            why = b.get("why")
            err = (NameTaken(f"register: {name!r} is {why}") if why == "held on another node"
                   else RemoteRefused(f"register: {why}"))
            if c.claimed.get(name) == pid:
                del c.claimed[name]
            if proc is not None and self.k.names.get(name) is proc:
                del self.k.names[name]
                if proc.names:
                    proc.names.discard(name)
        if waiter and proc is not None and proc.state is not EXITED:
            self.k.wake(proc, None, err)

    def sys_unregister(self, proc: "Process", req: S.Unregister) -> Any:
        out = self._orig[S.Unregister](proc, req)
        c = self.c
        if c.claimed.get(req.name) == proc.pid:
            del c.claimed[req.name]
            if not self.k.replaying and self.k.net is not None:
                rec = c.name_record(proc.pid)
                c._spawn_task(c.link.drop_name(req.name, lambda held: held == rec))
        return out

    def sys_lookup(self, proc: "Process", req: S.Lookup) -> Any:
        ref = self._orig[S.Lookup](proc, req)
        if ref is not None:
            return ref
        c = self.c
        rec = c.names.get(req.name)
        if rec is None or c.fenced:
            return None
        node, pid = rec.get("node"), rec.get("pid")
        if type(node) is not str or node == c.node or type(pid) is not int or not c.holder_alive(rec):
            return None
        # a proxy to another node's process is what `dial` hands out: the same policy decides
        if not self.k.authorize(proc, "dial", {"node": node, "pid": pid, "name": req.name}, req):
            return PARK
        return self._proxy(proc, RemoteAddr(node, pid), R_SEND)

    # -- spawn_remote --------------------------------------------------------------------
    def sys_spawn_remote(self, proc: "Process", req: S.SpawnRemote) -> Any:
        c = self.c
        k = self.k
        node = _node(req.node, "spawn_remote")
        if node == c.node:
            raise BadArgument("spawn_remote: that is this node; use spawn")
        image = A.text("spawn_remote: image_name", req.image_name, empty=False, max_len=256)
        args = req.args
        if args is not None:
            _no_caps_inside(proc, canonical_checked("spawn_remote: args", args), "args")
        q = req.quota if req.quota is not None else c.config.remote_quota
        if q is not None and not isinstance(q, Quota):
            raise BadArgument(f"spawn_remote: quota must be a Quota, got {type(q).__name__}")
        link = req.link if req.link is False or req.link is True else A.flag("spawn_remote: link", req.link)
        k._spawn_right(proc)
        # an action on the world, asked on every kernel before anything is carved or sent:
        # a strict kernel with no rule allowing it refuses, a deny kills (or raises) naming its rule
        if not k.authorize(proc, "spawn_remote", {"node": node, "image": image, "args": args}, req):
            return PARK
        if not c.is_up(node):
            raise RemoteRefused(f"spawn_remote: node {node!r} is not a live member of the cluster")
        # carved here first: a quota the caller cannot cover is refused before anything is sent
        stub = k._create(proc, STUB_IMAGE, None, (), q, link, None, None, f"remote:{node}")
        self._rid += 1
        rid = self._rid
        quota = {f: getattr(q, f) for f in QUOTA_FIELDS if getattr(q, f) is not None} if q else None
        body = {"rid": rid, "image": image, "args": args, "quota": quota}
        idx = proc.op_index
        proc.op_index = idx + 1
        try:
            k._net_outcome(proc, idx, "net.spawn", [node, image], lambda: self._live_spawn(proc, node, body))
        except SyscallError:
            k.terminate(stub, NORMAL)
            raise
        self.pending[rid] = {"caller": proc.pid, "stub": stub.pid, "node": node, "timer": None}
        if not k.replaying:
            self.pending[rid]["timer"] = asyncio.get_running_loop().call_later(
                c.config.spawn_timeout, c._input, "cl_timeout", {"rid": rid})
        return k.park(proc, WaitKind.IO, None)

    def _live_spawn(self, proc: "Process", node: str, body: dict[str, Any]) -> None:
        net = self.k.net
        if net is None or self.c.check_fence():
            raise RemoteRefused(f"spawn_remote: this node cannot reach {node!r} now")
        net.ship(proc.pid, node, 0, body, kind="cl_spawn")

    def _answer(self, rid: Any, pid: Any, error: Any) -> None:
        p = self.pending.pop(rid, None) if type(rid) is int else None
        if p is None:
            return
        if p["timer"] is not None:
            p["timer"].cancel()
        k = self.k
        caller = k.procs.get(p["caller"])
        stub = k.procs.get(p["stub"])
        node = p["node"]
        if error is not None or type(pid) is not int:
            if stub is not None:
                k.terminate(stub, NORMAL)  # it never stood for anything: its budget goes back
            if caller is not None and caller.state is not EXITED:
                k.wake(caller, None, RemoteRefused(f"spawn_remote: node {node!r} refused: {error}"))
            return
        addr = RemoteAddr(node, pid)
        if stub is not None and stub.state is not EXITED:
            self.stubs[stub.pid] = addr
            self.c.monitors.setdefault(addr, []).append(stub.pid)  # its Down ends the stub
        if caller is not None and caller.state is not EXITED:
            k.wake(caller, (pid, self._proxy(caller, addr, R_SEND | R_MONITOR)))

    def _on_spawned(self, env: dict[str, Any]) -> None:
        b = env["body"]
        if not isinstance(b, dict):
            return
        p = self.pending.get(b.get("rid"))  # type: ignore[arg-type]
        if p is None or p["node"] != env["from_node"]:
            return  # an answer nobody waits for, or from a node that was not asked
        self._answer(b.get("rid"), b.get("pid"), b.get("error"))

    def _on_timeout(self, env: dict[str, Any]) -> None:
        b = env["body"]
        if env["from_node"] == self.c.node and isinstance(b, dict):
            self._answer(b.get("rid"), None, "no answer in time")

    def admit(self, src: str, src_pid: Any, image: str, args: Any, how: str) -> None:
        """This node's own policy on a process a peer starts here (`how`: spawn_remote or
        migrate): where a rule names `spawn`, it is asked as the kernel (pid 0), with the
        image, the peer's node and pid, and the args, as delivery asks about `send`. The
        grant and the published images are the capabilities; this is the operator's say."""
        k = self.k
        if not k.police_spawn:
            return
        d = k.policy.check(KERNEL_PID, "spawn", {"image": image, "args": args, "from_node": src,
                                                 "from_pid": src_pid, "remote": how})
        k._append((k._now(), KERNEL_PID, "policy", ("spawn", d.allowed, d.rule)))
        if not d.allowed:
            raise RemoteRefused(f"{how}: the policy of {self.c.node!r} refuses it (rule {d.rule})")

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

    def _on_spawn(self, env: dict[str, Any]) -> None:
        src, caller = env["from_node"], env["from_pid"]
        b = env["body"] if isinstance(env["body"], dict) else {}
        rid = b.get("rid")
        try:
            img = self.c.published.get(b.get("image"))  # type: ignore[arg-type]
            if img is None:
                raise RemoteRefused(f"no image named {b.get('image')!r} is published on {self.c.node!r}")
            q = b.get("quota")
            if q is not None:
                if not isinstance(q, dict) or not set(q) <= set(QUOTA_FIELDS):
                    raise BadArgument(f"bad quota {q!r}")
                q = Quota(**q)
            self.admit(src, caller, str(b.get("image")), b.get("args"), "spawn_remote")
            holder = self._peer_account(src)
            child = self.k._create(holder, img, b.get("args"), (), q, False, None, None, None)
        except (SyscallError, KernelError, ValueError, TypeError) as e:
            self.k.events.emit(0, "remote_spawn_refused", {"from": src, "error": f"{type(e).__name__}: {e}"[:300]})
            self.c.ship(0, src, caller, {"rid": rid, "error": f"{type(e).__name__}: {e}"[:500]}, "cl_spawned")
            return
        ref = self._proxy(child, RemoteAddr(src, caller), R_SEND)
        child.spawn_caps = (ref,)
        if child.sys is not None:
            child.sys.caps = (ref,)
        self.spawned_by[child.pid] = src
        self.c.watched.setdefault(child.pid, set()).add(src)
        self.c.ship(0, src, caller, {"rid": rid, "pid": child.pid}, "cl_spawned")

    def _on_kill(self, env: dict[str, Any]) -> None:
        pid = env["to_pid"]
        target = self.k.procs.get(pid)
        if target is not None and target.state is not EXITED and self.spawned_by.get(pid) == env["from_node"]:
            self.k.terminate(target, killed(f"{env['from_node']}/{env['from_pid']}"))

    # -- losses --------------------------------------------------------------------------
    def node_lost(self, node: str | None) -> None:
        """`node` (None: every node; we fenced) is gone: its pending spawns fail, and what it
        spawned here is no longer its to kill."""
        for rid, p in list(self.pending.items()):
            if node is None or p["node"] == node:
                self._answer(rid, None, "the node was lost")
        for pid, src in list(self.spawned_by.items()):
            if node is None or src == node:
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
                self.c.ship(proc.pid, addr.node, addr.pid, None, "cl_kill")
        self.spawned_by.pop(proc.pid, None)


def _node(node: Any, what: str) -> str:
    try:
        return check_node(node)
    except ValueError as e:
        raise BadArgument(f"{what}: {e}") from None


__all__ = ["ClusterCalls", "PEER_ACCOUNT_IMAGE", "QUOTA_FIELDS", "STUB_IMAGE"]
