"""The stub that runs inside a sandbox's child OS process (stdlib only, run with -I -S).

Order matters, and every step happens before one byte of untrusted code is compiled:
1. read the config line the kernel wrote on stdin; import a preload set of stdlib modules
   (the interpreter's library may not be readable once the uid is dropped);
2. private namespaces: network (only a down loopback: no route anywhere) and mount;
3. in the private mount namespace, a minimal root (tmpfs + read-only binds of the system
   directories and the sandbox's own directory, then pivot_root); every mount becomes
   read-only, nosuid, except the sandbox's own directory;
4. drop to the sandbox's own uid/gid (root only), no_new_privs, die with the parent;
5. seccomp: install the allow-list the kernel built with libseccomp (after no_new_privs and
   the uid drop; it can never be removed);
6. rlimits: address space, CPU seconds, open files, processes, file size, no core;
7. keep two private fds for the protocol, point fd 0 at /dev/null and fd 1 at stderr, so
   a stray print() cannot forge a request (a deliberate one is checked by the monitor);
8. report what was achieved ("hello"), then compile and run `main(sys, args)`.

Protocol: one JSON object per line, strictly in turn. Child → kernel: {"t":"hello"}, then
{"t":"call","name","args","kw"} (one at a time, each answered before the next) and finally
{"t":"exit",...}; kernel → child: {"ok":true,"value"} or {"ok":false,"error","msg"}. The
kernel kills a child for any frame that is malformed or out of turn.
"""
import ctypes
import json
import os
import resource
import signal
import sys
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_BIND = 4096
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
SYS_MOUNT_SETATTR = {"x86_64": 442, "aarch64": 442}
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount_setattr(path, attr_set, attr_clr):
    nr = SYS_MOUNT_SETATTR.get(os.uname().machine)
    if nr is None:
        raise OSError(0, "mount_setattr: unknown syscall number on this architecture")
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    rc = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(-100), ctypes.c_char_p(path.encode()),
                       ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(rc, f"mount_setattr({path})")


def _isolate(cfg):
    """Namespaces and a read-only view of the file system. Returns what was achieved."""
    got = {"net": "shared", "fs": "shared", "uid": os.getuid()}
    if not cfg.get("namespaces", True):
        return got
    root = os.geteuid() == 0
    flags = CLONE_NEWNET | CLONE_NEWNS
    if cfg.get("pid_namespace", True):
        flags |= CLONE_NEWPID
    try:
        user = 0 if root else CLONE_NEWUSER  # unprivileged: a user namespace, where allowed
        uid, gid = os.getuid(), os.getgid()
        rc = _libc.unshare(flags | user)
        if rc != 0 and flags & CLONE_NEWPID:
            flags &= ~CLONE_NEWPID  # no pid namespace here: the rest still stands
            rc = _libc.unshare(flags | user)
        _check(rc, "unshare")
        if not root:
            with open("/proc/self/setgroups", "w") as f:
                f.write("deny")
            with open("/proc/self/uid_map", "w") as f:
                f.write(f"0 {uid} 1")
            with open("/proc/self/gid_map", "w") as f:
                f.write(f"0 {gid} 1")
        got["net"] = "private"
        got["pids"] = "private" if flags & CLONE_NEWPID else "shared"
    except OSError as e:
        got["net_error"] = str(e)
        return got
    try:
        _check(_libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None), "mount(private)")
        wd = cfg["workdir"]
        if cfg.get("fs_view", "minimal") == "minimal":
            try:
                _minimal_root(wd)
                got["fs"] = "minimal root, read-only except workdir"
            except OSError as e:  # still private and read-only below, just not minimal
                got["fs_minimal_error"] = str(e)
        if got["fs"] == "shared":
            _check(_libc.mount(wd.encode(), wd.encode(), None, ctypes.c_ulong(MS_BIND | MS_REC), None),
                   "bind(workdir)")
            got["fs"] = "read-only except workdir"
        _mount_setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0)
        _mount_setattr(wd, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY)
    except OSError as e:
        got["fs"] = "shared"
        got["fs_error"] = str(e)
    return got


SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev")
"""What the minimal root shows of the host (read-only): enough for a running interpreter
and the C library. Not /home, /root, /tmp, /var, /run, /proc, /sys, nor any project tree."""


