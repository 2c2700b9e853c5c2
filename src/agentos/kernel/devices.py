"""Device syscalls: open, read, read_all, write, close.

The order on every operation is the kernel's contract: (1) the handle's capability still
holds the right, (2) policy authorizes the action on the world, (3) the driver's bound is
reserved up the account hierarchy, all or nothing (if it does not fit, the driver is never
called and the caller is killed with `quota(resource)`), (4) with a flight recorder the
write-ahead record is made; under group commit the caller parks until it is durable and
holds its reservation meanwhile (`_Held`: consumed by the rerun, given back if the caller
dies or is interrupted first), (5) the driver runs, (6) the result is journaled with its
reservation, (7) the cost is settled: charged, the rest released; a cost above the
reservation is charged as far as the budget can pay and the caller is killed. A driver may answer synchronously or with an
awaitable; awaitables run as asyncio tasks while the caller is parked (wait kind `io`),
and are cancelled if the caller dies or is interrupted.

`Devices` is the live path; `ReplayDevices` (kernel/replay_devices.py) answers the same
syscalls from the journal and never calls a driver. The two share the bookkeeping below:
handles, completion, charging.
"""
from __future__ import annotations

import asyncio
import inspect
import math
from typing import TYPE_CHECKING, Any, Callable

from ..abi.driver import Driver, DriverResult
from ..abi.errors import (
    AgentOSError, BadArgument, BadHandle, CapError, DriverError, NoSuchDevice,
    SyscallError,
)
from ..abi.syscalls import Close, Open, Read, ReadAll, Write
from ..abi.types import COST_MAX, USD_SCALE, Cost, WaitKind, cost_units, quota
from . import args as A
from .caps import DEVICE, R_OPEN, R_READ, R_WRITE, Cap
from .journal import JournalEntry
from .replay import DecisionRecorder
from .process import EXITED, PARK, Process
from .values import checked

if TYPE_CHECKING:
    from .kernel import Kernel


class Handle:
    """An open device in a process: what `read`/`write` on its number reach."""

    __slots__ = ("driver", "dh", "cap", "device", "actions", "unbounded")

    def __init__(self, driver: Driver | None, dh: Any, cap: Cap, device: str) -> None:
        self.driver = driver   # None in replay: no driver is ever called
        self.dh = dh           # the driver's own handle
        self.cap = cap         # the capability it was opened through (checked on every use)
        self.device = device
        # op -> action name, built once here, for a driver that names its actions the default
        # way (`Driver.action`: "<driver name>.<op>", the request as the policy's args)
        self.actions: dict[str, str] | None = None
        if driver is not None and type(driver).action is Driver.action:
            self.actions = {"read": f"{driver.name}.read", "write": f"{driver.name}.write"}
        # a driver that declares no bound (`Driver.bound`): nothing to reserve, no call to make
        self.unbounded = driver is not None and type(driver).bound is Driver.bound


class PendingOp:
    """One operation of a `read`/`write`/`read_all` between issue and completion."""

    __slots__ = ("index", "op", "device", "action", "payload", "result", "reserve")

    def __init__(self, index: int, op: str, device: str, action: str | None, payload: Any,
                 result: Any, reserve: tuple[int, int, int] | None = None) -> None:
        self.index = index      # the caller's op index (journal key)
        self.op = op
        self.device = device
        self.action = action    # what policy authorized, journaled with the result
        self.payload = payload
        self.result = result    # DriverResult, an asyncio future, an exception, or a JournalEntry
        self.reserve = reserve  # (tokens, tool_calls, usd_nano) set aside until it settles


class _Held:
    """What a caller parked for its write-ahead records holds: the ops, numbered and with
    their reservations taken, and the (action, args) each record clears. The rerun of the
    same request consumes it; anything else gives the reservations back."""

    __slots__ = ("req", "ops", "actions")

    def __init__(self, req: Any, ops: list[PendingOp], actions: list[tuple[str, Any]]) -> None:
        self.req = req
        self.ops = ops
        self.actions = actions


