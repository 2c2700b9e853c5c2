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
import numbers
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


def _similarity(x: Any) -> float:
    """A measure's value as a similarity: a real number clipped to [0, 1]; anything else
    (NaN, an infinity, a bool, a string, an integer past float's range) is 0.0."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return 0.0
    try:
        return _clip(float(x))
    except (OverflowError, ValueError, TypeError):
        return 0.0


class CheckedMeasure:
    """A registered measure held to the contract the verifiers rely on: for n texts an n×n
    matrix of numbers, each a similarity in [0, 1], with a unit diagonal. A value that is
    not a finite number counts as 0.0 (similar to nothing), one outside [0, 1] is clipped,
    and the diagonal is set to 1; a matrix of another shape is a `ValueError` naming the
    measure. Without this a NaN would pass as agreement (every comparison with it is false,
    so `s < threshold` is false) and an all-NaN row would divide by zero in `consensus`."""

    def __init__(self, inner: Any, name: str) -> None:
        if not callable(getattr(inner, "matrix", None)):
            raise TypeError(f"measure {name!r}: its factory made a {type(inner).__name__}, which has no matrix()")
        self.inner = inner
        self.name = name

    def matrix(self, texts: Sequence[str]) -> list[list[float]]:
        n = len(texts)
        raw = self.inner.matrix(texts)
        try:  # lists, tuples, a numpy array: anything that iterates as rows of numbers
            rows = [list(r) for r in raw] if not isinstance(raw, (str, bytes, dict)) else None
        except TypeError:
            rows = None
        if rows is None or len(rows) != n or any(len(r) != n for r in rows):
            raise ValueError(f"measure {self.name!r} returned a {type(raw).__name__} that is not a {n}x{n} "
                             f"matrix for {n} texts")
        out = [[_similarity(x) for x in r] for r in rows]
        for i in range(n):
            for j in range(i + 1, n):  # symmetric: the lower of the two readings
                out[i][j] = out[j][i] = min(out[i][j], out[j][i])
        return _unit_diag(out)


_CUSTOM: dict[str, Callable[[], Measure]] = {}


def register_measure(name: str, make: Callable[[], Measure]) -> None:
    """Make a measure available by name (a process receives measure names, not objects).
    Its matrices are checked on the way out (`CheckedMeasure`)."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_.-]{0,31}", name):
        raise ValueError(f"a measure name is a short lower-case identifier, got {name!r}")
    if name in ("minilm", "lexical", "exact"):
        raise ValueError(f"{name!r} is a built-in measure")
    if not callable(make):
        raise TypeError(f"register_measure: {name!r} needs a factory (a callable making the measure)")
    _CUSTOM[name] = make
    _CACHE.pop(name, None)  # a re-registration replaces what an earlier one made


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
        m = CheckedMeasure(_CUSTOM[name](), name)
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


__all__ = ["CheckedMeasure", "EmbeddingMeasure", "ExactMeasure", "LexicalMeasure", "MAX_MEASURED", "Measure", "canonical_json",
           "known_measure", "measure", "minilm_measure", "register_measure", "similarity"]
