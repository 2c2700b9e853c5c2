"""The `lessons` device and its index: dedup, decay, bound, recall, persistence, refusals."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from agentos import AllowAll, CapError, DriverError, Kernel
from agentos.drivers.lesson_index import Decay, Lesson, LessonError, LessonIndex, lesson_id
from agentos.drivers.lessons import InMemoryPersist, LongMemoryDriver, StorePersist
from agentos.store import MemoryStore

DAY = 86_400.0


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def drv(**kw):
    clock = kw.pop("clock", Clock())
    d = LongMemoryDriver(clock=clock, **kw)
    return d, d.open(1, None), clock


def add(d, h, *texts, **fields):
    return d.write(h, {"op": "add", "lessons": [{"text": t, **fields} for t in texts]}).value


def test_add_dedups_exact_and_near_duplicates_and_reinforces():
    d, h, clock = drv()
    out = add(d, h, "Use the calculator for arithmetic.", "use the CALCULATOR for arithmetic!!")
    assert len(out["added"]) == 1 and out["merged"][0]["into"] == out["added"][0]["id"]
    clock.t += 10 * DAY
    near = add(d, h, "Always use the calculator for arithmetic", score=0.9, tags=["math"])
    assert near["added"] == [] and near["merged"][0]["into"] == out["added"][0]["id"]
    (held,) = d.index.lessons.values()
    assert held.score == 0.9 and held.tags == ("math",) and held.last_used == clock.t
    other = add(d, h, "Check the units of the final answer.")
    assert len(other["added"]) == 1 and len(d.index) == 2


def test_ids_come_from_the_words():
    assert lesson_id("Use the calculator.") == lesson_id("  use THE calculator ") != lesson_id("use a calculator")


def test_recall_ranks_by_relevance_then_strength_and_counts_uses():
    d, h, clock = drv()
    add(d, h, "Use the calculator for arithmetic.", "Read the file before answering questions about it.",
        "Answer with the number only.")
    rows = d.read(h, {"op": "recall", "query": "how do I do arithmetic", "k": 2}).value
    assert rows[0]["text"] == "Use the calculator for arithmetic." and rows[0]["uses"] == 1
    assert all(r["relevance"] > 0 for r in rows)
    # no words in the query: strongest first (the one just used is now strongest)
    rows = d.read(h, {"op": "recall", "query": "???", "k": 3, "touch": False}).value
    assert rows[0]["text"] == "Use the calculator for arithmetic." and rows[0]["uses"] == 1
    # tags filter
    add(d, h, "Use the calculator for money sums.", tags=["money"])
    rows = d.read(h, {"op": "recall", "query": "calculator", "k": 5, "tags": ["money"]}).value
    assert [r["tags"] for r in rows] == [["money"]]


def test_bound_evicts_the_weakest_and_decay_prunes():
    d, h, clock = drv(max_lessons=3, decay=Decay(half_life=DAY, age_half_life=10 * DAY, floor=0.05))
    add(d, h, "alpha lesson one", "beta lesson two", "gamma lesson three")
    d.read(h, {"op": "recall", "query": "beta", "k": 1})          # beta is used: stronger
    clock.t += DAY
    out = add(d, h, "delta lesson four")
    assert len(d.index) == 3 and len(out["evicted"]) == 1
    assert "beta lesson two" in {l.text for l in d.index.lessons.values()}
    clock.t += 30 * DAY
    gone = d.write(h, {"op": "prune"}).value["evicted"]
    assert len(gone) == 3 and len(d.index) == 0


def test_lessons_persist_across_drivers_in_a_store(tmp_path):
    from agentos.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "s.db", "fsync")
    d, h, clock = drv(persist=StorePersist(store, "team"))
    add(d, h, "Use the calculator for arithmetic.", source_run="r1", source_step=4, outcome="failure")
    d.read(h, {"op": "recall", "query": "calculator", "k": 1})
    d.close(h)                                   # what the kernel does when the process exits
    store.close()
    store = SqliteStore(tmp_path / "s.db", "fsync")
    d2, h2, _ = drv(persist=StorePersist(store, "team"))
    (l,) = d2.index.lessons.values()
    assert (l.text, l.source_run, l.source_step, l.outcome, l.uses) == \
        ("Use the calculator for arithmetic.", "r1", 4, "failure", 1)
    d3, _, _ = drv(persist=StorePersist(store, "other"))   # another namespace sees nothing
    assert len(d3.index) == 0
    store.close()


def test_a_failing_backend_leaves_memory_unchanged():
    class Broken(InMemoryPersist):
        fail = False

        def save(self, lessons):
            if self.fail:
                raise OSError("disk full")
            super().save(lessons)

        def delete(self, ids):
            if self.fail:
                raise OSError("disk full")
            super().delete(ids)

    p = Broken()
    d, h, _ = drv(persist=p, max_lessons=2)
    add(d, h, "first lesson here", "second lesson here")
    before = {i: l.to_dict() for i, l in d.index.lessons.items()}
    p.fail = True
    with pytest.raises(DriverError, match="could not be saved.*nothing was changed"):
        add(d, h, "third lesson here", "first lesson here")
    assert {i: l.to_dict() for i, l in d.index.lessons.items()} == before
    with pytest.raises(DriverError, match="could not be saved"):
        d.write(h, {"op": "forget", "ids": list(before)})
    assert {i: l.to_dict() for i, l in d.index.lessons.items()} == before


def test_use_counts_are_saved_on_close_or_with_the_next_write_not_on_every_recall():
    saves = []

    class Counting(InMemoryPersist):
        def save(self, lessons):
            saves.append([d["id"] for d in lessons])
            super().save(lessons)

    p = Counting()
    d, h, _ = drv(persist=p)
    add(d, h, "first lesson here", "second lesson here")
    saves.clear()
    for _ in range(5):
        d.read(h, {"op": "recall", "query": "first", "k": 1})
    assert saves == [] and d.index.lessons[lesson_id("first lesson here")].uses == 5
    d.close(h)
    assert saves == [[lesson_id("first lesson here")]] and p.data[lesson_id("first lesson here")]["uses"] == 5
    d.read(h, {"op": "recall", "query": "second", "k": 1})
    add(d, h, "third lesson here")
    assert set(saves[-1]) == {lesson_id("third lesson here"), lesson_id("second lesson here")}


def test_corrupt_stored_records_are_counted_not_loaded():
    p = InMemoryPersist([{"id": "x", "text": "fine lesson text"}, {"id": "y", "text": 5},
                         {"id": "z", "text": "ok text", "score": float("nan")}])
    d, h, _ = drv(persist=p)
    assert d.stats()["corrupt"] == 3 and len(d.index) == 0   # "x": its id does not match its text
    good = Lesson("fine lesson text").to_dict()
    d2, _, _ = drv(persist=InMemoryPersist([good]))
    assert len(d2.index) == 1 and d2.stats()["corrupt"] == 0


@pytest.mark.parametrize("req,needle", [
    ("add", "a request is a dict"),
    ({"op": "add"}, "non-empty list"),
    ({"op": "add", "lessons": [{"text": ""}]}, "must not be empty"),
    ({"op": "add", "lessons": [{"text": "x" * 5000}]}, "limit is 2000"),
    ({"op": "add", "lessons": [{"text": "ok text", "score": float("nan")}]}, "finite"),
    ({"op": "add", "lessons": [{"text": "ok text", "score": float("inf")}]}, "finite"),
    ({"op": "add", "lessons": [{"text": "ok text", "score": -1}]}, "score must be in"),
    ({"op": "add", "lessons": [{"text": "ok text", "score": True}]}, "must be a number"),
    ({"op": "add", "lessons": [{"text": "bad \ud800 text"}]}, "lone surrogate"),
    ({"op": "add", "lessons": [{"text": "nul \x00 text"}]}, "NUL"),
    ({"op": "add", "lessons": [{"text": "!!! ???"}]}, "no words"),
    ({"op": "add", "lessons": [{"text": "ok text", "tags": "math"}]}, "tags must be a list"),
    ({"op": "add", "lessons": [{"text": "ok text", "tags": ["t"] * 17}]}, "at most 16 tags"),
    ({"op": "add", "lessons": [{"text": "ok text", "source_step": -3}]}, "source_step"),
    ({"op": "add", "lessons": [{"text": "ok text", "outcome": "meh"}]}, "outcome must be one of"),
    ({"op": "add", "lessons": [{"text": "ok text", "uses": 99}]}, "unknown lesson field"),
    ({"op": "add", "lessons": [{"text": f"lesson {i}"} for i in range(101)]}, "at most 100"),
    ({"op": "recall", "query": "x"}, "unknown write op 'recall'"),
    ({"op": "drop"}, "unknown write op"),
])
def test_bad_writes_are_typed_errors_and_change_nothing(req, needle):
    d, h, _ = drv()
    add(d, h, "a lesson that stays")
    with pytest.raises(DriverError, match=needle):
        d.write(h, req)
    assert [l.text for l in d.index.lessons.values()] == ["a lesson that stays"]


@pytest.mark.parametrize("req,needle", [
    ({"op": "recall", "query": 5}, "query must be a string"),
    ({"op": "recall", "query": "x" * 9000}, "limit is 8192"),
    ({"op": "recall", "query": "x", "k": -1}, "k must be an int"),
    ({"op": "recall", "query": "x", "k": 10**9}, "k must be an int"),
    ({"op": "recall", "query": "x", "k": 2.5}, "k must be an int"),
    ({"op": "recall", "query": "x", "touch": "yes"}, "touch"),
    ({"op": "recall", "query": "x", "limit": 3}, "unknown recall field"),
    ({"op": "list", "limit": 10**6}, "limit must be"),
    ({"op": "get", "id": 3}, "get needs 'id'"),
    ({"op": "add", "lessons": []}, "unknown read op 'add'.*is a write"),
])
def test_bad_reads_are_typed_errors(req, needle):
    d, h, _ = drv()
    with pytest.raises(DriverError, match=needle):
        d.read(h, req)


def test_a_clock_that_returns_nan_is_refused():
    d, h, _ = drv(clock=lambda: float("nan"))
    with pytest.raises(DriverError, match="not a finite time"):
        add(d, h, "some lesson text")


def test_open_takes_no_parameters():
    d, _, _ = drv()
    with pytest.raises(DriverError, match="no parameters"):
        d.open(1, {"ns": "other"})


def test_through_the_kernel_capabilities_decide_who_reads_and_writes():
    """A read-only copy of the memory's capability can recall but not add; no capability, no memory."""
    d, _, _ = drv()

    async def reader(sys, args):
        h = await sys.open(sys.caps[0])
        got = await sys.read(h, {"op": "recall", "query": "calculator", "k": 3})
        try:
            await sys.write(h, {"op": "add", "lessons": [{"text": "sneaky lesson"}]})
            wrote = "wrote"
        except CapError as e:
            wrote = str(e)
        return [r["text"] for r in got], wrote

    async def stranger(sys, args):
        try:
            await sys.open("lessons")
        except CapError as e:
            return str(e)

    out = {}

    async def wrap_reader(sys, args):
        out["reader"] = await reader(sys, args)

    async def wrap_stranger(sys, args):
        out["stranger"] = await stranger(sys, args)

    async def init(sys, args):
        h = await sys.open("lessons")
        await sys.write(h, {"op": "add", "lessons": [{"text": "Use the calculator for arithmetic."}]})
        ro = await sys.derive(sys.caps[0], "open,read")
        _, c1 = await sys.spawn(wrap_reader, caps=[ro])
        _, c2 = await sys.spawn(wrap_stranger)
        await sys.waitpid(c1)
        await sys.waitpid(c2)

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(d)
    res = k.run(init, grant=["lessons"])
    assert res.reason.normal
    assert out["reader"][0] == ["Use the calculator for arithmetic."]
    assert "lacks the write right" in out["reader"][1]
    assert "holds no capability for device 'lessons'" in out["stranger"]
    assert [l.text for l in d.index.lessons.values()] == ["Use the calculator for arithmetic."]


