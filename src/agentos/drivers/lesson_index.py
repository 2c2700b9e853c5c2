"""Lessons and the index that holds them: the engine behind the `lessons` device.

A `Lesson` is a short piece of advice learned from a run: its text, tags, where it came
from (run and provenance step), the outcome of that run, a score (how much it matters,
0..1), how often it was used, and when it was made and last used.

Invariants of a `LessonIndex`:
- it never holds more than `max_lessons` lessons: an add past the bound evicts the
  weakest (lowest strength now, then oldest, then smallest id) down to a low-water mark,
  so eviction is amortised;
- strength decays with age and disuse and never rises with time alone:
  `weight × 2^(-idle/half_life) × 2^(-age/age_half_life)`, where `weight` grows with the
  score and the uses; only a use (a recall) or a reinforcement (the same lesson learned
  again) raises it;
- ids come from the text (SHA-256 of its normalised words), so a lesson learned twice is
  one lesson; a near-duplicate (word-set Jaccard ≥ `dedup`) merges into the existing one.
  Near-duplicates are looked up by the new lesson's four rarest known words (a lesson that
  shares most of its words shares some of those), so an add costs the length of short
  postings lists, not a scan of the memory; for lessons of twenty words and more the
  lookup can miss a near-duplicate, which then stays a lesson of its own;
- recall ranks by relevance: reciprocal-rank fusion of the kernel's BM25 recaller and, if
  an embedding function is given, its vector recaller, scaled by strength; ties go to the
  smaller id, so a ranking is a function of the index and the clock alone. In memories of
  1,000 lessons and more, query words found in over a twentieth of them are dropped when
  rarer ones remain (they weigh little and cost a long postings list).
"""
from __future__ import annotations

import hashlib
import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ..kernel.recall import Bm25Recaller, terms

OUTCOMES = ("success", "failure", "partial", "unknown")
MAX_TEXT = 2000
MAX_TAGS = 16
MAX_TAG = 64
MAX_QUERY = 8192
MAX_K = 100
MAX_RUN_ID = 200
DAY = 86_400.0
_RRF = 60.0          # the usual reciprocal-rank-fusion constant


class LessonError(ValueError):
    """A lesson or request that does not hold; the message says which field and why."""


