"""Recallers: find the segments (resident or swapped) most relevant to a query.

A recaller keeps its own incremental index, updated on remember/forget, so a recall is a
lookup over the query's terms, never a scan of every segment.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Protocol

_WORD = re.compile(r"\w+")


def terms(text: Any) -> list[str]:
    if not isinstance(text, str):
        text = str(text)
    return _WORD.findall(text.lower())


class Recaller(Protocol):
    def add(self, seg_id: int, body: Any) -> None: ...
    def remove(self, seg_id: int) -> None: ...
    def search(self, query: str, k: int) -> list[int]: ...


class KeywordRecaller:
    """Scores a segment by how many distinct query terms it contains; newer wins ties."""

    __slots__ = ("_index", "_doc_terms")

    def __init__(self) -> None:
        self._index: dict[str, set[int]] = {}
        self._doc_terms: dict[int, frozenset[str]] = {}

    def add(self, seg_id: int, body: Any) -> None:
        ts = frozenset(terms(body))
        self._doc_terms[seg_id] = ts
        index = self._index
        for t in ts:
            s = index.get(t)
            if s is None:
                index[t] = {seg_id}
            else:
                s.add(seg_id)

    def remove(self, seg_id: int) -> None:
        ts = self._doc_terms.pop(seg_id, None)
        if not ts:
            return
        for t in ts:
            s = self._index.get(t)
            if s is not None:
                s.discard(seg_id)
                if not s:
                    del self._index[t]

    def search(self, query: str, k: int) -> list[int]:
        scores: dict[int, int] = {}
        index = self._index
        for t in set(terms(query)):
            for sid in index.get(t, ()):
                scores[sid] = scores.get(sid, 0) + 1
        if not scores:
            return []
        best = sorted(scores.items(), key=lambda kv: (-kv[1], -kv[0]))
        return [sid for sid, _ in best[:k]]


class Bm25Recaller:
    """Okapi BM25 over an incremental inverted index (k1=1.2, b=0.75 by default)."""

    __slots__ = ("k1", "b", "_postings", "_lengths", "_total_len", "_doc_terms")

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._postings: dict[str, dict[int, int]] = {}
        self._lengths: dict[int, int] = {}
        self._total_len = 0
        self._doc_terms: dict[int, tuple[str, ...]] = {}

    def add(self, seg_id: int, body: Any) -> None:
        ts = terms(body)
        self._lengths[seg_id] = len(ts)
        self._total_len += len(ts)
        postings = self._postings
        counts = Counter(ts)
        self._doc_terms[seg_id] = tuple(counts)
        for t, n in counts.items():
            p = postings.get(t)
            if p is None:
                postings[t] = {seg_id: n}
            else:
                p[seg_id] = n

    def remove(self, seg_id: int) -> None:
        length = self._lengths.pop(seg_id, None)
        if length is None:
            return
        self._total_len -= length
        postings = self._postings
        for t in self._doc_terms.pop(seg_id, ()):
            p = postings.get(t)
            if p is not None:
                p.pop(seg_id, None)
                if not p:
                    del postings[t]

    def search(self, query: str, k: int) -> list[int]:
        n_docs = len(self._lengths)
        if not n_docs:
            return []
        avg = self._total_len / n_docs or 1.0
        k1, b = self.k1, self.b
        lengths = self._lengths
        scores: dict[int, float] = {}
        for t in set(terms(query)):
            p = self._postings.get(t)
            if not p:
                continue
            idf = math.log(1.0 + (n_docs - len(p) + 0.5) / (len(p) + 0.5))
            for sid, tf in p.items():
                norm = tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[sid] / avg))
                scores[sid] = scores.get(sid, 0.0) + idf * norm
        best = sorted(scores.items(), key=lambda kv: (-kv[1], -kv[0]))
        return [sid for sid, _ in best[:k]]
