"""Device syscalls: open, read, read_all, write, close.

The order on every operation is the kernel's contract: (1) the handle's capability still
holds the right, (2) policy authorizes the action on the world, (3) the driver runs (or,
in replay mode, the journal answers), (4) the result is journaled, (5) its cost is charged
atomically; a charge the account cannot pay kills the caller with `quota(resource)`.
A driver may answer synchronously or with an awaitable; awaitables run as asyncio tasks
while the caller is parked, and are cancelled if the caller dies.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Callable

from ..abi.driver import Driver, DriverResult
from ..abi.errors import (
    AgentOSError, BadHandle, CapError, DriverError, NondeterminismError, NoSuchDevice, SyscallError,
)
from ..abi.syscalls import Close, Open, Read, ReadAll, Write
from ..abi.types import USD_SCALE, Cost, quota
from .caps import DEVICE, R_OPEN, R_READ, R_WRITE
from .journal import JournalEntry
from .process import EXITED, PARK, WAITING, Process

if TYPE_CHECKING:
    from .kernel import Kernel


class Devices:
    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self.reads = 0
        self._inflight: dict[int, tuple[int, int]] = {}  # pid -> (first op index, count) parked on I/O

    def handlers(self) -> dict[type, Callable[..., Any]]:
        return {Open: self.sys_open, Read: self.sys_read, ReadAll: self.sys_read_all,
                Write: self.sys_write, Close: self.sys_close}

    # -- open / close ---------------------------------------------------------------
    def sys_open(self, proc: Process, req: Open) -> int:
        device = req.device
        if isinstance(device, str):
            ref = proc.devices.get(device) if proc.devices else None
            if ref is None:
                # (not "is it registered?": the answer must not depend on the drivers present,
                # or a replay, which runs without drivers, would tell a different story)
                raise CapError(f"open: pid {proc.pid} holds no capability for device {device!r}")
            device = ref
        cap = self.k.caps.resolve(proc, device, R_OPEN, "open")
        if cap.kind != DEVICE:
            raise CapError("open: the capability designates a process, not a device")
        name = cap.target
        k = self.k
        driver = k.drivers.get(name)
        idx = proc.op_index
        proc.op_index = idx + 1
        if k.replaying:  # an open is an input too: it may fail, and the journal says how
            dh = None
            e = k.journal.replay(proc.pid, idx, "open", name, req.params)  # type: ignore[union-attr]
            if not e.ok:
                raise _rebuild_error(e)
        else:
            if driver is None:
                raise NoSuchDevice(f"open: device {name!r} is not registered with this kernel")
            try:
                dh = driver.open(proc.pid, req.params)
            except Exception as exc:
                err = exc if isinstance(exc, AgentOSError) else \
                    DriverError(f"{name}.open failed: {type(exc).__name__}: {exc}")
                if k.journal is not None:
                    k.journal.record(self._error_entry(proc, idx, "open", name, None, req.params, err))
                if err is exc:
                    raise
                raise err from exc
            if k.journal is not None:
                k.journal.record(JournalEntry(proc.pid, idx, "open", name, None, req.params, True, None))
        handles = proc.handles
        if handles is None:
            handles = proc.handles = {}
        h = len(handles) + 1
        while h in handles:
            h += 1
        handles[h] = (driver, dh, cap, name)
        return h

    def sys_close(self, proc: Process, req: Close) -> None:
        entry = proc.handles.pop(req.handle, None) if proc.handles else None
        if entry is None:
            raise BadHandle(f"close: handle {req.handle} is not open in pid {proc.pid}")
        self._close_driver(entry)

    def _close_driver(self, entry: tuple[Any, ...]) -> None:
        driver, dh = entry[0], entry[1]
        if driver is not None and dh is not None:
            try:
                driver.close(dh)
            except Exception as e:  # a driver failing to close must not hurt the kernel
                self.k.events.emit(0, "driver_error", f"{entry[3]}.close: {e!r}")

    def release(self, proc: Process) -> None:
        """`proc` is exiting: cancel its in-flight I/O and close its handles."""
        self._abandon(proc)
        handles = proc.handles
        proc.handles = None
        if handles:
            for entry in handles.values():
                self._close_driver(entry)

    def release_io(self, proc: Process) -> None:
        """Abandon `proc`'s in-flight operation (SIGINT); its completion is then ignored."""
        self._abandon(proc)

    def _abandon(self, proc: Process) -> None:
        """Cancel in-flight I/O. The slot is freed now, not when asyncio gets round to the
        cancelled task, so the kernel's I/O ticks stay a function of the program (replay)."""
        io = proc.io
        proc.io = None
        if io is None:
            return
        for task in io if isinstance(io, list) else (io,):
            task.cancel()
        k = self.k
        k.io_finished()
        first, n = self._inflight.pop(proc.pid, (proc.op_index - 1, 1))
        if not k.replaying and k.journal is not None:  # replay: "this op never completed"
            k.journal.record(JournalEntry(proc.pid, first, "io_cancel", "", None, None, True, n))

    # -- read / write ----------------------------------------------------------------
    def _handle(self, proc: Process, h: int, right: int, op: str) -> tuple[Any, ...]:
        entry = proc.handles.get(h) if proc.handles else None
        if entry is None:
            raise BadHandle(f"{op}: handle {h} is not open in pid {proc.pid}")
        cap = entry[2]
        if cap.holder is not proc:
            raise CapError(f"{op}: the capability behind handle {h} was revoked")
        if not cap.rights & right:
            raise CapError(f"{op}: the capability behind handle {h} lacks the {op} right")
        return entry

    def sys_read(self, proc: Process, req: Read) -> Any:
        return self._op(proc, self._handle(proc, req.handle, R_READ, "read"), "read", req.req, req)

    def sys_write(self, proc: Process, req: Write) -> Any:
        return self._op(proc, self._handle(proc, req.handle, R_WRITE, "write"), "write", req.data, req)

    def _op(self, proc: Process, entry: tuple[Any, ...], op: str, payload: Any, req: Any = None) -> Any:
        driver, dh, _cap, name = entry
        k = self.k
        if k.replaying:
            return self._replay_op(proc, name, op, payload)
        try:
            action = self._action(driver, name, op, dh, payload)
        except DriverError as err:  # the request is malformed: journaled, as replay has no driver
            self._journal_refusal(proc, op, name, payload, err)
            raise
        if action is not None and not k.authorize(proc, action[0], action[1], req):
            return PARK
        idx = proc.op_index
        proc.op_index = idx + 1
        if k.replaying:
            e = k.journal.replay(proc.pid, idx, op, name, payload)
            return self._apply(proc, e)
        try:
            res = driver.read(dh, payload) if op == "read" else driver.write(dh, payload)
        except Exception as e:
            return self._apply(proc, self._error_entry(proc, idx, op, name, action, payload, e))
        if isinstance(res, DriverResult):
            return self._apply(proc, self._entry(proc, idx, op, name, action, payload, res))
        if not inspect.isawaitable(res):
            e2 = DriverError(f"{name}.{op} returned {type(res).__name__}, not a DriverResult")
            return self._apply(proc, self._error_entry(proc, idx, op, name, action, payload, e2))
        task = asyncio.ensure_future(res)
        self._inflight[proc.pid] = (idx, 1)
        proc.io = task
        proc.state = WAITING
        proc.wait_kind = "io"
        k.io_started()
        task.add_done_callback(lambda t: self._done(proc, t, [(idx, op, name, action, payload, t)], False))
        return PARK

    def sys_read_all(self, proc: Process, req: ReadAll) -> Any:
        driver, dh, _cap, name = self._handle(proc, req.handle, R_READ, "read_all")
        k = self.k
        payloads = list(req.reqs)
        if k.replaying:
            return self._replay_read_all(proc, name, payloads)
        try:
            actions = [self._action(driver, name, "read", dh, p) for p in payloads]
        except DriverError as err:
            self._journal_refusal(proc, "read_all", name, payloads, err)
            raise
        for a in actions:  # authorize all before running any
            if a is not None and not k.authorize(proc, a[0], a[1], req):
                return PARK
        pending: list[tuple[Any, ...]] = []
        for payload, action in zip(payloads, actions):
            idx = proc.op_index
            proc.op_index = idx + 1
            if k.replaying:
                pending.append((idx, "read", name, action, payload, k.journal.replay(proc.pid, idx, "read", name, payload)))
                continue
            try:
                res = driver.read(dh, payload)
            except Exception as e:
                res = e
            if inspect.isawaitable(res):
                res = asyncio.ensure_future(res)
            pending.append((idx, "read", name, action, payload, res))
        tasks = [p[5] for p in pending if isinstance(p[5], asyncio.Future)]
        if not tasks:
            return self._finish_all(proc, pending)
        self._inflight[proc.pid] = (pending[0][0], len(pending))
        proc.io = tasks
        proc.state = WAITING
        proc.wait_kind = "io"
        k.io_started()
        remaining = [len(tasks)]

        def one_done(_t: Any) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                self._done(proc, tasks, pending, True)

        for t in tasks:
            t.add_done_callback(one_done)
        return PARK

    # -- completion -----------------------------------------------------------------
    def _done(self, proc: Process, io: Any, pending: list[tuple[Any, ...]], many: bool) -> None:
        k = self.k
        if proc.state is EXITED or proc.io is not io:
            return  # the process died or abandoned this operation: `_abandon` freed the slot
        k.io_finished()
        self._inflight.pop(proc.pid, None)
        proc.io = None
        if many:
            value = self._finish_all(proc, pending, k.io_tick)
            if value is not PARK:
                k.wake(proc, value)
            return
        idx, op, name, action, payload, task = pending[0]
        try:
            entry = self._entry(proc, idx, op, name, action, payload, _task_result(task, name, op))
        except BaseException as e:
            entry = self._error_entry(proc, idx, op, name, action, payload, e)
        entry.at = k.io_tick
        try:
            value = self._apply(proc, entry)
        except SyscallError as e:
            k.wake(proc, None, e)
            return
        if value is not PARK:
            k.wake(proc, value)

    def _finish_all(self, proc: Process, pending: list[tuple[Any, ...]], at: int | None = None) -> Any:
        values: list[Any] = []
        for idx, op, name, action, payload, res in pending:
            if isinstance(res, JournalEntry):
                entry = res
            else:
                try:
                    if isinstance(res, asyncio.Future):
                        res = _task_result(res, name, op)
                    if isinstance(res, BaseException):
                        raise res
                    if not isinstance(res, DriverResult):
                        raise DriverError(f"{name}.{op} returned {type(res).__name__}, not a DriverResult")
                    entry = self._entry(proc, idx, op, name, action, payload, res)
                except BaseException as e:
                    entry = self._error_entry(proc, idx, op, name, action, payload, e)
                entry.at = at
            try:
                v = self._apply(proc, entry)
            except SyscallError as e:
                v = e
            if v is PARK:
                return PARK
            values.append(v)
        return values

    def _entry(self, proc: Process, idx: int, op: str, name: str, action: Any, payload: Any,
               res: DriverResult) -> JournalEntry:
        c = res.cost
        return JournalEntry(proc.pid, idx, op, name, action[0] if action else None, payload, True,
                            res.value, None, c.tokens, c.tool_calls, c.usd, c.reductions)

    def _error_entry(self, proc: Process, idx: int, op: str, name: str, action: Any, payload: Any,
                     e: BaseException) -> JournalEntry:
        msg = str(e) if isinstance(e, AgentOSError) else f"{name}.{op} failed: {type(e).__name__}: {e}"
        etype = type(e).__name__ if isinstance(e, SyscallError) else "DriverError"
        c = getattr(e, "cost", None)  # work done before failing (e.g. wasm fuel) is still charged
        if isinstance(c, Cost):
            return JournalEntry(proc.pid, idx, op, name, action[0] if action else None, payload, False,
                                msg, etype, c.tokens, c.tool_calls, c.usd, c.reductions)
        return JournalEntry(proc.pid, idx, op, name, action[0] if action else None, payload, False,
                            msg, etype)

    def _apply(self, proc: Process, e: JournalEntry) -> Any:
        """Journal the result, charge its cost, and hand back the value (or raise the error)."""
        k = self.k
        if not k.replaying and k.journal is not None:
            k.journal.record(e)
        self.reads += 1
        if e.tokens or e.tool_calls or e.usd:
            usd_nano = round(e.usd * USD_SCALE)
            short = k.accounts.charge(proc.account, e.tokens, e.tool_calls, usd_nano)  # type: ignore[arg-type]
            if short is not None:  # atomic: nothing was charged
                k.events.emit(proc.pid, "quota", (short, e.index, e.tokens, e.tool_calls, usd_nano))
                k.terminate(proc, quota(short))
                return PARK
            k.events.emit(proc.pid, "charge", (e.index, e.tokens, e.tool_calls, usd_nano))
        if e.reductions:
            proc.reductions += e.reductions
        if not e.ok:
            raise _rebuild_error(e)
        return e.value

    def _journal_refusal(self, proc: Process, op: str, name: str, payload: Any, err: BaseException) -> None:
        idx = proc.op_index
        proc.op_index = idx + 1
        if self.k.journal is not None:
            self.k.journal.record(self._error_entry(proc, idx, op, name, None, payload, err))

    # -- replay ---------------------------------------------------------------------
    def _replay_action(self, proc: Process, idx: int, op: str, name: str, payload: Any,
                       ahead: int) -> str | None:
        """The action the live run authorized for this op, without asking any driver."""
        journal = self.k.journal
        e = journal.lookup(proc.pid, idx)  # type: ignore[union-attr]
        if journal.matches(e, op, name, payload):  # type: ignore[union-attr]
            return e.action  # type: ignore[union-attr]
        # no result recorded: the live run must have been refused by policy here
        peek = getattr(self.k.policy, "peek_action", None)
        action = peek(proc.pid, ahead) if peek is not None else None
        if action is None:
            journal.replay(proc.pid, idx, op, name, payload)  # type: ignore[union-attr]  # raises
        return action

    def _replay_op(self, proc: Process, name: str, op: str, payload: Any) -> Any:
        k = self.k
        idx = proc.op_index
        action = self._replay_action(proc, idx, op, name, payload, 0)
        if action is not None and not k.authorize(proc, action, payload):
            return PARK
        proc.op_index = idx + 1
        if k.journal.lookup(proc.pid, idx) is None and (proc.pid, idx) in k.journal.cancelled:  # type: ignore[union-attr]
            k.replay_io.park_unfinished(proc)  # type: ignore[union-attr]
            return PARK
        e = k.journal.replay(proc.pid, idx, op, name, payload)  # type: ignore[union-attr]
        if e.at is not None:
            k.replay_io.park(proc, [e], False)  # type: ignore[union-attr]
            return PARK
        return self._apply(proc, e)

    def _replay_read_all(self, proc: Process, name: str, payloads: list[Any]) -> Any:
        k = self.k
        base = proc.op_index
        first = k.journal.lookup(proc.pid, base)  # type: ignore[union-attr]
        if k.journal.matches(first, "read_all", name, payloads):  # type: ignore[union-attr]
            proc.op_index = base + 1  # the live driver could not classify one of these requests
            return self._apply(proc, first)  # type: ignore[arg-type]  # raises its error
        for i, p in enumerate(payloads):  # the live run authorized these in order, stopping at a deny
            a = self._replay_action(proc, base + i, "read", name, p, 0)
            if a is not None and not k.authorize(proc, a, p):
                return PARK
        if k.journal.lookup(proc.pid, base) is None and (proc.pid, base) in k.journal.cancelled:  # type: ignore[union-attr]
            proc.op_index = base + len(payloads)
            k.replay_io.park_unfinished(proc)  # type: ignore[union-attr]
            return PARK
        entries = []
        for p in payloads:
            idx = proc.op_index
            proc.op_index = idx + 1
            entries.append(k.journal.replay(proc.pid, idx, "read", name, p))  # type: ignore[union-attr]
        if any(e.at is not None for e in entries):
            k.replay_io.park(proc, entries, True)  # type: ignore[union-attr]
            return PARK
        return self._finish_all(proc, [(e.index, "read", name, None, e.request, e) for e in entries])

    def replay_done(self, pending: Any) -> None:
        """A replayed asynchronous result reaches its recorded tick: finish like `_done`."""
        k = self.k
        proc = pending.proc
        k.io_finished()
        if proc.state is EXITED or proc.io is not pending:
            raise NondeterminismError(
                f"replay diverged at pid {proc.pid}: a result recorded as delivered at I/O tick "
                f"{pending.at} has no waiting process in the replay")
        proc.io = None
        if pending.many:
            value = self._finish_all(proc, [(e.index, "read", e.device, None, e.request, e)
                                            for e in pending.entries])
        else:
            try:
                value = self._apply(proc, pending.entries[0])
            except SyscallError as err:
                k.wake(proc, None, err)
                return
        if value is not PARK:
            k.wake(proc, value)

    @staticmethod
    def _action(driver: Driver | None, name: str, op: str, dh: Any, payload: Any) -> tuple[str, Any] | None:
        if driver is None:
            return (f"{name}.{op}", payload)
        try:
            return driver.action(op, dh, payload)
        except DriverError:
            raise  # already says what is wrong (ToolError for an unknown tool, ...)
        except Exception as e:
            raise DriverError(f"{name}: cannot classify the {op} request: {e}") from e


def _task_result(task: Any, name: str, op: str) -> DriverResult:
    if task.cancelled():
        raise DriverError(f"{name}.{op} was cancelled")
    exc = task.exception()
    if exc is not None:
        raise exc
    res = task.result()
    if not isinstance(res, DriverResult):
        raise DriverError(f"{name}.{op} returned {type(res).__name__}, not a DriverResult")
    return res


def _rebuild_error(e: JournalEntry) -> SyscallError:
    from ..abi import errors

    cls = getattr(errors, e.error_type or "DriverError", DriverError)
    if not (isinstance(cls, type) and issubclass(cls, SyscallError)):
        cls = DriverError
    try:
        return cls(e.value)
    except TypeError:  # errors whose constructor takes more than a message
        return DriverError(e.value)


__all__ = ["Devices", "EXITED"]
