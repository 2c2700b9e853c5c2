"""Rebuild a stored run and replay it: `Kernel.replay_from(store, run_id)`.

The run row says which recording format the run was written in, how the live kernel was
built (seed, scheduler settings) and booted (init image by import path, args, grants,
quota). A format this kernel cannot replay is refused before anything runs, with a
`RecordingFormatError` naming both versions; otherwise the journal is read in its
version's shape and handed to the replaying kernel with that version (`Journal.format`).
The replaying kernel answers every driver op and policy check from the stored journal
and compares each event it emits, byte for byte, with the stored log. A run that was cut
short (a crash) is compared up to its committed prefix; the replay stops there.
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..abi.errors import KernelError, NondeterminismError
from ..abi.types import ABI_VERSION, Quota
from .events import Event, encode_event
from .journal import Journal
from .images import load_image
from .process import ProcessImage
from .recording import check_replayable


@dataclass
class ReplayReport:
    run_id: str
    recorded: int                      # events in the store
    replayed: int = 0                  # events the replay emitted and compared
    matched: int = 0
    complete: bool = True              # the stored run ended (not cut by a crash)
    identical: bool = False
    divergence: dict[str, Any] | None = None
    error: str | None = None
    result: Any = None                 # the replay's RunResult, when it ran to the end
    notes: list[str] = field(default_factory=list)
    recording_format: int = 0          # the version the run was recorded in
    kernel: Any = field(default=None, repr=False, compare=False)  # the replaying kernel, to inspect

    def __str__(self) -> str:
        if self.identical:
            what = "the whole run" if self.complete else f"the committed prefix of {self.recorded} events"
            return f"run {self.run_id}: replay identical ({what}, {self.matched} events)"
        if self.divergence:
            d = self.divergence
            return (f"run {self.run_id}: replay diverged at event seq {d.get('seq')}: "
                    f"recorded {d.get('recorded')!s}, replayed {d.get('replayed')!s}")
        return f"run {self.run_id}: replay failed after {self.matched} matching events: {self.error}"


class _Stop(BaseException):
    pass


_FROM_RUN: Any = object()


_SCHED_OFF = {"enabled": False}


def replay_from(store: Any, run_id: str, *, image: Any = None, images: dict[str, Any] | None = None,
                probe: Callable[[Any, Event], bool] | None = None,
                options: dict[str, Any] | None = None, args: Any = _FROM_RUN) -> ReplayReport:
    """Replay a stored run. `probe(kernel, event)` sees each matched event; True stops the replay.

    With a probe, events are flushed one at a time, so the probe sees the kernel as it was
    just after the event (give or take the rest of the syscall that emitted it). `options`
    are kernel settings the run row does not hold (a recaller, a pager) to rebuild with.
    `args` replaces init's args when the run row's JSON rendering of them is not what the
    program was given (objects, tuples), as `image` replaces code the row cannot find."""
    return asyncio.run(replay_run(store, run_id, image=image, images=images, probe=probe, options=options,
                                  args=args))


async def replay_run(store: Any, run_id: str, *, image: Any = None, images: dict[str, Any] | None = None,
                     probe: Callable[[Any, Event], bool] | None = None,
                     options: dict[str, Any] | None = None, args: Any = _FROM_RUN,
                     setup: Callable[[Any], None] | None = None) -> ReplayReport:
    """`replay_from`, for a caller already inside an event loop. `setup(kernel)` is called
    with the replaying kernel before it boots (to attach sinks, say)."""
    from .kernel import Kernel

    info = store.get_run(run_id)
    meta = info.meta
    version = check_replayable(meta, run_id)
    if meta.get("abi_version") != ABI_VERSION:
        raise KernelError(f"run {run_id} was recorded under ABI version {meta.get('abi_version')}, "
                          f"this kernel speaks {ABI_VERSION}")
    if "init" not in meta and image is None:
        raise KernelError(f"run {run_id} has no boot record (it never booted): nothing to replay")
    _check_boot_record(meta, run_id)
    report = ReplayReport(run_id, info.events, complete=info.status != "running", recording_format=version)
    timeless = meta.get("clock") != "virtual"
    if timeless:
        report.notes.append("recorded under a real clock: events compared without their timestamps")
    journal = Journal(store.journal(run_id), format=version)
    governs = meta.get("governs")
    if isinstance(governs, list) and all(isinstance(g, str) for g in governs):
        journal.governs = frozenset(governs)
    options = dict(options or {})
    named = journal.run_policy
    if named is not None and options.get("policy") is None:
        # device-operation allows of this constant policy were not journaled: replay under it
        options["policy"] = _load_policy(run_id, named.get("policy"))
    hib = meta.get("hibernation")
    if isinstance(hib, dict) and options.get("hibernation") is None:
        from ..sched.hibernate import HibernationConfig  # the replay's own store: same decisions

        options["hibernation"] = HibernationConfig(**{f: hib[f] for f in ("max_resident", "max_mem_tokens",
                                                                          "low_water", "idle") if f in hib})
    k = Kernel(**{**options, "deterministic": True, "seed": meta["seed"], "mode": "replay",
                  "journal": journal, "quantum": meta.get("quantum", 2000),
                  "default_priority": meta.get("default_priority", 5),
                  "switch_batch": meta.get("switch_batch", 512),
                  "message_events": bool(meta.get("message_events", False)),
                  "sched": meta.get("sched") or _SCHED_OFF,  # a run without it ran without the scheduler
                  "event_batch": 1 if probe is not None else meta.get("event_batch", 4096)})
    report.kernel = k
    for name, entry in (meta.get("images") or {}).items():
        if images and name in images:
            continue
        try:
            k.register_image(ProcessImage(name, load_image(entry).main))
        except Exception as e:  # only a problem if the program spawns it by name
            report.notes.append(f"image {name!r} not loaded: {e}")
    for name, img in (images or {}).items():
        k.register_image(ProcessImage(name, ProcessImage.of(img).main))
    init = image if image is not None else load_image(meta["init"])
    bodies = getattr(store, "event_bodies", None)  # a store that can give the encodings alone
    stored: Iterator[bytes] = iter(bodies(run_id) if bodies is not None else (e.raw for e in store.events(run_id)))
    stopped: list[bool] = []
    if setup is not None:
        setup(k)

    def compare(batch: list[Event]) -> None:
        if report.divergence is not None or stopped:
            return  # the teardown after a stop flushes more: the first divergence is the one
        for ev in batch:
            rec = next(stored, None)
            if rec is None:
                if not report.complete:
                    stopped.append(True)
                    raise _Stop()  # past the committed prefix of a cut run
                report.divergence = {"seq": ev.seq, "recorded": None, "replayed": encode_event(ev).decode()}
                raise _Stop()
            report.replayed += 1
            mine = encode_event(ev)
            theirs = rec
            if timeless:
                mine, theirs = _untimed(mine), _untimed(theirs)
            if mine != theirs:
                report.divergence = {"seq": ev.seq, "recorded": rec.decode(errors="replace"), "replayed": mine.decode()}
                raise _Stop()
            report.matched += 1
            if probe is not None and probe(k, ev):
                report.notes.append(f"stopped by probe at event seq {ev.seq}")
                stopped.append(True)
                raise _Stop()
            if not report.complete and report.matched == report.recorded:
                stopped.append(True)
                raise _Stop()

    k.events.add_sink(compare)
    q = meta.get("quota")
    try:
        res = await k.boot(init, args=meta.get("args") if args is _FROM_RUN else args, grant=meta.get("grant") or (),
                           quota=Quota(**q) if q else None, name=meta.get("name"), priority=meta.get("priority"))
        report.result = res
    except _Stop:
        pass
    except NondeterminismError as e:
        try:  # compare what the replay emitted up to the point it left the journal
            k.events.flush()
        except _Stop:
            pass
        if report.complete or report.matched < report.recorded:
            report.error = f"NondeterminismError: {e}"
        else:  # a cut run: the journal ends where the crash cut it, after the committed events
            report.notes.append(f"the journal ends with the committed prefix: {e}")
    if report.error is None and report.divergence is None:
        if any(n.startswith("stopped by probe") for n in report.notes):
            report.identical = True  # identical as far as it went
        elif report.complete and next(stored, None) is not None:
            report.divergence = {"seq": report.matched + 1, "recorded": "more events",
                                 "replayed": "the replay ended"}
        else:
            report.identical = report.matched == report.recorded
    return report


def _check_boot_record(meta: dict[str, Any], run_id: str) -> None:
    """The run row's boot fields have the shapes the kernel wrote, else a KernelError naming
    the field: an edited or damaged row must not reach the replaying kernel as a TypeError."""
    def bad(key: str, want: str) -> KernelError:
        return KernelError(f"run {run_id} has a damaged boot record: {key} must be {want}, "
                           f"got {type(meta.get(key)).__name__}")

    if type(meta.get("seed")) is not int:
        raise bad("seed", "an integer")
    for key in ("images", "quota"):
        if meta.get(key) is not None and not isinstance(meta.get(key), dict):
            raise bad(key, "an object")
    if "init" in meta and not isinstance(meta["init"], dict):
        raise bad("init", "an object")
    images = meta.get("images") or {}
    if not all(isinstance(v, dict) for v in images.values()):
        raise KernelError(f"run {run_id} has a damaged boot record: each image must be an object")
    quota = meta.get("quota")
    if quota:
        unknown = set(quota) - {f.name for f in dataclasses.fields(Quota)}
        if unknown:
            raise KernelError(f"run {run_id} has a damaged boot record: quota has unknown fields "
                              f"{sorted(map(str, unknown))[:5]}")
    grant = meta.get("grant")
    if grant is not None and (not isinstance(grant, list) or not all(type(g) is str for g in grant)):
        raise bad("grant", "a list of device names")
    if meta.get("name") is not None and type(meta.get("name")) is not str:
        raise bad("name", "a string")
    if meta.get("priority") is not None and type(meta.get("priority")) is not int:
        raise bad("priority", "an integer")


def _load_policy(run_id: str, path: Any) -> Any:
    """The constant policy a run names (by import path), built with no arguments."""
    import importlib

    if not isinstance(path, str) or "." not in path:
        raise KernelError(f"run {run_id} names no loadable policy ({path!r})")
    module, _, name = path.rpartition(".")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        if not (isinstance(obj, type) and getattr(obj, "constant_decision", None) is not None):
            raise TypeError("it is not a policy class with a constant_decision")  # nothing else is called
        return obj()
    except Exception as e:
        raise KernelError(f"run {run_id} was recorded under policy {path!r}, which cannot be loaded "
                          f"({type(e).__name__}: {e}): pass options={{'policy': ...}}") from None


_TIME = re.compile(rb"^\[(\d+),[^,]*,")


def _untimed(raw: bytes) -> bytes:
    """An encoded event with its timestamp blanked (encode_event puts it second)."""
    return _TIME.sub(rb"[\1,0,", raw, count=1)


__all__ = ["ReplayReport", "load_image", "replay_from", "replay_run"]
