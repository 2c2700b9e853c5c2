"""Chunking, the token bound, and fitting retrieved text into a budget.

Invariants this module keeps (tested as properties):
- `chunk(text)` returns spans `[start, end)` that tile the text exactly: the first starts
  at 0, each starts where the previous ended, the last ends at `len(text)`, none is empty,
  so `"".join(text[s:e] for s, e in spans) == text` and every citation is a real slice.
- `tokens_of(text)` is what the text adds to `drivers.chat.prompt_bound` when sent as a
  message's content: the UTF-8 bytes of its JSON string form. The LLM device reserves by
  that bound, so a context fitted with it never makes a prompt's reservation larger
  than the budget said.
- `fit(items, budget)` keeps items in rank order and never returns more than `budget`
  tokens in total (an item that does not fit is skipped; a smaller one after it may fit).
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Callable, Sequence, TypeVar

MAX_CHUNK = 4000          # characters; a chunk is at most this long
MIN_CHUNK = 40
DEFAULT_CHUNK = 800

_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", "; ", ", ", " ")


def tokens_of(text: str) -> int:
    """Tokens `text` can cost in a prompt, by the bound the LLM device reserves with
    (one token per UTF-8 byte of the JSON string, quotes and escapes included)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def version_of(text: str) -> str:
    """The content hash a document version is cited by (SHA-256 of its UTF-8 text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_WS = re.compile(r"\s+")


def dedup_key(text: str) -> str:
    """Chunks with the same words in the same order (case and spacing aside) are one."""
    return hashlib.sha256(_WS.sub(" ", text).strip().lower().encode("utf-8")).hexdigest()


def chunk(text: str, size: int = DEFAULT_CHUNK) -> list[tuple[int, int]]:
    """Spans of at most `size` characters that tile `text`, cut at the strongest break
    (paragraph, line, sentence, clause, word) in the second half of the window, else hard."""
    if not MIN_CHUNK <= size <= MAX_CHUNK:
        raise ValueError(f"chunk size must be in {MIN_CHUNK}..{MAX_CHUNK}, got {size}")
    n = len(text)
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end = min(start + size, n)
        if end < n:
            lo = start + size // 2
            for brk in _BREAKS:
                at = text.rfind(brk, lo, end)
                if at >= 0:
                    end = at + len(brk)
                    break
        spans.append((start, end))
        start = end
    return spans


T = TypeVar("T")


def fit(items: Sequence[T], budget: int, cost: Callable[[T], int], *,
        limit: int | None = None) -> tuple[list[T], int, int]:
    """The items, in order, that fit in `budget` tokens together (at most `limit` of them);
    the tokens they use; and how many were passed over because they did not fit."""
    out: list[T] = []
    used = skipped = 0
    for it in items:
        if limit is not None and len(out) >= limit:
            break
        c = cost(it)
        if c <= budget - used:
            out.append(it)
            used += c
        else:
            skipped += 1
    return out, used, skipped


__all__ = ["DEFAULT_CHUNK", "MAX_CHUNK", "MIN_CHUNK", "chunk", "dedup_key", "fit", "tokens_of", "version_of"]
