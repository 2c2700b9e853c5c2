"""Long-memory figures: lessons stored and recalled per second, BM25 at 1k, 100k and 1M
lessons, vector recall at 1k and 100k.

Through the kernel (a `lessons` device read or write per syscall) beside the same work
on the device object alone (the ceiling: no capability check, policy, journal or event).
Lessons are synthetic: 8 to 16 words drawn from a 5,000-word Zipf vocabulary, so common
words have long postings lists as in real text. Vector recall at 1k uses the real MiniLM
embedder (its throughput is reported too); at 100k the index holds 384-dimension vectors
from a hashing embedder, because embedding 100k texts with MiniLM on a shared 2-core
machine takes most of an hour; a search costs the same whatever made the vectors, and
the query-embedding time MiniLM adds per recall is reported beside it.
`python bench/bench_learning.py [--quick]`: quick uses 1k/10k/100k and 1k/10k.
"""
from __future__ import annotations

import gc
import hashlib
import random
import resource
import sys
import time
from typing import Any, Callable

from agentos import AllowAll, Kernel
from agentos.drivers.lesson_index import Lesson
from agentos.drivers.lessons import InMemoryPersist, LongMemoryDriver

_SYL = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "da", "go", "zu", "ri", "fa", "ben", "tor"]


def vocabulary(n: int = 5000) -> list[str]:
    rng = random.Random(7)
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(_SYL) for _ in range(rng.randint(2, 4))))
    return sorted(out)


class Corpus:
    """Deterministic lessons and queries with Zipf-distributed words."""

    def __init__(self, seed: int = 0) -> None:
        self.words = vocabulary()
        weights = [1.0 / (i + 1) for i in range(len(self.words))]
        total = sum(weights)
        acc = 0.0
        self.cum = []
        for w in weights:
            acc += w / total
            self.cum.append(acc)
        self.rng = random.Random(seed)

    def _word(self) -> str:
        import bisect

        return self.words[min(bisect.bisect_left(self.cum, self.rng.random()), len(self.words) - 1)]

    def lesson(self) -> str:
        return " ".join(self._word() for _ in range(self.rng.randint(8, 16)))

    def query(self) -> str:
        return " ".join(self._word() for _ in range(self.rng.randint(3, 5)))


