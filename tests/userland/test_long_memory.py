"""Long memory through syscalls: across kernels, shared only through capabilities, in the VFS."""
from __future__ import annotations

import pytest

from agentos import AllowAll, Kernel
from agentos.drivers.lessons import LongMemoryDriver, StorePersist
from agentos.store import MemoryStore, record_run
from agentos.userland.long_memory import Lesson, LongMemory, lessons_section
from agentos.vfs import AccessDenied, NotFound, ReadOnly


def kernel(*drivers):
    k = Kernel(deterministic=True, policy=AllowAll())
    for d in drivers:
        k.register_driver(d)
    return k


def test_lessons_learned_in_one_kernel_are_recalled_in_the_next():
    store = MemoryStore()

    async def first(sys, args):
        mem = await LongMemory.open(sys)
        res = await mem.add([Lesson("Use the calculator for arithmetic.", tags=("math",), source_run="r0",
                                    source_step=3, outcome="failure", score=0.8),
                             {"text": "Read the notes file before answering.", "tags": ["files"]}])
        return [l.id for l in res.added]

    async def second(sys, args):
        mem = await LongMemory.open(sys, "lessons")
        got = await mem.recall_scored("what is 17 * 23, use arithmetic", 1)
        one = await mem.get(got[0][0].id)
        listed = await mem.list(tags=["files"])
        stats = await mem.stats()
        forgotten = await mem.forget([listed[0].id, "nope"])
        return got, one, [l.text for l in listed], stats["count"], forgotten, (await mem.stats())["count"]

    ids = kernel(LongMemoryDriver(StorePersist(store, "t"), clock=lambda: 100.0)).run(first, grant=["lessons"]).value
    k2 = kernel(LongMemoryDriver(StorePersist(store, "t"), clock=lambda: 200.0))
    got, one, listed, count, forgotten, count_after = k2.run(second, grant=["lessons"]).value
    (lesson, rel), = got
    assert lesson.id == ids[0] and rel > 0 and lesson.uses == 1 and lesson.last_used == 200.0
    assert (lesson.source_run, lesson.source_step, lesson.outcome) == ("r0", 3, "failure")
    assert one is not None and one.id == lesson.id
    assert listed == ["Read the notes file before answering."]
    assert (count, forgotten, count_after) == (2, [ids[1]], 1)
    # and the recall's use was saved too
    k3 = kernel(d3 := LongMemoryDriver(StorePersist(store, "t")))
    assert d3.index.lessons[ids[0]].uses == 1 and len(d3.index) == 1
    del k3


def test_recall_replays_from_the_journal_without_touching_the_memory():
    store = MemoryStore()
    drv = LongMemoryDriver(clock=lambda: 10.0)

    async def init(sys, args):
        mem = await LongMemory.open(sys)
        await mem.add([Lesson("Use the calculator for arithmetic.")])
        return [l.text for l in await mem.recall("arithmetic")]

    k = kernel(drv)
    rid = record_run(k, store, "mem")
    assert k.run(init, grant=["lessons"]).value == ["Use the calculator for arithmetic."]
    before = drv.index.lessons[next(iter(drv.index.lessons))].uses
    rep = Kernel.replay_from(store, rid, image=init)
    assert rep.identical and rep.result.value == ["Use the calculator for arithmetic."]
    assert drv.index.lessons[next(iter(drv.index.lessons))].uses == before   # the replay never asked it


def test_the_vfs_shows_a_process_the_lessons_of_memories_it_holds():
    drv = LongMemoryDriver(clock=lambda: 10.0)
    other = LongMemoryDriver(name="secret", clock=lambda: 10.0)

    async def child(sys, args):
        await sys.recv()

    async def init(sys, args):
        me = await sys.pid()
        mem = await LongMemory.open(sys)
        (lesson,) = (await mem.add([Lesson("Use the calculator for arithmetic.")])).added
        base = f"/agent/{me}/mem/semantic"
        out = {"semantic": await sys.vfs_list(base), "memories": await sys.vfs_list(f"{base}/lessons"),
               "ids": await sys.vfs_list(f"{base}/lessons/lessons"),
               "one": await sys.vfs_read(f"{base}/lessons/lessons/{lesson.id}")}
        for path, data in ((f"{base}/lessons/lessons/{lesson.id}", "forged"), (f"{base}/lessons/x", 1)):
            try:
                await sys.vfs_write(path, data)
            except ReadOnly as e:
                out.setdefault("refused", []).append(str(e))
        for path in (f"{base}/lessons/secret", f"{base}/lessons/lessons/0000"):
            try:
                await sys.vfs_read(path)
            except NotFound as e:
                out.setdefault("missing", []).append(str(e))
        # a child that holds no memory shows none; its parent may look (monitor right)
        pid, cap = await sys.spawn(child)
        out["child"] = await sys.vfs_list(f"/agent/{pid}/mem/semantic/lessons")
        await sys.send(cap, "bye")
        return out

    out = kernel(drv, other).run(init, grant=["lessons"]).value
    assert "lessons" in out["semantic"] and out["memories"] == ["lessons"]
    assert out["ids"] == list(drv.index.lessons) and out["one"]["text"] == "Use the calculator for arithmetic."
    assert len(out["refused"]) == 2 and all("read-only view" in e for e in out["refused"])
    assert "holds no long memory named 'secret'" in out["missing"][0] and "no lesson" in out["missing"][1]
    assert out["child"] == []


def test_another_process_tree_needs_a_capability_to_see_lessons():
    got = {}

    async def peer(sys, args):
        try:
            got["v"] = await sys.vfs_list(f"/agent/{args}/mem/semantic/lessons")
        except AccessDenied as e:
            got["v"] = str(e)

    async def init(sys, args):
        me = await sys.pid()
        await (await LongMemory.open(sys)).add([Lesson("a private lesson here")])
        _, cap = await sys.spawn(peer, args=me)
        await sys.waitpid(cap)

    kernel(LongMemoryDriver(clock=lambda: 1.0)).run(init, grant=["lessons"])
    assert "may not list /agent/1" in got["v"]


def test_lessons_section_formats_a_prompt_block():
    assert lessons_section([]) == ""
    assert lessons_section([Lesson("Be brief."), Lesson("Use tools.")]) == \
        "Lessons from earlier runs:\n- Be brief.\n- Use tools."


def test_adding_something_that_is_not_a_lesson_is_a_type_error():
    async def init(sys, args):
        await (await LongMemory.open(sys)).add(["a bare string"])  # type: ignore[list-item]

    res = kernel(LongMemoryDriver()).run(init, grant=["lessons"])
    assert "TypeError" in str(res.reason)


@pytest.mark.parametrize("bad", [{"text": 5}, {"text": "ok text", "score": float("nan")}])
def test_bad_lessons_through_the_kernel_are_typed_errors_and_the_kernel_goes_on(bad):
    from agentos import DriverError

    async def init(sys, args):
        mem = await LongMemory.open(sys)
        try:
            await mem.add([bad])
        except DriverError as e:
            return str(e), (await mem.stats())["count"]

    err, count = kernel(LongMemoryDriver()).run(init, grant=["lessons"]).value
    assert err.startswith("lessons: lesson 0:") and count == 0
