"""Topic validation, NATS wildcard matching (against a reference matcher) and pattern
containment (against brute force over every topic of a small alphabet)."""
from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, strategies as st

from agentos.abi.errors import BadArgument
from agentos.services import topics as T

LITERALS = ["a", "b", "c"]
token = st.sampled_from(LITERALS)
topic_st = st.lists(token, min_size=1, max_size=4).map(".".join)


@st.composite
def pattern_st(draw: st.DrawFn) -> str:
    toks = draw(st.lists(st.sampled_from(LITERALS[:2] + ["*"]), min_size=1, max_size=4))
    if draw(st.booleans()):
        toks[-1] = ">"
    return ".".join(toks)


def reference(pat: str, top: str) -> bool:
    """NATS semantics as a regex: `*` one token, a trailing `>` one or more tokens."""
    parts = []
    for tok in pat.split("."):
        parts.append(r"[^.]+" if tok == "*" else r"[^.]+(?:\.[^.]+)*" if tok == ">" else re.escape(tok))
    return re.fullmatch(r"\.".join(parts), top) is not None


@given(pattern_st(), topic_st)
def test_matching_agrees_with_the_reference_matcher(pat: str, top: str) -> None:
    assert T.matches(pat, top) == reference(pat, top)


def _universe(n: int) -> list[str]:
    return [".".join(p) for k in range(1, n + 1) for p in itertools.product(LITERALS, repeat=k)]


UNIVERSE = _universe(5)


@given(pattern_st(), pattern_st())
def test_covers_is_exactly_containment_of_the_matched_sets(outer: str, inner: str) -> None:
    contained = all(reference(outer, t) for t in UNIVERSE if reference(inner, t))
    assert T.covers(outer, inner) == contained, (outer, inner)


@pytest.mark.parametrize("bad", [
    "", ".", "a..b", "a.", ".a", "a b", "a\x00b", "a.\ud800", "x" * 257, ".".join(["a"] * 17), "a/b",
    "$dead.a", "a.>.b", 3, None, b"a.b", ["a"],
])
def test_hostile_patterns_are_refused(bad: object) -> None:
    with pytest.raises(BadArgument):
        T.pattern("p", bad)


@pytest.mark.parametrize("bad", ["a.*", "a.>", ">", "*"])
def test_wildcards_in_a_published_topic_are_refused(bad: str) -> None:
    T.pattern("p", bad)
    with pytest.raises(BadArgument, match="wildcard"):
        T.topic("t", bad)


def test_a_str_subclass_is_refused_not_run() -> None:
    class Evil(str):
        def split(self, *a: object) -> list[str]:  # would run inside the kernel
            raise RuntimeError("ran")

    with pytest.raises(BadArgument):
        T.topic("t", Evil("a.b"))