class Devices:
    """The live device path."""

    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self.reads = 0
        self._overruns: list[str] | None = None  # set while a batch settles (`_finish_all`)
        # pid -> (first op index, count, the ops) parked on I/O, for `_abandon`
        self._inflight: dict[int, tuple[int, int, list[PendingOp]]] = {}
        self._held: dict[int, _Held] = {}  # pid -> ops parked for their write-ahead records

    def handlers(self) -> dict[type, Callable[..., Any]]:
        return {Open: self.sys_open, Read: self.sys_read, ReadAll: self.sys_read_all,
                Write: self.sys_write, Close: self.sys_close}

    # -- open / close ---------------------------------------------------------------
    def _open_cap(self, proc: Process, device: Any) -> Cap:
        """The device capability an open names (a held cap, or the name of a held device)."""
        if isinstance(device, str):
            device = A.text("open: device", device)
            ref = proc.devices.get(device) if proc.devices else None
            if ref is None:
                # (not "is it registered?": the answer must not depend on the drivers present,
                # or a replay, which runs without drivers, would tell a different story)
                raise CapError(f"open: pid {proc.pid} holds no capability for device {A.shown(device)}")
            device = ref
        cap = self.k.caps.resolve(proc, device, R_OPEN, "open")
        if cap.kind != DEVICE:
            raise CapError("open: the capability designates a process, not a device")
        return cap

    def _new_handle(self, proc: Process, handle: Handle) -> int:
        handles = proc.handles
        if handles is None:
            handles = proc.handles = {}
        h = len(handles) + 1
        while h in handles:
            h += 1
        handles[h] = handle
        return h

    def sys_open(self, proc: Process, req: Open) -> int:
        cap = self._open_cap(proc, req.device)
        name = cap.target
        k = self.k
        driver = k.drivers.get(name)
        idx = proc.op_index
        proc.op_index = idx + 1
        if driver is None:
            raise NoSuchDevice(f"open: device {name!r} is not registered with this kernel")
        try:
            dh = driver.open(proc.pid, req.params)
        except Exception as exc:
            err = exc if isinstance(exc, SyscallError) else \
                DriverError(f"{name}.open failed: {type(exc).__name__}: {exc}")
            if k.journal is not None:
                k.journal.record(self._error_entry(proc, PendingOp(idx, "open", name, None, req.params, None), err))
            if err is exc:
                raise
            raise err from exc
        if k.journal is not None:
            k.journal.record(JournalEntry(proc.pid, idx, "open", name, None, req.params, True, None))
        return self._new_handle(proc, Handle(driver, dh, cap, name))

    def sys_close(self, proc: Process, req: Close) -> None:
        h = _handle_no("close", req.handle)
        handle = proc.handles.pop(h, None) if proc.handles else None
        if handle is None:
            raise BadHandle(f"close: handle {h} is not open in pid {proc.pid}")
        self._close_driver(handle)

    def _close_driver(self, handle: Handle) -> None:
        if handle.driver is not None and handle.dh is not None:
            try:
                handle.driver.close(handle.dh)
            except Exception as e:  # a driver failing to close must not hurt the kernel
                self.k.events.emit(0, "driver_error", f"{handle.device}.close: {e!r}")

    def release(self, proc: Process) -> None:
        """`proc` is exiting: cancel its in-flight I/O and close its handles."""
        held = self._held.get(proc.pid)
        if held is not None:
            self._give_back(proc, held)
        self._abandon(proc)
        handles = proc.handles
        proc.handles = None
        if handles:
            for handle in handles.values():
                self._close_driver(handle)

    def abort_io(self, proc: Process) -> bool:
        """The abort of an `io` wait (SIGINT, teardown): the operation's completion is ignored."""
        self._abandon(proc)
        return True

    def reserved(self, pid: int) -> tuple[int, int, int]:
        """What pid's operations in flight have set aside and not yet settled (tokens,
        tool_calls, usd_nano): budget neither used nor left while they run."""
        got = self._inflight.get(pid)
        held = self._held.get(pid)
        if got is None and held is None:
            return (0, 0, 0)
        t = c = u = 0
        for p in (got[2] if got is not None else []) + (held.ops if held is not None else []):
            r = p.reserve
            if r is not None:
                t, c, u = t + r[0], c + r[1], u + r[2]
        return (t, c, u)

    def _park_io(self, proc: Process, io: Any, first: int, count: int, ops: list[PendingOp]) -> Any:
        self._inflight[proc.pid] = (first, count, ops)
        proc.io = io
        self.k.io_started()
        return self.k.park(proc, WaitKind.IO, self.abort_io)

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
        first, n, ops = self._inflight.pop(proc.pid, (proc.op_index - 1, 1, []))
        # usage unknown (cancelled after it was sent): the ops settle at their full reservation,
        # as one charge at the first op's index (a replay knows only the journaled total)
        total = [0, 0, 0]
        for p in ops:
            if p.reserve is not None:
                total = [a + b for a, b in zip(total, p.reserve)]
                p.reserve = None
        if any(total):
            t = (total[0], total[1], total[2])
            self._settle(proc, first, t, t)
        if not k.replaying and k.journal is not None:  # replay: "this op never completed"
            _journal_deferred(k, proc.pid)  # the ops' own entries will never name their actions
            k.journal.record(JournalEntry(proc.pid, first, "io_cancel", "", None, None, True, n,
                                          reserve=tuple(total) if any(total) else None))  # type: ignore[arg-type]

    # -- read / write ----------------------------------------------------------------
    def _handle(self, proc: Process, h: Any, right: int, op: str) -> Handle:
        h = _handle_no(op, h)
        handle = proc.handles.get(h) if proc.handles else None
        if handle is None:
            raise BadHandle(f"{op}: handle {h} is not open in pid {proc.pid}")
        cap = handle.cap
        if cap.holder is not proc:
            raise CapError(f"{op}: the capability behind handle {h} was revoked")
        if not cap.rights & right:
            raise CapError(f"{op}: the capability behind handle {h} lacks the {op} right")
        if cap.expires is not None and self.k.clock.now() >= cap.expires:
            # a handle is no wider than the cap it was opened through, in time as in rights
            raise CapError(f"{op}: the capability behind handle {h} expired at {cap.expires:.3f} ms")
        return handle

    def sys_read(self, proc: Process, req: Read) -> Any:
        handle = self._handle(proc, req.handle, R_READ, "read")
        return self._op(proc, handle, "read", checked("read: request", req.req), req)

    def sys_write(self, proc: Process, req: Write) -> Any:
        handle = self._handle(proc, req.handle, R_WRITE, "write")
        return self._op(proc, handle, "write", checked("write: data", req.data), req)

    def _op(self, proc: Process, handle: Handle, op: str, payload: Any, req: Any) -> Any:
        k = self.k
        driver, dh, name = handle.driver, handle.dh, handle.device
        held = self._resume(proc, req)
        if held is not None:  # its record is durable now; its reservation was held meanwhile
            return self._run(proc, handle, op, held[0])
        acts = handle.actions
        if acts is not None:
            action: tuple[str, Any] | None = (acts[op], payload)
        else:
            try:
                action = self._action(driver, name, op, dh, payload)
            except DriverError as err:  # the request is malformed: journaled, as replay has no driver
                self._journal_refusal(proc, op, name, payload, err)
                raise
        need, bad = (None, None) if handle.unbounded else self._bound_or_error(driver, name, op, dh, payload)
        decision = None
        if action is not None:
            decision = k.decide(proc, action[0], action[1], req, True)
            if decision is None:
                return PARK  # policy first: a deny is a deny, whatever else is wrong with the call
        if bad is not None:
            self._journal_refusal(proc, op, name, payload, bad, action[0] if action else None)
            raise bad
        idx = proc.op_index
        proc.op_index = idx + 1
        pending = PendingOp(idx, op, name, action[0] if action else None, payload, None, need)
        if need is not None and not self._reserve(proc, [pending]):
            return PARK
        if action is not None and k.audit is not None \
                and not self._write_ahead(proc, [(action, decision)], [pending], req):
            return PARK  # parked for the group commit, holding the reservation
        return self._run(proc, handle, op, pending)

    def _run(self, proc: Process, handle: Handle, op: str, pending: PendingOp) -> Any:
        driver, dh, name = handle.driver, handle.dh, handle.device
        payload, idx = pending.payload, pending.index
        assert driver is not None
        try:
            res = driver.read(dh, payload) if op == "read" else driver.write(dh, payload)
        except Exception as e:
            return self._apply(proc, self._error_entry(proc, pending, e))
        if isinstance(res, DriverResult):
            return self._apply(proc, self._result_entry(proc, pending, res))
        if not inspect.isawaitable(res):
            e2 = _not_a_result(name, op, res)
            return self._apply(proc, self._error_entry(proc, pending, e2))
        task = asyncio.ensure_future(res)
        pending.result = task
        task.add_done_callback(lambda t: self._done(proc, t, [pending], False))
        return self._park_io(proc, task, idx, 1, [pending])

    def sys_read_all(self, proc: Process, req: ReadAll) -> Any:
        handle = self._handle(proc, req.handle, R_READ, "read_all")
        driver, dh, name = handle.driver, handle.dh, handle.device
        k = self.k
        held = self._resume(proc, req)
        if held is not None:  # their records are durable now; the reservation was held meanwhile
            return self._run_all(proc, driver, dh, held)
        payloads = _payloads(req.reqs)
        try:
            actions = [self._action(driver, name, "read", dh, p) for p in payloads]
        except DriverError as err:
            self._journal_refusal(proc, "read_all", name, payloads, err)
            raise
        bounds = [self._bound_or_error(driver, name, "read", dh, p) for p in payloads]
        needs = [b[0] for b in bounds]
        decided: list[tuple[tuple[str, Any], Any]] = []
        for a in actions:  # authorize all before running any
            if a is not None:
                decision = k.decide(proc, a[0], a[1], req, True)
                if decision is None:
                    return PARK
                decided.append((a, decision))
        bad = next((b[1] for b in bounds if b[1] is not None), None)
        if bad is not None:
            self._journal_refusal(proc, "read_all", name, payloads, bad, "read_all")
            raise bad
        pending: list[PendingOp] = []
        for payload, action, need in zip(payloads, actions, needs):
            idx = proc.op_index
            proc.op_index = idx + 1
            pending.append(PendingOp(idx, "read", name, action[0] if action else None, payload, None, need))
        # the sum of the bounds is set aside before any starts (and before their records are
        # written ahead); if it does not fit, none starts
        if any(p.reserve is not None for p in pending) and not self._reserve(proc, pending):
            return PARK
        if decided and k.audit is not None and not self._write_ahead(proc, decided, pending, req):
            return PARK  # parked once for all their records, holding the reservation
        return self._run_all(proc, driver, dh, pending)

    def _run_all(self, proc: Process, driver: Driver | None, dh: Any, pending: list[PendingOp]) -> Any:
        assert driver is not None
        for p in pending:
            payload = p.payload
            try:
                res: Any = driver.read(dh, payload)
            except Exception as e:
                res = e
            if inspect.isawaitable(res):
                res = asyncio.ensure_future(res)
            p.result = res
        tasks = [p.result for p in pending if isinstance(p.result, asyncio.Future)]
        if not tasks:
            return self._finish_all(proc, pending)
        remaining = [len(tasks)]

        def one_done(_t: Any) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                self._done(proc, tasks, pending, True)

        for t in tasks:
            t.add_done_callback(one_done)
        return self._park_io(proc, tasks, pending[0].index, len(pending), pending)

    # -- completion -----------------------------------------------------------------
    def _done(self, proc: Process, io: Any, pending: list[PendingOp], many: bool) -> None:
        """An asynchronous operation completed (an asyncio callback, outside dispatch)."""
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
        p = pending[0]
        try:
            res = _task_result(p.result, p.device, p.op)
        except BaseException as e:
            entry = self._error_entry(proc, p, e)
        else:
            entry = self._result_entry(proc, p, res)
        entry.at = k.io_tick
        try:
            value = self._apply(proc, entry)
        except SyscallError as e:
            k.wake(proc, None, e)
            return
        if value is not PARK:
            k.wake(proc, value)

    def _finish_all(self, proc: Process, pending: list[PendingOp], at: int | None = None) -> Any:
        # every op settles before an overrun among them kills the caller: a charge made after
        # the process's exit would be missing from what `ps` last showed of it
        self._overruns = []
        try:
            values = self._apply_all(proc, pending, at)
        finally:
            overruns, self._overruns = self._overruns, None
        if overruns and proc.state is not EXITED:
            self.k.terminate(proc, quota(overruns[0]))
        return PARK if proc.state is EXITED or any(v is PARK for v in values) else values

    def _apply_all(self, proc: Process, pending: list[PendingOp], at: int | None) -> list[Any]:
        values: list[Any] = []
        for p in pending:
            res = p.result
            if isinstance(res, JournalEntry):
                entry = res
            else:
                try:
                    if isinstance(res, asyncio.Future):
                        res = _task_result(res, p.device, p.op)
                    if isinstance(res, BaseException):
                        raise res
                    if not isinstance(res, DriverResult):
                        raise _not_a_result(p.device, p.op, res)
                except BaseException as e:
                    entry = self._error_entry(proc, p, e)
                else:
                    entry = self._result_entry(proc, p, res)
                entry.at = at
            try:
                v = self._apply(proc, entry)
            except SyscallError as e:
                v = e
            values.append(v)  # after a kill the rest still settle: no reservation is left behind
        return values

    @staticmethod
    def _entry(proc: Process, p: PendingOp, res: DriverResult) -> JournalEntry:
        c = _reported(res.cost, f"{p.device}.{p.op}")
        try:  # a value the journal cannot hold would replay as something else: a bad reply
            checked("the reply", res.value)
        except BadArgument as e:
            raise DriverError(f"{p.device}.{p.op} answered with a value that cannot be recorded ({e})") from None
        return JournalEntry(proc.pid, p.index, p.op, p.device, p.action, p.payload, True,
                            res.value, None, c.tokens, c.tool_calls, c.usd, c.reductions, reserve=p.reserve)

    def _result_entry(self, proc: Process, p: PendingOp, res: DriverResult) -> JournalEntry:
        """A driver's answer; a cost it should never report (negative, NaN, fractional
        tokens) or a value no record can hold (a cycle, 1,000-deep nesting, a lone
        surrogate, an object whose conversion raises) makes it a DriverError charged at the
        full reservation."""
        try:
            return self._entry(proc, p, res)
        except DriverError as e:
            return self._error_entry(proc, p, e, unknown=True)

    @staticmethod
    def _error_entry(proc: Process, p: PendingOp, e: BaseException, unknown: bool = False) -> JournalEntry:
        """A failed operation, charged what it consumed and at least the call itself: the
        cost it reports (wasm fuel), else its full reservation when its usage is unknown (a
        timeout or cancel after the request went out), else the reservation's tool calls."""
        msg = str(e) if isinstance(e, AgentOSError) else f"{p.device}.{p.op} failed: {type(e).__name__}: {e}"
        etype = type(e).__name__ if isinstance(e, SyscallError) else "DriverError"
        r = p.reserve
        c = getattr(e, "cost", None)  # work done before failing (e.g. wasm fuel) is still charged
        if isinstance(c, Cost):
            try:
                c = _reported(c, f"{p.device}.{p.op}")
            except DriverError:
                c = None
        if isinstance(c, Cost):
            calls = max(c.tool_calls, r[1]) if r is not None else c.tool_calls
            return JournalEntry(proc.pid, p.index, p.op, p.device, p.action, p.payload, False,
                                msg, etype, c.tokens, calls, c.usd, c.reductions, reserve=r)
        if r is not None:
            if isinstance(e, DriverError):  # the driver says (a DriverTimeout is unknown unless it says not)
                unknown = unknown or e.usage_unknown is True
            else:
                unknown = unknown or isinstance(e, (asyncio.CancelledError, asyncio.TimeoutError))
            if unknown:
                return JournalEntry(proc.pid, p.index, p.op, p.device, p.action, p.payload, False,
                                    msg, etype, r[0], r[1], r[2] / USD_SCALE, 0, reserve=r)
            return JournalEntry(proc.pid, p.index, p.op, p.device, p.action, p.payload, False,
                                msg, etype, 0, r[1], 0.0, 0, reserve=r)
        return JournalEntry(proc.pid, p.index, p.op, p.device, p.action, p.payload, False, msg, etype)

    def _apply(self, proc: Process, e: JournalEntry) -> Any:
        """Journal the result, charge its cost, and hand back the value (or raise the error)."""
        k = self.k
        if not k.replaying and k.journal is not None:
            k.journal.record(e)
            if e.action is not None and type(k.policy) is DecisionRecorder and k.policy.deferred:
                k.policy.carried(proc.pid)  # this entry names the action: no decision entry
        self.reads += 1
        if e.reserve is not None:
            if not self._settle(proc, e.index, e.reserve, (e.tokens, e.tool_calls, round(e.usd * USD_SCALE))):
                return PARK
        elif e.tokens or e.tool_calls or e.usd:
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

    # -- write-ahead records, with the reservation held across the group commit ----------
    def _write_ahead(self, proc: Process, decided: list[tuple[tuple[str, Any], Any]],
                     ops: list[PendingOp], req: Any) -> bool:
        """Write the ops' action records ahead, after their reservation. True: durable, go
        ahead. False: parked for the group commit; the ops and their reservation are held
        (`_held`) for the rerun, and given back if the caller never gets there."""
        audit = self.k.audit
        items = [(a[0], a[1], d) for a, d in decided]
        held = _Held(req, ops, [(a[0], a[1]) for a, _d in decided])
        self._held[proc.pid] = held
        try:
            if hasattr(audit, "actions"):
                done = audit.actions(proc.pid, items, proc=proc, req=req,
                                     release=lambda: self._give_back(proc, held))
            else:  # a recorder with the one-record interface: synchronous
                done = all(audit.decision(proc.pid, a, b, d, before_action=True) for a, b, d in items)
        except BaseException:
            # no durable record, no action: nothing ran, nothing is charged, the op numbers
            # taken for it are returned (it never happened)
            self._give_back(proc, held)
            proc.op_index = ops[0].index
            raise
        if done:
            self._held.pop(proc.pid, None)
        return bool(done)

    def _resume(self, proc: Process, req: Any) -> list[PendingOp] | None:
        """The ops a rerun of `req` held across its audit park, once their clearances are
        consumed; None for a fresh call (then anything stale is given back)."""
        held = self._held.get(proc.pid)
        if held is None:
            return None
        audit = self.k.audit
        if held.req is req and audit is not None \
                and all([audit.cleared(proc.pid, a, b) for a, b in held.actions]):
            del self._held[proc.pid]
            return held.ops
        self._give_back(proc, held)
        return None

    def _give_back(self, proc: Process, held: _Held) -> None:
        """Release what a parked caller held, if it still holds it: the action never ran,
        so nothing is charged. Idempotent (a consumed hold is no longer in `_held`)."""
        if self._held.get(proc.pid) is not held:
            return
        del self._held[proc.pid]
        for p in held.ops:
            r = p.reserve
            p.reserve = None
            if r is not None and proc.account is not None:
                self.k.accounts.settle(proc.account, r, (0, 0, 0))

    # -- reserve → act → settle ------------------------------------------------------------
    @staticmethod
    def _bound(driver: Driver | None, name: str, op: str, dh: Any, payload: Any) -> tuple[int, int, int] | None:
        """The operation's maximum cost as (tokens, tool_calls, usd_nano), checked: a bound
        that is not finite, not whole or negative is the driver's error, refused."""
        if driver is None:
            return None
        try:
            b = driver.bound(op, dh, payload)
        except DriverError:
            raise
        except Exception as e:
            raise DriverError(f"{name}: cannot bound the {op} request: {type(e).__name__}: {e}") from e
        if b is None:
            return None
        if not isinstance(b, Cost):
            raise DriverError(f"{name}.bound returned {type(b).__name__}, not a Cost")
        c = _reported(b, f"{name}.bound")
        return (c.tokens, c.tool_calls, math.ceil(c.usd * USD_SCALE))

    def _reserve(self, proc: Process, ops: list[PendingOp]) -> bool:
        """Set aside the sum of `ops`' bounds, all or nothing. If it does not fit, nothing
        starts: the refusal is journaled (replay kills from it) and audited, and the caller
        is killed with quota(resource)."""
        k = self.k
        need = [0, 0, 0]
        for p in ops:
            if p.reserve is not None:
                need = [a + b for a, b in zip(need, p.reserve)]
        short = k.accounts.reserve(proc.account, (need[0], need[1], need[2]))  # type: ignore[arg-type]
        if short is None:
            k.events.emit(proc.pid, "reserve", (ops[0].index, need[0], need[1], need[2]))
            return True
        self._refuse(proc, ops, short, tuple(need))  # type: ignore[arg-type]
        return False

    def _refuse(self, proc: Process, ops: list[PendingOp], short: str, need: tuple[int, int, int]) -> None:
        k = self.k
        for p in ops:
            p.reserve = None
        first = ops[0]
        if not k.replaying and k.journal is not None:
            _journal_deferred(k, proc.pid)  # a refusal entry names no op's action for replay
            k.journal.record(JournalEntry(proc.pid, first.index, first.op, first.device, first.action,
                                          first.payload if len(ops) == 1 else [p.payload for p in ops],
                                          False, short, "ReservationRefused", reserve=need))
        k.events.emit(proc.pid, "quota", (short, first.index, need[0], need[1], need[2]))
        audit = k.audit
        if audit is not None:
            try:
                audit.append(proc.pid, "reservation_refused",
                             {"resource": short, "op": first.index, "action": first.action,
                              "tokens": need[0], "tool_calls": need[1], "usd_nano": need[2]})
            except Exception as e:  # the kill stands; the recorder says why in its own event
                k.events.emit(proc.pid, "audit_error", f"{type(e).__name__}: {e}")
        k.terminate(proc, quota(short))

    def _settle(self, proc: Process, index: int, reserved: tuple[int, int, int],
                actual: tuple[int, int, int]) -> bool:
        """Charge `actual` against the reservation; False (and the caller killed) on an overrun.
        The `charge` event carries what the account paid, not what the driver reported: an
        overrun is charged only as far as the bank can pay, and the `overrun` event holds the
        reported cost and the unpaid rest. The run table, `ps`, metrics and the PROV export
        all read the charge, so they agree."""
        k = self.k
        charged, over = k.accounts.settle(proc.account, reserved, actual)  # type: ignore[arg-type]
        if charged[0] or charged[1] or charged[2]:
            k.events.emit(proc.pid, "charge", (index, charged[0], charged[1], charged[2]))
        if over is None:
            return True
        resource, unpaid = over
        k.events.emit(proc.pid, "overrun", (resource, index, reserved, actual, unpaid))
        if self._overruns is not None:  # settling a batch: the kill comes when all have settled
            self._overruns.append(resource)
        elif proc.state is not EXITED:
            k.terminate(proc, quota(resource))
        return False

    def _journal_refusal(self, proc: Process, op: str, name: str, payload: Any, err: BaseException,
                         action: str | None = None) -> None:
        """A request refused before its driver ran; `action`: what policy already authorized
        (so that replay asks policy the same questions before it meets the refusal)."""
        idx = proc.op_index
        proc.op_index = idx + 1
        k = self.k
        if k.journal is not None:
            if op == "read_all":   # one entry for many ops: replay asks policy from the journal
                _journal_deferred(k, proc.pid)
            k.journal.record(self._error_entry(proc, PendingOp(idx, op, name, action, payload, None), err))
            if action is not None and op != "read_all" and type(k.policy) is DecisionRecorder:
                k.policy.carried(proc.pid)

    def _bound_or_error(self, driver: Driver | None, name: str, op: str, dh: Any,
                        payload: Any) -> tuple[tuple[int, int, int] | None, DriverError | None]:
        try:
            return self._bound(driver, name, op, dh, payload), None
        except DriverError as e:
            return None, e

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


