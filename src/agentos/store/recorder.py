"""Recording a kernel's run into a store: the run row, the event log and the journal.

`record_run(kernel, store, name)` must be called before `boot`/`run`. It writes a run row
holding what replay needs to rebuild the run (the recording format, seed, clock,
scheduler settings, and, at boot, the init image's import path, args, grants and quota)
and plugs a `Recording` in as the kernel's observer: journal entries are buffered and
pushed to the store ahead of the event batch that follows them, so a committed event
prefix always has the journal entries it depends on, and SIGUSR1 checkpoints are written
to the store as snapshots.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..abi.types import ABI_VERSION, USD_SCALE
from ..kernel.events import Event, canonical, encode_fields
from ..kernel.images import image_entry
from ..kernel.journal import JournalEntry
from ..kernel.observer import BootInfo, Observer
from ..kernel.recording import FORMAT_KEY, RECORDING_FORMAT

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel
    from ..kernel.process import Process
    from .base import Store


_COST_KINDS = frozenset({"charge", "spawn", "exit"})


RECORDED_RING = 4096
"""Events a recorded kernel keeps in memory for `events()`; the store has all of them."""


class Recording(Observer):
    """The live link between one kernel and one stored run: an observer of that kernel."""

    def __init__(self, kernel: "Kernel", store: "Store", name: str, run_id: str | None = None, *,
                 message_events: bool = True) -> None:
        self.kernel = kernel
        self.store = store
        self.name = name
        self._journal_rows: list[tuple[int, str]] = []
        self._journal_n = 0
        self.init_pid: int | None = None
        self.finished = False
        self.last_snapshot: str | None = None   # id of the latest SIGUSR1 snapshot stored
        self.exit_reason = ""
        self.costs: dict[int, list[int]] = {}    # pid -> [tokens, tool_calls, usd_nano] charged
        self.names: dict[int, str] = {}
        clock = "virtual" if kernel.clock.virtual else "real"
        cfg = kernel.config
        if message_events:
            kernel.message_events = True  # provenance follows messages; replay turns it on again
        self.meta: dict[str, Any] = {
            FORMAT_KEY: RECORDING_FORMAT, "abi_version": ABI_VERSION, "seed": kernel.seed, "clock": clock,
            "deterministic": bool(cfg.deterministic), "quantum": cfg.quantum,
            "default_priority": cfg.default_priority, "switch_batch": cfg.switch_batch,
            "event_batch": cfg.event_batch, "message_events": bool(kernel.message_events),
        }
        if getattr(kernel, "graph", None) is not None:  # the scheduler's settings: replay decides the same
            self.meta["sched"] = kernel.sched_config.as_dict()
        if cfg.hibernation is not None:  # (format 7) replay hibernates at the same points
            self.meta["hibernation"] = cfg.hibernation.describe()
        self.run_id = store.create_run(name, self.meta, run_id)

    # -- observer hooks (kernel thread) ---------------------------------------------------
    def journaled(self, entry: JournalEntry) -> None:
        self._journal_rows.append((self._journal_n, entry.to_json()))
        self._journal_n += 1

    def flushed(self, batch: list[Event]) -> None:
        if self._journal_rows:
            rows, self._journal_rows = self._journal_rows, []
            self.store.append_journal(self.run_id, rows)
        self.store.append_events(self.run_id, [(e.seq, t, e.pid, e.kind, encode_fields(e.seq, t, e.pid, e.kind, e.data))
                                               for e in batch for t in (round(e.time, 6),)])
        costs = self.costs
        late = False
        for e in [e for e in batch if e.kind in _COST_KINDS]:
            if e.kind == "charge":
                row = costs.get(e.pid)
                if row is None:
                    row = costs[e.pid] = [0, 0, 0]
                _, t, c, u = e.data
                row[0] += t
                row[1] += c
                row[2] += u
                late = True
            elif e.kind == "spawn":
                self.names[e.pid] = str(e.data[1])
            else:  # exit: a name is kept only for a process that cost something
                if e.pid not in costs:
                    self.names.pop(e.pid, None)
                if e.pid == self.init_pid and not self.finished:
                    self.finish(str(e.data))
                    late = False
        if late and self.finished:  # charged after init ended (its children, at shutdown)
            self._write_summary()

    def booted(self, kernel: "Kernel", init: "Process", boot: BootInfo) -> None:
        self.init_pid = init.pid
        q = boot.quota
        self.meta.update({
            "init": image_entry(init.image), "init_pid": init.pid,
            "args": canonical(boot.args), "grant": list(boot.grant),
            "quota": None if q is None else {k: v for k, v in dataclasses.asdict(q).items() if v is not None},
            "name": boot.name, "priority": boot.priority,
            "images": {n: image_entry(i) for n, i in self.kernel.images.items()},
            "drivers": sorted(self.kernel.drivers),
            "governs": sorted(self.kernel.governs),   # the kernel actions policy is asked about
        })
        self.store.update_run(self.run_id, meta=self.meta)

    def finish(self, exit_reason: str) -> None:
        from .owners import release

        self.finished = True
        self.exit_reason = exit_reason
        self.store.update_run(self.run_id, status="finished", summary=self.summary())
        release(self.store, self.run_id)

    def summary(self) -> dict[str, Any]:
        """The run row's summary: how init ended, and what the run cost in total and per
        process (every process charged anything, by pid; the others cost nothing). Folded
        from the kernel's `charge` events, the figures `ps`, the metrics and the PROV
        export show too."""
        costs = self.costs
        total = [sum(r[i] for r in costs.values()) for i in range(3)]
        return {"exit": self.exit_reason, "events": self.kernel.events.seq, "journal": self._journal_n,
                "tokens": total[0], "tool_calls": total[1], "usd": total[2] / USD_SCALE,
                "processes": {str(pid): {"name": self.names.get(pid, ""), "tokens": r[0], "tool_calls": r[1],
                                         "usd": r[2] / USD_SCALE, "usd_nano": r[2]}
                              for pid, r in sorted(costs.items())}}

    def _write_summary(self) -> None:
        self.store.update_run(self.run_id, summary=self.summary())

    def checkpoint(self, proc: "Process") -> None:
        """SIGUSR1: write the process's portable snapshot to the store. No label: the
        kernel's `checkpoint` event is the same as without a recorder, so replays match."""
        self.last_snapshot = self.store.put_snapshot(self.kernel.snapshot(proc.pid), self.run_id)


