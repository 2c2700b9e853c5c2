"""The per-kernel VFS: the mount table, access checks, and the per-process `/agent` tree.

Layout:
    /agent/<pid>/mem/working      the resident segments (read-only view)
    /agent/<pid>/mem/episodic     the process's recent events (read-only view)
    /agent/<pid>/mem/semantic/... long-term memory: files in the store, writable
    /agent/<pid>/mem/semantic/lessons/<device>/<id>  the lessons of every long memory
                                  (`lessons` device) pid holds a read capability for; read-only
    /agent/<pid>/state/checkpoints/<n>  checkpoints the kernel took (SIGUSR1); read-only
    /agent/<pid>/policy           what governs this process (read-only)
    /agent/<pid>/ipc              mailbox, names, limits (read-only view)
    /<mount>/...                  mounts: kernel memory, a store, a host directory

Who may touch what (checked on the normalised path, after escape detection):
- your own `/agent/<pid>` tree: always, within each view's read/write rules;
- another process's tree: read/list with a process capability carrying `monitor`,
  write with one carrying `kill` (the authority a parent has over a child);
- a mount: a device capability for `vfs:<mountpoint>` with `read` (read/list) or
  `write`; mounts are registered as devices, so they are granted and passed like any.
- policy: VFS operations are governed by the capabilities above; when a rule names one
  (`vfs.read`, `vfs.write`, `vfs.list`, `vfs.*`) every such operation asks policy (args
  `{"path"}`, the normalised path) after the capability check and before it happens.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..abi.driver import Driver, DriverResult
from ..abi.errors import DriverError
from ..abi.syscalls import VfsList, VfsRead, VfsWrite
from ..abi.types import Cost
from ..kernel.caps import DEVICE, PROC, R_KILL, R_MONITOR, R_READ, R_WRITE
from ..kernel.events import canonical
from ..kernel.journal import JournalEntry
from ..kernel.observer import Observer
from ..kernel.process import EXITED, PARK, Process
from .backends import Backend, MemoryBackend, StoreBackend
from .errors import AccessDenied, NotFound, ReadOnly, VfsError
from .paths import join, split

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel

EPISODIC_LIMIT = 500
LESSONS = "lessons"   # under mem/semantic: the read-only view of long memories
_VIEWS = ("ipc", "mem", "policy", "state")


class Vfs(Observer):
    """One kernel's file system. As an observer (when `install` is asked for checkpoints)
    it files SIGUSR1 checkpoints under /agent/<pid>/state/checkpoints."""

    def __init__(self, kernel: "Kernel", *, longterm: Backend | None = None) -> None:
        self.k = kernel
        self.mounts: dict[tuple[str, ...], Backend] = {}
        # long-term memory and checkpoints live in one store, keyed by pid
        self.longterm: Backend = longterm or StoreBackend(prefix="agent")
        self.ops = 0

    # -- setup --------------------------------------------------------------------------
    def mount(self, point: str, backend: Backend) -> str:
        """Mount `backend` at `point`; returns the device name that grants access to it."""
        parts = split(point, lambda p: False)
        if not parts:
            raise VfsError("vfs: cannot mount over /")
        if parts[0] == "agent":
            raise VfsError("vfs: /agent is the kernel's per-process tree; mount elsewhere")
        for other in self.mounts:
            n = min(len(other), len(parts))
            if other[:n] == parts[:n]:
                raise VfsError(f"vfs: {join(parts)} overlaps the mount at {join(other)}")
        self.mounts[parts] = backend
        name = "vfs:" + join(parts)
        self.k.register_driver(MountDriver(self, parts, name), name)
        return name

    def install(self) -> None:
        self.k.install_syscall(VfsRead, self.sys_read)
        self.k.install_syscall(VfsWrite, self.sys_write)
        self.k.install_syscall(VfsList, self.sys_list)

    def _boundary(self, parts: tuple[str, ...]) -> bool:
        return (parts in self.mounts or (len(parts) == 2 and parts[0] == "agent")
                or parts == ("agent",))

    # -- syscalls -------------------------------------------------------------------------
    def sys_read(self, proc: Process, req: VfsRead) -> Any:
        parts = split(req.path, self._boundary)
        return self._dispatch(proc, parts, "read", None, req)

    def sys_write(self, proc: Process, req: VfsWrite) -> Any:
        parts = split(req.path, self._boundary)
        return self._dispatch(proc, parts, "write", req.data, req)

    def sys_list(self, proc: Process, req: VfsList) -> Any:
        parts = split(req.path, self._boundary)
        return self._dispatch(proc, parts, "list", None, req)

    def _allowed(self, proc: Process, op: str, path: str, req: Any) -> bool:
        """Policy on a VFS operation, asked only when a rule names `vfs.*`; after the
        capability checks, before the operation (False: the process was parked or killed)."""
        if "vfs" not in self.k.governs:
            return True
        return bool(self.k.authorize(proc, f"vfs.{op}", {"path": path}, req))

    def _dispatch(self, proc: Process, parts: tuple[str, ...], op: str, data: Any, req: Any = None) -> Any:
        self.ops += 1
        if not parts:
            if op != "list" and op != "read":
                raise ReadOnly("vfs: / is not writable")
            if not self._allowed(proc, op, "/", req):
                return PARK
            return sorted({"agent"} | {m[0] for m in self.mounts})
        if parts[0] == "agent":
            return self._agent(proc, parts, op, data, req)
        for point, backend in self.mounts.items():
            if parts[: len(point)] == point:
                return self._mounted(proc, point, backend, parts[len(point):], op, data, req)
        prefix = [m for m in self.mounts if m[: len(parts)] == parts]
        if prefix and op in ("list", "read"):
            if not self._allowed(proc, op, join(parts), req):
                return PARK
            return sorted({m[len(parts)] for m in prefix})
        raise NotFound(f"vfs: nothing is mounted at {join(parts)}")

    # -- mounts -------------------------------------------------------------------------
    def _mounted(self, proc: Process, point: tuple[str, ...], backend: Backend, rel: tuple[str, ...],
                 op: str, data: Any, req: Any = None) -> Any:
        name = "vfs:" + join(point)
        right = R_WRITE if op == "write" else R_READ
        if not self._holds_device(proc, name, right):
            raise AccessDenied(f"vfs: pid {proc.pid} holds no capability with the "
                               f"{'write' if op == 'write' else 'read'} right for {join(point)} ({name})")
        path = join(point + rel)
        if op == "write":
            if not backend.writable:
                raise ReadOnly(f"vfs: {join(point)} is mounted read-only")
            if not self._allowed(proc, op, path, req):
                return PARK
            return self._io(proc, op, path, data, lambda: backend.write(rel, data))
        if not self._allowed(proc, op, path, req):
            return PARK
        return self._io(proc, op, path, None, lambda: backend.read(rel) if op == "read" else backend.list(rel))

    def _io(self, proc: Process, op: str, path: str, data: Any, fn: Any) -> Any:
        """Run a backend operation as one journaled op of `proc` (the same per-process op
        index as device I/O): live, the result or error is recorded; in replay, the journal
        answers and no backend is touched, so a replayed run sees what the recorded one saw."""
        k = self.k
        idx = proc.op_index
        proc.op_index = idx + 1
        req = {"path": path} if op != "write" else {"path": path, "data": data}
        if k.replaying:
            assert k.journal is not None
            e = k.journal.replay(proc.pid, idx, op, "vfs", req)
            if not e.ok:
                raise _rebuild(e.error_type, e.value)
            return e.value
        try:
            value = fn()
        except VfsError as exc:
            self._record(JournalEntry(proc.pid, idx, op, "vfs", f"vfs.{op}", req, False, str(exc),
                                      type(exc).__name__))
            raise
        self._record(JournalEntry(proc.pid, idx, op, "vfs", f"vfs.{op}", req, True, value))
        return value

    def _record(self, e: JournalEntry) -> None:
        if self.k.journal is not None:
            self.k.journal.record(e)

    def _holds_device(self, proc: Process, name: str, right: int) -> bool:
        now = self.k.clock.now()
        for cap in proc.caps.values():
            if (cap.kind == DEVICE and cap.target == name and cap.rights & right
                    and (cap.expires is None or cap.expires > now)):
                return True
        return False

    # -- the /agent tree ------------------------------------------------------------------
    def _agent(self, proc: Process, parts: tuple[str, ...], op: str, data: Any, req: Any = None) -> Any:
        if len(parts) == 1:
            if op == "write":
                raise ReadOnly("vfs: /agent is not writable")
            if not self._allowed(proc, op, "/agent", req):
                return PARK
            return [str(p) for p in sorted(self._visible(proc))]
        try:
            pid = int(parts[1])
        except ValueError:
            raise NotFound(f"vfs: /agent/{parts[1]} is not a pid") from None
        target = self.k.procs.get(pid)
        need = R_KILL if op == "write" else R_MONITOR
        if pid != proc.pid and not self._holds_proc(proc, pid, need):
            raise AccessDenied(f"vfs: pid {proc.pid} may not {op} /agent/{pid}: that needs a process "
                               f"capability to pid {pid} with the {'kill' if op == 'write' else 'monitor'} right")
        if not self._allowed(proc, op, join(parts), req):
            return PARK
        rest = parts[2:]
        if not rest:
            if op == "write":
                raise ReadOnly(f"vfs: /agent/{pid} is a directory")
            return list(_VIEWS)
        view = rest[0]
        if view == "mem" and len(rest) >= 2 and rest[1] == "semantic":
            return self._semantic(proc, pid, rest[2:], op, data)
        if op == "write":
            raise ReadOnly(f"vfs: {join(parts)} is a read-only view")
        if target is None and view != "state":
            raise NotFound(f"vfs: pid {pid} is not running")
        if view == "mem":
            if len(rest) == 1:
                return ["episodic", "semantic", "working"]
            if rest[1] == "working" and target is not None:
                return self._working(target, rest[2:], op)
            if rest[1] == "episodic" and len(rest) == 2:
                return self._episodic(pid, op)
        elif view == "state":
            if len(rest) == 1:
                return ["checkpoints"]
            if rest[1] == "checkpoints":
                return self._io(proc, op, join(parts), None, lambda: self._checkpoints(pid, rest[2:], op))
        elif view == "policy" and len(rest) == 1 and target is not None:
            return self._policy(target) if op == "read" else []
        elif view == "ipc" and len(rest) == 1 and target is not None:
            return self._ipc(target) if op == "read" else ["mailbox", "max_mailbox", "names"]
        raise NotFound(f"vfs: no such file {join(parts)}")

    def _visible(self, proc: Process) -> set[int]:
        out = {proc.pid}
        now = self.k.clock.now()
        for cap in proc.caps.values():
            if (cap.kind == PROC and cap.rights & R_MONITOR and cap.target.state is not EXITED
                    and (cap.expires is None or cap.expires > now)):
                out.add(cap.target.pid)
        return out

    def _holds_proc(self, proc: Process, pid: int, right: int) -> bool:
        now = self.k.clock.now()
        for cap in proc.caps.values():
            if (cap.kind == PROC and getattr(cap.target, "pid", None) == pid and cap.rights & right
                    and (cap.expires is None or cap.expires > now)):
                return True
        return False

    def _semantic(self, proc: Process, pid: int, rel: tuple[str, ...], op: str, data: Any) -> Any:
        key = (str(pid), "semantic") + rel
        path = f"/agent/{pid}/mem/semantic" + ("/" + "/".join(rel) if rel else "")
        if rel and rel[0] == LESSONS:
            if op == "write":
                raise ReadOnly(f"vfs: {path} is a read-only view; lessons are added through their device")
            return self._io(proc, op, path, None, lambda: self._lessons(pid, rel[1:], op, path))
        if op == "write":
            if not rel:
                raise VfsError("vfs: write to a file under mem/semantic, not the directory itself")
            return self._io(proc, op, path, data, lambda: self.longterm.write(key, data))

        def get() -> Any:
            try:
                out = self.longterm.read(key) if op == "read" else self.longterm.list(key)
            except NotFound:
                if rel:
                    raise NotFound(f"vfs: no file {path}") from None
                out = []
            if not rel and isinstance(out, list) and pid in self.k.procs and self._lessons(pid, (), "list", path):
                out = sorted(set(out) | {LESSONS})
            return out
        return self._io(proc, op, path, None, get)

    def _lessons(self, pid: int, rel: tuple[str, ...], op: str, path: str) -> Any:
        """The long memories `pid` may read (devices with a `semantic_view`), by device name."""
        target = self.k.procs.get(pid)
        if target is None:
            raise NotFound(f"vfs: pid {pid} is not running, so it holds no memory to show")
        now = self.k.clock.now()
        views: dict[str, Any] = {}
        for cap in target.caps.values():
            if cap.kind != DEVICE or not cap.rights & R_READ or (cap.expires is not None and cap.expires <= now):
                continue
            view = getattr(self.k.drivers.get(cap.target), "semantic_view", None)
            if callable(view):
                views[cap.target] = view
        if not rel:
            return sorted(views)
        view = views.get(rel[0])
        if view is None:
            raise NotFound(f"vfs: pid {pid} holds no long memory named {rel[0]!r}")
        out = view(rel[1:], op)
        if out is None:
            raise NotFound(f"vfs: no lesson {path}")
        return out

    def _working(self, target: Process, rel: tuple[str, ...], op: str) -> Any:
        sp = target.memory
        segs = list(sp.resident.values()) if sp is not None else []
        if not rel:
            if op == "list":
                return [str(s.id) for s in segs]
            return [_segment(s) for s in segs]
        for s in segs:
            if str(s.id) == rel[0] and len(rel) == 1:
                return _segment(s)
        raise NotFound(f"vfs: segment {'/'.join(rel)} is not resident in pid {target.pid}")

    def _episodic(self, pid: int, op: str) -> Any:
        evs = self.k.events.events(pid=pid)[-EPISODIC_LIMIT:]
        if op == "list":
            return [str(e.seq) for e in evs]
        return [{"seq": e.seq, "time": e.time, "kind": e.kind, "data": canonical(e.data)} for e in evs]

    def _checkpoints(self, pid: int, rel: tuple[str, ...], op: str) -> Any:
        key = (str(pid), "checkpoints") + rel
        try:
            return self.longterm.read(key) if (op == "read" and rel) else self.longterm.list(key)
        except NotFound:
            if rel:
                raise NotFound(f"vfs: no checkpoint /agent/{pid}/state/checkpoints/{'/'.join(rel)}") from None
            return []

    def _policy(self, target: Process) -> Any:
        pol = self.k.policy
        for _ in range(4):  # see through the kernel's recording / replaying wrappers
            inner = getattr(pol, "inner", None)
            if inner is None or getattr(pol, "describe", None) is not None:
                break
            pol = inner
        describe = getattr(pol, "describe", None)
        if callable(describe):
            try:
                return canonical(describe(target.pid))
            except TypeError:
                return canonical(describe())
        doc = (type(pol).__doc__ or "").strip().splitlines()
        return {"policy": type(pol).__name__, "about": doc[0] if doc else ""}

    def _ipc(self, target: Process) -> Any:
        mb = list(target.mailbox) if target.mailbox else []
        return {"mailbox": [{"sender": m.sender, "corr": canonical(m.corr), "body": canonical(m.body),
                             "caps": len(m.caps)} for m in mb],
                "names": sorted(target.names or ()), "max_mailbox": target.max_mailbox}

    # -- kernel-side writers ----------------------------------------------------------------
    def add_checkpoint(self, pid: int, name: str, record: Any) -> None:
        """Store a checkpoint record (the kernel's side; processes only read them)."""
        self.longterm.write((str(pid), "checkpoints", name), record)

    def checkpoint(self, proc: Process) -> str:
        """Observer hook (SIGUSR1): record what the process holds into its tree; the
        checkpoint's name is the label of the kernel's `checkpoint` event."""
        sp = proc.memory
        n = len(self._checkpoints(proc.pid, (), "list"))
        self.add_checkpoint(proc.pid, str(n + 1), {
            "pid": proc.pid, "name": proc.name, "time": self.k.clock.now(), "op_index": proc.op_index,
            "reductions": proc.reductions, "mailbox": len(proc.mailbox) if proc.mailbox else 0,
            "segments": [_segment(s) for s in sp.resident.values()] if sp is not None else []})
        return str(n + 1)


def _rebuild(etype: str | None, msg: Any) -> VfsError:
    from . import errors

    cls = getattr(errors, etype or "VfsError", VfsError)
    if not (isinstance(cls, type) and issubclass(cls, VfsError)):
        cls = VfsError
    return cls(str(msg))


def _segment(s: Any) -> dict[str, Any]:
    return {"id": s.id, "body": canonical(s.body), "tokens": s.tokens, "kind": s.kind.value,
            "created": s.created}


class MountDriver(Driver):
    """A mount as a device: holding `vfs:<point>` is what grants the VFS calls on it, and
    the device API reaches the same files (`read(h, {"op": "read"|"list", "path": rel})`,
    `write(h, {"path": rel, "data": ...})`)."""

    def __init__(self, vfs: Vfs, point: tuple[str, ...], name: str) -> None:
        self.vfs = vfs
        self.point = point
        self.name = name

    def _rel(self, req: Any) -> tuple[str, ...]:
        path = req.get("path", "") if isinstance(req, dict) else None
        if not isinstance(path, str):
            raise DriverError(f"{self.name}: requests are {{'path': str, ...}}, got {req!r}")
        return split(join(self.point) + "/" + path, self.vfs._boundary)[len(self.point):]

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any] | None:
        backend = self.vfs.mounts[self.point]
        if op == "write":
            return ("vfs.write", {"path": join(self.point + self._rel(req))})
        return ("vfs.read", {"path": join(self.point + self._rel(req))}) if backend.world else None

    def read(self, handle: Any, req: Any) -> DriverResult:
        backend = self.vfs.mounts[self.point]
        rel = self._rel(req)
        out = backend.list(rel) if req.get("op") == "list" else backend.read(rel)
        return DriverResult(out, Cost(reductions=1))

    def write(self, handle: Any, data: Any) -> DriverResult:
        backend = self.vfs.mounts[self.point]
        if not backend.writable:
            raise ReadOnly(f"vfs: {join(self.point)} is mounted read-only")
        backend.write(self._rel(data), data.get("data"))
        return DriverResult(None, Cost(reductions=1))


