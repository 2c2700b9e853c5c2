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
  With `between=join_cost(sep)`, every item after the first also pays for the separator,
  so the chosen texts joined by `sep` cost at most `budget` as one message, and as
  separate messages too: `tokens_of(sep.join(chosen)) <= used <= budget` and
  `sum(tokens_of(t) for t in chosen) <= used`.
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


def join_cost(sep: str) -> int:
    """What each separator adds when texts are joined into one message, beyond the quotes
    each text was already counted with: JSON escapes character by character, so
    `tokens_of(a + sep + b) == tokens_of(a) + tokens_of(b) + tokens_of(sep) - 4`, and the
    cost is never taken below 0 (so the separate texts stay within the budget too)."""
    return max(0, tokens_of(sep) - 4)


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
    if type(size) is not int or not MIN_CHUNK <= size <= MAX_CHUNK:
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
        limit: int | None = None, between: int = 0) -> tuple[list[T], int, int]:
    """The items, in order, that fit in `budget` tokens together (at most `limit` of them),
    each after the first also paying `between` (its separator: `join_cost(sep)`); the
    tokens they use; and how many were passed over because they did not fit."""
    if type(between) is not int or between < 0:
        raise ValueError(f"fit: between must be an int >= 0, got {between!r}")
    out: list[T] = []
    used = skipped = 0
    for it in items:
        if limit is not None and len(out) >= limit:
            break
        c = cost(it) + (between if out else 0)
        if c <= budget - used:
            out.append(it)
            used += c
        else:
            skipped += 1
    return out, used, skipped


__all__ = ["DEFAULT_CHUNK", "MAX_CHUNK", "MIN_CHUNK", "chunk", "dedup_key", "fit", "join_cost", "tokens_of",
           "version_of"]