def test_adds_are_stamped_with_the_recorded_run():
    from agentos.store import record_run

    store = MemoryStore()
    d, _, _ = drv()

    async def init(sys, args):
        h = await sys.open("lessons")
        return (await sys.write(h, {"op": "add", "lessons": [{"text": "a lesson from this run"}]}))["added"]

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(d)
    rid = record_run(k, store, "stamp")
    (lesson,) = k.run(init, grant=["lessons"]).value
    assert lesson["source_run"] == rid


def test_vector_recall_joins_bm25_when_an_embedder_is_given():
    vocab = ["arithmetic", "math", "sum", "file", "read", "document"]

    def embed(texts):  # a toy embedding: math words vs file words, so synonyms meet
        out = []
        for t in texts:
            w = t.lower()
            out.append([sum(w.count(x) for x in vocab[:3]) + 0.01, sum(w.count(x) for x in vocab[3:]) + 0.01])
        return out

    d, h, _ = drv(embed=embed)
    add(d, h, "Use the calculator for arithmetic.", "Read the document before answering.")
    rows = d.read(h, {"op": "recall", "query": "a math sum", "k": 1}).value   # no shared word with either
    assert rows[0]["text"] == "Use the calculator for arithmetic."
    assert d.stats()["vector"] is True


# -- properties -------------------------------------------------------------------------

