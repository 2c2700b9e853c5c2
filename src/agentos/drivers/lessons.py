"""The `lessons` device: long-term memory of lessons that outlives runs.

Agents read and write their long memory through this device, so every access is a
capability-checked, policy-checked, journaled syscall: a replayed run gets its recalls
from the journal and never touches the memory. One device is one memory; who may use it
is who holds a capability for it (a capability derived without `write` can recall but
not add). Requests:

    read  {"op": "recall", "query": str, "k": 5, "tags": [...], "touch": true} → [lesson + "relevance"]
    read  {"op": "get", "id": str} → lesson | None
    read  {"op": "list", "tags": [...], "offset": 0, "limit": 100} → [lesson], oldest first
    read  {"op": "stats"} → counts and settings
    write {"op": "add", "lessons": [{"text", "tags", "source_run", "source_step", "outcome",
           "score"}]} → {"kind": "lessons.add", "added": [lesson], "merged": [{"into", "from"}],
           "evicted": [id]}
    write {"op": "forget", "ids": [...]} → {"forgotten": [id]}
    write {"op": "prune"} → {"evicted": [id]} (lessons decayed below the floor)

Lessons persist through a `MemoryPersist` backend: `StorePersist` keeps them in a store's
key-value space (SQLite by default, so they survive the kernel), `InMemoryPersist` in
this process. Given none, the device uses the store the kernel records its run to (under
`lessons/<namespace>/`), or memory when the run is not recorded; it looks on first open. A write returns once the backend has it; if the backend fails, the write
is undone in memory too and the caller gets a `DriverError`. A lesson added without a
`source_run` is stamped with the run being recorded, if any. The VFS shows a process the
lessons of every memory it holds a capability for, under
`/agent/<pid>/mem/semantic/lessons/<device>/<id>` (read-only).
"""
from __future__ import annotations

import copy
import json
import math
import time
from typing import Any, Callable, Iterable, Protocol, Sequence

from ..abi.driver import Driver, DriverResult
from ..abi.errors import DriverError
from ..abi.types import Cost, Pid
from .lesson_index import (
    MAX_K, MAX_QUERY, Decay, Lesson, LessonError, LessonIndex, check_tags,
)

READ_OPS = ("recall", "get", "list", "stats")
WRITE_OPS = ("add", "forget", "prune")
MAX_BATCH = 100
MAX_LIST = 1000
DIRTY_LIMIT = 256   # recalls save their use counts at latest after this many lessons changed


class MemoryPersist(Protocol):
    """Where a long memory keeps its lessons between runs (dicts as `Lesson.to_dict` makes)."""

    def load(self) -> Iterable[dict[str, Any]]: ...
    def save(self, lessons: Sequence[dict[str, Any]]) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...


class InMemoryPersist:
    """Lessons kept in this Python process (tests, and memories meant to die with it)."""

    def __init__(self, lessons: Iterable[dict[str, Any]] = ()) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        for d in lessons:
            self.data[str(d.get("id"))] = copy.deepcopy(d)

    def load(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for _, d in sorted(self.data.items())]

    def save(self, lessons: Sequence[dict[str, Any]]) -> None:
        for d in lessons:
            self.data[d["id"]] = copy.deepcopy(d)

    def delete(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.data.pop(i, None)


class StorePersist:
    """Lessons in a store's key-value space, under `lessons/<namespace>/<id>` (JSON)."""

    def __init__(self, store: Any, namespace: str = "default") -> None:
        if not isinstance(namespace, str) or not namespace or "/" in namespace:
            raise ValueError(f"namespace must be a non-empty string without '/', got {namespace!r}")
        for method in ("kv_put", "kv_delete", "kv_items"):
            if not callable(getattr(store, method, None)):
                raise TypeError(f"StorePersist needs a store with {method}(); {type(store).__name__} has none")
        self.store = store
        self.prefix = f"lessons/{namespace}/"

    def load(self) -> list[dict[str, Any]]:
        out = []
        for _key, raw in self.store.kv_items(self.prefix):
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"corrupt": raw[:80].decode("utf-8", "replace")})
        return out

    def save(self, lessons: Sequence[dict[str, Any]]) -> None:
        self.store.kv_put([(self.prefix + d["id"], json.dumps(d, sort_keys=True).encode())
                           for d in lessons])

    def delete(self, ids: Sequence[str]) -> None:
        self.store.kv_delete([self.prefix + i for i in ids])