def _journal_deferred(k: "Kernel", pid: int) -> None:
    """Journal the decisions a constant policy's recorder held back for `pid`'s ops: those
    ops will not get entries naming their actions, so replay reads the decisions instead."""
    pol = k.policy
    if type(pol) is DecisionRecorder and pol.deferred:
        pol.flush(pid)


def _reported(c: Any, where: str) -> Cost:
    """A driver's cost, checked where it enters: whole, finite, non-negative. A driver can
    never credit an account; a bad cost is the driver's error (the caller gets DriverError)."""
    if type(c) is not Cost:
        raise DriverError(f"{where} reported a bad cost: {A.shown(c)} is not a Cost")
    tokens, calls, usd, red = c.tokens, c.tool_calls, c.usd, c.reductions
    if (type(tokens) is int and type(calls) is int and type(red) is int and type(usd) is float
            and 0 <= tokens <= COST_MAX and 0 <= calls <= COST_MAX and 0 <= red <= COST_MAX
            and 0.0 <= usd <= COST_MAX):  # the common case in one test (NaN fails the comparison)
        return c
    for label, v in (("tokens", tokens), ("tool_calls", calls), ("reductions", red)):
        if type(v) is not int or not 0 <= v <= COST_MAX:
            raise DriverError(f"{where} reported a bad cost: {label}={A.shown(v)} (costs are whole numbers >= 0)")
    if type(usd) not in (int, float) or not math.isfinite(usd) or not 0 <= usd <= COST_MAX:
        raise DriverError(f"{where} reported a bad cost: usd={A.shown(usd)} (a finite number >= 0)")
    return c if type(usd) is float else Cost(tokens, calls, float(usd), red)