def hashing_embed(dim: int = 384) -> Callable[[list[str]], Any]:
    """A 384-dimension bag-of-words hashing embedder (the shape of MiniLM's vectors)."""
    import numpy as np

    def embed(texts: list[str]) -> Any:
        m = np.zeros((len(texts), dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.split():
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                m[i, h % dim] += 1.0 if (h >> 32) & 1 else -1.0
        return m
    return embed


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _filled(n: int, corpus: Corpus, embed: Any = None) -> tuple[LongMemoryDriver, float]:
    """A memory of n lessons, loaded as a restart would load them (no dedup on the way in)."""
    d = LongMemoryDriver(InMemoryPersist(), max_lessons=max(n, 1), embed=embed, clock=lambda: 1.0e9)
    lessons = [Lesson(corpus.lesson(), created=1.0e9 - i, last_used=1.0e9 - i) for i in range(n)]
    t0 = time.perf_counter()
    d.index.load(lessons)
    return d, time.perf_counter() - t0


def _recall_rate(d: LongMemoryDriver, corpus: Corpus, n: int, k: int = 5) -> float:
    h = d.open(0, None)
    qs = [corpus.query() for _ in range(n)]
    t = _cpu(lambda: [d.read(h, {"op": "recall", "query": q, "k": k, "touch": False}) for q in qs])
    return n / t


def _through_kernel(d: LongMemoryDriver, reqs: list[tuple[str, Any]]) -> float:
    async def init(sys: Any, args: Any) -> None:
        h = await sys.open("lessons")
        read, write = sys.read, sys.write
        for op, req in reqs:
            await (read(h, req) if op == "read" else write(h, req))

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(d)
    return _cpu(lambda: k.run(init, grant=["lessons"]))


def _directly(d: LongMemoryDriver, reqs: list[tuple[str, Any]]) -> float:
    h = d.open(0, None)
    return _cpu(lambda: [d.read(h, r) if op == "read" else d.write(h, r) for op, r in reqs])


def run(quick: bool = True) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    corpus = Corpus()

    # -- storing: batches of 10 lessons per add, through the kernel and directly ------------
    n_adds = 300 if quick else 2000
    batches = [[{"text": corpus.lesson(), "tags": ["bench"], "score": 0.5} for _ in range(10)] for _ in range(n_adds)]
    adds = [("write", {"op": "add", "lessons": b}) for b in batches]
    tk = _through_kernel(LongMemoryDriver(clock=lambda: 1.0, max_lessons=10**6), adds)
    tc = _directly(LongMemoryDriver(clock=lambda: 1.0, max_lessons=10**6), adds)
    rows.append({"name": "lessons.store", "ops_per_s": round(10 * n_adds / tk), "ceiling_ops_per_s":
                 round(10 * n_adds / tc), "ratio": round(tc / tk, 3), "unit": "lessons/s",
                 "notes": f"adds of 10 (dedup on), {10 * n_adds} lessons, in-memory persist; ceiling: the device "
                          f"without the kernel"})
    try:
        import tempfile

        from agentos.drivers.lessons import StorePersist
        from agentos.store.sqlite import SqliteStore

        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(f"{tmp}/s.db", "group")
            d = LongMemoryDriver(StorePersist(store, "bench"), clock=lambda: 1.0, max_lessons=10**6)
            few = adds[: min(100, n_adds)]
            t0 = time.perf_counter()
            _directly(d, few)
            wall = time.perf_counter() - t0
            store.close()
        rows.append({"name": "lessons.store_sqlite", "ops_per_s": round(10 * len(few) / wall), "unit": "lessons/s",
                     "notes": f"adds of 10 persisted to SQLite (WAL, synchronous=FULL), each add waits for its "
                              f"commit; wall time, {len(few)} adds"})
    except Exception as e:  # pragma: no cover - the row says why
        rows.append({"name": "lessons.store_sqlite", "error": f"{type(e).__name__}: {e}"})

    # -- recall (touching: uses and last_used are updated) through the kernel, at 1k ----------
    d1k, _ = _filled(1000, corpus)
    recalls = [("read", {"op": "recall", "query": corpus.query(), "k": 5}) for _ in range(2000 if quick else 10000)]
    tk = _through_kernel(d1k, recalls)
    tc = _directly(_filled(1000, Corpus())[0], recalls)
    rows.append({"name": "lessons.recall_1k", "ops_per_s": round(len(recalls) / tk), "ceiling_ops_per_s":
                 round(len(recalls) / tc), "ratio": round(tc / tk, 3), "unit": "recalls/s",
                 "notes": "BM25 top 5 of 1,000 lessons, uses counted; ceiling: the device without the kernel"})

    # -- BM25 at scale ---------------------------------------------------------------------------
    for n in ((10_000, 100_000) if quick else (100_000, 1_000_000)):
        before = _rss_mb()
        d, build = _filled(n, corpus)
        rate = _recall_rate(d, corpus, 200 if n >= 10**6 else 500)
        rows.append({"name": f"lessons.recall_bm25_{_k(n)}", "ops_per_s": round(rate, 1), "unit": "recalls/s",
                     "n": n, "notes": f"BM25 top 5 of {n:,} lessons on the device; index built in {build:.1f} s; "
                                      f"peak RSS grew {max(0.0, _rss_mb() - before):.0f} MB"})
        del d
        gc.collect()

    # -- vectors -----------------------------------------------------------------------------------
    try:
        if quick:
            raise ImportError("MiniLM is not loaded in --quick runs (loading and embedding take a minute)")
        from agentos import minilm_embed

        embed = minilm_embed()
        texts = [corpus.lesson() for _ in range(1000)]
        embed(texts[:8])                                    # warm up
        per_text = _cpu(lambda: embed(texts[:200])) / 200   # CPU time of every torch thread
        d = LongMemoryDriver(max_lessons=2000, embed=embed, clock=lambda: 1.0)
        d.index.load([Lesson(t) for t in texts])
        h = d.open(0, None)
        build = _cpu(lambda: d.read(h, {"op": "recall", "query": "warm", "k": 5, "touch": False}))
        qs = [corpus.query() for _ in range(50)]
        minilm_recall = _cpu(lambda: [d.read(h, {"op": "recall", "query": q, "k": 5, "touch": False})
                                      for q in qs]) / len(qs)
        rows.append({"name": "lessons.embed_minilm", "ops_per_s": round(1 / per_text, 1), "unit": "texts/s",
                     "notes": f"all-MiniLM-L6-v2, CPU seconds of all threads: 100k lessons take "
                              f"{100_000 * per_text / 60:.0f} CPU-min, 1M {1_000_000 * per_text / 3600:.1f} CPU-h"})
        rows.append({"name": "lessons.recall_vector_1k", "ops_per_s": round(1 / minilm_recall, 1),
                     "unit": "recalls/s", "notes": f"BM25 + MiniLM cosine (fused) over 1,000 lessons, query "
                                                   f"embedded each time (CPU time); index embedded in "
                                                   f"{build:.1f} CPU-s"})
    except ImportError as e:
        minilm_recall = None
        rows.append({"name": "lessons.recall_vector_1k", "ops_per_s": 0.0, "notes": f"skipped: {e}"})
    for n in ((1000, 10_000) if quick else (1000, 100_000)):
        d, _ = _filled(n, corpus, embed=hashing_embed())
        h = d.open(0, None)
        build = _cpu(lambda: d.read(h, {"op": "recall", "query": "warm up", "k": 5, "touch": False}))
        rate = _recall_rate(d, corpus, 300)
        extra = ""
        if minilm_recall is not None:
            extra = f"; with MiniLM, add its per-query embedding (about {1000 * minilm_recall:.0f} ms at 1k, above)"
        rows.append({"name": f"lessons.recall_vector_{_k(n)}_hashvec", "ops_per_s": round(rate, 1),
                     "unit": "recalls/s", "n": n,
                     "notes": f"BM25 + cosine over {n:,} 384-d vectors (hashing embedder), matrix built in "
                              f"{build:.1f} s{extra}"})
        del d
        gc.collect()
    return rows


def _k(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for r in run(quick):
        print({k: v for k, v in r.items() if k != "module"})