class LongMemoryDriver(Driver):
    """A long memory as a device. `clock` gives seconds since the epoch (lessons outlive
    kernels, whose clocks restart at 0); tests pass their own.

    Adds, forgets and prunes are saved before the write returns. A recall only counts a
    use in memory: use counts are saved when the handle is closed (a process's handles
    close when it exits), with the next write, or once `DIRTY_LIMIT` lessons are pending,
    so a recall never waits for the store; a crash can lose the counts of the last few
    recalls, never a lesson."""

    name = "lessons"

    def __init__(self, persist: MemoryPersist | None = None, *, name: str = "lessons",
                 namespace: str = "default", max_lessons: int = 1000, decay: Decay | None = None,
                 dedup: float = 0.8, embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.namespace = namespace
        self.index = LessonIndex(max_lessons=max_lessons, decay=decay, dedup=dedup, embed=embed)
        self.clock = clock
        self.corrupt: list[str] = []        # stored records that could not be read back
        self.persist: MemoryPersist = InMemoryPersist()
        self._loaded = False
        self._dirty: set[str] = set()       # lessons whose use counts are not saved yet
        if persist is not None:
            self._load(persist)

    def _load(self, persist: MemoryPersist) -> None:
        self.persist = persist
        self._loaded = True
        loaded = []
        for d in persist.load():
            try:
                loaded.append(Lesson.from_dict(d))
            except LessonError as e:
                self.corrupt.append(f"{str(d.get('id') if isinstance(d, dict) else '?')[:40]}: {e}")
        evicted = self.index.load(loaded)
        if evicted:
            persist.delete(evicted)

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        store = getattr(self._recording(), "store", None)
        if store is not None and callable(getattr(store, "kv_items", None)):
            self._load(StorePersist(store, self.namespace))
        else:
            self._load(InMemoryPersist())

    # -- driver ABI -------------------------------------------------------------------
    def _recording(self) -> Any:
        """The run this kernel records to (a store `Recording`), if any."""
        return self.host.shared("recording", lambda: None) if self.host is not None else None

    def open(self, owner: Pid, params: Any) -> dict[str, Any]:
        if params not in (None, {}):
            raise DriverError(f"{self.name}: open takes no parameters (one device is one memory), "
                              f"got {params!r:.80}")
        try:
            self._ensure_loaded()
        except Exception as e:
            raise DriverError(f"{self.name}: cannot load the memory: {type(e).__name__}: {e}") from None
        return {"owner": owner}

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        kind = self._op(op, req)
        summary: dict[str, Any] = {}
        if kind == "recall":
            summary = {"k": req.get("k", 5), "tags": req.get("tags") or []}
        elif kind == "add":
            lessons = req.get("lessons")
            summary = {"count": len(lessons) if isinstance(lessons, list) else 0}
        return (f"{self.name}.{kind}", summary)

    def _op(self, op: str, req: Any) -> str:
        if not isinstance(req, dict):
            raise DriverError(f"{self.name}: a request is a dict with 'op', got {type(req).__name__}")
        kind = req.get("op")
        ops = READ_OPS if op == "read" else WRITE_OPS
        if kind not in ops:
            other = WRITE_OPS if op == "read" else READ_OPS
            hint = f" ({kind!r} is a {'write' if op == 'read' else 'read'})" if kind in other else ""
            raise DriverError(f"{self.name}: unknown {op} op {kind!r:.40}{hint}; {op}s are {', '.join(ops)}")
        return str(kind)

    def read(self, handle: Any, req: Any) -> DriverResult:
        kind = self._op("read", req)
        self._ensure_loaded()
        try:
            if kind == "recall":
                return self._recall(req)
            if kind == "get":
                lid = req.get("id")
                if not isinstance(lid, str):
                    raise LessonError(f"get needs 'id' (a string), got {lid!r:.40}")
                lesson = self.index.lessons.get(lid)
                return DriverResult(None if lesson is None else lesson.to_dict(), Cost(reductions=1))
            if kind == "list":
                return self._list(req)
            return DriverResult(self.stats(), Cost(reductions=1))
        except LessonError as e:
            raise DriverError(f"{self.name}: {e}") from None

    def write(self, handle: Any, data: Any) -> DriverResult:
        kind = self._op("write", data)
        self._ensure_loaded()
        try:
            if kind == "add":
                return self._add(data)
            if kind == "forget":
                return self._forget(data)
            extra = sorted(set(data) - {"op"})
            if extra:
                raise LessonError(f"unknown prune field(s) {extra}")
            removed = self.index.prune(self._now())
            ids = [l.id for l in removed]
            self._persist([], ids, undo=lambda: self.index.load(removed))
            return DriverResult({"evicted": ids}, Cost(reductions=1 + len(ids)))
        except LessonError as e:
            raise DriverError(f"{self.name}: {e}") from None

    # -- ops ----------------------------------------------------------------------------
    def _now(self) -> float:
        now = self.clock()
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise DriverError(f"{self.name}: the clock returned {now!r}, not a finite time")
        return float(now)

    def _recall(self, req: dict[str, Any]) -> DriverResult:
        extra = sorted(set(req) - {"op", "query", "k", "tags", "touch"})
        if extra:
            raise LessonError(f"unknown recall field(s) {extra}")
        query = req.get("query", "")
        if not isinstance(query, str):
            raise LessonError(f"query must be a string, got {type(query).__name__}")
        if len(query) > MAX_QUERY:
            raise LessonError(f"query is {len(query)} characters; the limit is {MAX_QUERY}")
        k = req.get("k", 5)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_K:
            raise LessonError(f"k must be an int in 0..{MAX_K}, got {k!r}")
        touch = req.get("touch", True)
        if not isinstance(touch, bool):
            raise LessonError(f"touch must be true or false, got {touch!r}")
        tags = check_tags(req.get("tags"))
        now = self._now()
        hits = self.index.recall(query, k, now, tags, touch=False)
        if touch and hits:
            for lesson, _ in hits:
                lesson.uses += 1
                lesson.last_used = max(lesson.last_used, now)
                self._dirty.add(lesson.id)
            if len(self._dirty) >= DIRTY_LIMIT:
                self.save_uses()
        out = [{**lesson.to_dict(), "relevance": round(rel, 9)} for lesson, rel in hits]
        return DriverResult(out, Cost(reductions=1 + len(out)))

    def _list(self, req: dict[str, Any]) -> DriverResult:
        offset, limit = req.get("offset", 0), req.get("limit", 100)
        for name, v, hi in (("offset", offset, None), ("limit", limit, MAX_LIST)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (hi is not None and v > hi):
                raise LessonError(f"{name} must be an int in 0..{hi or 'n'}, got {v!r}")
        want = set(check_tags(req.get("tags")))
        rows = sorted((l for l in self.index.lessons.values() if want <= set(l.tags)),
                      key=lambda l: (l.created, l.id))
        page = [l.to_dict() for l in rows[offset: offset + limit]]
        return DriverResult(page, Cost(reductions=1 + len(page)))

    def _add(self, req: dict[str, Any]) -> DriverResult:
        extra = sorted(set(req) - {"op", "lessons"})
        if extra:
            raise LessonError(f"unknown add field(s) {extra}")
        items = req.get("lessons")
        if not isinstance(items, list) or not items:
            raise LessonError("add needs 'lessons': a non-empty list of lessons")
        if len(items) > MAX_BATCH:
            raise LessonError(f"at most {MAX_BATCH} lessons per add, got {len(items)}")
        now = self._now()
        run = getattr(self._recording(), "run_id", None)
        new = []
        for i, d in enumerate(items):  # validate all before changing anything
            try:
                lesson = Lesson.from_input(d, now)
            except LessonError as e:
                raise LessonError(f"lesson {i}: {e}") from None
            if lesson.source_run is None and isinstance(run, str):
                lesson.source_run = run
            new.append(lesson)
        index = self.index
        created: list[str] = []
        saved: dict[str, Lesson] = {}            # lessons a duplicate reinforced, as they were before
        added: list[dict[str, Any]] = []
        merged: list[dict[str, Any]] = []
        for lesson in new:
            dup = index.duplicate_of(lesson)
            if dup is not None and dup.id not in saved and dup.id not in created:
                saved[dup.id] = copy.copy(dup)
            held, into = index.add(lesson, now, dup)
            if into is None:
                created.append(held.id)
                added.append(held.to_dict())
            else:
                merged.append({"into": into, "from": {"text": lesson.text, "source_run": lesson.source_run,
                                                      "source_step": lesson.source_step}})
        gone = index.enforce_bound(now)
        evicted = [l.id for l in gone]
        evicted_objs = [saved.get(l.id, l) for l in gone if l.id not in created]

        def undo() -> None:
            for lid in created:
                index.forget(lid)
            for lid, old in saved.items():
                cur = index.lessons.get(lid)
                if cur is not None:
                    cur.score, cur.tags, cur.last_used, cur.outcome = old.score, old.tags, old.last_used, old.outcome
            index.load(evicted_objs)

        changed = {lid for lid in created if lid in index.lessons} | {m["into"] for m in merged
                                                                      if m["into"] in index.lessons}
        self._persist([index.lessons[lid].to_dict() for lid in sorted(changed)], evicted, undo=undo)
        # what the caller learns: the lessons as held now (a lesson added and then evicted in
        # the same batch is reported in both lists)
        return DriverResult({"kind": "lessons.add", "added": added, "merged": merged, "evicted": evicted},
                            Cost(reductions=1 + len(new) + len(evicted)))

    def _forget(self, req: dict[str, Any]) -> DriverResult:
        ids = req.get("ids")
        if not isinstance(ids, list) or len(ids) > MAX_BATCH or not all(isinstance(i, str) for i in ids):
            raise LessonError(f"forget needs 'ids': a list of at most {MAX_BATCH} lesson ids")
        gone = [copy.copy(self.index.lessons[i]) for i in dict.fromkeys(ids) if i in self.index.lessons]
        for lesson in gone:
            self.index.forget(lesson.id)
        self._persist([], [l.id for l in gone], undo=lambda: self.index.load(gone))
        return DriverResult({"forgotten": [l.id for l in gone]}, Cost(reductions=1 + len(gone)))

    def save_uses(self) -> None:
        """Write the use counts recalls changed since the last save (see the class notes)."""
        if not self._dirty:
            return
        rows = [self.index.lessons[i].to_dict() for i in sorted(self._dirty) if i in self.index.lessons]
        self._dirty.clear()
        if rows:
            self.persist.save(rows)

    def close(self, handle: Any) -> None:
        self.save_uses()

    def _persist(self, save: list[dict[str, Any]], delete: list[str], *, undo: Callable[[], Any]) -> None:
        if self._dirty:   # a write carries the pending use counts with it
            ids = {d["id"] for d in save}
            save = save + [self.index.lessons[i].to_dict() for i in sorted(self._dirty)
                           if i in self.index.lessons and i not in ids]
        try:
            if save:
                self.persist.save(save)
            if delete:
                self.persist.delete(delete)
        except Exception as e:
            undo()
            raise DriverError(f"{self.name}: the memory could not be saved ({type(e).__name__}: {e}); "
                              f"nothing was changed") from None
        self._dirty.clear()

    # -- views ----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        self._ensure_loaded()
        d = self.index.decay
        return {"count": len(self.index), "max_lessons": self.index.max_lessons, "half_life_s": d.half_life,
                "age_half_life_s": d.age_half_life, "floor": d.floor, "dedup": self.index.dedup,
                "vector": self.index._vec is not None, "corrupt": len(self.corrupt)}

    def semantic_view(self, rel: tuple[str, ...], op: str) -> Any:
        """What the VFS shows under `.../semantic/lessons/<device>`: ids, or one lesson."""
        self._ensure_loaded()
        if not rel:
            return sorted(self.index.lessons)
        lesson = self.index.lessons.get(rel[0]) if len(rel) == 1 else None
        if lesson is None:
            return None
        return lesson.to_dict() if op == "read" else []


__all__ = ["InMemoryPersist", "LongMemoryDriver", "MemoryPersist", "READ_OPS", "StorePersist", "WRITE_OPS"]
