"""Long memory for agents: lessons that outlive the run that learned them.

`LongMemory` is a process's handle on a `lessons` device (see `drivers/lessons.py`):
every add, recall and forget is a metered, journaled device syscall, so a replay answers
from the journal, and who may read or write a memory is who holds a capability for it.
Lessons persist through the device's `MemoryPersist` backend (the store by default), are
recalled by relevance (BM25, and vectors when the device has an embedder), merge when
learned twice, decay with age and disuse, and are bounded in number.

    mem = await LongMemory.open(sys, "lessons")
    await mem.add([Lesson("Use the calculator for arithmetic.", tags=("math",))])
    for lesson in await mem.recall("compute 17 * 23"):
        ...
"""
from __future__ import annotations

from dataclasses import dataclass
import builtins
from typing import Any, Iterable, Sequence

from ..drivers.lesson_index import OUTCOMES, Decay, Lesson
from ..drivers.lessons import InMemoryPersist, MemoryPersist, StorePersist
from ..kernel.trap import Sys


@dataclass(frozen=True)
class AddResult:
    """What an add did: lessons new to the memory, duplicates merged (id merged into),
    and lessons evicted to keep the bound."""

    added: tuple[Lesson, ...]
    merged: tuple[str, ...]
    evicted: tuple[str, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        """Every lesson the add touched: new ones, then those it reinforced (each once)."""
        return tuple(dict.fromkeys([l.id for l in self.added] + list(self.merged)))


def lesson_input(lesson: Lesson | dict[str, Any]) -> dict[str, Any]:
    """The fields a caller may set on a new lesson (the memory sets ids, uses and times)."""
    if isinstance(lesson, Lesson):
        return {"text": lesson.text, "tags": list(lesson.tags), "source_run": lesson.source_run,
                "source_step": lesson.source_step, "outcome": lesson.outcome, "score": lesson.score}
    if isinstance(lesson, dict):
        return dict(lesson)
    raise TypeError(f"a lesson is a Lesson or a dict, got {type(lesson).__name__}")


class LongMemory:
    """A handle on one long memory (a `lessons` device this process holds)."""

    def __init__(self, sys: Sys, handle: int, device: str) -> None:
        self.sys = sys
        self.handle = handle
        self.device = device

    @classmethod
    async def open(cls, sys: Sys, device: Any = "lessons") -> "LongMemory":
        """Open the memory behind `device` (a name or a capability ref)."""
        return cls(sys, await sys.open(device), str(device))

    async def close(self) -> None:
        await self.sys.close(self.handle)

    async def add(self, lessons: Iterable[Lesson | dict[str, Any]]) -> AddResult:
        out = await self.sys.write(self.handle, {"op": "add", "lessons": [lesson_input(l) for l in lessons]})
        return AddResult(tuple(Lesson.from_dict(d) for d in out["added"]),
                         tuple(m["into"] for m in out["merged"]), tuple(out["evicted"]))

    async def recall(self, query: str, k: int = 5, *, tags: Sequence[str] = (),
                     touch: bool = True) -> list[Lesson]:
        """The k lessons most relevant to `query`, best first (each counts as used unless
        `touch` is false)."""
        return [l for l, _ in await self.recall_scored(query, k, tags=tags, touch=touch)]

    async def recall_scored(self, query: str, k: int = 5, *, tags: Sequence[str] = (),
                            touch: bool = True) -> builtins.list[tuple[Lesson, float]]:
        rows = await self.sys.read(self.handle, {"op": "recall", "query": query, "k": k,
                                                 "tags": list(tags), "touch": touch})
        return [(Lesson.from_dict({k2: v for k2, v in r.items() if k2 != "relevance"}), r["relevance"])
                for r in rows]

    async def get(self, lesson_id: str) -> Lesson | None:
        d = await self.sys.read(self.handle, {"op": "get", "id": lesson_id})
        return None if d is None else Lesson.from_dict(d)

    async def list(self, *, tags: Sequence[str] = (), offset: int = 0,
                   limit: int = 100) -> builtins.list[Lesson]:
        rows = await self.sys.read(self.handle, {"op": "list", "tags": list(tags), "offset": offset,
                                                 "limit": limit})
        return [Lesson.from_dict(d) for d in rows]

    async def forget(self, ids: Sequence[str]) -> builtins.list[str]:
        out = await self.sys.write(self.handle, {"op": "forget", "ids": list(ids)})
        return list(out["forgotten"])

    async def prune(self) -> builtins.list[str]:
        return list((await self.sys.write(self.handle, {"op": "prune"}))["evicted"])

    async def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = await self.sys.read(self.handle, {"op": "stats"})
        return out


def lessons_section(lessons: Sequence[Lesson], title: str = "Lessons from earlier runs") -> str:
    """Lessons as a block of a system prompt (empty when there are none)."""
    if not lessons:
        return ""
    return title + ":\n" + "\n".join(f"- {l.text}" for l in lessons)


__all__ = ["AddResult", "Decay", "InMemoryPersist", "Lesson", "LongMemory", "MemoryPersist", "OUTCOMES",
           "StorePersist", "lesson_input", "lessons_section"]
