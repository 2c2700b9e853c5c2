"""The retrieval index the context service keeps: chunks by document version, BM25 and
vectors over them, and hybrid ranking by reciprocal rank fusion.

It holds no chunk text, only citations (path, version, span) and what ranks them (BM25
postings, vectors): text reaches a caller only through its own VFS read (`service.py`).

Invariants:
- One version per document. `put` replaces every chunk of the path in one step, so after
  a re-ingest no chunk of the old version is ever a candidate.
- A chunk id is never reused (ids only grow), so a stale id cannot alias a new chunk.
- `search` is deterministic: ties break by chunk id, fusion uses fixed constants.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ...kernel.recall import terms

RRF_K = 60            # the usual reciprocal-rank-fusion constant (Cormack et al.)


@dataclass(frozen=True, slots=True)
class ChunkRef:
    id: int
    path: str
    version: str
    start: int
    end: int
    dedup: str


class Bm25Index:
    """Okapi BM25 (k1 1.2, b 0.75, the kernel recaller's formula) scored with numpy: a
    query's postings are added into one score array, so a search over 100k chunks costs a
    few array operations per query term instead of a Python loop over every posting.
    Removed chunks are masked and compacted away once they are half the rows. Query terms
    are visited in sorted order, so sums (and ties) do not depend on hash seeds."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.ids: list[int] = []                  # row -> chunk id
        self.rows: dict[int, int] = {}            # chunk id -> row (live only)
        self.lengths: list[int] = []
        self.alive: list[bool] = []
        self.doc_terms: list[tuple[str, ...]] = []
        self.postings: dict[str, tuple[list[int], list[int]]] = {}   # term -> (rows, tfs)
        self.df: dict[str, int] = {}
        self.total = 0
        self.dead = 0
        self._np: dict[str, Any] = {}             # term -> (rows, tfs) arrays, rebuilt when stale
        self._arrays: Any = None                  # (lengths, alive, ids) arrays

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, cid: int, text: str) -> None:
        counts: dict[str, int] = {}
        for t in terms(text):
            counts[t] = counts.get(t, 0) + 1
        row = len(self.ids)
        self.ids.append(cid)
        self.rows[cid] = row
        n = sum(counts.values())
        self.lengths.append(n)
        self.alive.append(True)
        self.doc_terms.append(tuple(counts))
        self.total += n
        for t, tf in counts.items():
            p = self.postings.get(t)
            if p is None:
                p = self.postings[t] = ([], [])
            p[0].append(row)
            p[1].append(tf)
            self.df[t] = self.df.get(t, 0) + 1
            self._np.pop(t, None)
        self._arrays = None

    def remove(self, cid: int) -> None:
        row = self.rows.pop(cid, None)
        if row is None:
            return
        self.alive[row] = False
        self.total -= self.lengths[row]
        for t in self.doc_terms[row]:
            self.df[t] -= 1
        self.dead += 1
        self._arrays = None
        if self.dead * 2 > len(self.ids) and self.dead > 64:
            self._compact()

    def _compact(self) -> None:
        keep = [(self.ids[r], r) for r in range(len(self.ids)) if self.alive[r]]
        old_terms, old_len = self.doc_terms, self.lengths
        post = self.postings
        tf_of: dict[int, dict[str, int]] = {r: {} for _, r in keep}
        for t, (rows, tfs) in post.items():
            for r, tf in zip(rows, tfs):
                if r in tf_of:
                    tf_of[r][t] = tf
        self.__init__(self.k1, self.b)  # type: ignore[misc]
        for cid, r in keep:
            row = len(self.ids)
            self.ids.append(cid)
            self.rows[cid] = row
            self.lengths.append(old_len[r])
            self.alive.append(True)
            self.doc_terms.append(old_terms[r])
            self.total += old_len[r]
            for t, tf in tf_of[r].items():
                p = self.postings.get(t)
                if p is None:
                    p = self.postings[t] = ([], [])
                p[0].append(row)
                p[1].append(tf)
                self.df[t] = self.df.get(t, 0) + 1

    def ranked(self, query: str) -> Any:
        """Chunk ids of every chunk matching a query term, best first (ties: the newer chunk)."""
        import numpy as np  # type: ignore[import-not-found, import-untyped, unused-ignore]

        n_docs = len(self.rows)
        if not n_docs:
            return []
        if self._arrays is None:
            self._arrays = (np.asarray(self.lengths, dtype=np.float64), np.asarray(self.alive, dtype=bool),
                            np.asarray(self.ids, dtype=np.int64))
        lengths, alive, ids = self._arrays
        avg = self.total / n_docs or 1.0
        scores = np.zeros(len(self.ids), dtype=np.float64)
        hit = False
        for t in sorted(set(terms(query))):
            df = self.df.get(t, 0)
            if df <= 0:
                continue
            arr = self._np.get(t)
            if arr is None:
                rows, tfs = self.postings[t]
                arr = self._np[t] = (np.asarray(rows, dtype=np.int64), np.asarray(tfs, dtype=np.float64))
            rows_a, tf_a = arr
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            norm = tf_a * (self.k1 + 1) / (tf_a + self.k1 * (1 - self.b + self.b * lengths[rows_a] / avg))
            scores[rows_a] += idf * norm          # a term's rows are distinct: no np.add.at needed
            hit = True
        if not hit:
            return []
        scores[~alive] = 0.0
        nz = np.flatnonzero(scores > 0)
        order = np.lexsort((-ids[nz], -scores[nz]))   # newer first among equals, as the kernel recallers
        return ids[nz[order]].tolist()

    def search(self, query: str, k: int) -> list[int]:
        return list(self.ranked(query)[:k])


