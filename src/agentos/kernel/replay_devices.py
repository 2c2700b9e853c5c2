"""Device syscalls in replay: every answer comes from the journal, no driver is called.

The live path (kernel/devices.py) decides, runs and records; this one re-enacts. Policy
is asked again (the kernel's policy is a `JournalPolicy` in replay, answering from the
recorded decisions) so that the event log carries the same policy events; results whose
recorded completion came at a later I/O tick park the caller until `ReplayIO` reaches
that tick, exactly as the live caller waited.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..abi.errors import NondeterminismError, SyscallError
from ..abi.syscalls import Open, ReadAll
from .devices import Devices, Handle, PendingOp, _payloads, _rebuild_error
from .journal import Journal, JournalEntry
from .process import EXITED, PARK, Process
from ..abi.types import quota

if TYPE_CHECKING:
    from .replay import ReplayPending


class ReplayDevices(Devices):
    """`Devices` for a kernel in replay mode."""

    @property
    def journal(self) -> Journal:
        journal = self.k.journal
        assert journal is not None  # a replaying kernel always has one (checked at construction)
        return journal

    def sys_open(self, proc: Process, req: Open) -> int:
        cap = self._open_cap(proc, req.device)
        name = cap.target
        idx = proc.op_index
        proc.op_index = idx + 1
        e = self.journal.replay(proc.pid, idx, "open", name, req.params)  # an open is an input too
        if not e.ok:
            raise _rebuild_error(e)
        return self._new_handle(proc, Handle(None, None, cap, name))

    def _op(self, proc: Process, handle: Handle, op: str, payload: Any, req: Any) -> Any:
        k = self.k
        journal = self.journal
        name = handle.device
        idx = proc.op_index
        action, carried, e = self._recorded(proc, idx, op, name, payload)
        if action is not None and not k.authorize(proc, action, payload, carried=carried):
            return PARK
        proc.op_index = idx + 1
        if e is None:  # (an entry that matched is the one `replay` would compare again)
            if journal.lookup(proc.pid, idx) is None and (proc.pid, idx) in journal.cancelled:
                return self._park_unfinished(proc, idx, 1)
            e = journal.replay(proc.pid, idx, op, name, payload)
        if e.error_type == "ReservationRefused":
            return self._refused(proc, e)
        ops = self._reserve_recorded(proc, [e])
        if e.at is not None:
            return self._park_replayed(proc, [e], False, ops)
        return self._apply(proc, e)

    def sys_read_all(self, proc: Process, req: ReadAll) -> Any:
        handle = self._handle(proc, req.handle, 0x04, "read_all")  # R_READ
        k = self.k
        journal = self.journal
        name = handle.device
        payloads = _payloads(req.reqs)
        base = proc.op_index
        first = journal.lookup(proc.pid, base)
        if first is not None and journal.matches(first, "read_all", name, payloads):
            if first.action == "read_all":  # refused after policy authorized every request
                for i, p in enumerate(payloads):
                    a, carried = self._recorded_action(proc, base + i, "read", name, p)
                    if a is not None and not k.authorize(proc, a, p, carried=carried):
                        return PARK
            proc.op_index = base + 1  # the live driver could not classify or bound a request
            return self._apply(proc, first)  # raises its error
        for i, p in enumerate(payloads):  # the live run authorized these in order, stopping at a deny
            a, carried = self._recorded_action(proc, base + i, "read", name, p)
            if a is not None and not k.authorize(proc, a, p, carried=carried):
                return PARK
        if journal.lookup(proc.pid, base) is None and (proc.pid, base) in journal.cancelled:
            proc.op_index = base + len(payloads)
            return self._park_unfinished(proc, base, len(payloads))
        if first is not None and first.error_type == "ReservationRefused":
            proc.op_index = base + len(payloads)
            return self._refused(proc, first)
        entries = []
        for p in payloads:
            idx = proc.op_index
            proc.op_index = idx + 1
            entries.append(journal.replay(proc.pid, idx, "read", name, p))
        ops = self._reserve_recorded(proc, entries)
        if any(e.at is not None for e in entries):
            return self._park_replayed(proc, entries, True, ops)
        return self._finish_all(proc, _from_entries(entries))

    def _recorded_action(self, proc: Process, idx: int, op: str, name: str,
                         payload: Any) -> tuple[str | None, bool]:
        """The action the live run authorized for this op, without asking any driver, and
        whether the op's own entry names it (then a constant policy's decision for it was
        not journaled: format 6)."""
        action, carried, _ = self._recorded(proc, idx, op, name, payload)
        return action, carried

    def _recorded(self, proc: Process, idx: int, op: str, name: str,
                  payload: Any) -> tuple[str | None, bool, JournalEntry | None]:
        """`_recorded_action`, and the op's entry if it matched this request (else None)."""
        journal = self.journal
        e = journal.lookup(proc.pid, idx)
        if journal.matches(e, op, name, payload):
            assert e is not None
            return e.action, e.action is not None, e
        # no result recorded: the live run must have been refused by policy here
        peek = getattr(self.k.policy, "peek_action", None)
        action = peek(proc.pid, 0) if peek is not None else None
        if action is None:
            journal.replay(proc.pid, idx, op, name, payload)  # raises, naming the divergence
        return action, False, None

    # -- reservations, as the live run took them -------------------------------------------
    def _reserve_recorded(self, proc: Process, entries: list[JournalEntry]) -> list[PendingOp]:
        """Set aside what the live run reserved for these ops (from the journal, never from a
        driver); the returned ops carry it until the results settle or the process dies."""
        ops = [PendingOp(e.index, e.op, e.device, e.action, e.request, e, e.reserve) for e in entries]
        if any(e.reserve is not None for e in entries):
            need = [0, 0, 0]
            for e in entries:
                if e.reserve is not None:
                    need = [a + b for a, b in zip(need, e.reserve)]
            short = self.k.accounts.reserve(proc.account, (need[0], need[1], need[2]))  # type: ignore[arg-type]
            if short is not None:
                raise NondeterminismError(
                    f"replay diverged at pid {proc.pid} op #{entries[0].index}: the recorded run "
                    f"reserved {need} but the replay's budget has no room for it ({short})")
            self.k.events.emit(proc.pid, "reserve", (entries[0].index, need[0], need[1], need[2]))
        return ops

    def _refused(self, proc: Process, e: JournalEntry) -> Any:
        """The live run's reservation did not fit here: kill the same way, from the journal."""
        need = e.reserve or (0, 0, 0)
        short = str(e.value)
        self.k.events.emit(proc.pid, "quota", (short, e.index, need[0], need[1], need[2]))
        self.k.terminate(proc, quota(short))
        return PARK

    # -- parking until the recorded I/O tick ---------------------------------------------
    def _park_replayed(self, proc: Process, entries: list[JournalEntry], many: bool,
                       ops: list[PendingOp]) -> Any:
        replay_io = self.k.replay_io
        assert replay_io is not None
        pending = replay_io.schedule(proc, entries, many)
        return self._park_io(proc, pending, entries[0].index, len(entries), ops)

    def _park_unfinished(self, proc: Process, first: int, count: int) -> Any:
        """An op the live run started but never saw complete: wait until the process dies.
        What the live run reserved for it is set aside again, and settles in full then."""
        from .replay import ReplayPending

        ops: list[PendingOp] = []
        cancel = self.journal.cancelled.get((proc.pid, first))
        if cancel is not None and cancel.reserve is not None:
            r = cancel.reserve
            short = self.k.accounts.reserve(proc.account, r)  # type: ignore[arg-type]
            if short is not None:
                raise NondeterminismError(f"replay diverged at pid {proc.pid} op #{first}: no room to "
                                          f"reserve {r} as the recorded run did ({short})")
            self.k.events.emit(proc.pid, "reserve", (first, r[0], r[1], r[2]))
            ops = [PendingOp(first, "read", "", None, None, None, r)]
        return self._park_io(proc, ReplayPending(proc, [], False, -1), first, count, ops)

    def replay_done(self, pending: "ReplayPending") -> None:
        """A replayed asynchronous result reaches its recorded tick: finish like `_done`."""
        k = self.k
        proc = pending.proc
        if proc.state is EXITED or proc.io is not pending:
            raise NondeterminismError(
                f"replay diverged at pid {proc.pid}: a result recorded as delivered at I/O tick "
                f"{pending.at} has no waiting process in the replay")
        k.io_finished()
        self._inflight.pop(proc.pid, None)
        proc.io = None
        if pending.many:
            value = self._finish_all(proc, _from_entries(pending.entries))
        else:
            try:
                value = self._apply(proc, pending.entries[0])
            except SyscallError as err:
                k.wake(proc, None, err)
                return
        if value is not PARK:
            k.wake(proc, value)


def _from_entries(entries: list[JournalEntry]) -> list[PendingOp]:
    return [PendingOp(e.index, "read", e.device, None, e.request, e) for e in entries]


__all__ = ["ReplayDevices"]
