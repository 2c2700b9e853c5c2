"""Recording a kernel's run into a store: the run row, the event log and the journal.

`record_run(kernel, store, name)` must be called before `boot`/`run`. It writes a run row
holding what replay needs to rebuild the run (the recording format, seed, clock,
scheduler settings, and, at boot, the init image's import path, args, grants and quota),
and attaches sinks: journal
entries are buffered and pushed to the store ahead of the event batch that follows them,
so a committed event prefix always has the journal entries it depends on. It also
installs a SIGUSR1 checkpointer that writes snapshots to the store.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any

from ..abi.types import ABI_VERSION
from ..kernel.events import Event, canonical, encode_event
from ..kernel.journal import JournalEntry
from ..kernel.recording import FORMAT_KEY, RECORDING_FORMAT

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel
    from ..kernel.process import Process, ProcessImage
    from .base import Store


def image_entry(img: "ProcessImage") -> dict[str, Any]:
    """Where to find an image's code again: module, qualified name and source file."""
    fn = img.main
    try:
        src = inspect.getsourcefile(fn)
    except TypeError:
        src = None
    return {"name": img.name, "module": getattr(fn, "__module__", None),
            "qualname": getattr(fn, "__qualname__", None), "file": src}


class Recording:
    """The live link between one kernel and one stored run."""

    def __init__(self, kernel: "Kernel", store: "Store", name: str, run_id: str | None = None) -> None:
        self.kernel = kernel
        self.store = store
        self.name = name
        self._journal_rows: list[tuple[int, str]] = []
        self._journal_n = 0
        self.init_pid: int | None = None
        self.finished = False
        clock = "virtual" if kernel.clock.virtual else "real"
        cfg = kernel.config
        self.meta: dict[str, Any] = {
            FORMAT_KEY: RECORDING_FORMAT, "abi_version": ABI_VERSION, "seed": kernel.seed, "clock": clock,
            "deterministic": bool(cfg.deterministic), "quantum": cfg.quantum,
            "default_priority": cfg.default_priority, "switch_batch": cfg.switch_batch,
            "event_batch": cfg.event_batch,
        }
        self.run_id = store.create_run(name, self.meta, run_id)

    # -- sinks (kernel thread) ------------------------------------------------------------
    def on_journal(self, e: JournalEntry) -> None:
        self._journal_rows.append((self._journal_n, e.to_json()))
        self._journal_n += 1

    def on_events(self, batch: list[Event]) -> None:
        if self._journal_rows:
            rows, self._journal_rows = self._journal_rows, []
            self.store.append_journal(self.run_id, rows)
        self.store.append_events(self.run_id, [(e.seq, round(e.time, 6), e.pid, e.kind, encode_event(e))
                                               for e in batch])
        if self.init_pid is not None and not self.finished:
            for e in batch:
                if e.pid == self.init_pid and e.kind == "exit":
                    self.finish(str(e.data))
                    break

    def on_boot(self, proc: "Process", params: dict[str, Any]) -> None:
        self.init_pid = proc.pid
        q = params.get("quota")
        self.meta.update({
            "init": image_entry(proc.image), "init_pid": proc.pid,
            "args": canonical(params.get("args")), "grant": list(params.get("grant") or ()),
            "quota": None if q is None else {k: v for k, v in dataclasses.asdict(q).items() if v is not None},
            "name": params.get("name"), "priority": params.get("priority"),
            "images": {n: image_entry(i) for n, i in self.kernel.images.items()},
            "drivers": sorted(self.kernel.drivers),
        })
        self.store.update_run(self.run_id, meta=self.meta)

    def finish(self, exit_reason: str) -> None:
        self.finished = True
        self.store.update_run(self.run_id, status="finished", summary={
            "exit": exit_reason, "events": self.kernel.events.seq,
            "journal": self._journal_n})

    def checkpoint(self, proc: "Process") -> str:
        """SIGUSR1: write the process's portable snapshot to the store."""
        from ..kernel.snapshot import snapshot

        snap = snapshot(self.kernel, proc)
        sid = self.store.put_snapshot(snap, self.run_id)
        # the same event a kernel without a checkpointer emits, so replays stay identical
        self.kernel.events.emit(proc.pid, "checkpoint", None)
        return sid


def record_run(kernel: "Kernel", store: "Store", name: str, *, run_id: str | None = None) -> str:
    """Record everything `kernel` does into `store` as run `name`; returns the run id.

    Call before `kernel.run`/`boot`. The journal is required (a kernel built with
    record=False cannot be replayed) and a replaying kernel cannot be recorded.
    """
    from ..abi.errors import KernelError

    if kernel.replaying:
        raise KernelError("record_run: a replaying kernel is not recorded (its run is already stored)")
    if kernel.journal is None:
        raise KernelError("record_run: this kernel keeps no journal (record=False); it could not be replayed")
    rec = Recording(kernel, store, name, run_id)
    kernel.journal.sinks.append(rec.on_journal)
    kernel.events.add_sink(rec.on_events)
    kernel.boot_hooks.append(rec.on_boot)
    if kernel.checkpointer is None:
        kernel.checkpointer = rec.checkpoint
    kernel.recording = rec  # type: ignore[attr-defined]
    return rec.run_id


__all__ = ["Recording", "image_entry", "record_run"]
