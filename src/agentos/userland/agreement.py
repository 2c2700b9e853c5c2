"""How alike two answers are: the agreement measures used by cross-model verification and
the differential audit.

A `Measure` turns a list of answers into a symmetric similarity matrix with values in
[0, 1] and a unit diagonal. Three are built in, chosen by name:

- ``minilm``: cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the packaged
  model of the `embed` extra, `kernel.recall_vector.minilm_embed`), clipped at 0. For
  free text whose wording differs while its meaning agrees.
- ``lexical``: cosine similarity of word-count vectors (lower-cased alphanumeric words).
  Needs nothing installed; a rule, so it is said to be one.
- ``exact``: 1 when two structured answers are the same JSON value (keys sorted,
  whitespace ignored), else 0. For answers asked for under a schema.

Invariants: every measure is a pure function of the texts (MiniLM on CPU is), so a
process that computes agreement replays to the same numbers without journaling anything;
texts are cut to `MAX_MEASURED` characters first (the embedder reads 256 word pieces, and
a hostile 50 MB answer must not cost 50 MB of work); NaN never comes out (a zero vector is
similar to nothing but itself).
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any, Callable, Protocol, Sequence

MAX_MEASURED = 8_000

_WORD = re.compile(r"[0-9a-z]+")


class Measure(Protocol):
    name: str

    def matrix(self, texts: Sequence[str]) -> list[list[float]]: ...


def _clip(x: float) -> float:
    if not math.isfinite(x):
        return 0.0
    return 1.0 if x > 1.0 else (0.0 if x < 0.0 else x)


def _unit_diag(m: list[list[float]]) -> list[list[float]]:
    for i in range(len(m)):
        m[i][i] = 1.0
    return m


class LexicalMeasure:
    """Cosine similarity of word counts: a rule, not a model."""

    name = "lexical"

    def matrix(self, texts: Sequence[str]) -> list[list[float]]:
        vecs = [Counter(_WORD.findall(t[:MAX_MEASURED].lower())) for t in texts]
        norms = [math.sqrt(sum(c * c for c in v.values())) for v in vecs]
        n = len(vecs)
        m = [[0.0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                a, b = vecs[i], vecs[j]
                if norms[i] == 0 or norms[j] == 0:
                    s = 1.0 if norms[i] == norms[j] == 0 else 0.0
                else:
                    small, big = (a, b) if len(a) <= len(b) else (b, a)
                    s = sum(c * big.get(w, 0) for w, c in small.items()) / (norms[i] * norms[j])
                m[i][j] = m[j][i] = _clip(s)
        return _unit_diag(m)


def canonical_json(text: str) -> str | None:
    """The answer as canonical JSON (sorted keys, no spaces), or None if it is not JSON.
    A fenced ```json block is unwrapped first."""
    t = text.strip()
    if t.startswith("```") and t.endswith("```") and len(t) >= 6:
        t = t[3:-3].removeprefix("json").strip()
    try:
        return json.dumps(json.loads(t), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (ValueError, RecursionError, TypeError):
        return None


class ExactMeasure:
    """Structured answers agree when they are the same JSON value; text that is not JSON
    agrees only with identical text (after trimming)."""

    name = "exact"

    def matrix(self, texts: Sequence[str]) -> list[list[float]]:
        keys = [canonical_json(t) or ("\x00text:" + t.strip()) for t in texts]
        n = len(keys)
        return [[1.0 if keys[i] == keys[j] else 0.0 for j in range(n)] for i in range(n)]


class EmbeddingMeasure:
    """Cosine similarity of sentence embeddings from `embed` (texts -> vectors), clipped at 0."""

    def __init__(self, embed: Callable[[list[str]], Any], name: str = "embedding") -> None:
        if not callable(embed):
            raise TypeError("EmbeddingMeasure needs a function from a list of texts to vectors")
        self.embed = embed
        self.name = name

    def matrix(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        raw = self.embed([t[:MAX_MEASURED] for t in texts])
        vecs = [[float(x) for x in row] for row in raw]
        if len(vecs) != len(texts) or len({len(v) for v in vecs}) != 1:
            raise ValueError(f"{self.name}: the embedder returned {len(vecs)} vectors of uneven size "
                             f"for {len(texts)} texts")
        norms = [math.sqrt(sum(x * x for x in v)) for v in vecs]
        n = len(vecs)
        m = [[0.0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                if norms[i] == 0 or norms[j] == 0 or not (math.isfinite(norms[i]) and math.isfinite(norms[j])):
                    s = 0.0
                else:
                    s = sum(a * b for a, b in zip(vecs[i], vecs[j])) / (norms[i] * norms[j])
                m[i][j] = m[j][i] = _clip(s)
        return _unit_diag(m)


def minilm_measure() -> EmbeddingMeasure:
    """MiniLM embeddings (raises ImportError naming the `embed` extra when it is missing)."""
    from ..kernel.recall_vector import minilm_embed

    return EmbeddingMeasure(minilm_embed(), name="minilm")


_CUSTOM: dict[str, Callable[[], Measure]] = {}


def register_measure(name: str, make: Callable[[], Measure]) -> None:
    """Make a measure available by name (a process receives measure names, not objects)."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_.-]{0,31}", name):
        raise ValueError(f"a measure name is a short lower-case identifier, got {name!r}")
    if name in ("minilm", "lexical", "exact"):
        raise ValueError(f"{name!r} is a built-in measure")
    _CUSTOM[name] = make


_CACHE: dict[str, Measure] = {}


def measure(name: str) -> Measure:
    """The measure called `name`: minilm, lexical, exact, or one registered."""
    got = _CACHE.get(name)
    if got is not None:
        return got
    if name == "minilm":
        m: Measure = minilm_measure()
    elif name == "lexical":
        m = LexicalMeasure()
    elif name == "exact":
        m = ExactMeasure()
    elif name in _CUSTOM:
        m = _CUSTOM[name]()
    else:
        raise ValueError(f"unknown agreement measure {name!r}: minilm, lexical, exact"
                         + (", " + ", ".join(sorted(_CUSTOM)) if _CUSTOM else ""))
    _CACHE[name] = m
    return m


def known_measure(name: Any) -> bool:
    return isinstance(name, str) and (name in ("minilm", "lexical", "exact") or name in _CUSTOM)


def similarity(name: str, a: str, b: str) -> float:
    """One pair's similarity under the named measure."""
    return measure(name).matrix([a, b])[0][1]


__all__ = ["EmbeddingMeasure", "ExactMeasure", "LexicalMeasure", "MAX_MEASURED", "Measure", "canonical_json",
           "known_measure", "measure", "minilm_measure", "register_measure", "similarity"]