def record_run(kernel: "Kernel", store: "Store", name: str, *, run_id: str | None = None,
               message_events: bool = True, keep_in_memory: bool = False) -> str:
    """Record everything `kernel` does into `store` as run `name`; returns the run id.

    Call before `kernel.run`/`boot`. The journal is required (a kernel built with
    record=False cannot be replayed) and a replaying kernel cannot be recorded.
    `message_events=False` leaves the kernel's event log as it is without a recorder
    (no `recv` events, so provenance links steps within a process only).
    The store holds the journal and the events, so the kernel stops keeping the journal in
    memory (`kernel.journal.entries` stays empty; `len(kernel.journal)` still counts every
    entry) and keeps only the last `RECORDED_RING` events in its ring; `keep_in_memory=True`
    keeps both as an unrecorded run does (to replay from memory as well).
    """
    from ..abi.errors import KernelError

    if kernel.replaying:
        raise KernelError("record_run: a replaying kernel is not recorded (its run is already stored)")
    if kernel.journal is None:
        raise KernelError("record_run: this kernel keeps no journal (record=False); it could not be replayed")
    from .base import StoreError, check_run_id, check_run_name
    from .owners import claim

    # refused before the kernel or the store is touched: a run row the writer cannot store
    # would kill the store's writer for every later call
    check_run_name(name, "record_run")
    if check_run_id(run_id, "record_run") is not None:
        has_run = getattr(store, "has_run", None)
        if has_run is not None and has_run(run_id):
            raise StoreError(f"record_run: run {run_id!r:.120} already exists in {store!r}")
    rec = Recording(kernel, store, name, run_id, message_events=message_events)
    claim(store, rec.run_id)  # `agentctl runs` tells a live run from one whose kernel died
    kernel.add_observer(rec)
    if not keep_in_memory:  # the store holds every entry and event: memory stays flat
        kernel.journal.retain = False
        kernel.events.bound_ring(RECORDED_RING)
    kernel.driver_shared["recording"] = rec  # drivers that keep per-run state find the run here
    return rec.run_id


__all__ = ["RECORDED_RING", "Recording", "image_entry", "record_run"]