def _finite(v: Any, what: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise LessonError(f"{what} must be a number, got {type(v).__name__}")
    f = float(v)
    if not math.isfinite(f):
        raise LessonError(f"{what} must be finite, got {v!r}")
    if (lo is not None and f < lo) or (hi is not None and f > hi):
        raise LessonError(f"{what} must be in [{lo}, {hi}], got {v!r}")
    return f


def _text(v: Any, what: str, limit: int) -> str:
    if not isinstance(v, str):
        raise LessonError(f"{what} must be a string, got {type(v).__name__}")
    s = v.strip()
    if not s:
        raise LessonError(f"{what} must not be empty")
    if len(s) > limit:
        raise LessonError(f"{what} is {len(s)} characters; the limit is {limit}")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise LessonError(f"{what} is not valid Unicode (it holds a lone surrogate)") from None
    if "\x00" in s:
        raise LessonError(f"{what} contains a NUL character")
    return s


def check_tags(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str) or not isinstance(v, (list, tuple)):
        raise LessonError(f"tags must be a list of strings, got {type(v).__name__}")
    if len(v) > MAX_TAGS:
        raise LessonError(f"at most {MAX_TAGS} tags, got {len(v)}")
    out: list[str] = []
    for t in v:
        t = _text(t, "a tag", MAX_TAG).lower()
        if t not in out:
            out.append(t)
    return tuple(out)


def normal_form(text: str) -> str:
    """The words of `text`, lowercased: what two lessons share when they are the same lesson."""
    return " ".join(terms(text))


def lesson_id(text: str) -> str:
    return hashlib.sha256(normal_form(text).encode("utf-8")).hexdigest()[:16]


@dataclass(slots=True)
class Lesson:
    """One thing learned. `source_step` is the provenance index of the step it came from."""

    text: str
    tags: tuple[str, ...] = ()
    source_run: str | None = None
    source_step: int | None = None
    outcome: str = "unknown"
    score: float = 0.5
    uses: int = 0
    created: float = 0.0
    last_used: float = 0.0
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            self.id = lesson_id(self.text)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "tags": list(self.tags), "source_run": self.source_run,
                "source_step": self.source_step, "outcome": self.outcome, "score": self.score,
                "uses": self.uses, "created": self.created, "last_used": self.last_used}

    @staticmethod
    def from_input(d: Any, now: float) -> "Lesson":
        """A new lesson from a caller's dict (text, tags, source_run, source_step, outcome,
        score); uses, times and the id are the index's to set."""
        if not isinstance(d, dict):
            raise LessonError(f"a lesson is a dict with at least 'text', got {type(d).__name__}")
        extra = sorted(set(d) - {"text", "tags", "source_run", "source_step", "outcome", "score"})
        if extra:
            raise LessonError(f"unknown lesson field(s) {extra}; a lesson has text, tags, source_run, "
                              f"source_step, outcome, score")
        text = _text(d.get("text"), "lesson text", MAX_TEXT)
        if not terms(text):
            raise LessonError("lesson text has no words")
        run = d.get("source_run")
        if run is not None:
            run = _text(run, "source_run", MAX_RUN_ID)
        step = d.get("source_step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise LessonError(f"source_step must be a non-negative int or null, got {step!r}")
        outcome = d.get("outcome", "unknown")
        if outcome not in OUTCOMES:
            raise LessonError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r:.40}")
        score = _finite(d.get("score", 0.5), "score", 0.0, 1.0)
        return Lesson(text, check_tags(d.get("tags")), run, step, outcome, score, 0, now, now)

    @staticmethod
    def from_dict(d: Any) -> "Lesson":
        """A stored lesson (as `to_dict` wrote it); anything else is a `LessonError`."""
        if not isinstance(d, dict):
            raise LessonError(f"a stored lesson is a dict, got {type(d).__name__}")
        base = Lesson.from_input({k: d[k] for k in ("text", "tags", "source_run", "source_step",
                                                    "outcome", "score") if k in d}, 0.0)
        uses = d.get("uses", 0)
        if isinstance(uses, bool) or not isinstance(uses, int) or uses < 0:
            raise LessonError(f"uses must be a non-negative int, got {uses!r}")
        base.uses = uses
        base.created = _finite(d.get("created", 0.0), "created", 0.0)
        base.last_used = _finite(d.get("last_used", base.created), "last_used", 0.0)
        if d.get("id") not in (None, base.id):
            raise LessonError(f"lesson id {d.get('id')!r:.40} does not match its text (expected {base.id})")
        return base


@dataclass(frozen=True, slots=True)
class Decay:
    """How strength fades: half-lives in seconds (idle time and age), and the floor under
    which `prune` drops a lesson."""

    half_life: float = 30 * DAY
    age_half_life: float = 365 * DAY
    floor: float = 0.0

    def __post_init__(self) -> None:
        for name in ("half_life", "age_half_life"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"decay {name} must be a positive finite number of seconds, got {v!r}")
        if isinstance(self.floor, bool) or not isinstance(self.floor, (int, float)) \
                or not math.isfinite(self.floor) or self.floor < 0:
            raise ValueError(f"decay floor must be a non-negative finite number, got {self.floor!r}")

    def strength(self, lesson: Lesson, now: float) -> float:
        idle = max(0.0, now - lesson.last_used)
        age = max(0.0, now - lesson.created)
        weight = (0.5 + lesson.score) * (1.0 + math.log1p(lesson.uses))
        return weight * 2.0 ** (-idle / self.half_life) * 2.0 ** (-age / self.age_half_life)


