"""Bus topics and patterns: validation, matching and containment (pure; no kernel state).

A topic is 1..`MAX_TOKENS` dot-separated tokens of `[A-Za-z0-9_-]`, at most `MAX_TOPIC`
characters in all, so it is also a valid NATS subject token sequence. A pattern may use
NATS wildcards: `*` is exactly one token, `>` (last token only) is one or more tokens.
The dead-letter stream of topic `t` is named `$dead.t`; `$` is not a token character, so
no process can publish on it.

Invariants: `matches(p, t)` is the NATS subject match; `covers(a, b)` holds exactly when
every topic `b` matches is matched by `a` (it is what narrowing a bus capability checks);
validation never lets a lone surrogate, an empty token or an over-long string through.
"""
from __future__ import annotations

import re
from typing import Any

from ..abi.errors import BadArgument
from ..kernel.args import shown

MAX_TOPIC = 256
MAX_TOKENS = 16
DEAD_PREFIX = "$dead."
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_CACHE_MAX = 4096
_seen_topics: dict[str, None] = {}     # concrete topics already validated (bounded)
_seen_patterns: dict[str, None] = {}


def _split(what: str, value: Any, wild: bool) -> tuple[str, ...]:
    if type(value) is not str:
        raise BadArgument(f"{what} must be a str, got {type(value).__name__} {shown(value)}")
    if not value or len(value) > MAX_TOPIC:
        raise BadArgument(f"{what} must be 1..{MAX_TOPIC} characters, got {len(value)}")
    tokens = tuple(value.split("."))
    if len(tokens) > MAX_TOKENS:
        raise BadArgument(f"{what} has {len(tokens)} tokens; at most {MAX_TOKENS}")
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if _TOKEN.fullmatch(tok):
            continue
        if wild and (tok == "*" or (tok == ">" and i == last)):
            continue
        why = ("an empty token" if not tok else "'>' before the last token" if tok == ">" and wild
               else "a wildcard (publish to a concrete topic)" if tok in ("*", ">")
               else "a character outside A-Z a-z 0-9 _ -")
        raise BadArgument(f"{what} {shown(value)} has {why} at token {i}")
    return tokens


def topic(what: str, value: Any) -> str:
    """A concrete topic (no wildcards), or `BadArgument` saying what is wrong."""
    if type(value) is str and value in _seen_topics:
        return value
    _split(what, value, False)
    if len(_seen_topics) >= _CACHE_MAX:
        _seen_topics.clear()
    _seen_topics[value] = None
    return value


def pattern(what: str, value: Any) -> str:
    """A subscription pattern (wildcards allowed), or `BadArgument`."""
    if type(value) is str and value in _seen_patterns:
        return value
    _split(what, value, True)
    if len(_seen_patterns) >= _CACHE_MAX:
        _seen_patterns.clear()
    _seen_patterns[value] = None
    return value


def matches(pat: str, top: str) -> bool:
    """NATS subject matching of a valid pattern against a valid topic."""
    if pat == top or pat == ">":
        return True
    p = pat.split(".")
    t = top.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(t) > i
        if i >= len(t) or (tok != "*" and tok != t[i]):
            return False
    return len(p) == len(t)


def covers(outer: str, inner: str) -> bool:
    """Every topic `inner` matches, `outer` matches too (both valid patterns)."""
    if outer == ">" or outer == inner:
        return True
    o = outer.split(".")
    n = inner.split(".")
    for i, tok in enumerate(o):
        if tok == ">":
            return len(n) > i
        if i >= len(n):
            return False
        if n[i] == ">":
            return False  # inner reaches arbitrarily deep; outer stops here
        if tok != "*" and (n[i] == "*" or n[i] != tok):
            return False
    return len(o) == len(n)


def is_literal(pat: str) -> bool:
    return "*" not in pat.split(".") and not pat.endswith(">")


__all__ = ["DEAD_PREFIX", "MAX_TOKENS", "MAX_TOPIC", "covers", "is_literal", "matches", "pattern", "topic"]
