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
from ..abi.errors import AgentOSError, BadHandle, CapError, DriverError, NoSuchDevice, SyscallError
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
        j = kernel.journal
        self._record = j.record_row if (j is not None and not kernel.replaying) else None

    def handlers(self) -> dict[type, Callable[..., Any]]:
        return {Open: self.sys_open, Read: self.sys_read, ReadAll: self.sys_read_all,
                Write: self.sys_write, Close: self.sys_close}

    # -- open / close ---------------------------------------------------------------
    def sys_open(self, proc: Process, req: Open) -> int:
        device = req.device
        if isinstance(device, str):
            ref = proc.devices.get(device) if proc.devices else None
            if ref is None:
                known = "" if device in self.k.drivers else " (no such device is registered)"
                raise CapError(f"open: pid {proc.pid} holds no capability for device {device!r}{known}")
            device = ref
        cap = self.k.caps.resolve(proc, device, R_OPEN, "open")
        if cap.kind != DEVICE:
            raise CapError("open: the capability designates a process, not a device")
        name = cap.target
        driver = self.k.drivers.get(name)
        if self.k.replaying:
            dh = None
        else:
            if driver is None:
                raise NoSuchDevice(f"open: device {name!r} is not registered with this kernel")
            try:
                dh = driver.open(proc.pid, req.params)
            except AgentOSError:
                raise
            except Exception as e:
                raise DriverError(f"{name}.open failed: {type(e).__name__}: {e}") from e
        handles = proc.handles
        if handles is None:
            handles = proc.handles = {}
        h = len(handles) + 1
        while h in handles:
            h += 1
        # drivers that keep the default action naming get it precomputed: no f-string per call
        fixed = (f"{name}.read", f"{name}.write") \
            if driver is None or type(driver).action is Driver.action else None
        handles[h] = (driver, dh, cap, name, fixed)
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
        io = proc.io
        proc.io = None
        if io is not None:
            for task in io if isinstance(io, list) else (io,):
                task.cancel()
        handles = proc.handles
        proc.handles = None
        if handles:
            for entry in handles.values():
                self._close_driver(entry)

    def release_io(self, proc: Process) -> None:
        """Abandon `proc`'s in-flight operation (SIGINT); its completion is then ignored."""
        io = proc.io
        proc.io = None
        if io is not None:
            for task in io if isinstance(io, list) else (io,):
                task.cancel()

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
        handles = proc.handles
        entry = handles.get(req.handle) if handles else None
        if entry is None or entry[2].holder is not proc or not entry[2].rights & R_READ:
            entry = self._handle(proc, req.handle, R_READ, "read")  # raises the precise error
        return self._op(proc, entry, "read", req.req)

    def sys_write(self, proc: Process, req: Write) -> Any:
        return self._op(proc, self._handle(proc, req.handle, R_WRITE, "write"), "write", req.data)

    def _op(self, proc: Process, entry: tuple[Any, ...], op: str, payload: Any) -> Any:
        driver, dh, _cap, name, fixed = entry
        k = self.k
        if fixed is not None:
            action: tuple[str, Any] | None = (fixed[0] if op == "read" else fixed[1], payload)
        else:
            action = self._action(driver, name, op, dh, payload)
        if action is not None and not k.authorize(proc, action[0], action[1]):
            return PARK
        idx = proc.op_index
        proc.op_index = idx + 1
        if k.replaying:
            assert k.journal is not None  # replay mode requires one (checked at boot)
            return self._apply(proc, k.journal.replay(proc.pid, idx, op, name, payload).row())
        try:
            res = driver.read(dh, payload) if op == "read" else driver.write(dh, payload)
        except Exception as e:
            return self._apply(proc, self._error_entry(proc, idx, op, name, action, payload, e))
        if type(res) is DriverResult:
            c = res.cost
            row = (proc.pid, idx, op, name, action[0] if action else None, payload, True,
                   res.value, None, c.tokens, c.tool_calls, c.usd, c.reductions)
            if c.tokens or c.tool_calls or c.usd or self._record is None:
                return self._apply(proc, row)
            # fast path: nothing to charge but reductions
            self._record(row)
            if c.reductions:
                proc.reductions += c.reductions
            return res.value
        if isinstance(res, DriverResult):
            return self._apply(proc, self._entry(proc, idx, op, name, action, payload, res))
        if not inspect.isawaitable(res):
            e2 = DriverError(f"{name}.{op} returned {type(res).__name__}, not a DriverResult")
            return self._apply(proc, self._error_entry(proc, idx, op, name, action, payload, e2))
        task = asyncio.ensure_future(res)
        proc.io = task
        proc.state = WAITING
        proc.wait_kind = "io"
        k.io_started()
        task.add_done_callback(lambda t: self._done(proc, t, [(idx, op, name, action, payload, t)], False))
        return PARK

    def sys_read_all(self, proc: Process, req: ReadAll) -> Any:
        driver, dh, _cap, name, _fixed = self._handle(proc, req.handle, R_READ, "read_all")
        k = self.k
        payloads = list(req.reqs)
        actions = [self._action(driver, name, "read", dh, p) for p in payloads]
        for a in actions:  # authorize all before running any
            if a is not None and not k.authorize(proc, a[0], a[1]):
                return PARK
        pending: list[tuple[Any, ...]] = []
        for payload, action in zip(payloads, actions):
            idx = proc.op_index
            proc.op_index = idx + 1
            if k.replaying:
                assert k.journal is not None
                pending.append((idx, "read", name, action, payload,
                                k.journal.replay(proc.pid, idx, "read", name, payload)))
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
        k.io_finished()
        if proc.state is EXITED or proc.io is not io:
            return  # the process died or abandoned this operation
        proc.io = None
        if many:
            value = self._finish_all(proc, pending)
            if value is not PARK:
                k.wake(proc, value)
            return
        idx, op, name, action, payload, task = pending[0]
        try:
            entry = self._entry(proc, idx, op, name, action, payload, _task_result(task, name, op))
        except BaseException as e:
            entry = self._error_entry(proc, idx, op, name, action, payload, e)
        try:
            value = self._apply(proc, entry)
        except SyscallError as e:
            k.wake(proc, None, e)
            return
        if value is not PARK:
            k.wake(proc, value)

    def _finish_all(self, proc: Process, pending: list[tuple[Any, ...]]) -> Any:
        values: list[Any] = []
        for idx, op, name, action, payload, res in pending:
            if isinstance(res, JournalEntry):
                entry = res.row()
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
            try:
                v = self._apply(proc, entry)
            except SyscallError as e:
                v = e
            if v is PARK:
                return PARK
            values.append(v)
        return values

    @staticmethod
    def _entry(proc: Process, idx: int, op: str, name: str, action: Any, payload: Any,
               res: DriverResult) -> tuple[Any, ...]:
        c = res.cost
        return (proc.pid, idx, op, name, action[0] if action else None, payload, True,
                res.value, None, c.tokens, c.tool_calls, c.usd, c.reductions)

    @staticmethod
    def _error_entry(proc: Process, idx: int, op: str, name: str, action: Any, payload: Any,
                     e: BaseException) -> tuple[Any, ...]:
        msg = str(e) if isinstance(e, AgentOSError) else f"{name}.{op} failed: {type(e).__name__}: {e}"
        etype = type(e).__name__ if isinstance(e, SyscallError) else "DriverError"
        c = getattr(e, "cost", None)  # work done before failing (e.g. wasm fuel) is still charged
        if isinstance(c, Cost):
            return (proc.pid, idx, op, name, action[0] if action else None, payload, False,
                    msg, etype, c.tokens, c.tool_calls, c.usd, c.reductions)
        return (proc.pid, idx, op, name, action[0] if action else None, payload, False,
                msg, etype, 0, 0, 0.0, 0)

    def _apply(self, proc: Process, row: tuple[Any, ...]) -> Any:
        """Journal the result row, charge its cost, and hand back the value (or raise the error).

        row = (pid, index, op, device, action, request, ok, value, error_type,
               tokens, tool_calls, usd, reductions)"""
        k = self.k
        if self._record is not None:
            self._record(row)
        _, index, _, _, _, _, ok, value, etype, tokens, calls, usd, reds = row
        if tokens or calls or usd:
            usd_nano = round(usd * USD_SCALE)
            short = k.accounts.charge(proc.account, tokens, calls, usd_nano)  # type: ignore[arg-type]
            if short is not None:  # atomic: nothing was charged
                k.events.emit(proc.pid, "quota", (short, index, tokens, calls, usd_nano))
                k.terminate(proc, quota(short))
                return PARK
            k.events.emit(proc.pid, "charge", (index, tokens, calls, usd_nano))
        if reds:
            proc.reductions += reds
        if not ok:
            raise _rebuild_error(etype, value)
        return value

    @staticmethod
    def _action(driver: Driver | None, name: str, op: str, dh: Any, payload: Any) -> tuple[str, Any] | None:
        if driver is None:
            return (f"{name}.{op}", payload)
        try:
            return driver.action(op, dh, payload)
        except AgentOSError:
            raise
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


def _rebuild_error(error_type: str | None, message: str) -> SyscallError:
    from ..abi import errors

    cls = getattr(errors, error_type or "DriverError", DriverError)
    if not (isinstance(cls, type) and issubclass(cls, SyscallError)):
        cls = DriverError
    try:
        return cls(message)
    except TypeError:  # errors whose constructor takes more than a message
        return DriverError(message)


__all__ = ["Devices", "EXITED"]