texts = st.lists(st.text(alphabet="abcdefgh ", min_size=3, max_size=30).filter(lambda s: s.strip()),
                 min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(batches=st.lists(texts, min_size=1, max_size=8), bound=st.integers(1, 6),
       gaps=st.lists(st.floats(0, 1e7), min_size=8, max_size=8))
def test_property_the_memory_never_exceeds_its_bound(batches, bound, gaps):
    clock = Clock()
    d, h, _ = drv(max_lessons=bound, clock=clock)
    for batch, gap in zip(batches, gaps):
        clock.t += gap
        items = [t for t in batch if any(c.isalpha() for c in t)]
        if items:
            add(d, h, *items)
        assert len(d.index) <= bound
        d.read(h, {"op": "recall", "query": batch[0], "k": 2})
        assert len(d.index) <= bound


@settings(max_examples=200, deadline=None, derandomize=True)
@given(score=st.floats(0, 1), uses=st.integers(0, 10**6), created=st.floats(0, 1e9),
       idle=st.floats(0, 1e9), t1=st.floats(0, 1e10), dt=st.floats(0, 1e10),
       half=st.floats(1, 1e8), age_half=st.floats(1, 1e9))
def test_property_decay_is_monotone_in_time(score, uses, created, idle, t1, dt, half, age_half):
    l = Lesson("a lesson", score=score, uses=uses, created=created, last_used=created + idle)
    dec = Decay(half_life=half, age_half_life=age_half)
    a, b = dec.strength(l, t1), dec.strength(l, t1 + dt)
    assert math.isfinite(a) and math.isfinite(b) and 0 <= b <= a


def test_decay_settings_are_checked():
    for bad in (0, -1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError):
            Decay(half_life=bad)
    with pytest.raises(ValueError):
        LessonIndex(max_lessons=0)
    with pytest.raises(LessonError):
        Lesson.from_dict({"text": "ok text", "uses": -1})


words = st.sampled_from(["use", "the", "calculator", "file", "read", "answer", "check", "units", "always", "never"])


@settings(max_examples=150, deadline=None, derandomize=True)
@given(held=st.lists(st.lists(words, min_size=1, max_size=8), min_size=1, max_size=16),
       new=st.lists(words, min_size=1, max_size=8))
def test_property_the_rare_word_lookup_finds_what_a_full_scan_finds(held, new):
    """Near-duplicate lookup by rare words agrees with a scan of every lesson (short lessons)."""
    idx = LessonIndex(max_lessons=100)
    for ws in held:
        idx.add(Lesson(" ".join(ws)), 0.0)
    cand = Lesson(" ".join(new))
    mine = {w for w in new}
    scan = [l for l in idx.lessons.values()
            if len(mine & set(l.text.split())) / len(mine | set(l.text.split())) >= idx.dedup]
    found = idx.duplicate_of(cand)
    assert (found is None) == (not scan)
    if found is not None and found.id != cand.id:
        assert found in scan


def test_by_default_lessons_live_in_the_store_the_run_is_recorded_to():
    from agentos.store import record_run

    store = MemoryStore()

    async def add_one(sys, args):
        h = await sys.open("lessons")
        await sys.write(h, {"op": "add", "lessons": [{"text": "kept in the run's own store"}]})
        return (await sys.read(h, {"op": "stats"}))["count"]

    for recorded in (True, False):
        k = Kernel(deterministic=True, policy=AllowAll())
        d = LongMemoryDriver(namespace="team", clock=lambda: 1.0)
        k.register_driver(d)
        if recorded:
            record_run(k, store, "r")
        assert k.run(add_one, grant=["lessons"]).value == 1
        assert isinstance(d.persist, StorePersist if recorded else InMemoryPersist)
    assert [k for k, _ in store.kv_items("lessons/team/")] == [f"lessons/team/{lesson_id('kept in the run s own store')}"]
