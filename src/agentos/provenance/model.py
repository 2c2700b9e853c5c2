"""The provenance model of a run, and how it is read out of a store.

A run is a `ReplayManifest` whose `steps` is an iterable of `InteractionRecord`s (a
generator, for streaming). `manifest_from_store` derives the steps from the stored event
log and journal: an op on a chat-shaped device (a request with "messages") is a `prompt`
step followed by a `response` step that carries its cost; any other device op is a
`tool_call`; `recall`/`working_set` syscalls are `memory_retrieval`s. A step's
`elapsed_ms` runs from its syscall to the result arriving (its `charge` event, else the
process's next event).

A step's cost (`step_tokens`, `step_tool_calls`, `step_cost_usd`) is what the kernel's
`charge` event for that op says the account paid, the same figure the run table, `ps` and
the metrics show; never what the driver reported (an overrun is charged only as far as
the budget could pay, a cost that did not fit is not charged at all). An op that was
cancelled in flight (its process was killed or interrupted) has no journaled result; it
is still a step, whose result is `{"error": "cancelled"}` and whose cost is the
reservation it settled at.

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

from ..abi.types import USD_SCALE

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
    step_tool_calls: int = 0             # tool calls charged for this step

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
    unresolved: dict[int, tuple[int, str, list[Any], float]] = {}  # pid -> an op with no journaled result

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
            yield InteractionRecord(f"{run_id}:{i}", it["type"], i, it["payload"], it.get("usd", 0) / USD_SCALE,
                                    it.get("tokens", 0), max(0.0, end - it["t"]), pid,
                                    names.get(pid), lessons, tuple(deps), it["t"], parents.get(pid),
                                    it.get("calls", 0))

    def inform(pid: int, step: int | None) -> None:
        if step is not None:
            lst = informed.setdefault(pid, [])
            if step not in lst and len(lst) < 1024:
                lst.append(step)

    def op_items(pid: int, t: float, index: int, device: str, op: str, action: Any, request: Any,
                 result: Any, lessons: Any = None) -> list[dict[str, Any]]:
        """The step(s) of one device op: a prompt and a response for a chat request (the
        response carries the cost), else one tool call."""
        if isinstance(request, dict) and "messages" in request:
            return [{"type": "prompt", "t": t, "pid": pid, "op": None,
                     "payload": _dumps({"device": device, "request": request})},
                    {"type": "response", "t": t, "pid": pid, "op": index,
                     "payload": _dumps({"device": device, "result": result})}]
        return [{"type": "tool_call", "t": t, "pid": pid, "op": index,
                 "payload": _dumps({"device": device, "action": action, "op": op,
                                    "request": request, "result": result}),
                 "lessons": lessons}]

    def cancelled(pid: int) -> list[dict[str, Any]]:
        """The steps of the op `pid` had in flight when it was cancelled (no journaled result)."""
        idx, op, reqs, t = unresolved.pop(pid)
        next_op[pid] = idx + len(reqs)
        items: list[dict[str, Any]] = []
        for j, r in enumerate(reqs):
            items += op_items(pid, t, idx + j, "", op, None, canonical(r), {"error": "cancelled"})
        return items

    for ev in store.events(run_id):
        pid, kind = ev.pid, ev.kind
        if kind == "charge":
            d = ev.data
            if isinstance(d, list) and len(d) == 4 and all(type(x) is int for x in d):
                index, tokens, calls, usd = d
                items = pending.get(pid, [])
                at = next((n for n, it in enumerate(items) if it.get("op") == index), None)
                if at is None and unresolved.get(pid, (None,))[0] == index:
                    items = pending.setdefault(pid, [])
                    items += cancelled(pid)
                    at = next((n for n, it in enumerate(items) if it.get("op") == index), None)
                if at is not None:
                    it = items[at]
                    it["tokens"] = it.get("tokens", 0) + tokens
                    it["calls"] = it.get("calls", 0) + calls
                    it["usd"] = it.get("usd", 0) + usd
                    # the result has arrived: this step and those before it are complete
                    done, pending[pid] = items[:at + 1], items[at + 1:]
                    if not pending[pid]:
                        del pending[pid]
                    yield from emit(done, ev.time)
            continue
        if pid in pending and kind not in _NOT_A_RESULT:  # the op's result (or the next op) has arrived
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
        if not isinstance(reqs, list):
            continue
        idx = next_op.get(pid, 0)
        entries = _entries_at(lookup, pid, idx, reqs)
        if entries is None and pid in unresolved:
            # the op before this one was cancelled with nothing to settle (no charge event
            # names it): it took its indices all the same
            u_idx, _, u_reqs, _ = unresolved[pid]
            if u_idx == idx:
                later = _entries_at(lookup, pid, idx + len(u_reqs), reqs)
                if later is not None:
                    pending.setdefault(pid, []).extend(cancelled(pid))
                    idx, entries = idx + len(u_reqs), later
        if entries is None:
            head = lookup(pid, idx)
            if op == "ReadAll" and head is not None and head.op == "read_all":
                next_op[pid] = idx + 1  # refused as a whole: the driver could not classify a request
            elif head is None and reqs:
                # no result journaled at this index: refused before it ran (policy, a bad
                # handle; it took no index), or cancelled in flight (it did): a charge or
                # the next op tells which
                unresolved[pid] = (idx, _DEVICE_OPS[op], reqs, ev.time)
            continue
        unresolved.pop(pid, None)
        next_op[pid] = idx + len(entries)
        for e in entries:
            result = canonical(e.value) if e.ok else {"error": e.error_type, "message": e.value}
            lessons = result if e.ok and isinstance(result, dict) and result.get("kind") == "lessons.add" else None
            pending.setdefault(pid, []).extend(
                op_items(pid, ev.time, e.index, e.device, e.op, e.action, e.request, result, lessons))
    for pid in sorted(pending):
        items = pending[pid]
        yield from emit(items, items[-1]["t"])


def _entries_at(lookup: Callable[[int, int], Any], pid: int, idx: int, reqs: list[Any]) -> list[Any] | None:
    """The journaled results of `reqs` issued at op index `idx`, or None if they are not there."""
    from ..kernel.events import canonical

    if not reqs:
        return None
    entries = [lookup(pid, idx + j) for j in range(len(reqs))]
    if any(e is None or e.op in ("open", "read_all") or canonical(e.request) != canonical(r)
           for e, r in zip(entries, reqs)):
        return None
    return entries


_NOT_A_RESULT = frozenset({"policy", "reserve", "overrun", "quota"})
"""Events between an op's syscall and its result that are not the result."""


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