def _minimal_root(workdir):
    """pivot_root into a tmpfs holding only SYSTEM_DIRS and the workdir (bind mounts)."""
    base = next(d for d in ("/mnt", "/media", "/srv", "/tmp", "/opt")
                if os.path.isdir(d) and not os.path.islink(d) and not workdir.startswith(d + "/"))
    _check(_libc.mount(b"tmpfs", base.encode(), b"tmpfs", ctypes.c_ulong(0), b"size=1m,mode=755"), "mount(tmpfs)")
    for d in SYSTEM_DIRS + (workdir,):
        if not os.path.exists(d):
            continue
        target = base + d
        if os.path.islink(d) and d != workdir:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(d), target)
            continue
        os.makedirs(target, exist_ok=True)
        _check(_libc.mount(d.encode(), target.encode(), None, ctypes.c_ulong(MS_BIND | MS_REC), None),
               f"bind({d})")
    os.chdir(base)
    _check(_libc.syscall(ctypes.c_long(155), b".", b"."), "pivot_root")  # SYS_pivot_root (x86_64)
    _check(_libc.umount2(b".", 2), "umount(old root)")                   # MNT_DETACH
    os.chdir("/")


def _drop(cfg, got, parent):
    uid, gid = cfg.get("uid"), cfg.get("gid")
    if os.geteuid() == 0 and uid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        got["uid"] = uid
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _pid_chain():
    """Fork the namespace's init (pid 1), which forks the worker (pid 2) and waits for it.
    When init ends, the OS SIGKILLs every process left in the namespace, so nothing the
    code forked outlives it, even if the kernel itself is killed (death signals chain:
    kernel → this stub → init → namespace). Returns in the worker only."""
    init = os.fork()
    if init:
        _hold(init, reap_all=False)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    worker = os.fork()
    if worker:
        _hold(worker, reap_all=True)