def install(kernel: "Kernel", *, mounts: dict[str, Backend] | None = None, longterm: Backend | None = None,
            checkpoints: bool = True) -> Vfs:
    """Give `kernel` a VFS, or reuse the one it has (`kernel.extensions["vfs"]`): installs
    vfs_read/vfs_write/vfs_list, mounts `mounts`, and with `checkpoints` attaches the VFS as
    an observer that files SIGUSR1 checkpoints under /agent/<pid>/state/checkpoints."""
    vfs = kernel.extensions.get("vfs")
    if not isinstance(vfs, Vfs):
        vfs = Vfs(kernel, longterm=longterm)
        vfs.install()
        kernel.extensions["vfs"] = vfs
    elif longterm is not None:
        vfs.longterm = longterm
    for point, backend in (mounts or {}).items():
        vfs.mount(point, backend)
    if checkpoints and vfs not in kernel.observers:
        kernel.add_observer(vfs)
    return vfs


def extension(kernel: "Kernel") -> Vfs:
    """The default kernel extension (`agentos` registers it): every kernel built without an
    explicit `extensions` list has a VFS; SIGUSR1 is filed there only once `install` asks."""
    return install(kernel, checkpoints=False)


__all__ = ["MountDriver", "Vfs", "extension", "install", "MemoryBackend"]
