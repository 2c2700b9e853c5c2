"""Migration of a message-loop process to another node: snapshot → ship → restore.

`await cluster.migrate(pid, node)` (the host's, not a process's, authority) moves a process
that is waiting in `recv` to `node`, which must publish its image. What moves: its
mailbox, its names (claimed again, cluster-wide, by the new node), its memory and the
budget it had left, which the target carves from the account it grants this node (a
migration, like a remote spawn, never spends more there than the grant).

What stays behind is a *forwarder* at the old pid: the same process, its body replaced,
so every capability to the old address still works. Each message that reaches it after
the snapshot is forwarded, once, to the new address; a request that came with a reply
capability is forwarded with the forwarder as its reply address, and the answer is routed
back by its correlation id. Messages queued before the snapshot travel inside it and are
delivered there once: nothing is delivered twice. The forwarder ends with the migrated
process's exit reason (it monitors it), returning the budget it still holds. If the target
refuses, the process is restored here instead, from the same snapshot.

Every step that changes a kernel is an envelope applied at a loop turn (`cl_migrate` on
the source, `cl_restore` on the target, `cl_migrated` back), so both runs replay.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..abi.errors import KernelError, SyscallError
from ..abi.syscalls import Recv
from ..abi.types import KERNEL_PID, Down, WaitKind
from ..kernel.caps import PROC, REMOTE, R_MONITOR, R_SEND
from ..kernel.process import EXITED, ProcessImage
from ..kernel.remote import RemoteAddr

if TYPE_CHECKING:
    from .cluster import Cluster

_MOVED = "migrated_to"


async def _forwarder(sys: Any, args: Any) -> None:
    """The old address of a migrated process: forwards what arrives, routes answers back."""
    first = await sys.recv(match=lambda m: m.sender == KERNEL_PID and isinstance(m.body, dict) and _MOVED in m.body)
    target = first.caps[0]
    await sys.monitor(target)
    me = await sys.self_cap()
    routes: dict[Any, Any] = {}
    while True:
        m = await sys.recv()
        if isinstance(m.body, Down) and m.sender == KERNEL_PID:
            return  # it ended here (restored locally); a remote one's end ends us in the kernel
        if m.corr is not None and m.corr in routes and not m.caps:
            await sys.send(routes.pop(m.corr), m.body, corr=m.corr)  # an answer, back to its asker
            continue
        if m.caps:
            routes[m.corr] = m.caps[0]
            await sys.send(target, m.body, corr=m.corr, caps=[me])
        else:
            await sys.send(target, m.body, corr=m.corr)


FORWARDER_IMAGE = ProcessImage("forwarder", _forwarder)


class Migrations:
    """The source and target sides of migration for one `Cluster`."""

    def __init__(self, cluster: "Cluster") -> None:
        self.c = cluster
        self.k = cluster.k
        self._mid = 0
        self.waiting: dict[int, asyncio.Future[Any]] = {}   # live: migrate() calls awaiting the answer
        self.moving: dict[int, dict[str, Any]] = {}          # mid → {pid, node, snap} (applied state)
        self.forwarders: set[int] = set()                    # end with the migrated process's reason
        for kind, fn in (("cl_migrate", self._on_migrate), ("cl_restore", self._on_restore),
                         ("cl_migrated", self._on_migrated)):
            self.k.on_envelope(kind, fn)

    # -- the host's call (live) ----------------------------------------------------------
    async def migrate(self, pid: int, node: str, *, timeout: float = 10.0) -> tuple[str, int]:
        """Move process `pid` to `node`; returns where it runs now (node, pid)."""
        c = self.c
        if type(pid) is not int or type(node) is not str:
            raise KernelError(f"migrate: pid must be an int and node a str, got {pid!r}, {node!r}")
        if not c.joined or node == c.node or node not in c.members.up_nodes():
            raise KernelError(f"migrate: {node!r} is not a live peer of this node")
        self._mid += 1
        mid = self._mid
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[mid] = fut
        c._input("cl_migrate", {"mid": mid, "pid": pid, "node": node})
        try:
            got = await asyncio.wait_for(fut, timeout)
        finally:
            self.waiting.pop(mid, None)
        if isinstance(got, str):
            raise KernelError(f"migrate: {got}")
        return got

    def _settle(self, mid: Any, value: Any) -> None:
        fut = self.waiting.get(mid) if type(mid) is int else None
        if fut is not None and not fut.done():
            fut.set_result(value)

    # -- source: snapshot, ship, become a forwarder --------------------------------------
    def _on_migrate(self, env: dict[str, Any]) -> None:
        b = env["body"]
        if env["from_node"] != self.c.node or not isinstance(b, dict):
            return
        mid, pid, node = b.get("mid"), b.get("pid"), b.get("node")
        k = self.k
        proc = k.procs.get(pid) if type(pid) is int else None
        if type(mid) is not int or type(pid) is not int or type(node) is not str or proc is None or proc.state is EXITED or proc.wait_kind is not WaitKind.RECV or proc is k.init:
            self._settle(mid, f"pid {pid} is not a process waiting in recv (only message loops migrate)")
            return
        snap = k.snapshot(pid)
        if not self.c.ship(pid, node, 0, {"mid": mid, "snap": snap}, "cl_restore"):
            self._settle(mid, f"node {node!r} cannot be reached")
            return
        # the process's names leave with it (the target claims them); the body becomes a forwarder
        for name in sorted(proc.names or ()):
            if k.names.get(name) is proc:
                del k.names[name]
            if self.c.claimed.get(name) == pid:
                del self.c.claimed[name]
                if not k.replaying and self.c.joined:
                    from .cluster import _same
                    self.c._spawn_task(self.c.link.drop_name(name, _same(self.c.name_record(pid))))
        proc.names = None
        proc.mailbox = None  # queued messages travel in the snapshot
        self._become_forwarder(proc)
        self.moving[mid] = {"pid": pid, "node": node, "snap": snap}
        k.events.emit(pid, "migrate_out", {"to": node, "mid": mid})

    def _become_forwarder(self, proc: Any) -> None:
        k = self.k
        old = proc.coro
        coro = _forwarder(proc.sys, None)
        req = coro.send(None)  # to its first recv: the same wait the old body was parked in
        assert isinstance(req, Recv)
        if proc.timer is not None:
            k.timers.cancel(proc.timer)
            proc.timer = None
        proc.recv_match = req.match if req.match is not None else True
        proc.coro = coro
        proc.image = FORWARDER_IMAGE
        proc.name = f"{proc.name}→moved"
        try:
            old.close()
        except BaseException:  # noqa: BLE001 - the old body's cleanup is its own affair
            pass

    def _on_migrated(self, env: dict[str, Any]) -> None:
        b = env["body"]
        if not isinstance(b, dict):
            return
        mid = b.get("mid")
        m = self.moving.get(mid) if type(mid) is int else None
        if type(mid) is not int or m is None or m["node"] != env["from_node"]:
            return
        del self.moving[mid]
        k = self.k
        proc = k.procs.get(m["pid"])
        if type(b.get("pid")) is int:
            addr = RemoteAddr(m["node"], b["pid"])
            where: Any = (m["node"], b["pid"])
            if proc is not None and proc.state is not EXITED:
                self.forwarders.add(proc.pid)
                ref = k.caps.grant(proc, REMOTE, addr, R_SEND | R_MONITOR).ref
                k.ipc.deliver(proc, _kernel_msg({_MOVED: list(where)}, ref))
        else:  # refused there: it carries on here, from the same snapshot
            where = self._restore_here(m, str(b.get("error")))
        self._settle(mid, where)

    def _restore_here(self, m: dict[str, Any], why: str) -> Any:
        k = self.k
        snap = m["snap"]
        img = self.c.published.get(str((snap.get("image") or {}).get("name")))
        proc = k.procs.get(m["pid"])
        try:
            if img is None:
                raise KernelError("its image is not published here either")
            parent = proc.parent if proc is not None and proc.parent is not None else None
            pid = k.restore(snap, img, parent=parent.pid if parent is not None else None)
        except (KernelError, SyscallError) as e:
            k.events.emit(m["pid"], "migrate_failed", f"{why}; and here: {e}")
            if proc is not None:
                k.terminate(proc, _lost_reason(why))
            return f"the target refused ({why}) and it could not be restored here: {e}"
        if proc is not None and proc.state is not EXITED:
            ref = k.caps.grant(proc, PROC, k.procs[pid], R_SEND | R_MONITOR).ref
            k.ipc.deliver(proc, _kernel_msg({_MOVED: [self.c.node, pid]}, ref))
        k.events.emit(pid, "migrate_back", why)
        return (self.c.node, pid)

    # -- target: restore under the source's account ---------------------------------------
    def _on_restore(self, env: dict[str, Any]) -> None:
        src = env["from_node"]
        b = env["body"] if isinstance(env["body"], dict) else {}
        mid, snap = b.get("mid"), b.get("snap")
        k = self.k
        try:
            if not isinstance(snap, dict):
                raise KernelError("not a snapshot")
            img = self.c.published.get(str((snap.get("image") or {}).get("name")))
            if img is None:
                raise KernelError(f"image {(snap.get('image') or {}).get('name')!r} is not published on {self.c.node!r}")
            self.c.calls.admit(src, env["from_pid"], str(img.name), None, "migrate")
            holder = self.c.calls._peer_account(src)
            pid = k.restore(snap, img, parent=holder.pid)
        except (KernelError, SyscallError, ValueError, TypeError) as e:
            k.events.emit(KERNEL_PID, "migrate_refused", {"from": src, "error": f"{type(e).__name__}: {e}"[:300]})
            self.c.ship(0, src, 0, {"mid": mid, "error": f"{type(e).__name__}: {e}"[:500]}, "cl_migrated")
            return
        proc = k.procs[pid]
        self.c.calls.spawned_by[pid] = src
        for name in sorted(proc.names or ()):
            self.c.claimed[name] = pid
            self.c.calls.claims[(name, pid)] = False  # claimed for it: no register call waits
            if not k.replaying and self.c.joined:
                self.c._spawn_task(self.c.calls._claim(name, pid, self.c.name_record(pid)))
        k.events.emit(pid, "migrate_in", {"from": src, "mid": mid})
        self.c.ship(0, src, 0, {"mid": mid, "pid": pid}, "cl_migrated")


def _kernel_msg(body: Any, ref: int) -> Any:
    from ..abi.types import Message

    return Message(KERNEL_PID, body, (ref,))


def _lost_reason(why: str) -> Any:
    from ..abi.types import fault

    return fault(f"migration failed: {why}")


__all__ = ["FORWARDER_IMAGE", "Migrations"]
