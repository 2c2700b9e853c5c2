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

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ...kernel.recall import Bm25Recaller

RRF_K = 60            # the usual reciprocal-rank-fusion constant (Cormack et al.)


@dataclass(frozen=True, slots=True)
class ChunkRef:
    id: int
    path: str
    version: str
    start: int
    end: int
    dedup: str


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
        self.bm25 = Bm25Recaller()
        self.vectors = VectorIndex()
        self.next_id = 1

    def put(self, path: str, version: str, chunks: Sequence[tuple[int, int, str, str]],
            vectors: Sequence[Sequence[float]] | None = None) -> list[int]:
        """Replace `path` with this version's chunks ((start, end, text, dedup key) each);
        `vectors`, if given, one per chunk. Returns the new chunk ids."""
        if vectors is not None and len(vectors) != len(chunks):
            raise ValueError(f"{len(vectors)} vectors for {len(chunks)} chunks")
        if vectors is not None and vectors and self.vectors.dim and len(vectors[0]) != self.vectors.dim:
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
            # BM25 scores every matching chunk before it sorts, so asking for all costs the same
            lex = [c for c in self.bm25.search(query, len(self.chunks)) if readable(c)][:k]
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
