"""The `sandbox` device: one child OS process per handle, reached only through its pipe.

`open` starts the child (the stub in `_child.py`) in its own session, with its own uid when
the kernel runs as root, a fresh working directory owned by that uid, a clean environment
and the seccomp allow-list (seccomp.py). `read(h, "next")` waits for the child's next
request; `write(h, reply)` answers it. Neither is an action on the world: the requests the
monitor forwards are. A sandbox opened by a process that already stands for sandboxed code
(or by one below it) inherits that confinement and can only narrow it (confine.py).

Invariants: the kernel never blocks on the child (pipes are non-blocking, driven by the
event loop); the child speaks strictly in turn (hello, then one call at a time, each
answered before the next, then exit), in frames bounded in size and depth (frames.py);
any malformed or out-of-turn frame, a line longer than `max_line`, or a child that stops
reading replies is killed, and the kill is a flight-recorder record, as is every refusal
the monitor sends back; `close` (the teardown path of the owning kernel process, whatever ended it)
SIGKILLs the child's whole process group and, when it has its own uid, every process of
that uid, then reaps it. A child that dies on its own ends its kernel process at once,
with the signal or exit status in the reason.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from ..abi.driver import Driver, DriverHost, DriverResult
from ..abi.errors import DriverError
from ..abi.types import Cost, Pid, fault
from . import confine
from .frames import FrameError, parse_frame

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child.py")
EOF_GRACE_S = 0.5
"""How long a child that closed its request pipe may take to exit before it is killed."""
UID_BASE = 1_600_000
UID_SPAN = 400_000
"""Sandbox uids are drawn at random from [UID_BASE, UID_BASE + UID_SPAN): no account uses
them, so file permissions, RLIMIT_NPROC and kill(-1) all mean "this sandbox only"."""


LIMIT_MAX = 1 << 62
"""Largest value any limit takes: an rlimit is a 64-bit number (RLIM_INFINITY is all ones),
so a larger one could only fail later, in the child, as an overflow."""


@dataclass(frozen=True)
class SandboxLimits:
    """rlimits applied in the child before its code is compiled. None leaves one unset."""

    as_bytes: int | None = 256 * 1024 * 1024
    cpu_s: int | None = 10
    nofile: int | None = 32
    nproc: int | None = 4
    fsize: int | None = 16 * 1024 * 1024
    max_line: int = 1 << 20
    """Largest request line (bytes) the monitor accepts; longer ones kill the child."""
    nested: int = 2
    """How many sandboxes the code may have running at once below this one (0: none)."""

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if k == "nested":
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise ValueError(f"sandbox limit nested must be an int >= 0, got {v!r}")
            elif v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= LIMIT_MAX):
                raise ValueError(f"sandbox limit {k} must be a positive int up to {LIMIT_MAX} or None, "
                                 f"got {str(v)[:40]}")


SIGNAL_WHY = {signal.SIGXCPU: "CPU-time limit", signal.SIGKILL: "killed", signal.SIGXFSZ: "file-size limit",
              signal.SIGSEGV: "segfault (address-space limit?)", signal.SIGABRT: "abort"}


def describe_status(rc: int | None) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            sig = signal.Signals(-rc)
        except ValueError:
            return f"killed by signal {-rc}"
        why = SIGNAL_WHY.get(sig)
        return f"killed by {sig.name}" + (f" ({why})" if why else "")
    return f"exited with status {rc}"


class _Child:
    """Kernel-side state of one sandboxed OS process."""

    def __init__(self, driver: "SandboxDriver", owner: Pid, popen: subprocess.Popen[bytes], uid: int | None,
                 workdir: tuple[str, bool, bool], max_line: int, conf: confine.Confinement,
                 nested: bool) -> None:
        self.driver = driver
        self.owner = owner
        self.popen = popen
        self.pid = popen.pid
        self.uid = uid
        self.workdir, self.dir_created, self.dir_remove = workdir
        self.max_line = max_line
        self.conf = conf
        self.nested = nested
        self.phase = "start"   # start → running ⇄ waiting (a call unanswered) → done (exit sent)
        self.loop = asyncio.get_running_loop()
        self.inbuf = bytearray()
        self.lines: deque[Any] = deque()
        self.waiter: asyncio.Future[Any] | None = None
        self.outbuf = bytearray()
        self.drained: asyncio.Future[Any] | None = None
        self.stderr = bytearray()
        self.dead: dict[str, Any] | None = None
        self.closed = False
        self.said_exit = False
        self.host: DriverHost | None = None  # set by the driver that started it
        assert popen.stdout is not None and popen.stdin is not None and popen.stderr is not None
        self.rfd, self.wfd, self.efd = popen.stdout.fileno(), popen.stdin.fileno(), popen.stderr.fileno()
        for fd in (self.rfd, self.wfd, self.efd):
            os.set_blocking(fd, False)
        self.loop.add_reader(self.rfd, self._readable)
        self.loop.add_reader(self.efd, self._stderr)
        # death is watched on the process itself, not on pipe EOF: anything it forked may
        # hold the pipe open long after it died
        self.pidfd: int | None = os.pidfd_open(self.pid) if hasattr(os, "pidfd_open") else None
        if self.pidfd is not None:
            self.loop.add_reader(self.pidfd, self._exited)

    def _exited(self) -> None:
        if self.pidfd is not None:
            self.loop.remove_reader(self.pidfd)
        while self.dead is None and not self.closed:  # take what it wrote before it died
            before = len(self.lines) + len(self.inbuf)
            self._readable()
            if len(self.lines) + len(self.inbuf) == before:
                break
        if self.dead is None:
            self._eof()

    # -- child → kernel ----------------------------------------------------------------
    def _readable(self) -> None:
        try:
            data = os.read(self.rfd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if self.pidfd is not None and self.popen.poll() is None:
                # it closed its end; its exit (and real status) normally follows at once
                # through the pidfd. One that lives on without a pipe is ended shortly.
                self.loop.remove_reader(self.rfd)
                self.loop.call_later(EOF_GRACE_S, self._eof_grace)
                return
            self._eof()
            return
        self.inbuf += data
        while True:
            nl = self.inbuf.find(b"\n")
            if nl < 0:
                if len(self.inbuf) > self.max_line:
                    self._violation(f"a request line over {self.max_line} bytes")
                return
            line = bytes(self.inbuf[:nl])
            del self.inbuf[: nl + 1]
            if len(line) > self.max_line:
                self._violation(f"a request line over {self.max_line} bytes")
                return
            try:
                msg = parse_frame(line)
                self._turn(msg["t"])
            except FrameError as e:
                self._violation(str(e))
                return
            checked_msg = self._recordable(msg)
            if checked_msg is None:  # refused here, answered at once: the kernel never sees it
                if self.dead is not None:
                    return
                continue
            msg = checked_msg
            self._push(msg)
            if self.dead is not None:
                return

    def _eof_grace(self) -> None:
        if self.dead is None and not self.closed:
            self._eof()

    def _turn(self, t: str) -> None:
        """The protocol is strictly in turn: a frame out of turn is a violation."""
        phase = self.phase
        if t == "hello" and phase == "start":
            self.phase = "running"
        elif t == "call" and phase == "running":
            self.phase = "waiting"
        elif t == "exit" and phase == "running":
            self.phase = "done"
        else:
            why = {"start": "before its hello", "waiting": "before its last call was answered",
                   "done": "after it said exit", "running": "twice"}[phase]
            raise FrameError(f"a {t!r} frame {why}")

    def _recordable(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """A frame holding a value no record can hold (JSON may carry a lone surrogate as
        an escape): it must not reach the kernel as a device reply, which the journal
        could not keep, so its replay would see something else. A call is answered
        `BadArgument` at once, as the kernel would answer the syscall; an exit becomes a
        failed one; a hello is a violation."""
        from ..abi.errors import BadArgument
        from ..kernel.values import checked

        try:
            checked("the frame", msg)
            return msg
        except BadArgument as e:
            why = str(e)[:500]
        t = msg.get("t")
        if t == "call":
            self.send({"ok": False, "call": str(msg.get("name"))[:64], "error": "BadArgument",
                       "msg": f"{str(msg.get('name'))[:64]}: an argument cannot be recorded ({why})"})
            return None
        if t == "exit":
            return {"t": "exit", "ok": False, "error": "BadArgument", "msg": f"its result cannot be recorded ({why})"}
        self._violation(f"a {str(t)[:20]!r} frame that cannot be recorded ({why})")
        return None

    def _push(self, msg: Any) -> None:
        t = msg.get("t")
        if t == "exit":
            self.said_exit = True
        elif t == "hello":  # its own pid may be a namespace's: report the host's
            msg["ns_pid"], msg["pid"] = msg.get("pid"), self.pid
        w = self.waiter
        if w is not None and not w.done():
            self.waiter = None
            w.set_result(msg)
        else:
            self.lines.append(msg)

    def _stderr(self) -> None:
        try:
            data = os.read(self.efd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self.efd)
            return
        self.stderr += data
        if len(self.stderr) > 8192:
            del self.stderr[:-8192]

    def _violation(self, what: str) -> None:
        if self.dead is not None:
            return
        self.kill()
        self.driver.audit(self.owner, "sandbox_kill", {"why": f"protocol violation: {what}",
                                                       "child": self.pid, "uid": self.uid})
        self._finish({"t": "dead", "status": f"killed by the monitor: protocol violation ({what})",
                      "stderr": self.stderr_tail()})

    def _eof(self) -> None:
        self.loop.remove_reader(self.rfd)
        rc = self.popen.poll()
        # closed its pipe but lives on (it is done talking), or died leaving forks: end all
        self.kill()
        rc = self.popen.returncode if rc is None else rc
        self._finish({"t": "dead", "status": describe_status(rc), "stderr": self.stderr_tail()})

    def _finish(self, dead: dict[str, Any]) -> None:
        if self.dead is not None:
            return
        self.dead = dead
        w = self.waiter
        if w is not None and not w.done():
            self.waiter = None
            w.set_result(dead)
        elif not self.closed and not self.lines and not self.said_exit:
            # nobody is reading: the owner is parked in a forwarded call (or between two);
            # end it now so a dead child is noticed in every state
            self.driver.child_died(self, dead)

    def stderr_tail(self) -> str:
        self._stderr_drain()
        return self.stderr[-2000:].decode("utf-8", "replace")

    def _stderr_drain(self) -> None:
        try:
            while True:
                data = os.read(self.efd, 65536)
                if not data:
                    return
                self.stderr += data
        except OSError:
            return

    async def next(self) -> DriverResult:
        if self.lines:
            return DriverResult(self.lines.popleft())
        if self.dead is not None:
            return DriverResult(self.dead)
        self.waiter = self.loop.create_future()
        try:
            return DriverResult(await self.waiter)
        finally:
            self.waiter = None

    # -- kernel → child ----------------------------------------------------------------
    def send(self, obj: Any) -> Any:
        """Queue a reply; a DriverResult when it went out at once, else an awaitable."""
        if self.phase == "waiting":
            self.phase = "running"
        if not self.queue(obj) or not self.outbuf:
            return DriverResult(self.dead is None)
        assert self.drained is not None
        return self._wait_drained(self.drained)

    def queue(self, obj: Any) -> bool:
        if self.dead is not None:
            return False
        try:
            text = json.dumps(obj, separators=(",", ":"), default=repr)
        except (ValueError, TypeError, RecursionError) as e:  # never a value the child can't read
            text = json.dumps({"ok": False, "error": "ValueError",
                               "msg": f"the result cannot cross the pipe: {type(e).__name__}"})
        self.outbuf += (text + "\n").encode()
        if len(self.outbuf) > 4 * self.max_line:
            self._violation("not reading its replies")
            return False
        self._flush()
        if self.outbuf and (self.drained is None or self.drained.done()):
            self.drained = self.loop.create_future()
            self.loop.add_writer(self.wfd, self._writable)
        return True

    async def _wait_drained(self, fut: "asyncio.Future[Any]") -> DriverResult:
        return DriverResult(await fut)

    def _flush(self) -> None:
        try:
            while self.outbuf:
                n = os.write(self.wfd, self.outbuf)
                del self.outbuf[:n]
        except BlockingIOError:
            return
        except OSError:  # the child is gone; the reader will report how
            self.outbuf.clear()

    def _writable(self) -> None:
        self._flush()
        if not self.outbuf:
            self.loop.remove_writer(self.wfd)
            if self.drained is not None and not self.drained.done():
                self.drained.set_result(True)

    # -- ending ---------------------------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL the child, anything it forked, and (own uid) anything running as it."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.uid is not None:
            _kill_uid(self.uid)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in (self.rfd, self.efd, self.pidfd):
            if fd is not None:
                self.loop.remove_reader(fd)
        self.loop.remove_writer(self.wfd)
        self.kill()
        if self.dead is None:
            self.dead = {"t": "dead", "status": describe_status(self.popen.returncode), "stderr": ""}
        for f in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        confine.release_workdir(self.workdir, self.dir_created, self.dir_remove)
        self.driver.released(self)


def _kill_uid(uid: int) -> None:
    """kill(-1, SIGKILL) as `uid`: reaches exactly that uid's processes, wherever they hid
    (new sessions, reparented orphans). Done in a short-lived forked helper."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the helper
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


