"""The MMU: paging past the mem watermark, summaries, swap, recall, pinning, OOM."""
from __future__ import annotations

from agentos import Bm25Recaller, KeywordRecaller, Quota, SegmentKind, SyscallError
from tests.support.boot import boot


def test_paging_keeps_resident_tokens_under_the_quota_and_leaves_a_summary():
    async def init(sys, args):
        for i in range(20):
            await sys.remember(f"fact number {i} about topic{i}", tokens=10)
            ws = await sys.working_set()
            assert sum(s.tokens for s in ws) <= 100
        return await sys.working_set()

    k, res = boot(init, quota=Quota(mem=100))
    ws = res.value
    kinds = [s.kind for s in ws]
    assert SegmentKind.SUMMARY in kinds
    assert ws[-1].body == "fact number 19 about topic19"
    assert k.metrics()["pages_evicted"] > 0


def test_evicted_segments_come_back_through_recall():
    async def init(sys, args):
        await sys.remember("the launch code is swordfish", tokens=10)
        for i in range(30):
            await sys.remember(f"filler {i}", tokens=10)
        resident = [s.body for s in await sys.working_set()]
        hits = await sys.recall("launch code", k=1)
        resident_after = [s.body for s in await sys.working_set()]
        return resident, [h.body for h in hits], resident_after

    _, res = boot(init, quota=Quota(mem=100))
    before, hits, after = res.value
    assert "the launch code is swordfish" not in before
    assert hits == ["the launch code is swordfish"]
    assert "the launch code is swordfish" in after


def test_pinned_segments_are_never_evicted_and_oom_kills():
    async def hoarder(sys, args):
        first = await sys.remember("keep me", tokens=40, pin=True)
        for i in range(10):
            await sys.remember(f"x{i}", tokens=10)
        ws = [s.body for s in await sys.working_set()]
        assert "keep me" in ws
        await sys.remember("second pin", tokens=40, pin=True)
        await sys.remember("third pin", tokens=40, pin=True)   # 120 pinned > 100
        return "unreachable"

    async def init(sys, args):
        _, c = await sys.spawn(hoarder, quota=Quota(mem=100))
        return str(await sys.waitpid(c)), (await sys.budget()).remaining["mem"]

    k, res = boot(init, quota=Quota(mem=1000))
    assert res.value == ("quota(mem)", 1000)  # OOM kill, and all its memory came back
    assert any(e.kind == "oom" for e in k.events.events())


def test_forget_and_pin_errors_are_clear():
    async def init(sys, args):
        sid = await sys.remember("a")
        await sys.forget(sid)
        errs = []
        for call in (lambda: sys.forget(sid), lambda: sys.pin(sid)):
            try:
                await call()
            except SyscallError as e:
                errs.append(str(e))
        return errs

    _, res = boot(init)
    assert res.value == ["forget: pid 1 has no segment 1",
                         "pin: segment 1 is not resident in pid 1 (recall it first)"]


def test_keyword_and_bm25_recallers_rank_relevant_first():
    docs = {1: "apples and oranges", 2: "the quick brown fox", 3: "fox hunting with apples",
            4: "fox fox fox"}
    for r in (KeywordRecaller(), Bm25Recaller()):
        for i, d in docs.items():
            r.add(i, d)
        assert r.search("fox apples", 2)[0] == 3
        r.remove(3)
        assert 3 not in r.search("fox apples", 5)
        assert r.search("nothing matches", 3) == []
    b = Bm25Recaller()
    for i, d in docs.items():
        b.add(i, d)
    assert b.search("fox", 1) == [4]  # term frequency counts in BM25


def test_bm25_recaller_plugs_into_the_kernel():
    async def init(sys, args):
        for t in ("alpha beta", "beta beta beta gamma", "delta"):
            await sys.remember(t)
        return [s.body for s in await sys.recall("beta", k=1)]

    _, res = boot(init, recaller=Bm25Recaller)
    assert res.value == ["beta beta beta gamma"]