class VectorIndex:
    """Unit vectors in a numpy matrix; cosine search by one matrix-vector product."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.rows: dict[int, int] = {}
        self.matrix: Any = None
        self.dim = 0
        self._pending: list[tuple[int, Sequence[float]]] = []

    def add(self, cid: int, vec: Sequence[float]) -> None:
        if self.dim and len(vec) != self.dim:
            raise ValueError(f"vector of dimension {len(vec)} in an index of dimension {self.dim}")
        self.dim = len(vec)
        self._pending.append((cid, vec))

    def remove(self, cid: int) -> None:
        if self._pending:
            self._flush()
        row = self.rows.pop(cid, None)
        if row is None:
            return
        last = len(self.ids) - 1
        if row != last:
            moved = self.ids[last]
            self.matrix[row] = self.matrix[last]
            self.ids[row] = moved
            self.rows[moved] = row
        self.ids.pop()
        self.matrix = self.matrix[:last] if last else None

    def _flush(self) -> None:
        import numpy as np  # type: ignore[import-not-found, import-untyped, unused-ignore]

        m = np.asarray([v for _, v in self._pending], dtype=np.float32)
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        m = m / norms
        base = len(self.ids)
        self.matrix = m if self.matrix is None else np.vstack([self.matrix, m])
        for j, (cid, _) in enumerate(self._pending):
            self.rows[cid] = base + j
            self.ids.append(cid)
        self._pending.clear()

    def search(self, vec: Sequence[float], k: int) -> list[int]:
        import numpy as np  # type: ignore[import-not-found, import-untyped, unused-ignore]

        if self._pending:
            self._flush()
        if not self.ids or k <= 0 or len(vec) != self.dim:
            return []
        q = np.asarray(vec, dtype=np.float32)
        n = float(np.linalg.norm(q)) or 1.0
        scores = self.matrix @ (q / n)
        take = min(k, len(self.ids))
        cand = np.argpartition(-scores, take - 1)[:take] if take < len(self.ids) else np.arange(len(self.ids))
        ranked = sorted(cand.tolist(), key=lambda r: (-float(scores[r]), self.ids[r]))
        return [self.ids[r] for r in ranked]

    def __len__(self) -> int:
        return len(self.ids) + len(self._pending)


@dataclass(frozen=True, slots=True)
class Candidate:
    ref: ChunkRef
    score: float
    bm25_rank: int | None     # 1-based rank in each list it appeared in
    vector_rank: int | None


class CaasIndex:
    """Chunks of the current version of each document, ranked by BM25 and vectors."""

    def __init__(self) -> None:
        self.chunks: dict[int, ChunkRef] = {}
        self.docs: dict[str, tuple[str, list[int]]] = {}      # path -> (version, chunk ids)
        self.bm25 = Bm25Index()
        self.vectors = VectorIndex()
        self.next_id = 1

    def put(self, path: str, version: str, chunks: Sequence[tuple[int, int, str, str]],
            vectors: Sequence[Sequence[float]] | None = None) -> list[int]:
        """Replace `path` with this version's chunks ((start, end, text, dedup key) each);
        `vectors`, if given, one per chunk. Returns the new chunk ids."""
        if vectors is not None and len(vectors) != len(chunks):
            raise ValueError(f"{len(vectors)} vectors for {len(chunks)} chunks")
        if vectors is not None and len(vectors) and self.vectors.dim and len(vectors[0]) != self.vectors.dim:
            raise ValueError(f"vectors of dimension {len(vectors[0])}; this index holds {self.vectors.dim}")
        self.drop(path)
        ids = []
        for i, (start, end, text, key) in enumerate(chunks):
            cid = self.next_id
            self.next_id += 1
            self.chunks[cid] = ChunkRef(cid, path, version, start, end, key)
            self.bm25.add(cid, text)
            if vectors is not None:
                self.vectors.add(cid, vectors[i])
            ids.append(cid)
        self.docs[path] = (version, ids)
        return ids

    def drop(self, path: str) -> int:
        old = self.docs.pop(path, None)
        if old is None:
            return 0
        for cid in old[1]:
            self.chunks.pop(cid, None)
            self.bm25.remove(cid)
            self.vectors.remove(cid)
        return len(old[1])

    def search(self, query: str, k: int, vector: Sequence[float] | None = None,
               allow: Callable[[str], bool] | None = None) -> list[Candidate]:
        """The top `k` chunks by reciprocal rank fusion of BM25 and (if a query vector is
        given and chunks have vectors) cosine similarity; each list is cut at `k`. With
        `allow`, only chunks of paths it accepts are ranked at all (a chunk the asker may
        not read neither appears nor pushes another out)."""
        if allow is None:
            lex = self.bm25.search(query, k)
            vec = self.vectors.search(vector, k) if vector is not None and len(self.vectors) else []
        else:
            ok: dict[str, bool] = {}

            def readable(cid: int) -> bool:
                path = self.chunks[cid].path
                v = ok.get(path)
                if v is None:
                    v = ok[path] = bool(allow(path))
                return v
            lex = []
            for c in self.bm25.ranked(query):   # every match is scored anyway; take readable ones
                if readable(c):
                    lex.append(c)
                    if len(lex) >= k:
                        break
            vec = []
            if vector is not None and len(self.vectors):
                m = max(k, 16)
                while True:   # widen until k readable ones are found or the index is exhausted
                    got = self.vectors.search(vector, m)
                    vec = [c for c in got if readable(c)][:k]
                    if len(vec) >= k or len(got) < m:
                        break
                    m *= 4
        score: dict[int, float] = {}
        b_rank: dict[int, int] = {}
        v_rank: dict[int, int] = {}
        for r, cid in enumerate(lex, 1):
            b_rank[cid] = r
            score[cid] = score.get(cid, 0.0) + 1.0 / (RRF_K + r)
        for r, cid in enumerate(vec, 1):
            v_rank[cid] = r
            score[cid] = score.get(cid, 0.0) + 1.0 / (RRF_K + r)
        order = sorted(score, key=lambda c: (-score[c], c))[:k]
        return [Candidate(self.chunks[c], round(score[c], 9), b_rank.get(c), v_rank.get(c))
                for c in order if c in self.chunks]

    def stats(self) -> dict[str, int]:
        return {"documents": len(self.docs), "chunks": len(self.chunks), "vectors": len(self.vectors)}


__all__ = ["CaasIndex", "Candidate", "ChunkRef", "RRF_K", "VectorIndex"]
