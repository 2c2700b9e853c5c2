"""Context as a service: documents in the VFS, an index in a service process, retrieval
that cites and fits.

Processes, each with one job:
- the *service* (`caas_main`, registered as "caas" by default) keeps a `CaasIndex`: no
  chunk text, only citations and what ranks them. It spends nothing metered.
- an *ingest job* and a *query job* run for a caller as the caller's children, on a
  budget carved from the caller's account (`quota`), holding only the authority the
  caller passes: the service's address, the caller's own process capability (so it may
  read the caller's `/agent/<pid>/mem/semantic` tree), the `embed` device if vectors are
  used, and any mount capabilities the caller names. Embedding calls are metered to it.

Stages and the failure each guards against (`docs/context-and-ledger.md`):
1. ingest: the job reads the document through the VFS (so only what the caller may read
   can be ingested), refuses what is too large or not text, and chunks it into spans that
   tile it exactly; the service re-hashes the joined chunks and refuses a batch whose
   text does not hash to the version it claims (**wrong citations** at the source).
2. index: a re-ingest replaces every chunk of the path at once (**stale chunks**).
3. retrieve: the service ranks by BM25 and vectors fused by reciprocal rank and returns
   citations only. The query job reads each cited document again *through its own VFS
   read, under the caller's authority* (**text the caller may not read**: a refused read
   drops the chunk), drops a chunk whose document no longer hashes to the cited version
   (**stale chunks**, when a document changed without a re-ingest), takes the text from
   the fresh read at the cited span (**missing or wrong citations**: every returned chunk
   is `document[start:end]` of the version it names), drops chunks whose normalised text
   was already taken (**duplicate chunks**), and keeps, in rank order, what fits the token
   budget by the LLM device's own reservation bound (**context overflow**).
Every refusal of a caller's argument is a `BadArgument` before anything is spawned.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ...abi.errors import BadArgument, SyscallError
from ...abi.types import KERNEL_PID, Down, Quota, Signal, SignalMessage
from ...kernel import args as A
from ...kernel.process import ProcessImage
from ...kernel.trap import Sys
from .chunk import DEFAULT_CHUNK, MAX_CHUNK, MIN_CHUNK, chunk, dedup_key, fit, join_cost, tokens_of, version_of
from .embed import MAX_BYTES, MAX_TEXTS, check_vectors
from .index import CaasIndex

MAX_DOC = 1 << 20            # characters in one document (the semantic store's file cap is 1 MiB)
MAX_K = 100
MAX_BUDGET = 1 << 22         # tokens
MAX_QUERY = 4096             # characters
OVERFETCH = 4                # candidates asked per result wanted: room for drops
MAX_CANDIDATES = 400
DOCS_DIR = "caas"            # under /agent/<pid>/mem/semantic
MAX_PATH = 4096
MAX_SEP = 64                 # characters of the separator chunks are joined with
MAX_LENT = 64                # capabilities a caller may pass to a job
MAX_TIMEOUT_MS = 86_400_000.0
LEND_MS = 600_000.0          # what a lent capability lives for when the caller set no timeout
DEFAULT_SEP = "\n\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class CaasError(SyscallError):
    """The context service refused a request, or is not there; the message says why."""


@dataclass(frozen=True)
class Citation:
    """Where a chunk's text is: `document(path)` at `version` (SHA-256), characters
    `[start, end)`."""

    path: str
    version: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "version": self.version, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Chunk:
    text: str
    citation: Citation
    score: float
    tokens: int
    bm25_rank: int | None = None
    vector_rank: int | None = None


@dataclass(frozen=True)
class Context:
    """What a retrieval returns: chunks in rank order within `budget` tokens, and what was
    dropped on the way, by reason (paths are not shown for refused reads)."""

    chunks: tuple[Chunk, ...]
    tokens: int
    budget: int
    candidates: int
    stale: tuple[str, ...] = ()
    denied: int = 0
    duplicates: int = 0
    over_budget: int = 0
    sep: str = DEFAULT_SEP

    def text(self, sep: str | None = None) -> str:
        """The chunks joined by the separator they were fitted with, which `tokens` (and so
        the budget) already counts. Another separator is allowed only if it costs no more
        per join; a longer one could overflow the budget, so it is refused."""
        if sep is None:
            sep = self.sep
        sep = _text("caas: separator", sep, max_len=MAX_SEP)
        if join_cost(sep) > join_cost(self.sep):
            raise BadArgument(f"caas: the context was fitted for separator {self.sep!r}; {A.shown(sep)} costs "
                              f"more per join and could exceed the budget (retrieve with sep=... instead)")
        return sep.join(c.text for c in self.chunks)


@dataclass(frozen=True)
class IngestReport:
    path: str
    version: str
    chunks: int
    replaced: int
    tokens: int                # what the job's embedding calls cost


# -- argument checks (caller side, before anything runs) ------------------------------

def _text(what: str, v: Any, *, max_len: int, empty: bool = True) -> str:
    s = A.text(what, v, empty=empty)
    if len(s) > max_len:
        raise BadArgument(f"{what} is {len(s)} characters; at most {max_len}")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise BadArgument(f"{what} holds a lone surrogate") from None
    return s


def _k(v: Any) -> int:
    if isinstance(v, float) and not math.isfinite(v):
        raise BadArgument(f"caas: k must be a whole number of chunks, got {v!r}")
    return A.integer("caas: k", v, minimum=1, maximum=MAX_K)


def _budget(v: Any) -> int:
    return A.integer("caas: budget (tokens)", v, minimum=1, maximum=MAX_BUDGET)


def _quota(v: Any) -> Quota | None:
    if v is not None and not isinstance(v, Quota):
        raise BadArgument(f"caas: quota must be a Quota or None, got {type(v).__name__}")
    return v


def _caps(v: Any) -> tuple[Any, ...]:
    """A list or tuple (never a lazy iterable, which could run forever) of at most
    MAX_LENT capability refs (ints) or device names (strs)."""
    if type(v) not in (list, tuple):
        raise BadArgument(f"caas: caps is a list of capabilities or device names, got {type(v).__name__}")
    if len(v) > MAX_LENT:
        raise BadArgument(f"caas: {len(v)} capabilities passed; at most {MAX_LENT}")
    out: list[Any] = []
    for c in v:
        if type(c) is int and c >= 0:
            out.append(c)
        elif isinstance(c, str):
            out.append(_text("caas: a device name in caps", c, max_len=200, empty=False))
        else:
            raise BadArgument(f"caas: caps holds a {type(c).__name__}, not a capability or a device name")
    return tuple(out)


def _path(what: str, v: Any) -> str:
    """A VFS path in normal form: absolute, no empty, `.` or `..` component, no trailing
    `/`, no NUL or other control character, no lone surrogate. Two spellings of one file
    would be two documents (and `..` would let a path look as if under a prefix it is
    not, where the service decides what a capability reaches), so only one is accepted."""
    path = _text(what, v, max_len=MAX_PATH, empty=False)
    if not path.startswith("/") or path == "/":
        raise BadArgument(f"{what} must be an absolute path to a document, got {A.shown(path)}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise BadArgument(f"{what} holds a control character (NUL included): {A.shown(path)}")
    for part in path[1:].split("/"):
        if part in ("", ".", ".."):
            raise BadArgument(f"{what} is not in normal form (an empty, '.' or '..' component): "
                              f"{A.shown(path)}")
    return path


def _timeout(v: Any) -> float | None:
    if v is None:
        return None
    t = A.number("caas: timeout_ms", v)
    if not 0 < t <= MAX_TIMEOUT_MS:
        raise BadArgument(f"caas: timeout_ms must be in (0, {MAX_TIMEOUT_MS:.0f}] or None, got {t!r}")
    return float(t)


def _device_name(v: Any) -> str | None:
    return None if v is None else _text("caas: embed (a device name)", v, max_len=200, empty=False)


def _sep(v: Any) -> str:
    return _text("caas: sep", v, max_len=MAX_SEP)


def _doc_text(path: str, raw: Any) -> str:
    """A document as the VFS returned it, as text; refused if it is not text or too big."""
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > 4 * MAX_DOC:
            raise BadArgument(f"caas: {path} is {len(raw)} bytes; a document is at most {MAX_DOC} characters")
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadArgument(f"caas: {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(raw, str):
        raise BadArgument(f"caas: {path} holds a {type(raw).__name__}, not text")
    return _text(f"caas: document {path}", raw, max_len=MAX_DOC)


# -- the service --------------------------------------------------------------------------

_FIELDS = {"index": {"op", "path", "version", "chunks", "vectors"}, "drop": {"op", "path"},
           "search": {"op", "query", "k", "vector"}, "stats": {"op"}, "stop": {"op"}}


def _only(body: dict[str, Any], op: str) -> None:
    """A request holds only its op's fields: an unknown one (a typo, an option this service
    does not have) is refused, never ignored."""
    unknown = [k for k in body if k not in _FIELDS[op]]
    if unknown:
        raise ValueError(f"{op}: unknown field(s) {sorted(A.shown(k, 40) for k in unknown)[:5]}")


def _service_path(what: str, v: Any) -> str:
    try:
        return _path(what, v)
    except BadArgument as e:
        raise ValueError(str(e)) from None


def _check_index(body: dict[str, Any]) -> tuple[str, str, list[tuple[int, int, str, str]], Any]:
    _only(body, "index")
    path, version, raw, vecs = body.get("path"), body.get("version"), body.get("chunks"), body.get("vectors")
    path = _service_path("index: path", path)
    if not isinstance(version, str) or not _HEX64.fullmatch(version):
        raise ValueError("index: version must be a SHA-256 hex digest")
    if not isinstance(raw, list) or len(raw) > MAX_DOC // MIN_CHUNK + 1:
        raise ValueError("index: chunks must be a list of [start, end, text]")
    chunks: list[tuple[int, int, str, str]] = []
    at = 0
    for c in raw:
        if (not isinstance(c, (list, tuple)) or len(c) != 3 or type(c[0]) is not int or type(c[1]) is not int
                or type(c[2]) is not str):
            raise ValueError("index: each chunk is [start, end, text]")
        s, e, t = c
        if s != at or e <= s or e - s != len(t) or len(t) > MAX_CHUNK or e > MAX_DOC:
            raise ValueError(f"index: chunk [{s}, {e}) does not continue the tiling at {at} with its text")
        chunks.append((s, e, t, dedup_key(t)))
        at = e
    try:
        joined = "".join(c[2] for c in chunks).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("index: chunk text holds a lone surrogate") from None
    import hashlib
    if hashlib.sha256(joined).hexdigest() != version:
        raise ValueError("index: the chunks do not join into the version they cite")
    if vecs is not None:
        if not isinstance(vecs, list) or len(vecs) != len(chunks):
            raise ValueError("index: vectors must be one list of numbers per chunk")
        dim = None
        for v in vecs:
            if (not isinstance(v, list) or not v or len(v) > 4096
                    or not all(type(x) is float and math.isfinite(x) for x in v)):
                raise ValueError("index: a vector is a non-empty list of finite floats")
            if dim is not None and len(v) != dim:
                raise ValueError("index: vectors of mixed dimensions")
            dim = len(v)
    return path, version, chunks, vecs


def _check_search(body: dict[str, Any]) -> tuple[str, int, Any]:
    _only(body, "search")
    q, k, vec = body.get("query"), body.get("k"), body.get("vector")
    if not isinstance(q, str) or len(q) > MAX_QUERY:
        raise ValueError(f"search: query must be a str of at most {MAX_QUERY} characters")
    if type(k) is not int or not 1 <= k <= MAX_CANDIDATES:
        raise ValueError(f"search: k must be an int in 1..{MAX_CANDIDATES}")
    if vec is not None and (not isinstance(vec, list) or len(vec) > 4096
                            or not all(type(x) is float and math.isfinite(x) for x in vec)):
        raise ValueError("search: vector must be a list of finite floats")
    return q, k, vec


async def _readable(sys: Sys, caps: Sequence[int]) -> Any:
    """Which paths the asker could read, from the capabilities it sent with its request
    (the kernel transferred them, so none is forged): a device capability for a mount
    `vfs:<point>` with the read right reaches `<point>/...`; a process capability with
    the monitor right reaches `/agent/<pid>/...`. This only decides what is ranked, so a search never reveals a path,
    span or score of a document the asker could not read; the job's own VFS read, which
    also asks policy, stays the check that lets text through."""
    prefixes: list[str] = []
    for ref in caps:
        try:
            info = await sys.cap_info(ref)
        except SyscallError:
            continue
        rights = str(info.get("rights", "")).split(",")
        target = info.get("target")
        if info.get("kind") == "device" and "read" in rights and isinstance(target, str) \
                and target.startswith("vfs:/"):
            prefixes.append(target[4:].rstrip("/") + "/")
        elif info.get("kind") == "process" and "monitor" in rights and type(target) is int:
            prefixes.append(f"/agent/{target}/")
    found = tuple(prefixes)
    return lambda path: path.startswith(found)


async def caas_main(sys: Sys, args: Any) -> dict[str, Any]:
    """The service: keeps the index, answers index/drop/search/stats; `stop` or SIGTERM ends it."""
    opts = {} if args is None else args
    if type(opts) is not dict or any(k != "name" for k in opts):
        raise BadArgument("caas: the service takes {'name': str} and nothing else")
    name = _text("caas: service name", opts.get("name", "caas"), max_len=200, empty=False)
    await sys.register(name)
    idx = CaasIndex()
    served = {"indexed": 0, "searches": 0, "refused": 0, "unanswered": 0}
    while True:
        msg = await sys.recv()
        assert msg is not None
        body = msg.body
        if isinstance(body, SignalMessage):
            if body.signal is Signal.SIGTERM:
                break
            continue
        if isinstance(body, Down) or not isinstance(body, dict):
            continue
        op = body.get("op")
        if op == "stop" and not set(body) - _FIELDS["stop"]:
            break
        out: Any
        try:
            if op == "index":
                path, version, chunks, vecs = _check_index(body)
                if vecs and idx.vectors.dim and len(vecs[0]) != idx.vectors.dim:
                    raise ValueError(f"index: vectors of dimension {len(vecs[0])}; this index holds "
                                     f"{idx.vectors.dim}")
                if not (await _readable(sys, msg.caps))(path):
                    raise ValueError(f"index: the request carries no capability that reads {path}")
                replaced = len(idx.docs.get(path, ("", []))[1])
                ids = idx.put(path, version, chunks, vecs)
                served["indexed"] += 1
                out = {"path": path, "version": version, "chunks": len(ids), "replaced": replaced}
            elif op == "drop":
                _only(body, "drop")
                gone = _service_path("drop: path", body.get("path"))
                if not (await _readable(sys, msg.caps))(gone):
                    raise ValueError("drop: the request carries no capability that reads that path")
                out = {"dropped": idx.drop(gone)}
            elif op == "search":
                q, k, vec = _check_search(body)
                if vec is not None and len(idx.vectors) and len(vec) != idx.vectors.dim:
                    raise ValueError(f"search: the query vector has dimension {len(vec)}; this index holds "
                                     f"{idx.vectors.dim}")
                served["searches"] += 1
                allow = await _readable(sys, msg.caps)
                out = {"candidates": [
                    {"path": c.ref.path, "version": c.ref.version, "start": c.ref.start, "end": c.ref.end,
                     "dedup": c.ref.dedup, "score": c.score, "bm25_rank": c.bm25_rank,
                     "vector_rank": c.vector_rank} for c in idx.search(q, k, vec, allow)]}
            elif op == "stats":
                _only(body, "stats")
                out = {**idx.stats(), **served}
            elif op == "stop":
                _only(body, "stop")
                out = {}
            else:
                raise ValueError(f"unknown op {str(op)[:40]!r} (index, drop, search, stats, stop)")
        except ValueError as e:
            served["refused"] += 1
            out = {"error": str(e)}
        if msg.caps:
            try:   # the reply address is the asker's: not a process, revoked, expired, full...
                await sys.send(msg.caps[0], out, corr=msg.corr)
            except SyscallError:
                served["unanswered"] += 1   # ... is the asker's loss, never the service's end
            for ref in msg.caps:   # keep no authority a request lent: revoke our copies
                try:
                    await sys.revoke(ref)
                except SyscallError:
                    pass
    return {**idx.stats(), **served}


CAAS = ProcessImage("caas", caas_main)


async def _ask(sys: Sys, svc: int, body: dict[str, Any], timeout: float | None,
               authority: Sequence[int] = ()) -> dict[str, Any]:
    """One request to the service, lending it only what it needs, only for as long as the
    request can last: a reply address that can do nothing but receive (send right), and
    for each reading authority a copy narrowed to that (`monitor` on a process, `read` on
    a mount), all expiring after the timeout and revoked as soon as the answer is in (or
    the wait ends), whatever the service does with its copies."""
    ttl = LEND_MS if timeout is None else timeout
    lent = [await sys.attenuate(await sys.self_cap(), rights="send", expires_in=ttl)]
    try:
        lent.extend(await _narrowed(sys, authority, ttl))
        corr = ("caas", sys.next_corr())
        await sys.send(svc, body, caps=lent, corr=corr)
        reply = await sys.recv(timeout=timeout, match=lambda m: m.corr == corr)
    except GeneratorExit:      # torn down (no syscall runs now): its capabilities go with it
        lent.clear()
        raise
    finally:
        for ref in lent:
            try:
                await sys.revoke(ref)
            except SyscallError:
                pass
    if reply is None:
        raise CaasError(f"caas: the service did not answer within {timeout} ms")
    out = reply.body
    if not isinstance(out, dict):
        raise CaasError(f"caas: the service answered {type(out).__name__}, not a dict")
    if "error" in out:
        raise CaasError(f"caas: the service refused: {str(out['error'])[:300]}")
    return out


async def _narrowed(sys: Sys, authority: Sequence[int], ttl: float) -> list[int]:
    """Copies of `authority` cut to what reading needs, expiring in `ttl` ms; a capability
    that grants no reading (another device, a pipe, one without the right) is not lent."""
    out: list[int] = []
    for ref in authority:
        try:
            info = await sys.cap_info(ref)
            kind, target = info.get("kind"), info.get("target")
            if kind == "process":
                out.append(await sys.attenuate(ref, rights="monitor", expires_in=ttl))
            elif kind == "device" and isinstance(target, str) and target.startswith("vfs:/"):
                out.append(await sys.attenuate(ref, rights="read", expires_in=ttl))
        except SyscallError:      # not held, expired, or lacking the right: nothing to lend
            continue
    return out


async def _embed(sys: Sys, device: str | None, texts: list[str]) -> list[list[float]] | None:
    if device is None:
        return None
    h = await sys.open(device)
    try:
        batches: list[list[str]] = [[]]
        size = 0
        for t in texts:   # batches within the device's per-request limits
            tb = len(t.encode("utf-8"))
            if batches[-1] and (len(batches[-1]) >= MAX_TEXTS or size + tb > MAX_BYTES):
                batches.append([])
                size = 0
            batches[-1].append(t)
            size += tb
        out: list[list[float]] = []
        for b in batches:
            if b:
                try:   # the device is named by the caller: its reply is checked like any input
                    out.extend(check_vectors(await sys.read(h, {"texts": b}), len(b),
                                             len(out[0]) if out else None))
                except ValueError as e:
                    raise CaasError(f"caas: the {device} device's reply is refused: {e}") from None
        return out
    finally:
        await sys.close(h)


# -- the jobs (the caller's children, on the caller's budget) ------------------------------

async def caas_ingest_main(sys: Sys, args: dict[str, Any]) -> Any:
    svc, caller = sys.caps[0], sys.caps[1]
    corr = args["corr"]
    try:
        path = args["path"]
        text = _doc_text(path, await sys.vfs_read(path))
        spans = chunk(text, args["chunk_size"])
        pieces = [text[s:e] for s, e in spans]
        vectors = await _embed(sys, args.get("embed"), pieces)
        version = version_of(text)
        authority = tuple(sys.caps[1:2]) + tuple(sys.caps[3 if args.get("embed") else 2:])
        out = await _ask(sys, svc, {"op": "index", "path": path, "version": version,
                                    "chunks": [[s, e, p] for (s, e), p in zip(spans, pieces)],
                                    "vectors": vectors}, args.get("timeout_ms"), authority)
        b = await sys.budget()
        reply: Any = {"path": path, "version": version, "chunks": out["chunks"], "replaced": out["replaced"],
                      "tokens": int(b.used.get("tokens") or 0)}
    except SyscallError as e:
        reply = {"error": str(e), "type": type(e).__name__}
    await sys.send(caller, reply, corr=corr)
    return None


async def caas_query_main(sys: Sys, args: dict[str, Any]) -> Any:
    svc, caller = sys.caps[0], sys.caps[1]
    corr = args["corr"]
    try:
        reply: Any = await _retrieve(sys, svc, args)
    except SyscallError as e:
        reply = {"error": str(e), "type": type(e).__name__}
    await sys.send(caller, reply, corr=corr)
    return None


def _rank_ok(v: Any) -> bool:
    return v is None or (type(v) is int and 1 <= v <= MAX_CANDIDATES)


def _normal(path: str) -> bool:
    try:
        _path("caas: a cited path", path)
        return True
    except BadArgument:
        return False


async def _retrieve(sys: Sys, svc: int, args: dict[str, Any]) -> dict[str, Any]:
    query, k, budget = args["query"], args["k"], args["budget"]
    vec = await _embed(sys, args.get("embed"), [query])
    # the search carries the authority this job holds (the caller's, as passed), so the
    # service ranks only what it could read; the embed device is no reading authority
    authority = tuple(sys.caps[1:2]) + tuple(sys.caps[3 if args.get("embed") else 2:])
    found = await _ask(sys, svc, {"op": "search", "query": query, "k": min(MAX_CANDIDATES, k * OVERFETCH),
                                  "vector": vec[0] if vec else None}, args.get("timeout_ms"), authority)
    cands = found.get("candidates")
    if not isinstance(cands, list):
        raise CaasError("caas: the service's answer holds no candidate list")
    if len(cands) > MAX_CANDIDATES:
        raise CaasError(f"caas: the service answered {len(cands)} candidates; at most {MAX_CANDIDATES} were asked")
    docs: dict[str, tuple[str, str] | None] = {}
    stale: list[str] = []
    seen: set[str] = set()
    denied = dups = 0
    kept: list[dict[str, Any]] = []
    for c in cands:
        # the service is found by name: its answer is checked like any message
        if (not isinstance(c, dict) or not isinstance(c.get("path"), str) or not isinstance(c.get("version"), str)
                or type(c.get("start")) is not int or type(c.get("end")) is not int
                or not 0 <= c["start"] < c["end"] or not isinstance(c.get("score"), float)
                or not math.isfinite(c["score"]) or not _rank_ok(c.get("bm25_rank"))
                or not _rank_ok(c.get("vector_rank")) or not _normal(c["path"])):
            raise CaasError("caas: the service answered a malformed candidate")
        path = c["path"]
        if path not in docs:
            try:   # the caller's authority, now: a revoked or never-held right refuses here
                text = _doc_text(path, await sys.vfs_read(path))
                docs[path] = (text, version_of(text))
            except SyscallError:
                docs[path] = None
        got = docs[path]
        if got is None:
            denied += 1
            continue
        text, now = got
        if now != c["version"] or c["end"] > len(text):
            if path not in stale:
                stale.append(path)
                # a failure event in the failure model's shape (msg "failure"), so stale
                # context is counted in metrics and seen by the ledger
                await sys.log("info", "failure", kind="stale_memory", severity="info", source="caas",
                              detector="rule:content_hash", subject=path[:200], detail=(
                                  "a cited document changed since it was indexed; its chunks were dropped"),
                              evidence={"cited": c["version"][:64], "now": now})
            continue
        piece = text[c["start"]:c["end"]]
        key = dedup_key(piece)
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        kept.append({"text": piece, "citation": {"path": path, "version": c["version"], "start": c["start"],
                                                 "end": c["end"]},
                     "score": c["score"], "tokens": tokens_of(piece), "bm25_rank": c.get("bm25_rank"),
                     "vector_rank": c.get("vector_rank")})
    sep = args.get("sep", DEFAULT_SEP)
    chosen, used, skipped = fit(kept, budget, lambda d: d["tokens"], limit=k, between=join_cost(sep))
    return {"chunks": chosen, "tokens": used, "budget": budget, "candidates": len(cands), "stale": stale,
            "denied": denied, "duplicates": dups, "over_budget": skipped, "sep": sep}


CAAS_INGEST = ProcessImage("caas_ingest", caas_ingest_main)
CAAS_QUERY = ProcessImage("caas_query", caas_query_main)


# -- the caller's side ---------------------------------------------------------------------

async def _job(sys: Sys, image: ProcessImage, service: str, caps: tuple[Any, ...], embed: str | None,
               quota: Quota | None, args: dict[str, Any]) -> dict[str, Any]:
    svc = await sys.lookup(service)
    if svc is None:
        raise CaasError(f"caas: no context service is registered as {service!r}")
    # the job may send its answer here and read this process's tree (monitor): no more
    me = await sys.attenuate(await sys.self_cap(), rights="send,monitor")
    made: list[int] = [svc, me]     # this call's capabilities: revoked when it ends
    corr = ("caas", await sys.pid(), sys.next_corr())
    held = [svc, me] + ([embed] if embed else []) + list(caps)
    try:
        # linked: the job dies with this process, and its exit reaches here as a Down
        pid, cap = await sys.spawn(image, name=image.name, quota=quota, caps=held, link=True,
                                   args={**args, "corr": corr, "embed": embed})
        made.append(cap)
        # only the job answers (the correlation id is guessable) and only the kernel says it ended
        is_down = lambda m: isinstance(m.body, Down) and m.sender == KERNEL_PID and m.body.pid == pid  # noqa: E731
        answer = lambda m: (m.corr == corr and m.sender == pid) or is_down(m)  # noqa: E731
        try:
            msg = await sys.recv(match=answer)
            assert msg is not None
            if isinstance(msg.body, Down):
                raise CaasError(f"caas: the {image.name} job ended without an answer: {msg.body.reason}")
            await sys.recv(match=is_down)
        except (GeneratorExit, CaasError):
            raise
        except BaseException:     # interrupted while waiting: end the job, leave nothing of it behind
            try:
                await sys.kill(cap)
                await sys.waitpid(cap)
                while await sys.recv(match=answer, timeout=0) is not None:
                    pass
            except SyscallError:
                pass
            raise
    except GeneratorExit:
        made.clear()              # torn down: no syscall runs, the capabilities go with this process
        raise
    finally:
        for ref in made:          # the lookup's, the narrowed copy, the job's: nothing accumulates
            try:
                await sys.revoke(ref)
            except SyscallError:
                pass
    out = msg.body
    if not isinstance(out, dict):
        raise CaasError(f"caas: the {image.name} job answered {type(out).__name__}")
    if "error" in out:
        kind = str(out.get("type"))
        if kind == "BadArgument":
            raise BadArgument(str(out["error"]))
        raise CaasError(str(out["error"]) if kind in ("CaasError", "None") else f"{kind}: {out['error']}")
    return out


async def put_document(sys: Sys, name: str, text: str) -> str:
    """Write `text` as `name` in this process's semantic memory
    (`/agent/<pid>/mem/semantic/caas/<name>`) and return its path, ready to `ingest`."""
    name = _text("caas: document name", name, max_len=200, empty=False)
    if "/" in name or name in (".", ".."):
        raise BadArgument(f"caas: a document name is one path component, got {name!r}")
    text = _text("caas: document text", text, max_len=MAX_DOC)
    path = _path("caas: document name", f"/agent/{await sys.pid()}/mem/semantic/{DOCS_DIR}/{name}")
    await sys.vfs_write(path, text)
    return path


async def ingest(sys: Sys, path: str, *, service: str = "caas", embed: str | None = None,
                 caps: Iterable[Any] = (), quota: Quota | None = None, chunk_size: int = DEFAULT_CHUNK,
                 timeout_ms: float | None = 60_000.0) -> IngestReport:
    """Index the document at `path` (read with this process's authority plus `caps`),
    replacing any earlier version. Embedding calls, if `embed` names a device, are paid by
    the job from `quota`, carved from this process's account."""
    path = _path("caas: path", path)
    size = A.integer("caas: chunk_size", chunk_size, minimum=MIN_CHUNK, maximum=MAX_CHUNK)
    service = _text("caas: service", service, max_len=200, empty=False)
    lent, emb, q, t = _caps(caps), _device_name(embed), _quota(quota), _timeout(timeout_ms)
    out = await _job(sys, CAAS_INGEST, service, lent, emb, q, {"path": path, "chunk_size": size, "timeout_ms": t})
    return IngestReport(out["path"], out["version"], out["chunks"], out["replaced"], out["tokens"])


async def retrieve(sys: Sys, query: str, *, k: int = 5, budget: int = 2000, service: str = "caas",
                   embed: str | None = None, caps: Iterable[Any] = (), quota: Quota | None = None,
                   timeout_ms: float | None = 60_000.0, sep: str = DEFAULT_SEP) -> Context:
    """At most `k` chunks relevant to `query`, in rank order, whose text together costs at
    most `budget` tokens, each cited; read under this process's authority plus `caps`.
    The budget holds for the chunks joined by `sep` (`Context.text()`) as one message, and
    for the chunks as separate messages."""
    query = _text("caas: query", query, max_len=MAX_QUERY)
    kk, bb = _k(k), _budget(budget)
    service = _text("caas: service", service, max_len=200, empty=False)
    lent, emb, q, t, sp = _caps(caps), _device_name(embed), _quota(quota), _timeout(timeout_ms), _sep(sep)
    out = await _job(sys, CAAS_QUERY, service, lent, emb, q,
                     {"query": query, "k": kk, "budget": bb, "timeout_ms": t, "sep": sp})
    chunks = tuple(Chunk(c["text"], Citation(**c["citation"]), c["score"], c["tokens"], c["bm25_rank"],
                         c["vector_rank"]) for c in out["chunks"])
    return Context(chunks, out["tokens"], out["budget"], out["candidates"], tuple(out["stale"]), out["denied"],
                   out["duplicates"], out["over_budget"], out["sep"])


_INGEST_OPTIONS = {"embed", "caps", "quota", "chunk_size", "timeout_ms"}
_RETRIEVE_OPTIONS = {"k", "budget", "embed", "caps", "quota", "timeout_ms", "sep"}


def _options(call: str, kw: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise BadArgument(f"caas: {call} has no option(s) {unknown[:5]} (it takes {sorted(allowed)})")


class CaasService:
    """A handle on a running context service.

        svc = await CaasService.start(sys)
        path = await put_document(sys, "guide", text)
        await svc.ingest(sys, path)
        ctx = await svc.retrieve(sys, "how do I ...", k=5, budget=1500)
    """

    def __init__(self, name: str, pid: int, cap: int) -> None:
        self.name, self.pid, self.cap = name, pid, cap

    @classmethod
    async def start(cls, sys: Sys, *, name: str = "caas", quota: Quota | None = None) -> "CaasService":
        name = _text("caas: service name", name, max_len=200, empty=False)
        pid, cap = await sys.spawn(CAAS, name=name, args={"name": name}, quota=_quota(quota))
        await sys.yield_()   # let it register its name before anyone looks it up
        return cls(name, pid, cap)

    async def ingest(self, sys: Sys, path: str, **kw: Any) -> IngestReport:
        _options("ingest", kw, _INGEST_OPTIONS)
        return await ingest(sys, path, service=self.name, **kw)

    async def retrieve(self, sys: Sys, query: str, **kw: Any) -> Context:
        _options("retrieve", kw, _RETRIEVE_OPTIONS)
        return await retrieve(sys, query, service=self.name, **kw)

    async def stats(self, sys: Sys) -> dict[str, Any]:
        return await _ask(sys, self.cap, {"op": "stats"}, None)

    async def stop(self, sys: Sys) -> Any:
        await sys.send(self.cap, {"op": "stop"})
        return await sys.waitpid(self.cap)


__all__ = ["CAAS", "CAAS_INGEST", "CAAS_QUERY", "CaasError", "CaasService", "Chunk", "Citation", "Context",
           "IngestReport", "MAX_DOC", "MAX_K", "caas_ingest_main", "caas_main", "caas_query_main", "ingest",
           "put_document", "retrieve"]
