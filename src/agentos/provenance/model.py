"""The provenance model of a run, and how it is read out of a store.

A run is a `ReplayManifest` whose `steps` is an iterable of `InteractionRecord`s (a
generator, for streaming). `manifest_from_store` derives the steps from the stored event
log and journal: an op on a chat-shaped device (a request with "messages") is a `prompt`
step followed by a `response` step that carries its cost; any other device op is a
`tool_call`; `recall`/`working_set` syscalls are `memory_retrieval`s. A step's
`elapsed_ms` runs from its syscall to the process's next event (the result arriving).

A step depends on what really fed it (`after`): the previous step of its own process, the
step a sender had last taken before each message the process received since (the
kernel's `recv` event names the send), and, for a process's first step, its parent's
last step before the spawn. Steps of unrelated processes are never linked.

A step that added lessons to a long memory (a `lessons` device write whose result is a
`lessons.add`) carries them as `LessonRecord`s: each lesson is a `prov:Entity` generated
by that step and derived from the step it was learned from (its source run and step; a
lesson with no source step, such as the critique of a rejected answer, derives from the
last response of the same process in this run).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator

STEP_TYPES = ("prompt", "tool_call", "memory_retrieval", "response")
_DEVICE_OPS = {"Read": "read", "Write": "write", "ReadAll": "read"}
_MEMORY_OPS = ("Recall", "WorkingSet")


@dataclass(frozen=True)
class LessonRecord:
    """A lesson a step stored (or reinforced, when `merged`), and the step it came from."""

    lesson_id: str
    text: str
    source_run: str | None
    source_step: int | None
    merged: bool = False


@dataclass(frozen=True)
class InteractionRecord:
    step_id: str
    step_type: str
    index: int
    payload_json: str
    step_cost_usd: float = 0.0
    step_tokens: int = 0
    elapsed_ms: float = 0.0
    process_id: int | None = None
    agent_id: str | None = None
    lessons: tuple[LessonRecord, ...] = ()
    after: tuple[int, ...] | None = None
    """Indices of the steps this one depends on: the same process's previous step, the
    sender's last step before each message it received since, and for a process's first
    step its parent's last step before the spawn. None: not known, so the writer chains
    the steps in the order given."""
    started_ms: float | None = None      # ms since the run's start, when the step was asked for
    parent_process_id: int | None = None  # the process that spawned this step's process

    def __post_init__(self) -> None:
        if self.step_type not in STEP_TYPES:
            raise ValueError(f"step_type must be one of {', '.join(STEP_TYPES)}, got {self.step_type!r}")


@dataclass
class ReplayManifest:
    id: str
    process_id: int
    agent_id: str
    created_at: float                    # seconds since the epoch
    initial_budget_usd: float | None
    steps: Iterable[InteractionRecord] = ()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def manifest_from_store(store: Any, run_id: str) -> ReplayManifest:
    info = store.get_run(run_id)
    meta = info.meta
    q = meta.get("quota") or {}
    init = meta.get("init") or {}
    return ReplayManifest(info.run_id, int(meta.get("init_pid") or 1),
                          meta.get("name") or init.get("name") or info.name, info.created_at,
                          q.get("usd"), _steps(store, run_id))


def _journal_lookup(store: Any, run_id: str) -> Callable[[int, int], Any]:
    """(pid, op index) -> the journaled device result: an indexed store lookup, so the
    export never holds the journal; a store without one is read once into a table."""
    find = getattr(store, "journal_entry", None)
    if find is not None:
        return lambda pid, idx: find(run_id, pid, idx)
    table = {(e.pid, e.index): e for e in store.journal(run_id)
             if e.op not in ("policy", "io_cancel", "clock_jump")}
    return lambda pid, idx: table.get((pid, idx))


_MAX_IN_FLIGHT = 65536   # sends remembered until received: bounded, whatever the run does


def _steps(store: Any, run_id: str) -> Iterator[InteractionRecord]:
    """Steps in the order they completed, with their real dependencies.

    Memory is bounded by the run's processes and its messages in flight, never by its
    length: events are read in pages, journal entries looked up one at a time."""
    from ..kernel.events import canonical

    lookup = _journal_lookup(store, run_id)
    next_op: dict[int, int] = {}           # pid -> next op index the kernel would assign
    pending: dict[int, list[dict[str, Any]]] = {}  # pid -> steps waiting for their end time
    names: dict[int, str] = {}
    parents: dict[int, int] = {}
    counter = [0]
    last_response: dict[int, int] = {}     # pid -> index of its latest response step
    last_step: dict[int, int] = {}         # pid -> index of its latest step
    informed: dict[int, list[int]] = {}    # pid -> steps of others its next step depends on
    sends: "OrderedDict[int, int]" = OrderedDict()  # seq of a send -> the sender's step before it

    def emit(items: list[dict[str, Any]], end: float) -> Iterator[InteractionRecord]:
        for it in items:
            i = counter[0]
            counter[0] += 1
            pid = it["pid"]
            lessons = tuple(_lesson_records(it.get("lessons"), run_id, last_response.get(pid)))
            if it["type"] == "response":
                last_response[pid] = i
            deps: list[int] = []
            if pid in last_step:
                deps.append(last_step[pid])
            for j in informed.pop(pid, ()):
                if j not in deps:
                    deps.append(j)
            last_step[pid] = i
            yield InteractionRecord(f"{run_id}:{i}", it["type"], i, it["payload"], it.get("usd", 0.0),
                                    it.get("tokens", 0), max(0.0, end - it["t"]), pid,
                                    names.get(pid), lessons, tuple(deps), it["t"], parents.get(pid))

    def inform(pid: int, step: int | None) -> None:
        if step is not None:
            lst = informed.setdefault(pid, [])
            if step not in lst and len(lst) < 1024:
                lst.append(step)

    for ev in store.events(run_id):
        pid, kind = ev.pid, ev.kind
        if pid in pending and kind != "policy":  # the op's result (or the next op) has arrived
            yield from emit(pending.pop(pid), ev.time)
        if kind == "spawn":
            d = ev.data
            names[pid] = d[1] if isinstance(d, list) and len(d) > 1 else str(pid)
            if isinstance(d, list) and d and isinstance(d[0], int) and d[0] > 0:
                parents[pid] = d[0]
                inform(pid, last_step.get(d[0]))
            continue
        if kind == "recv":
            d = ev.data
            if isinstance(d, list) and len(d) == 2 and isinstance(d[1], int):
                inform(pid, sends.pop(d[1], None))
            continue
        if kind != "sys" or not isinstance(ev.data, dict):
            continue
        req = ev.data
        op = req.get("@")
        if op in ("Send", "SendDurable"):
            if pid in last_step:
                sends[ev.seq] = last_step[pid]
                if len(sends) > _MAX_IN_FLIGHT:
                    sends.popitem(last=False)
            continue
        if op == "Open":
            e0 = lookup(pid, next_op.get(pid, 0))
            if e0 is not None and e0.op == "open":
                next_op[pid] = next_op.get(pid, 0) + 1  # opens take an op index too
            continue
        if op in _MEMORY_OPS:
            pending.setdefault(pid, []).append({"type": "memory_retrieval", "t": ev.time, "pid": pid,
                                                "payload": _dumps(req)})
            continue
        if op not in _DEVICE_OPS:
            continue
        reqs: list[Any] = (req.get("reqs") or []) if op == "ReadAll" else [req.get("req" if op == "Read" else "data")]
        idx = next_op.get(pid, 0)
        head = lookup(pid, idx)
        if op == "ReadAll" and head is not None and head.op == "read_all":
            next_op[pid] = idx + 1  # refused as a whole: the driver could not classify a request
            continue
        entries = [head] + [lookup(pid, idx + j) for j in range(1, len(reqs))] if reqs else []
        if not entries or any(e is None or e.op == "open" or canonical(e.request) != canonical(r)
                              for e, r in zip(entries, reqs)):
            continue  # refused before it ran (policy, a bad handle): no step
        next_op[pid] = idx + len(entries)
        for e in entries:
            assert e is not None
            result = canonical(e.value) if e.ok else {"error": e.error_type, "message": e.value}
            if isinstance(e.request, dict) and "messages" in e.request:
                pending.setdefault(pid, []).append({"type": "prompt", "t": ev.time, "pid": pid,
                                                    "payload": _dumps({"device": e.device, "request": e.request})})
                pending[pid].append({"type": "response", "t": ev.time, "pid": pid, "usd": e.usd,
                                     "tokens": e.tokens, "payload": _dumps({"device": e.device, "result": result})})
            else:
                pending.setdefault(pid, []).append({
                    "type": "tool_call", "t": ev.time, "pid": pid, "usd": e.usd, "tokens": e.tokens,
                    "payload": _dumps({"device": e.device, "action": e.action, "op": e.op,
                                       "request": e.request, "result": result}),
                    "lessons": result if e.ok and isinstance(result, dict)
                    and result.get("kind") == "lessons.add" else None})
    for pid in sorted(pending):
        items = pending[pid]
        yield from emit(items, items[-1]["t"])


def _lesson_records(result: Any, run_id: str, last_response: int | None) -> Iterator[LessonRecord]:
    """The lessons a `lessons.add` result reports, with the step each derives from."""
    if not isinstance(result, dict):
        return
    for d in result.get("added") or ():
        if isinstance(d, dict) and isinstance(d.get("id"), str):
            yield _record(str(d["id"]), d, run_id, last_response, False)
    for m in result.get("merged") or ():
        if isinstance(m, dict) and isinstance(m.get("into"), str) and isinstance(m.get("from"), dict):
            yield _record(m["into"], m["from"], run_id, last_response, True)


def _record(lid: str, d: dict[str, Any], run_id: str, last_response: int | None, merged: bool) -> LessonRecord:
    src_run, src_step = d.get("source_run"), d.get("source_step")
    if not isinstance(src_step, int) or isinstance(src_step, bool):
        src_step = None
    if src_step is None and src_run in (None, run_id) and last_response is not None:
        src_run, src_step = run_id, last_response   # learned here, from the last answer judged
    return LessonRecord(lid, str(d.get("text") or ""), src_run if isinstance(src_run, str) else None,
                        src_step, merged)


__all__ = ["InteractionRecord", "LessonRecord", "ReplayManifest", "STEP_TYPES", "manifest_from_store"]
