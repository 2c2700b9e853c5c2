"""Embeddings for context retrieval: a deterministic hashing embedder and the `embed` device.

An embedding model is a model: agents reach it through the `embed` device, so each call
is capability-checked, policy-checked (`embed.vectors`), metered and journaled, and a
replayed run takes its vectors from the journal. The device wraps any function from a
list of texts to vectors: `hash_embed()` (built in, no model: signed feature hashing of
words and character trigrams, deterministic across processes and machines) or
`agentos.minilm_embed()` (all-MiniLM-L6-v2, the `embed` extra).

Metering: the device reserves and charges one token per UTF-8 byte of the texts, the
bound every tokenizer agentos talks to stays under (see `drivers.chat.prompt_bound`);
it has no tokenizer of its own to count exactly, so it charges the bound it reserved.
Requests: `read {"texts": [str, ...]}` → `[[float, ...], ...]` (rows of unit length).
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Sequence

from ...abi.driver import Driver, DriverResult
from ...abi.errors import DriverError
from ...abi.types import Cost

Embed = Callable[[list[str]], Sequence[Sequence[float]]]

MAX_TEXTS = 512            # per request
MAX_BYTES = 4 << 20        # per request, all texts together


def _features(text: str) -> list[str]:
    low = text.lower()
    words = [w for w in "".join(c if c.isalnum() else " " for c in low).split() if w]
    grams: list[str] = []
    for w in words:
        padded = f"<{w}>"
        grams.extend(padded[i:i + 3] for i in range(max(1, len(padded) - 2)))
    return words + grams


def hash_embed(dim: int = 256) -> Embed:
    """A deterministic embedder with no model: each word and character trigram adds ±1 to
    a bucket chosen by BLAKE2b, then rows are L2-normalised. Texts sharing words or word
    pieces are close; it knows no synonyms (MiniLM does)."""
    if type(dim) is not int or not 8 <= dim <= 4096:
        raise ValueError(f"hash_embed: dim must be an int in 8..4096, got {dim!r}")

    cache: dict[str, tuple[int, float]] = {}

    def bucket(f: str) -> tuple[int, float]:
        hit = cache.get(f)
        if hit is None:
            h = int.from_bytes(hashlib.blake2b(f.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
            hit = (h % dim, 1.0 if (h >> 32) & 1 else -1.0)
            if len(cache) < 200_000:
                cache[f] = hit
        return hit

    def embed(texts: list[str]) -> list[list[float]]:
        out = []
        for t in texts:
            v = [0.0] * dim
            for f in _features(t):
                i, s = bucket(f)
                v[i] += s
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([round(x / norm, 6) for x in v])
        return out

    return embed


MAX_DIM = 4096


def _plain(v: Any) -> Any:
    """A numpy array (what MiniLM and most embedders return) as plain lists of floats;
    anything else as it is (only numpy's own `tolist` is called, never a caller's)."""
    if type(v).__module__ == "numpy" and type(v).__name__ == "ndarray":
        return v.tolist()
    return v


def check_vectors(rows: Any, count: int, dim: int | None = None) -> list[list[float]]:
    """An embedder's reply as plain rows of floats, or `ValueError` saying what is wrong
    with it: not a list of `count` rows, a row that is not a list or tuple of real numbers
    (a bool, a str, NaN or an infinity is none), rows of mixed sizes, or rows whose size is
    not `dim` (when the caller knows it: the index's dimension). Nothing from a reply that
    fails here is used."""
    rows = _plain(rows)
    if type(rows) not in (list, tuple):
        raise ValueError(f"the embedder answered a {type(rows).__name__}, not a list of vectors")
    if len(rows) != count:
        raise ValueError(f"the embedder answered {len(rows)} vectors for {count} texts")
    out: list[list[float]] = []
    want = dim
    for i, row in enumerate(rows):
        row = _plain(row)
        if type(row) not in (list, tuple):
            raise ValueError(f"vector {i} is a {type(row).__name__}, not a list of numbers")
        if not 0 < len(row) <= MAX_DIM:
            raise ValueError(f"vector {i} has {len(row)} dimensions; 1..{MAX_DIM} are allowed")
        if want is not None and len(row) != want:
            raise ValueError(f"vector {i} has {len(row)} dimensions; {want} were expected")
        want = len(row)
        vec = []
        for x in row:
            t = type(x)
            if t is not float and t is not int:
                raise ValueError(f"vector {i} holds a {t.__name__}, not a number")
            if t is int and not -(1 << 53) <= x <= 1 << 53:
                raise ValueError(f"vector {i} holds an integer out of range")
            f = float(x)
            if not math.isfinite(f):
                raise ValueError(f"vector {i} holds a non-finite value ({f!r})")
            vec.append(f)
        out.append(vec)
    return out


def text_bytes(texts: Sequence[str]) -> int:
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)


class EmbedDriver(Driver):
    """The `embed` device: vectors for texts, metered by the byte bound."""

    name = "embed"

    def __init__(self, embed: Embed | None = None, *, name: str = "embed", dim: int | None = None) -> None:
        if dim is not None and (type(dim) is not int or not 0 < dim <= MAX_DIM):
            raise ValueError(f"EmbedDriver: dim must be an int in 1..{MAX_DIM}, got {dim!r}")
        self.name = name
        self.embed = embed if embed is not None else hash_embed()
        self.dim = dim

    def open(self, owner: int, params: Any) -> None:
        return None

    def _texts(self, req: Any) -> list[str]:
        texts = req.get("texts") if isinstance(req, dict) else None
        if not isinstance(texts, list) or not all(type(t) is str for t in texts):
            raise DriverError(f"{self.name}: a read is {{'texts': [str, ...]}}")
        if len(texts) > MAX_TEXTS:
            raise DriverError(f"{self.name}: {len(texts)} texts in one request; at most {MAX_TEXTS}")
        if text_bytes(texts) > MAX_BYTES:
            raise DriverError(f"{self.name}: over {MAX_BYTES} bytes of text in one request")
        return texts

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        texts = self._texts(req)
        return (f"{self.name}.vectors", {"texts": len(texts), "bytes": text_bytes(texts)})

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        return Cost(tokens=text_bytes(self._texts(req)))

    def read(self, handle: Any, req: Any) -> DriverResult:
        texts = self._texts(req)
        if not texts:
            return DriverResult([], Cost())
        try:
            out = check_vectors(self.embed(texts), len(texts), self.dim)
        except ValueError as e:
            raise DriverError(f"{self.name}: {e}") from None
        if self.dim is None and out:
            self.dim = len(out[0])       # one device, one vector space: every later reply must match
        return DriverResult(out, Cost(tokens=text_bytes(texts)))

    def write(self, handle: Any, data: Any) -> DriverResult:
        raise DriverError(f"{self.name}: the embed device is read-only")


__all__ = ["EmbedDriver", "Embed", "MAX_DIM", "check_vectors", "hash_embed"]
