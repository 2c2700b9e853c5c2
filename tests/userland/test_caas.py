"""Context as a service: each stage named for the failure it guards against, run on the
kernel live and replayed (ingest, index, retrieve, fit), plus the properties of chunking
and fitting, and the hostile inputs a caller or a forger can send."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, strategies as st

from agentos import AllowAll, BadArgument, Kernel, Quota
from agentos.drivers.chat import prompt_bound
from agentos.userland.caas import (
    CaasError, CaasService, EmbedDriver, chunk, fit, hash_embed, ingest, put_document, retrieve, tokens_of,
    version_of,
)
from agentos.userland.caas.chunk import join_cost
from agentos.vfs import MemoryBackend, install

GUIDE = ("Kernels schedule processes. A process waits in recv until a message arrives.\n\n"
         "Budgets are carved from the parent account at spawn, all or nothing.\n\n"
         "The flight recorder chains audit records with HMAC so tampering is detected.\n\n"
         "Capabilities are unforgeable references; revoking one revokes its children.")
FAQ = ("How do budgets work? Budgets are carved from the parent account at spawn, all or nothing.\n\n"
       "What is a capability? An unforgeable reference held in a table.")


def kernel(mounts=None):
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(EmbedDriver(hash_embed(64)))
    if mounts:
        install(k, mounts=mounts, checkpoints=False)
    return k


def run(k, body, *, grant=("embed",), quota=Quota(tokens=1_000_000)):
    out = {}

    async def init(sys, args):
        svc = await CaasService.start(sys)
        out["value"] = await body(sys, svc)
        out["stats"] = await svc.stats(sys)
        await svc.stop(sys)
        return "done"

    res = k.run(init, grant=list(grant), quota=quota)
    assert res.value == "done", res
    return out


def test_retrieval_is_hybrid_cited_and_each_citation_resolves_to_the_exact_text():
    async def body(sys, svc):
        g = await put_document(sys, "guide", GUIDE)
        rep = await svc.ingest(sys, g, embed="embed", chunk_size=80)
        ctx = await svc.retrieve(sys, "how are budgets carved at spawn", k=3, budget=500, embed="embed")
        checks = []
        for c in ctx.chunks:
            doc = await sys.vfs_read(c.citation.path)
            checks.append((doc[c.citation.start:c.citation.end] == c.text, version_of(doc) == c.citation.version))
        return rep, ctx, checks

    rep, ctx, checks = run(kernel(), body)["value"]
    assert rep.chunks >= 4 and rep.version == version_of(GUIDE) and rep.tokens > 0
    assert ctx.chunks and "carved" in ctx.chunks[0].text
    assert ctx.chunks[0].bm25_rank == 1 and ctx.chunks[0].vector_rank is not None
    assert checks and all(a and b for a, b in checks)


def test_stale_chunks_after_reingest_are_never_returned():
    async def body(sys, svc):
        p = await put_document(sys, "notes", "The launch code word is pineapple. " * 3)
        await svc.ingest(sys, p)
        before = await svc.retrieve(sys, "launch code word", k=5, budget=1000)
        await put_document(sys, "notes", "The launch code word is mango now. " * 3)
        rep = await svc.ingest(sys, p)
        after = await svc.retrieve(sys, "launch code word pineapple", k=5, budget=1000)
        return before, rep, after

    before, rep, after = run(kernel(), body)["value"]
    assert "pineapple" in before.text()
    assert rep.replaced >= 1
    assert after.chunks and "pineapple" not in after.text() and "mango" in after.text()
    assert after.stale == ()   # the index itself held no old chunk


def test_a_document_changed_without_reingest_is_dropped_by_its_content_hash():
    async def body(sys, svc):
        p = await put_document(sys, "notes", "The vault opens at dawn. " * 4)
        await svc.ingest(sys, p)
        await put_document(sys, "notes", "The vault opens at dusk. " * 4)   # no re-ingest
        return p, await svc.retrieve(sys, "vault opens", k=5, budget=1000)

    k = kernel()
    p, ctx = run(k, body)["value"]
    assert ctx.chunks == () and ctx.stale == (p,)
    failures = [e.data[2] for e in k.events.events() if e.kind == "log" and e.data[1] == "failure"]
    assert [(f["kind"], f["detector"], f["subject"]) for f in failures] == [("stale_memory", "rule:content_hash", p)]


def test_context_never_overflows_the_budget_measured_by_the_llm_reservation_bound():
    async def body(sys, svc):
        for i in range(6):
            await svc.ingest(sys, await put_document(sys, f"d{i}", f"Budget fact {i}: " + "carved budgets " * 20))
        out = []
        for budget in (1, 50, 200, 333, 5000):
            out.append((budget, await svc.retrieve(sys, "budget carved", k=10, budget=budget)))
        return out

    for budget, ctx in run(kernel(), body)["value"]:
        # the chunks fit as one message joined by the separator, and as separate messages
        joined = tokens_of(ctx.text()) if ctx.chunks else 0      # no chunks: nothing to send
        assert sum(c.tokens for c in ctx.chunks) <= ctx.tokens == joined <= budget
        for c in ctx.chunks:    # the same count the LLM device reserves for that text
            empty = prompt_bound({"messages": [{"role": "user", "content": ""}]})
            assert prompt_bound({"messages": [{"role": "user", "content": c.text}]}) - empty == c.tokens - 2
        if budget == 5000:
            assert len(ctx.chunks) == 6
        if budget == 1:
            assert ctx.chunks == () and ctx.over_budget > 0


def test_duplicate_chunks_are_returned_once():
    async def body(sys, svc):
        await svc.ingest(sys, await put_document(sys, "guide", GUIDE), chunk_size=80)
        await svc.ingest(sys, await put_document(sys, "copy", GUIDE.upper()), chunk_size=80)
        return await svc.retrieve(sys, "flight recorder HMAC tampering", k=5, budget=5000)

    ctx = run(kernel(), body)["value"]
    texts = [" ".join(c.text.lower().split()) for c in ctx.chunks]
    assert len(texts) == len(set(texts)) and ctx.duplicates >= 1


def test_text_the_caller_may_not_read_is_never_returned_and_revocation_applies_at_retrieval():
    shared = MemoryBackend()
    seen = {}

    async def reader(sys, args):
        mine = await retrieve(sys, "capabilities revoking", k=5, budget=2000)
        seen["reader"] = ([c.text for c in mine.chunks], mine.denied, mine.candidates)

    async def body(sys, svc):
        from agentos import CapError
        await sys.vfs_write("/shared/caps", GUIDE)
        granted = [c for c in sys.caps if (await sys.cap_info(c)).get("target") == "vfs:/shared"][0]
        cap = await sys.derive(granted, rights=["read"])   # a revocable right to pass on
        await ingest(sys, "/shared/caps", caps=[cap])
        # a process that holds no capability for the mount asks for the same text
        _, rcap = await sys.spawn(reader, caps=["spawn"])
        denied_reader = await sys.waitpid(rcap)
        with_cap = await retrieve(sys, "capabilities revoking", k=5, budget=2000, caps=[cap])
        await sys.revoke(cap)
        with pytest.raises(CapError):
            await retrieve(sys, "capabilities revoking", k=5, budget=2000, caps=[cap])
        after_revoke = await retrieve(sys, "capabilities revoking", k=5, budget=2000)
        return str(denied_reader), with_cap, after_revoke

    k = kernel({"/shared": shared})
    out = run(k, body, grant=("embed", "vfs:/shared"))["value"]
    reader_exit, with_cap, after_revoke = out
    assert with_cap.chunks and any("revok" in c.text for c in with_cap.chunks)
    assert after_revoke.chunks == () and after_revoke.candidates == 0
    assert reader_exit == "normal"
    texts, denied, candidates = seen["reader"]
    assert texts == [] and candidates == 0     # the service ranks nothing it could not read


class Gate:
    """Capabilities still allow the read; this policy refuses it once the gate closes (a
    rule the service cannot see: only the job's own VFS read meets it)."""

    governs_kernel = frozenset({"vfs"})

    def __init__(self):
        self.open = True

    def check(self, pid, action, args, *, dry_run=False):
        from agentos.abi.policy import Decision
        if action == "vfs.read" and "/secret" in args["path"] and not self.open:
            return Decision(False, "no-secrets", "closed", effect="raise")
        return Decision(True, "allow", "")


def test_a_read_policy_refuses_at_retrieval_even_where_capabilities_reach():
    gate = Gate()

    async def body(sys, svc):
        granted = [c for c in sys.caps if (await sys.cap_info(c)).get("target") == "vfs:/shared"][0]
        await sys.vfs_write("/shared/secret", "The launch code is 0000. " * 3)
        await sys.vfs_write("/shared/public", "The launch window is at noon. " * 3)
        await ingest(sys, "/shared/secret", caps=[granted])
        await ingest(sys, "/shared/public", caps=[granted])
        before = await retrieve(sys, "launch", k=5, caps=[granted])
        gate.open = False
        after = await retrieve(sys, "launch", k=5, caps=[granted])
        return before, after

    k = Kernel(deterministic=True, policy=gate)
    install(k, mounts={"/shared": MemoryBackend()}, checkpoints=False)
    before, after = run(k, body, grant=("vfs:/shared",))["value"]
    assert "0000" in before.text()
    assert after.candidates == 2 and after.denied == 1 and "0000" not in after.text() and "noon" in after.text()


def test_a_process_asking_the_service_directly_learns_nothing_of_documents_it_cannot_read():
    seen = {}

    async def prober(sys, args):
        from agentos.userland.rpc import call
        svc = await sys.lookup("caas")
        seen["bare"] = await call(sys, svc, {"op": "search", "query": "launch code", "k": 50})
        # its own self capability reaches only its own tree
        seen["own"] = await call(sys, svc, {"op": "search", "query": "launch code", "k": 50})
        seen["drop"] = await call(sys, svc, {"op": "drop", "path": args})
        good = "The launch code is fake."
        seen["poison"] = await call(sys, svc, {"op": "index", "path": args, "version": version_of(good),
                                              "chunks": [[0, len(good), good]]})

    async def body(sys, svc):
        p = await put_document(sys, "secret", "The launch code is 0000. " * 3)
        await svc.ingest(sys, p)
        _, cap = await sys.spawn(prober, args=p, caps=[])
        await sys.waitpid(cap)
        return await svc.retrieve(sys, "launch code", k=3)

    ctx = run(kernel(), body)["value"]
    assert seen["bare"] == {"candidates": []} and seen["own"] == {"candidates": []}
    assert "error" in seen["drop"] and "error" in seen["poison"]
    assert "0000" in ctx.text()          # the owner still finds it: nothing was dropped or replaced


def test_a_service_impostor_cannot_make_a_job_return_text_that_is_not_at_its_citation():
    async def impostor(sys, args):
        await sys.register("fake")
        for answer in args:
            msg = await sys.recv()
            await sys.send(msg.caps[0], answer, corr=msg.corr)

    async def body(sys, svc):
        p = await put_document(sys, "guide", GUIDE)
        v = version_of(GUIDE)
        lie = {"path": p, "version": v, "start": 0, "end": 7, "score": 1.0, "dedup": "x", "text": "FORGED"}
        stale = {**lie, "version": "0" * 64}
        answers = [{"candidates": [lie, stale]}, {"candidates": [{**lie, "start": "0"}]}, {"candidates": 5},
                   {"candidates": [{**lie, "bm25_rank": [[["deep"]]]}]}, {"candidates": [{**lie, "score": math.inf}]},
                   {"candidates": [{**lie, "path": p + "/../guide"}]}, {"candidates": [lie] * 401}]
        await sys.spawn(impostor, args=answers)
        await sys.yield_()
        got = await retrieve(sys, "anything", service="fake")
        errors = []
        for _ in range(len(answers) - 1):
            try:
                await retrieve(sys, "anything", service="fake")
            except CaasError as e:
                errors.append(str(e))
        return got, errors

    got, errors = run(kernel(), body)["value"]
    assert [c.text for c in got.chunks] == [GUIDE[:7]] and got.stale == (got.chunks[0].citation.path,)
    assert len(errors) == 6 and all("malformed" in e or "candidate" in e for e in errors), errors


def test_the_caller_pays_for_its_embeddings_and_the_service_spends_nothing():
    async def body(sys, svc):
        p = await put_document(sys, "guide", GUIDE)
        before = (await sys.budget()).remaining["tokens"]
        rep = await svc.ingest(sys, p, embed="embed", quota=Quota(tokens=5000))
        await svc.retrieve(sys, "budgets", embed="embed", quota=Quota(tokens=100))
        after = (await sys.budget()).remaining["tokens"]
        return rep, before - after

    out = run(kernel(), body)
    rep, paid = out["value"]
    # the service draws on the same bank as the caller: had it spent anything, it would show
    assert rep.tokens == len(GUIDE.encode()) and paid == rep.tokens + len(b"budgets")


def test_a_job_whose_quota_cannot_pay_for_embeddings_fails_typed():
    async def body(sys, svc):
        p = await put_document(sys, "guide", GUIDE)
        with pytest.raises(CaasError, match="quota"):
            await svc.ingest(sys, p, embed="embed", quota=Quota(tokens=10))
        return (await svc.stats(sys))["chunks"]

    assert run(kernel(), body)["value"] == 0


# -- hostile inputs ------------------------------------------------------------------

def test_hostile_arguments_are_refused_with_typed_errors():
    async def body(sys, svc):
        p = await put_document(sys, "guide", GUIDE)
        await svc.ingest(sys, p)
        seen = []
        for call in (lambda: put_document(sys, "big", "x" * (50 << 20)),
                     lambda: put_document(sys, "bad", "lone \ud800 surrogate"),
                     lambda: put_document(sys, "../up", "x"),
                     lambda: svc.retrieve(sys, "q", budget=0),
                     lambda: svc.retrieve(sys, "q", budget=-5),
                     lambda: svc.retrieve(sys, "q", k=math.nan),
                     lambda: svc.retrieve(sys, "q", k=math.inf),
                     lambda: svc.retrieve(sys, "q", k=True),
                     lambda: svc.retrieve(sys, "q", k=10**30),
                     lambda: svc.retrieve(sys, "\udfff", k=1),
                     lambda: svc.retrieve(sys, "q" * 100_000),
                     lambda: svc.ingest(sys, p, chunk_size=1)):
            try:
                await call()
                seen.append(None)
            except BadArgument as e:
                seen.append(str(e))
        return seen

    seen = run(kernel(), body)["value"]
    assert all(s is not None for s in seen), seen


def test_a_forged_index_batch_whose_text_does_not_hash_to_its_version_is_refused():
    async def body(sys, svc):
        from agentos.userland.rpc import call
        good = "real text of the document"
        forged = {"op": "index", "path": "/agent/1/mem/semantic/caas/x", "version": version_of(good),
                  "chunks": [[0, len(good), good.replace("real", "fake")]], "vectors": None}
        gaps = {"op": "index", "path": "/x", "version": version_of(good), "chunks": [[1, 3, "ea"]]}
        nan = {"op": "index", "path": "/x", "version": version_of(good), "chunks": [[0, len(good), good]],
               "vectors": [[math.nan]]}
        junk = [forged, gaps, nan, {"op": "search", "query": "x", "k": math.nan}, {"op": "search", "query": 5},
                {"op": "nope"}, {"op": "index"}]
        return [await call(sys, svc.cap, j) for j in junk] + [await svc.stats(sys)]

    *answers, stats = run(kernel(), body)["value"]
    assert all("error" in a for a in answers), answers
    assert stats["chunks"] == 0 and stats["refused"] == len(answers)


# -- properties -------------------------------------------------------------------------

@given(st.text(max_size=3000), st.integers(40, 4000))
def test_chunking_tiles_the_document_exactly(text, size):
    spans = chunk(text, size)
    assert "".join(text[s:e] for s, e in spans) == text
    assert all(0 < e - s <= size for s, e in spans)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert (spans[0][0] if spans else 0) == 0


@given(st.lists(st.text(max_size=200), max_size=30), st.integers(0, 3000), st.integers(1, 40))
def test_fitting_never_exceeds_the_budget(texts, budget, limit):
    chosen, used, _ = fit(texts, budget, tokens_of, limit=limit)
    assert used == sum(tokens_of(t) for t in chosen) <= budget and len(chosen) <= limit
    # order is kept: chosen is a subsequence of the input
    it = iter(texts)
    assert all(any(c == t for t in it) for c in chosen)


@given(st.lists(st.text(max_size=200), max_size=30), st.integers(0, 3000), st.integers(1, 40),
       st.sampled_from(["\n\n", "", " ", "\n---\n", "\t", "\u00a7\u00a7", "\"\\"]) | st.text(max_size=8))
def test_fitted_texts_joined_by_their_separator_never_exceed_the_budget(texts, budget, limit, sep):
    chosen, used, _ = fit(texts, budget, tokens_of, limit=limit, between=join_cost(sep))
    assert (tokens_of(sep.join(chosen)) if chosen else 0) <= used <= budget
    assert sum(tokens_of(t) for t in chosen) <= used
    if sep == "\n\n" and chosen:
        assert tokens_of(sep.join(chosen)) == used      # exact for the default separator


def test_a_context_joined_by_its_separator_stays_within_a_tight_budget():
    async def body(sys, svc):
        for i in range(4):
            await svc.ingest(sys, await put_document(sys, f"d{i}", f"Budget fact {i}: " + "carved budgets " * 5))
        wide = await svc.retrieve(sys, "budget carved", k=2, budget=5000)
        tight = sum(c.tokens for c in wide.chunks)     # the two chunks, counted apart
        out = []
        for sep in ("\n\n", " ", "", "\n=====\n"):
            out.append((sep, await svc.retrieve(sys, "budget carved", k=2, budget=tight, sep=sep)))
        refused = None
        try:
            out[1][1].text("\n=====\n")                 # a costlier separator than fitted
        except BadArgument as e:
            refused = str(e)
        return tight, out, refused

    tight, out, refused = run(kernel(), body)["value"]
    for sep, ctx in out:
        assert tokens_of(ctx.text()) <= ctx.tokens <= tight and ctx.sep == sep
        assert sum(c.tokens for c in ctx.chunks) <= tight
    assert len(out[0][1].chunks) == 1 and len(out[2][1].chunks) == 2   # "\n\n" costs 2 more; "" costs less
    assert refused and "separator" in refused


@given(st.text(max_size=300))
def test_the_token_count_is_the_llm_devices_reservation_for_that_text(text):
    empty = prompt_bound({"messages": [{"role": "user", "content": ""}]})
    assert prompt_bound({"messages": [{"role": "user", "content": text}]}) - empty == tokens_of(text) - 2
    assert tokens_of(text) == len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@given(st.lists(st.tuples(st.booleans(), st.lists(st.sampled_from("abcdefghij"), min_size=1, max_size=8)),
                max_size=120),
       st.lists(st.sampled_from("abcdefghij"), min_size=1, max_size=3))
def test_the_array_bm25_ranks_exactly_as_the_kernels_bm25_recaller(ops, query):
    from agentos.kernel.recall import Bm25Recaller
    from agentos.userland.caas.index import Bm25Index
    ref, fast, live = Bm25Recaller(), Bm25Index(), []
    for i, (drop, words) in enumerate(ops, 1):
        if drop and live:
            gone = live.pop(len(live) // 2)
            ref.remove(gone)
            fast.remove(gone)
        else:
            ref.add(i, " ".join(words))
            fast.add(i, " ".join(words))
            live.append(i)
    q = " ".join(query)
    assert fast.search(q, 10) == ref.search(q, 10)


# -- what is lent to the service ----------------------------------------------------------------

def test_capabilities_lent_to_the_service_are_narrowed_expire_and_are_revoked_after_the_request():
    seen = {}

    async def keeper(sys, args):
        """A service (found by name) that keeps what it is lent and tries it later."""
        await sys.register("keeper")
        msg = await sys.recv()
        infos = [await sys.cap_info(c) for c in msg.caps]
        seen["lent"] = sorted((i["kind"], i["rights"], i["expires"] is not None) for i in infos)
        kill = None
        try:
            await sys.kill(msg.caps[1])          # the caller's process capability, as lent
        except Exception as e:  # noqa: BLE001
            kill = type(e).__name__
        seen["kill"] = kill
        await sys.send(msg.caps[0], {"candidates": []}, corr=msg.corr)
        await sys.recv()                         # the caller says: the retrieval is over
        later = []
        for c in msg.caps:
            try:
                await sys.cap_info(c)
                later.append("held")
            except Exception as e:  # noqa: BLE001
                later.append(type(e).__name__)
        seen["later"] = later

    async def body(sys, svc):
        granted = [c for c in sys.caps if (await sys.cap_info(c)).get("target") == "vfs:/shared"][0]
        _, kcap = await sys.spawn(keeper)
        await sys.yield_()
        ctx = await retrieve(sys, "anything", service="keeper", caps=[granted], timeout_ms=5_000)
        await sys.send(kcap, "over")
        await sys.waitpid(kcap)
        return ctx.candidates

    k = kernel({"/shared": MemoryBackend()})
    assert run(k, body, grant=("embed", "vfs:/shared"))["value"] == 0
    assert seen["lent"] == [("device", "read", True), ("process", "monitor", True), ("process", "send", True)]
    assert seen["kill"] == "CapError"
    assert seen["later"] == ["CapError"] * 3


def test_a_service_that_answers_after_the_timeout_finds_its_loan_gone():
    seen = {}

    async def slow(sys, args):
        await sys.register("slow")
        msg = await sys.recv()
        await sys.sleep(2_000)                   # past the caller's timeout: the loan has expired
        try:
            await sys.send(msg.caps[0], {"candidates": []}, corr=msg.corr)
            seen["late_send"] = "sent"
        except Exception as e:  # noqa: BLE001
            seen["late_send"] = type(e).__name__

    async def body(sys, svc):
        _, c = await sys.spawn(slow)
        await sys.yield_()
        try:
            await retrieve(sys, "q", service="slow", timeout_ms=1_000)
        except CaasError as e:
            await sys.waitpid(c)
            return str(e)

    assert "did not answer" in run(kernel(), body)["value"]
    assert seen["late_send"] == "CapError"


# -- the embedding device's reply ---------------------------------------------------------------

def bad_embedder(kind):
    def embed(texts):
        if kind == "nan":
            return [[math.nan] * 8 for _ in texts]
        if kind == "bools":
            return [[True, False] * 4 for _ in texts]
        if kind == "not_a_list":
            return "vectors"
        if kind == "fewer":
            return [[0.5] * 8 for _ in texts[1:]]
        if kind == "strings":
            return [["0.5"] * 8 for _ in texts]
        if kind == "empty_rows":
            return [[] for _ in texts]
        return [[0.5] * (8 if len(texts) > 1 else 9) for _ in texts]     # "dims": the query has another size
    return embed


@pytest.mark.parametrize("kind", ["nan", "bools", "not_a_list", "fewer", "strings", "empty_rows"])
def test_an_embedding_reply_of_the_wrong_shape_is_a_typed_error_and_nothing_is_indexed(kind):
    async def body(sys, svc):
        p = await put_document(sys, "guide", GUIDE)
        try:
            await svc.ingest(sys, p, embed="embed", chunk_size=80)
            return "indexed", (await svc.stats(sys))["chunks"]
        except CaasError as e:
            return str(e), (await svc.stats(sys))["chunks"]

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(EmbedDriver(bad_embedder(kind)))
    err, chunks = run(k, body)["value"]
    assert err != "indexed" and "embed" in err and chunks == 0


class RawDevice:
    """A device named as the embedder that is not one: its reads answer junk."""

    def __new__(cls, answer):
        from agentos.abi.driver import Driver, DriverResult
        from agentos.abi.types import Cost

        class Raw(Driver):
            name = "raw"

            def open(self, owner, params):
                return None

            def action(self, op, handle, req):
                return ("raw.read", None)

            def read(self, handle, req):
                return DriverResult(answer(req["texts"]), Cost())

            def write(self, handle, data):
                raise NotImplementedError
        return Raw()


@pytest.mark.parametrize("kind", ["nan_str", "bools", "mixed"])
def test_the_job_checks_the_embed_devices_reply_itself(kind):
    answers = {"nan_str": lambda t: [["NaN"] * 8 for _ in t], "bools": lambda t: [[True] * 8 for _ in t],
               "mixed": lambda t: [[0.5] * (8 + i) for i, _ in enumerate(t)]}

    async def body(sys, svc):
        p = await put_document(sys, "guide", GUIDE)
        try:
            await svc.ingest(sys, p, embed="raw", chunk_size=80)
            return "indexed", (await svc.stats(sys))["chunks"]
        except CaasError as e:
            return str(e), (await svc.stats(sys))["chunks"]

    k = kernel()
    k.register_driver(RawDevice(answers[kind]))
    err, chunks = run(k, body, grant=("embed", "raw"))["value"]
    assert "raw device's reply is refused" in err and chunks == 0


def test_a_query_vector_of_another_dimension_is_refused_not_silently_dropped():
    async def body(sys, svc):
        p = await put_document(sys, "guide", GUIDE)
        await svc.ingest(sys, p, embed="embed", chunk_size=80)
        try:
            await svc.retrieve(sys, "budgets", embed="embed32")
            return "answered"
        except CaasError as e:
            return str(e)

    k = kernel()
    k.register_driver(EmbedDriver(hash_embed(32), name="embed32"))
    out = run(k, body, grant=("embed", "embed32"))["value"]
    assert "dimension 32" in out


def test_an_embed_device_keeps_one_dimension():
    drv = EmbedDriver(lambda texts: [[1.0] * (4 if texts[0] == "a" else 5) for _ in texts])
    drv.read(None, {"texts": ["a"]})
    from agentos.abi.errors import DriverError
    with pytest.raises(DriverError, match="5 dimensions; 4 were expected"):
        drv.read(None, {"texts": ["b"]})


# -- unknown options, paths not in normal form ----------------------------------------------------

BAD_PATHS = ["/shared/../agent/1/mem/semantic/caas/guide", "/shared//caps", "/shared/./caps", "/shared/caps/",
             "shared/caps", "/shared/ca\x00ps", "/shared/\ud800", "/", "/shared/\x07bell"]


def test_paths_not_in_normal_form_and_unknown_options_are_refused_before_anything_runs():
    async def body(sys, svc):
        seen = []
        calls = [lambda p=p: svc.ingest(sys, p) for p in BAD_PATHS] + [
            lambda: put_document(sys, "a\x00b", "x"),
            lambda: svc.retrieve(sys, "q", bogus=1),
            lambda: svc.ingest(sys, "/shared/caps", chunksize=100),
            lambda: svc.retrieve(sys, "q", timeout_ms=math.nan),
            lambda: svc.retrieve(sys, "q", timeout_ms=-1),
            lambda: svc.retrieve(sys, "q", timeout_ms=True),
            lambda: svc.retrieve(sys, "q", embed=5),
            lambda: svc.retrieve(sys, "q", caps=iter([1])),
            lambda: svc.retrieve(sys, "q", caps=[1.5]),
            lambda: svc.retrieve(sys, "q", caps=list(range(100))),
            lambda: svc.retrieve(sys, "q", sep="\ud800"),
            lambda: svc.retrieve(sys, "q", sep="-" * 100),
            lambda: retrieve(sys, "q", service=""),
        ]
        for call in calls:
            try:
                await call()
                seen.append(None)
            except BadArgument as e:
                seen.append(str(e))
        return seen, await svc.stats(sys)

    seen, stats = run(kernel(), body)["value"]
    assert all(s is not None and s.startswith("caas: ") for s in seen), seen
    assert stats["indexed"] == 0 and stats["searches"] == 0


def test_the_service_refuses_unknown_fields_and_paths_not_in_normal_form():
    async def body(sys, svc):
        from agentos.userland.rpc import call
        me = await sys.pid()
        good = "real text"
        base = {"op": "index", "version": version_of(good), "chunks": [[0, len(good), good]]}
        junk = [{**base, "path": f"/agent/{me}/../{me + 1}/x"}, {**base, "path": f"/agent/{me}//x"},
                {**base, "path": f"/agent/{me}/x", "extra": 1}, {"op": "search", "query": "x", "k": 1, "topk": 9},
                {"op": "drop", "path": f"/agent/{me}/./x"}, {"op": "stats", "verbose": True},
                {"op": "stop", "now": True}]
        return [await call(sys, svc.cap, j) for j in junk] + [await svc.stats(sys)]

    *answers, stats = run(kernel(), body)["value"]
    assert all("error" in a for a in answers), answers
    assert stats["chunks"] == 0 and stats["refused"] == len(answers)


def test_an_embedder_answering_numpy_arrays_is_accepted():
    import numpy as np
    drv = EmbedDriver(lambda texts: np.ones((len(texts), 8), dtype=np.float32))
    assert drv.read(None, {"texts": ["a", "b"]}).value == [[1.0] * 8] * 2
    bad = EmbedDriver(lambda texts: np.full((len(texts), 8), np.nan, dtype=np.float32))
    from agentos.abi.errors import DriverError
    with pytest.raises(DriverError, match="non-finite"):
        bad.read(None, {"texts": ["a"]})


def test_a_request_whose_reply_address_cannot_be_answered_does_not_end_the_service():
    async def body(sys, svc):
        embed_cap = [c for c in sys.caps if (await sys.cap_info(c)).get("target") == "embed"][0]
        me = await sys.attenuate(await sys.self_cap(), rights="send")
        await sys.revoke(me)                       # gone before the service answers
        pipe = await sys.pipe({"type": "string"})  # a reply address whose schema refuses a dict
        for caps in ([embed_cap], [pipe]):
            await sys.send(svc.cap, {"op": "stats"}, caps=caps)
        dead = await sys.attenuate(await sys.self_cap(), rights="send")
        await sys.send(svc.cap, {"op": "stats"}, caps=[dead])
        await sys.revoke(dead)
        return await svc.stats(sys)                # the service still answers

    stats = run(kernel(), body)["value"]
    assert stats["unanswered"] >= 2 and stats["refused"] == 0


def test_a_service_name_that_is_not_one_is_refused_before_the_spawn():
    async def body(sys, svc):
        seen = []
        for name in ("", 5, "\ud800", "n" * 500):
            try:
                await CaasService.start(sys, name=name)
                seen.append(None)
            except BadArgument as e:
                seen.append(str(e))
        return seen

    assert all(s and s.startswith("caas: service name") for s in run(kernel(), body)["value"])


@pytest.mark.parametrize("size", [100.5, True, math.nan, "100"])
def test_a_chunk_size_that_is_not_an_int_is_refused(size):
    with pytest.raises(ValueError, match="chunk size"):
        chunk("some text " * 50, size)


def test_repeated_calls_leave_no_capabilities_behind_in_the_caller():
    from agentos.abi.driver import Driver, DriverResult
    from agentos.abi.types import Cost
    holder = {}

    class Probe(Driver):
        """Answers how many capabilities its opener holds (a test's window on the cap table)."""
        name = "probe"

        def open(self, owner, params):
            return owner

        def action(self, op, handle, req):
            return ("probe.read", None)

        def read(self, handle, req):
            return DriverResult(len(holder["k"].procs[handle].caps), Cost())

        def write(self, handle, data):
            raise NotImplementedError

    async def body(sys, svc):
        h = await sys.open("probe")
        p = await put_document(sys, "guide", GUIDE)
        await svc.ingest(sys, p, embed="embed")
        before = await sys.read(h, {})
        for _ in range(5):
            await svc.retrieve(sys, "budgets", embed="embed")
            await svc.ingest(sys, p)
        return before, await sys.read(h, {})

    k = kernel()
    holder["k"] = k
    k.register_driver(Probe())
    before, after = run(k, body, grant=("embed", "probe"))["value"]
    assert after == before


def test_an_interrupted_retrieve_ends_its_job():
    from agentos.abi.errors import Interrupted
    from agentos.abi.types import Signal

    async def slow(sys, args):
        await sys.register("slow2")
        while True:
            await sys.recv()

    async def caller(sys, args):
        try:
            await retrieve(sys, "q", service="slow2", timeout_ms=None)
        except Interrupted:
            await sys.log("info", "after")
            return "interrupted"

    async def body(sys, svc):
        _, s = await sys.spawn(slow)
        await sys.yield_()
        _, c = await sys.spawn(caller, caps=["spawn"])
        await sys.sleep(100)
        await sys.signal(c, Signal.SIGINT)
        await sys.waitpid(c)
        await sys.kill(s)
        return "ok"

    k = kernel()
    assert run(k, body)["value"] == "ok"
    evs = k.events.events()
    at = next(i for i, e in enumerate(evs) if e.kind == "log" and e.data[1] == "after")
    jobs = [e.pid for e in evs if e.kind == "spawn" and e.data[1] == "caas_query"]
    exits = {e.pid: i for i, e in enumerate(evs) if e.kind == "exit"}
    assert jobs and all(j in exits and exits[j] < at for j in jobs)