def _handle_no(op: str, h: Any) -> int:
    if type(h) is not int:
        raise BadArgument(f"{op}: a handle is the int that open returned, got {type(h).__name__}")
    return h


def _payloads(reqs: Any) -> list[Any]:
    if not isinstance(reqs, (list, tuple)):
        raise BadArgument(f"read_all: requests must be a list or tuple, got {type(reqs).__name__}")
    return [checked(f"read_all: request {i}", r) for i, r in enumerate(reqs)]


def _task_result(task: Any, name: str, op: str) -> DriverResult:
    if task.cancelled():
        err = DriverError(f"{name}.{op} was cancelled")
        err.usage_unknown = True
        raise err
    exc = task.exception()
    if exc is not None:
        raise exc
    res = task.result()
    if not isinstance(res, DriverResult):
        raise _not_a_result(name, op, res)
    return res


def _not_a_result(name: str, op: str, res: Any) -> DriverError:
    """A driver that answered outside the ABI: a bad reply, charged its full reservation
    (what the operation did before answering cannot be known)."""
    err = DriverError(f"{name}.{op} returned {type(res).__name__}, not a DriverResult")
    err.usage_unknown = True
    return err


def _rebuild_error(e: JournalEntry) -> SyscallError:
    from ..abi import errors

    cls = getattr(errors, e.error_type or "DriverError", DriverError)
    if not (isinstance(cls, type) and issubclass(cls, SyscallError)):
        cls = DriverError
    try:
        return cls(e.value)
    except TypeError:  # errors whose constructor takes more than a message
        return DriverError(e.value)


__all__ = ["Devices", "Handle", "PendingOp"]
