"""Process lifecycle: creation (with budget carving and capability passing), deadlines,
and teardown, which returns every resource a process held.

Invariants: a process is created all or nothing (a refused quota or capability leaves no
trace); teardown runs once per process, whatever ended it, and leaves no capability,
account, name, mailbox, timer or in-flight I/O behind; a terminate called while another
teardown runs is queued, so link chains of any length end without recursion.
"""
from __future__ import annotations

import inspect
import operator
from types import CoroutineType, FunctionType
from typing import Any, Callable

from . import args as A
from .values import checked
from ..abi.errors import BadArgument, CapError, SyscallError, shown
from ..abi.types import (
    KERNEL_PID, NORMAL, SHUTDOWN, Down, ExitKind, ExitReason, Quota, WaitKind, check_quota, quota,
)
from .caps import DEVICE
from .process import EXITED, HIBERNATED, Process, ProcessImage
from .scheduler import MAX_BASE_PRIORITY
from .trap import Sys
from .state import KernelState


_NO_QUOTA = Quota()
_pid_of = operator.attrgetter("pid")


def _bounded(e: BaseException) -> str:
    """An exception's message, bounded; one whose str raises is named by its type only."""
    try:
        text = str(e)
    except BaseException:
        return "?"
    return text if len(text) <= 200 else text[:200] + "..."


def _pin_forever(obj: Any) -> None:
    """Take one permanent reference: the object is never deallocated, so never finalized."""
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