class LessonIndex:
    """Lessons in memory with their BM25 (and optional vector) index. Not thread-safe: the
    device calls it from the kernel's thread only."""

    def __init__(self, *, max_lessons: int = 1000, decay: Decay | None = None, dedup: float = 0.8,
                 embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None) -> None:
        if isinstance(max_lessons, bool) or not isinstance(max_lessons, int) or max_lessons < 1:
            raise ValueError(f"max_lessons must be a positive int, got {max_lessons!r}")
        if isinstance(dedup, bool) or not isinstance(dedup, (int, float)) or not 0 < dedup <= 1:
            raise ValueError(f"dedup must be a number in (0, 1], got {dedup!r}")
        self.max_lessons = max_lessons
        self.low_water = max_lessons - max_lessons // 20
        self.decay = decay or Decay()
        self.dedup = float(dedup)
        self.lessons: dict[str, Lesson] = {}
        self._num: dict[str, int] = {}      # lesson id -> recaller id
        self._by_num: dict[int, str] = {}
        self._next = 1
        self._bm25 = Bm25Recaller()
        self._df: Counter[str] = Counter()   # lessons containing each word
        self._vec: Any = None
        if embed is not None:
            from ..kernel.recall_vector import VectorRecaller

            self._vec = VectorRecaller(embed)

    def __len__(self) -> int:
        return len(self.lessons)

    # -- contents ----------------------------------------------------------------------
    def _index(self, lesson: Lesson) -> None:
        n = self._next
        self._next += 1
        self._num[lesson.id] = n
        self._by_num[n] = lesson.id
        self._bm25.add(n, lesson.text)
        self._df.update(set(terms(lesson.text)))
        if self._vec is not None:
            self._vec.add(n, lesson.text)

    def _unindex(self, lid: str) -> None:
        n = self._num.pop(lid)
        del self._by_num[n]
        self._bm25.remove(n)
        words = set(terms(self.lessons[lid].text)) if lid in self.lessons else set()
        self._df.subtract(words)
        for w in words:
            if self._df[w] <= 0:
                del self._df[w]
        if self._vec is not None:
            self._vec.remove(n)

    def load(self, lessons: Iterable[Lesson]) -> list[str]:
        """Put stored lessons back (no dedup, no decay); returns the ids evicted to keep the bound."""
        for lesson in lessons:
            if lesson.id in self.lessons:
                continue
            self.lessons[lesson.id] = lesson
            self._index(lesson)
        if len(self.lessons) <= self.max_lessons:
            return []
        return [l.id for l in self._evict(max(l.last_used for l in self.lessons.values()))]

    def add(self, new: Lesson, now: float, dup: Any = ...) -> tuple[Lesson, str | None]:
        """Add `new`, or reinforce the lesson it duplicates (`dup`, when the caller already
        looked it up with `duplicate_of`). Returns (lesson held, id it merged into or None).
        Call `enforce_bound(now)` after a batch."""
        same = self.duplicate_of(new) if dup is ... else dup
        if same is None:
            self.lessons[new.id] = new
            self._index(new)
            return new, None
        same.score = max(same.score, new.score)
        same.tags = (same.tags + tuple(t for t in new.tags if t not in same.tags))[:MAX_TAGS]
        same.last_used = max(same.last_used, now)
        if same.outcome == "unknown":
            same.outcome = new.outcome
        return same, same.id

    def duplicate_of(self, new: Lesson) -> Lesson | None:
        """The held lesson `new` repeats: the same words, or a near-duplicate."""
        return self.lessons.get(new.id) or self._near(new)

    def _near(self, new: Lesson) -> Lesson | None:
        words = set(terms(new.text))
        if not words:
            return None
        df = self._df
        rare = sorted((w for w in words if df.get(w)), key=lambda w: (df[w], w))[:4]
        if not rare:
            return None   # no held lesson shares a single word with it
        close = []
        for n in self._bm25.search(" ".join(rare), 16):
            old = self.lessons[self._by_num[n]]
            other = set(terms(old.text))
            j = len(words & other) / len(words | other)
            if j >= self.dedup:
                close.append((-j, old.id))
        return self.lessons[min(close)[1]] if close else None

    def forget(self, lid: str) -> bool:
        if lid not in self.lessons:
            return False
        self._unindex(lid)
        del self.lessons[lid]
        return True

    def enforce_bound(self, now: float) -> list[Lesson]:
        """Evict past the bound; returns the evicted lessons."""
        return self._evict(now)

    def _evict(self, now: float) -> list[Lesson]:
        if len(self.lessons) <= self.max_lessons:
            return []
        excess = len(self.lessons) - self.low_water
        s = self.decay.strength
        weakest = heapq.nsmallest(excess, self.lessons.values(),
                                  key=lambda l: (s(l, now), l.created, l.id))
        for l in weakest:
            self.forget(l.id)
        return weakest

    def prune(self, now: float) -> list[Lesson]:
        """Drop every lesson whose strength has decayed below the floor; returns them."""
        s, floor = self.decay.strength, self.decay.floor
        out = sorted((l for l in self.lessons.values() if s(l, now) < floor), key=lambda l: l.id)
        for l in out:
            self.forget(l.id)
        return out

    # -- recall ------------------------------------------------------------------------
    def recall(self, query: str, k: int, now: float, tags: tuple[str, ...] = (),
               touch: bool = True) -> list[tuple[Lesson, float]]:
        """The k lessons most relevant to `query` (strongest first if it has no words), each
        with its relevance; with `touch`, each counts as used now."""
        if k <= 0 or not self.lessons:
            return []
        s = self.decay.strength
        want = set(tags)
        fused: dict[int, float] = {}
        if terms(query):
            wide = max(50, 4 * k)
            for r, n in enumerate(self._bm25.search(self._prune_query(query), wide)):
                fused[n] = fused.get(n, 0.0) + 1.0 / (_RRF + r + 1)
            if self._vec is not None:
                for r, n in enumerate(self._vec.search(query, wide)):
                    fused[n] = fused.get(n, 0.0) + 1.0 / (_RRF + r + 1)
            scored = []
            for n, rel in fused.items():
                lesson = self.lessons[self._by_num[n]]
                if want and not want <= set(lesson.tags):
                    continue
                st = s(lesson, now)
                scored.append((rel * (0.5 + 0.5 * st / (1.0 + st)), lesson))
        else:
            pool = self.lessons.values() if not want else (l for l in self.lessons.values() if want <= set(l.tags))
            scored = [(s(l, now), l) for l in pool]
        best = heapq.nsmallest(k, scored, key=lambda x: (-x[0], x[1].id))
        if touch:
            for _, lesson in best:
                lesson.uses += 1
                lesson.last_used = max(lesson.last_used, now)
        return [(lesson, rel) for rel, lesson in best]

    def _prune_query(self, query: str) -> str:
        """In a large memory, words found in more than a twentieth of the lessons weigh little
        in BM25 (idf under ~3, against ~10 for a rare word) but cost a pass over a long
        postings list: they are left out when the query has rarer words."""
        n = len(self.lessons)
        if n < 1000:
            return query
        df = self._df
        words = list(dict.fromkeys(terms(query)))
        keep = [w for w in words if df.get(w, 0) * 20 <= n]
        if not keep:
            keep = [min(words, key=lambda w: (df.get(w, 0), w))]
        return " ".join(keep)

    def strength(self, lid: str, now: float) -> float:
        return self.decay.strength(self.lessons[lid], now)


__all__ = ["DAY", "Decay", "Lesson", "LessonError", "LessonIndex", "MAX_K", "MAX_QUERY", "MAX_TEXT",
           "OUTCOMES", "check_tags", "lesson_id", "normal_form"]