class SandboxDriver(Driver):
    """Starts sandboxed children. Register with `agentos.sandbox.install(kernel)`."""

    name = "sandbox"

    def __init__(self, name: str = "sandbox", python: str = sys.executable) -> None:
        self.name = name
        self.python = python
        self.live: set[_Child] = set()
        self.started = 0
        self.history: deque[tuple[int, int, int | None]] = deque(maxlen=1024)
        """(owner pid, OS pid, uid) of the most recent children, for audits and tests."""
        self.confined: dict[int, confine.Confinement] = {}
        """pid → the cage of the sandbox it opened: that process, and every one below it,
        stands for sandboxed code from then on. Shared by every sandbox device of a kernel,
        so a second device is no way around the first one's cage."""
        self._nested_live: dict[int, int] = {}   # root pid → live nested sandboxes in its tree
        self._prune_at = 1024

    def on_register(self, host: DriverHost) -> None:
        super().on_register(host)
        # one registry per kernel, whichever sandbox device opened: a second device is no
        # way around the first one's cage
        self.confined, self._nested_live = host.shared("sandbox.cages", lambda: ({}, {}))

    def confinement(self, pid: int) -> confine.Confinement | None:
        """The cage `pid` lives in: its own sandbox's, or its nearest confined ancestor's."""
        chain = self.host.lineage(pid) if self.host is not None else (pid,)
        for p in chain:
            c = self.confined.get(p)
            if c is not None:
                return c
        return None

    def open(self, owner: Pid, params: Any) -> _Child:
        where = self.name
        params = confine.check_params(params, where)
        inherited = self.confinement(int(owner))
        if inherited is None:
            conf = confine.trusted(params, int(owner), where)
        else:
            conf = confine.narrow(inherited, params, where)
            root_limits = self.confined[conf.root].limits
            if self._nested_live.get(conf.root, 0) >= root_limits.nested:
                raise DriverError(f"{where}: a sandboxed process may run at most {root_limits.nested} "
                                  f"nested sandbox(es) at once")
        if int(owner) not in self.confined:
            # from now on this process stands for sandboxed code, whatever happens below
            self.confined[int(owner)] = conf
            self._prune()
        uid = UID_BASE + secrets.randbelow(UID_SPAN) if os.geteuid() == 0 else None
        wd = confine.make_workdir(params.get("workdir"), int(owner), uid, where)
        workdir = wd[0]
        cfg = {"code": params["code"], "entry": params.get("entry", "main"), "args": params.get("args"),
               "workdir": workdir, "uid": uid, "gid": uid, "ppid": os.getpid(),
               "namespaces": conf.namespaces, "seccomp": conf.seccomp, "fs_view": conf.fs_view,
               "pid_namespace": conf.pid_namespace, "preload": sorted(conf.preload),
               "caps": list(params.get("caps", ())), "limits": confine.limits_dict(conf.limits)}
        if conf.seccomp:
            from .seccomp import SeccompUnavailable, filter_bpf

            try:
                cfg["seccomp_bpf"] = base64.b64encode(filter_bpf()).decode()
            except SeccompUnavailable as e:  # the child reports it; require_isolation refuses it
                cfg["seccomp_error"] = str(e)
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        try:
            popen = subprocess.Popen([self.python, "-I", "-S", "-B", STUB], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env,
                                     close_fds=True, start_new_session=True)
        except OSError as e:
            confine.release_workdir(*wd)
            raise DriverError(f"{self.name}: cannot start the child: {e}") from None
        nested = inherited is not None
        child = _Child(self, owner, popen, uid, wd, conf.limits.max_line, conf, nested)
        self.live.add(child)
        if nested:
            self._nested_live[conf.root] = self._nested_live.get(conf.root, 0) + 1
        child.host = self.host  # the kernel its owner runs on, for the child's whole life
        if child.host is not None:  # a live child can act (die) while every process waits
            child.host.keep_alive(1)
        self.started += 1
        self.history.append((int(owner), popen.pid, uid))
        child.queue(cfg)
        return child

    def _prune(self) -> None:
        """Forget cages no live process is inside (keeps `confined` bounded)."""
        host = self.host
        if host is None or len(self.confined) < self._prune_at:
            return
        keep: set[int] = set()
        for pid in host.live_pids():
            keep.update(p for p in host.lineage(pid) if p in self.confined)
        keep.update(c.owner for c in self.live)
        keep.update(root for root, n in self._nested_live.items() if n)
        for pid in [p for p in self.confined if p not in keep]:
            del self.confined[pid]
        self._prune_at = max(1024, 2 * len(self.confined))

    def audit(self, pid: int, kind: str, data: dict[str, Any]) -> None:
        """An event, and a flight-recorder record when the kernel has a recorder."""
        if self.host is not None:
            self.host.record(pid, kind, data)

    def action(self, op: str, handle: Any, req: Any) -> None:
        return None  # talking to the child is not an action; what it asks for is checked

    def read(self, handle: _Child, req: Any) -> Any:
        if req != "next":
            raise DriverError(f"{self.name}: the only read is 'next' (the child's next request)")
        return handle.next()

    def write(self, handle: _Child, data: Any) -> Any:
        if isinstance(data, dict) and data.get("ok") is False:  # a refusal of sandboxed code
            self.audit(handle.owner, "sandbox_refusal",
                       {"syscall": str(data.get("call"))[:64], "error": str(data.get("error"))[:64],
                        "msg": str(data.get("msg"))[:500], "child": handle.pid})
        return handle.send(data)

    def close(self, handle: _Child) -> None:
        handle.close()

    def released(self, child: _Child) -> None:
        if child in self.live:
            self.live.discard(child)
            if child.nested:
                root = child.conf.root
                n = self._nested_live.get(root, 1) - 1
                if n > 0:
                    self._nested_live[root] = n
                else:
                    self._nested_live.pop(root, None)
            if child.host is not None:
                child.host.keep_alive(-1)

    def child_died(self, child: _Child, dead: dict[str, Any]) -> None:
        """A child died while its monitor was not reading: end the monitor now."""
        host = child.host
        if host is not None and host.alive(child.owner):
            host.emit(child.owner, "sandbox_dead", dead["status"])
            host.fail(child.owner, f"sandboxed child {dead['status']}")

    def shutdown(self) -> None:
        for child in list(self.live):
            child.close()


__all__ = ["SandboxDriver", "SandboxLimits", "describe_status", "Cost"]