class Lifecycle(KernelState):
    """Mixed into `Kernel`."""

    # -- lifecycle ----------------------------------------------------------------------
    def _create(self, parent: Process | None, image: Any, args: Any, caps: tuple[Any, ...],
                quota_: Quota | None, link: bool, priority: int | None, deadline: float | None,
                name: str | None) -> Process:
        # a plain function spawned before is its cached image (it was checked then; a function
        # hashes by identity, so the lookup runs none of the caller's code)
        img = self._image_cache.get(image) if type(image) is FunctionType else None
        if img is None:
            if not isinstance(image, (str, ProcessImage)) and not inspect.iscoroutinefunction(image):
                raise BadArgument(f"spawn: cannot run a {type(image).__name__}: expected a ProcessImage or an "
                                  f"async function (sys, args), or the name of a registered image")
            img = self._image_cache.get(image) if not isinstance(image, (str, ProcessImage)) else None
        if img is None:
            try:
                img = ProcessImage.of(image) if not isinstance(image, str) else self._image_named(image)
            except TypeError as e:
                raise BadArgument(f"spawn: {e}") from None
            if not isinstance(image, (str, ProcessImage)):
                self._image_cache[image] = img
        # Everything is checked before anything is taken: a refused spawn carves no budget,
        # opens no account and transfers no capability.
        if quota_ is not None:
            quota_ = check_quota("spawn: quota", quota_)
        if priority is None:
            priority = parent.priority if parent is not None else self.config.default_priority
        if type(priority) is not int or not 0 <= priority <= MAX_BASE_PRIORITY:
            raise BadArgument(f"spawn: priority must be an int in 0..{MAX_BASE_PRIORITY}, got {shown(priority)}")
        if deadline is not None:
            deadline = A.number("spawn: deadline (ms)", deadline, minimum=0)
        if name is not None:
            name = A.text("spawn: name", name, max_len=256)
        if link is not False and link is not True:
            link = A.flag("spawn: link", link)
        if args is not None:
            checked("spawn: args", args)
        caps = A.sequence("spawn: caps", caps) if caps else ()
        # resolve capabilities to pass before anything is allocated
        srcs = []
        if parent is not None:
            for c in caps:
                if isinstance(c, str):
                    ref = parent.devices.get(c) if parent.devices else None
                    if ref is None:
                        raise CapError(f"spawn: pid {parent.pid} holds no capability for device {shown(c)} to pass on")
                    c = ref
                srcs.append(self.caps.resolve(parent, c, 0x7F, "spawn caps"))
        # build the coroutine now: a main of the wrong arity is refused before any budget moves
        sys = Sys(())
        try:
            coro = img.main(sys, args)
        except BaseException as e:
            raise BadArgument(f"spawn: cannot start image {img.name!r}: {type(e).__name__}: "
                              f"{_bounded(e)}") from None
        if type(coro) is not CoroutineType and not inspect.iscoroutine(coro):
            raise BadArgument(f"spawn: image {img.name!r}'s main must be an async function "
                              f"(sys, args); it returned {type(coro).__name__}")
        try:
            return self._allocate(parent, img, args, quota_, link, priority, deadline, name, srcs, sys, coro)
        except BaseException:
            coro.close()
            raise

    def _allocate(self, parent: Process | None, img: ProcessImage, args: Any, quota_: Quota | None,
                  link: bool, priority: int, deadline: float | None, name: str | None,
                  srcs: list[Any], sys: Sys, coro: Any) -> Process:
        pid = self.next_pid
        if parent is None:
            account = self.accounts.open_root(pid, quota_ or _NO_QUOTA)
        else:
            account = self.accounts.open_child(pid, parent.account, quota_)  # type: ignore[arg-type]
        self.next_pid = pid + 1
        proc = Process(pid, name or img.name, img, parent)
        proc.account = account
        proc.priority = proc.level = priority
        now = self._now()
        proc.started = now
        q = quota_ or _NO_QUOTA
        wall = now + q.wall_ms if q.wall_ms is not None else None
        if parent is not None and parent.wall_deadline is not None:
            wall = parent.wall_deadline if wall is None else min(wall, parent.wall_deadline)
        proc.wall_deadline = wall
        mm = q.max_mailbox
        if parent is not None and parent.max_mailbox is not None:
            mm = parent.max_mailbox if mm is None else min(mm, parent.max_mailbox)
        proc.max_mailbox = mm
        if deadline is not None:
            proc.deadline = now + deadline
        if proc.deadline is not None or wall is not None:
            self._arm_deadline(proc)
        child_caps = []
        for src in srcs:
            cap = self.caps.transfer(src, proc)
            child_caps.append(cap.ref)
            if cap.kind == DEVICE:
                if proc.devices is None:
                    proc.devices = {}
                proc.devices.setdefault(cap.target, cap.ref)
        proc.spawn_caps = sys.caps = tuple(child_caps)
        proc.sys = sys
        proc.args = args
        proc.coro = coro
        self.procs[pid] = proc
        if parent is not None:
            if link:
                for a, b in ((parent, proc), (proc, parent)):
                    if a.links is None:
                        a.links = set()
                    a.links.add(b)
        self._append((now, pid, "spawn", (parent.pid if parent else 0, proc.name, q)))
        self.runq.push(proc)
        if self._on_spawn:
            self._tell(self._on_spawn, "spawned", proc)
        return proc

    def _tell(self, hooks: list[Callable[..., Any]], what: str, *args: Any) -> None:
        """Run observer hooks; one that raises is recorded and the kernel carries on."""
        for fn in hooks:
            try:
                fn(*args)
            except Exception as e:
                self.events.emit(KERNEL_PID, "observer_error", f"{what}: {type(e).__name__}: {e}")

    def _image_named(self, name: str) -> ProcessImage:
        img = self.images.get(name)
        if img is None:
            raise TypeError(f"no image named {name!r} is registered")
        return img

    def _arm_deadline(self, proc: Process) -> None:
        self.timers.cancel(proc.dl_timer)
        proc.dl_timer = None
        when = [t for t in (proc.deadline, proc.wall_deadline) if t is not None]
        if when:
            proc.dl_timer = self.timers.add(min(when), self._deadline_fired, proc)

    def _deadline_fired(self, proc: Process) -> None:
        proc.dl_timer = None
        if proc.state is EXITED:
            return
        now = self.clock.now()
        if proc.deadline is not None and now >= proc.deadline:
            self.terminate(proc, ExitReason(ExitKind.DEADLINE))
        elif proc.wall_deadline is not None and now >= proc.wall_deadline:
            self.terminate(proc, quota("wall_ms"))

    def terminate(self, proc: Process, reason: ExitReason, result: Any = None) -> None:
        """End `proc` for good. Safe to call from anywhere in the kernel, any number of times."""
        if proc.state is EXITED:
            return
        if self._draining:  # a teardown in progress queued this one (a link): do it after
            self._dying.append((proc, reason, result))
            return
        self._draining = True
        try:
            self._teardown(proc, reason, result)
            dying = self._dying
            while dying:
                p, r, v = dying.pop(0)
                self._teardown(p, r, v)
        finally:
            self._draining = False

    def _teardown(self, proc: Process, reason: ExitReason, result: Any) -> None:
        if proc.state is EXITED:
            return
        if proc.state is HIBERNATED:
            hib = self.hibernation  # type: ignore[attr-defined]
            if not hib.thaw_for_exit(proc):
                hib.defer(proc, ("exit", reason, result))  # its record cannot be read now
                return
        proc.state = EXITED
        proc.exit_reason = reason
        proc.result = result
        coro = proc.coro
        proc.coro = None
        if coro is not None:
            try:
                coro.close()  # GeneratorExit inside; `finally` blocks run, syscalls cannot
            except BaseException as e:
                # It swallowed GeneratorExit and yielded again. It will never be resumed, and
                # it must never be finalized either (finalizing runs its code again).
                _pin_forever(coro)
                self.events.emit(proc.pid, "close_error", f"{type(e).__name__}: {_bounded(e)}")
        if proc.wait_kind is not None:
            self._abort_wait(proc)  # withdraw what it waited for: a queue place, an op, a timer
        held = getattr(self._policy, "deferred", None)  # type: ignore[attr-defined]
        if held and proc.pid in held:  # decisions whose ops will never get an entry (replay.py)
            self._policy.flush(proc.pid)  # type: ignore[attr-defined]
        if proc.timer is not None or proc.dl_timer is not None:
            self.timers.cancel(proc.timer)
            self.timers.cancel(proc.dl_timer)
            proc.timer = proc.dl_timer = None
        if proc.io is not None or proc.handles:
            self.devices.release(proc)
        if proc.mailbox is not None or proc.blocked_senders or proc.blocked_on is not None \
                or proc.recv_match is not None:
            self.ipc.release(proc)
        if proc.memory is not None:
            self.memory.release(proc)
        cold = proc.cold
        if cold is not None and cold.cleanups:
            for fn in cold.cleanups:
                try:
                    fn(reason)
                except BaseException as e:  # process code: whatever its class, it stops here
                    self.events.emit(proc.pid, "cleanup_error", f"{type(e).__name__}: {_bounded(e)}")
            cold.cleanups = None
        if proc.names:
            for n in proc.names:
                if self.names.get(n) is proc:
                    del self.names[n]
            proc.names = None
        if proc.caps:
            self.caps.drop_all(proc)
        parent = proc.parent
        self.accounts.close(proc.account, parent.account if parent else None)  # type: ignore[arg-type]
        self._append((self._now(), proc.pid, "exit", "normal" if reason is NORMAL else str(reason)))
        if proc.waiters:
            for w in proc.waiters:
                if w.wait_target is proc and w.wait_kind is WaitKind.WAITPID:
                    w.wait_target = None
                    self.wake(w, reason)
            proc.waiters = None
        down = Down(proc.pid, reason, proc.name) if (proc.watchers or proc.links) else None
        if proc.watchers:
            for w in proc.watchers:
                self.ipc.deliver_kernel(w, down)
            proc.watchers = None
        if proc.links:  # in pid order: a set's order follows memory addresses, which a replay does not share
            for other in sorted(proc.links, key=_pid_of):
                if other.links is not None:
                    other.links.discard(proc)
                if other.parent is proc:
                    self._dying.append((other, ExitReason(ExitKind.KILLED, f"link:{proc.pid}"), None))
                else:
                    self.ipc.deliver_kernel(other, down)
            proc.links = None
        self.procs.pop(proc.pid, None)
        proc.sys = None
        proc.args = None
        if reason.kind is ExitKind.QUOTA and self.trust is not None and parent is not None:
            self.trust.evidence(parent, "child_quota_kill")  # a runaway child counts against its parent
        if self._on_exit:
            self._tell(self._on_exit, "exited", proc, reason)

    def shutdown(self) -> None:
        """End every remaining process with `shutdown`, children before parents."""
        for proc in sorted(self.procs.values(), key=lambda p: -p.pid):
            self.terminate(proc, SHUTDOWN)
        self.events.flush()
        if self.audit is not None:
            try:
                self.audit.commit()
            except Exception as e:  # the records stay pending in the recorder; say so
                self.events.emit(KERNEL_PID, "audit_error", f"{type(e).__name__}: {e}")