def _hold(child, reap_all):
    """Wait for `child`, then end the same way. The protocol fds are the worker's alone."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    while True:
        try:
            pid, status = os.wait() if reap_all else os.waitpid(child, 0)
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            break
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    code = 0 if sig else os.WEXITSTATUS(status)
    if not sig and not reap_all and 128 < code < 128 + 65:
        sig = code - 128  # init cannot die of a signal from inside: it passed the number on
    if sig and not reap_all:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP: no handler to reset
            pass
        os.kill(os.getpid(), sig)
    os._exit(128 + sig if sig else code)


# -- seccomp: a second wall, independent of the namespaces --------------------------------
# The program is an allow-list built by libseccomp in the kernel's process (see seccomp.py);
# here it is only installed. Nothing in this stub assembles BPF.
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp(cfg):
    """Install the filter the kernel sent; returns a word for the hello line."""
    import base64

    prog = cfg.get("seccomp_bpf")
    if not prog:
        return "unavailable (" + str(cfg.get("seccomp_error") or "no filter was sent") + ")"
    raw = base64.b64decode(prog)
    n = len(raw) // 8
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(n, ctypes.cast(buf, ctypes.POINTER(_SockFilter)))
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "prctl(seccomp)")
    return "on"


def _limits(cfg):
    lim = cfg["limits"]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-size writes fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    table = (("fsize", resource.RLIMIT_FSIZE), ("nofile", resource.RLIMIT_NOFILE),
             ("nproc", resource.RLIMIT_NPROC), ("as_bytes", resource.RLIMIT_AS))
    for key, res in table:
        v = lim.get(key)
        if v is not None:
            resource.setrlimit(res, (v, v))
    cpu = lim.get("cpu_s")
    if cpu is not None:  # SIGXCPU at the soft limit, SIGKILL one second later
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


class RemoteError(Exception):
    """An error the kernel raised for a forwarded syscall; `.type` names its class."""

    type = "SyscallError"


_ERRORS: dict = {}


def _error(name, msg):
    cls = _ERRORS.get(name)
    if cls is None:
        cls = _ERRORS[name] = type(name, (RemoteError,), {"type": name})
    return cls(msg)


MAX_DEPTH = 64  # the monitor's frame limit (frames.py): a deeper frame would be a kill


def _too_deep(value, limit):
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, tuple, dict)):
            if d > limit:
                return True
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


class _Channel:
    def __init__(self, rfd, wfd):
        self.r = os.fdopen(rfd, "rb", buffering=65536)
        self.w = wfd
        self.owner = os.getpid()

    def send(self, obj):
        # strict JSON: NaN or a too-deep value is this code's ValueError, not a frame the
        # monitor would kill it for
        data = (json.dumps(obj, default=repr, separators=(",", ":"), allow_nan=False) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self.w, view)
            view = view[n:]

    def call(self, name, args, kw):
        if os.getpid() != self.owner:
            raise RuntimeError("a forked copy of a sandboxed process cannot make syscalls")
        frame = {"t": "call", "name": name, "args": list(args), "kw": kw}
        if _too_deep(frame, MAX_DEPTH):
            raise ValueError(f"{name}: arguments nested more than {MAX_DEPTH - 3} deep cannot cross the pipe")
        self.send(frame)
        line = self.r.readline()
        if not line:
            os._exit(3)  # the kernel closed the pipe: nothing more to do
        reply = json.loads(line)
        if reply.get("ok"):
            return reply.get("value")
        raise _error(reply.get("error", "SyscallError"), reply.get("msg", ""))


class SandboxSys:
    """What untrusted code sees as `sys`: every call is an RPC to its reference monitor."""

    def __init__(self, chan, caps):
        self._chan = chan
        self.caps = tuple(caps)  # the monitor's spawn capabilities, as refs it can name

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        chan = self._chan

        async def call(*args, **kw):
            return chan.call(name, args, kw)

        call.__name__ = name
        return call


def _drive(coro):
    """Run a coroutine that awaits only sys calls (which complete synchronously here)."""
    try:
        while True:
            coro.send(None)
            coro.throw(TypeError("a sandboxed process awaits only `sys` calls "
                                 "(sys.sleep, not asyncio.sleep)"))
    except StopIteration as stop:
        return stop.value


PRELOAD = ("base64", "collections", "functools", "heapq", "itertools", "math", "random", "re",
           "socket", "string", "struct", "time")
"""Imported before the uid drop: the interpreter's own library may not be readable by the
sandbox uid (e.g. under /root), so what the code may import comes from here (plus `preload`).
Kept small: each module costs start-up time (asyncio alone ~3x the interpreter's)."""


def _preload(names):
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def main():
    cfg = json.loads(sys.stdin.buffer.readline())
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != cfg["ppid"]:
        os._exit(1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _preload(PRELOAD + tuple(cfg.get("preload") or ()))
    got = _isolate(cfg)
    parent = cfg["ppid"]
    if got.get("pids") == "private":
        _pid_chain()
        parent = 1
    os.chdir(cfg["workdir"])
    _drop(cfg, got, parent)
    if cfg.get("seccomp", True):
        try:
            got["seccomp"] = _seccomp(cfg)
        except OSError as e:
            got["seccomp"] = f"unavailable ({e})"
    else:
        got["seccomp"] = "off"
    _limits(cfg)
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)
    chan = _Channel(rfd, wfd)
    chan.send({"t": "hello", "pid": os.getpid(), **got})
    owner = os.getpid()
    try:
        ns = {"__name__": "__sandboxed__"}
        exec(compile(cfg["code"], cfg.get("filename", "<sandboxed>"), "exec"), ns)
        entry = ns.get(cfg.get("entry", "main"))
        if entry is None:
            raise NameError(f"the sandboxed code defines no {cfg.get('entry', 'main')!r}")
        value = _drive(entry(SandboxSys(chan, cfg.get("caps") or ()), cfg.get("args")))
        out = {"t": "exit", "ok": True, "value": value}
    except BaseException as e:  # the agent's failure, reported; never the kernel's
        if os.getpid() != owner:
            os._exit(1)
        tb = traceback.format_exc(limit=-8)
        out = {"t": "exit", "ok": False, "error": type(e).__name__, "msg": str(e)[:2000], "tb": tb[-4000:]}
    if os.getpid() != owner:
        os._exit(0)
    try:
        chan.send(out)
    except (TypeError, ValueError, RecursionError):
        chan.send({"t": "exit", "ok": True, "value": repr(out.get("value"))[:100000]})
    os._exit(0)


if __name__ == "__main__":
    main()
