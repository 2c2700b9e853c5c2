"""Context-as-a-service figures: retrieval latency at 1k and 100k chunks, BM25 only and
hybrid (BM25 + vectors fused by reciprocal rank).

Two levels. *Index*: `CaasIndex.search` alone (the service's work per query: no kernel,
no VFS, no job). *Kernel*: a whole `retrieve` call as an agent makes it: the caller spawns
a query job carved from its budget, the job embeds the query through the `embed` device
(hybrid only), asks the service, re-reads each cited document through the VFS under the
caller's authority, checks its content hash, dedups and fits the token budget.

Text is synthetic: chunks of 10 to 16 words from a 5,000-word Zipf vocabulary. Vectors
come from `hash_embed` (256 dimensions, model-free), not MiniLM: MiniLM is not installed
here, and embedding 100k chunks with it on a shared 2-core machine would take most of an
hour; a search costs the same whatever made the vectors. Query embedding cost (hash) is
inside the hybrid figures. `python bench/bench_caas.py [--quick]`.
"""
from __future__ import annotations

import bisect
import random
import statistics
import sys
import time
from typing import Any

from agentos import AllowAll, Kernel, Quota
from agentos.userland.caas import CaasIndex, CaasService, EmbedDriver, hash_embed, put_document, version_of
from agentos.userland.caas.chunk import chunk, dedup_key

_SYL = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "da", "go", "zu", "ri", "fa", "ben", "tor"]


class Corpus:
    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(7)
        words: set[str] = set()
        while len(words) < 5000:
            words.add("".join(rng.choice(_SYL) for _ in range(rng.randint(2, 4))))
        self.words = sorted(words)
        acc, self.cum = 0.0, []
        total = sum(1.0 / (i + 1) for i in range(len(self.words)))
        for i in range(len(self.words)):
            acc += 1.0 / (i + 1) / total
            self.cum.append(acc)
        self.rng = random.Random(seed)

    def word(self) -> str:
        return self.words[min(bisect.bisect_left(self.cum, self.rng.random()), len(self.words) - 1)]

    def sentence(self) -> str:
        return " ".join(self.word() for _ in range(self.rng.randint(10, 16))) + ". "

    def query(self) -> str:
        return " ".join(self.word() for _ in range(3))


def _pct(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def index_level(n: int, corpus: Corpus, queries: int) -> list[dict[str, Any]]:
    embed = hash_embed(256)
    idx = CaasIndex()
    per_doc = 100
    t0 = time.perf_counter()
    emb_s = 0.0
    for d in range(n // per_doc):
        texts = [corpus.sentence() for _ in range(per_doc)]
        doc = "".join(texts)
        spans, at = [], 0
        for t in texts:
            spans.append((at, at + len(t), t, dedup_key(t)))
            at += len(t)
        e0 = time.perf_counter()
        vecs = embed(texts)
        emb_s += time.perf_counter() - e0
        idx.put(f"/docs/{d}", version_of(doc), spans, vecs)
    build = time.perf_counter() - t0
    qs = [corpus.query() for _ in range(queries)]
    idx.search(qs[0], 20, embed([qs[0]])[0])      # first search stacks the matrix
    rows = []
    for mode in ("bm25", "hybrid"):
        lat = []
        for q in qs:
            t = time.perf_counter()
            vec = embed([q])[0] if mode == "hybrid" else None
            idx.search(q, 20, vec)
            lat.append((time.perf_counter() - t) * 1000)
        p50, p99 = _pct(lat)
        rows.append({"name": f"caas.index_{mode}_{n // 1000}k", "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                     "ops_per_s": round(1000 / statistics.mean(lat), 1), "unit": "searches/s", "n": n,
                     "notes": f"CaasIndex.search top 20 of {n:,} chunks ({mode}); built in {build:.1f} s of "
                              f"which hash embedding {emb_s:.1f} s"})
    return rows


def kernel_level(n: int, corpus: Corpus, queries: int, hybrid: bool) -> dict[str, Any]:
    """`retrieve` through the kernel: documents of 100 chunks in the caller's semantic
    memory, ingested through the service; then timed retrievals (wall clock)."""
    per_doc = 100
    docs = [[corpus.sentence() for _ in range(per_doc)] for _ in range(n // per_doc)]
    qs = [corpus.query() for _ in range(queries)]
    lat: list[float] = []
    info: dict[str, Any] = {}
    embed = "embed" if hybrid else None

    async def init(sys: Any, args: Any) -> str:
        svc = await CaasService.start(sys)
        t0 = time.perf_counter()
        for i, texts in enumerate(docs):
            p = await put_document(sys, f"d{i}", "".join(texts))
            await svc.ingest(sys, p, embed=embed, chunk_size=120)
        info["ingest_s"] = time.perf_counter() - t0
        info["stats"] = await svc.stats(sys)
        for q in qs:
            t = time.perf_counter()
            ctx = await svc.retrieve(sys, q, k=5, budget=2000, embed=embed, quota=Quota(tokens=10_000))
            lat.append((time.perf_counter() - t) * 1000)
            info.setdefault("chunks", []).append(len(ctx.chunks))
        await svc.stop(sys)
        return "done"

    k = Kernel(deterministic=True, policy=AllowAll(), record=False)
    k.register_driver(EmbedDriver(hash_embed(256)))
    res = k.run(init, grant=["embed"], quota=Quota(tokens=10**12))
    assert res.value == "done", res
    p50, p99 = _pct(lat)
    mode = "hybrid" if hybrid else "bm25"
    return {"name": f"caas.retrieve_{mode}_{n // 1000}k", "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
            "ops_per_s": round(1000 / statistics.mean(lat), 1), "unit": "retrievals/s", "n": n,
            "notes": f"retrieve() k=5 budget 2000 through the kernel ({mode}): job spawn, "
                     f"{'embed device, ' if hybrid else ''}service search of 20 candidates, VFS re-reads, hash "
                     f"check, dedup, fit; {info['stats']['chunks']:,} chunks ingested in {info['ingest_s']:.1f} s; "
                     f"mean chunks returned {statistics.mean(info['chunks']):.1f}"}


def run(quick: bool = True) -> list[dict[str, Any]]:
    corpus = Corpus()
    rows: list[dict[str, Any]] = []
    for n in (1000, 100_000):
        rows.extend(index_level(n, corpus, 200 if quick else 1000))
    rows.append(kernel_level(1000, corpus, 100 if quick else 300, hybrid=False))
    rows.append(kernel_level(1000, corpus, 100 if quick else 300, hybrid=True))
    rows.append(kernel_level(100_000, corpus, 50 if quick else 200, hybrid=False))
    if not quick:
        rows.append(kernel_level(100_000, corpus, 100, hybrid=True))
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for r in run(quick=quick):
        extra = f"  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms" if "p50_ms" in r else ""
        print(f"{r['name']:<28} {r.get('ops_per_s', ''):>10} {r.get('unit', '')}{extra}\n    {r.get('notes', '')}")
