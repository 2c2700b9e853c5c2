"""EMK, the episodic memory ledger: what each agent was asked, did, got and paid, read
from the event log, content-addressed, and queried by agent, time, outcome and similarity.

An *experience* is one process of one recorded run: its agent (process name), task (the
`task` field of the process's own `emk.task` log event, else its name and spawn
arguments), actions (each policy decision the kernel took for it: action, allowed, rule),
failures (the kinds of its `failure` log events), outcome (its exit reason), cost (the
`charge` events, folded exactly as the run table and `ps` fold them), and when. Its id is
the SHA-256 of its canonical encoding (`kernel/canon.py`), so an entry is its own
checksum.

Never a second source of truth. The event log in the store is the record; the ledger's
index (entries under `emk/<run>/` in the store's key-value space, and a head listing the
ids and how many events they were derived from) is a cache of a pure function of it:
- an index that is missing, or was derived from fewer events than the run now has, is
  rebuilt from the log on first use;
- an entry whose bytes no longer hash to its id, or that the head lists and is gone, is
  tampering: the run's index is rebuilt from the log and the repair is counted;
- `verify(run)` re-derives the run from the log and compares, which also catches an
  index forged consistently (entries and head rewritten together).
With a flight recorder's chain (`audit=(records, anchor, key)`), the ledger refuses to
build from a store whose audit chain does not verify (`LedgerError`).

Agents reach the ledger through the `emk` device (`EmkDriver`): capability-checked,
policy-checked (`emk.query`, `emk.get`, `emk.verify`), journaled, so a replay is answered
from the journal.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

from ..abi.driver import Driver, DriverResult
from ..abi.errors import AgentOSError, BadArgument, DriverError
from ..abi.types import Cost
from ..kernel import args as A
from ..kernel.canon import canonical
from ..kernel.recall import Bm25Recaller

TASK_MSG = "emk.task"            # sys.log("info", "emk.task", task="...") names a process's task
FAILURE_MSG = "failure"          # the failure model's log events
PREFIX = "emk/"
FORMAT = 2                       # 2: strings from the log are cut and cleaned as they are folded
MAX_TASK = 2000
MAX_ACTIONS = 1000               # per experience; past it, counted in `more_actions`
MAX_K = 1000
MAX_RUNS = 1000                  # run ids in one query
MAX_QUERY_TEXT = 4096            # characters of agent, outcome, similar
MAX_RENDER_DEPTH = 32            # nesting shown when spawn arguments are rendered into a task
MAX_TIME_S = 1e12                # seconds: past any wall clock (year 33,000)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class LedgerError(AgentOSError):
    """The ledger cannot be built or trusted: the log or the audit chain says why."""


class LedgerQueryError(LedgerError, BadArgument):
    """A query, get or verify argument the ledger refuses (wrong type, out of range, a lone
    surrogate, a time range that ends before it starts): also a `BadArgument`."""


@dataclass(frozen=True)
class Action:
    action: str
    allowed: bool
    rule: str


@dataclass(frozen=True)
class Experience:
    run_id: str
    pid: int
    agent: str
    parent: int
    task: str
    actions: tuple[Action, ...]
    more_actions: int
    failures: tuple[str, ...]
    outcome: str
    outcome_kind: str
    started_ms: float
    ended_ms: float | None
    at: float                   # wall time (s) it started: the run's creation time + started_ms
    tokens: int
    tool_calls: int
    usd_nano: int
    errors: int

    def body(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def id(self) -> str:
        return content_id(self.body())

    def text(self) -> str:
        """What similarity search sees: the task, the actions, the failures, the outcome."""
        return " ".join([self.agent, self.task, *(a.action for a in self.actions), *self.failures, self.outcome])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.body()}

    @classmethod
    def from_body(cls, d: Any) -> "Experience":
        """An experience from its stored body; `LedgerError` unless every field has the
        type `derive` gives it (an entry can hash to its id and still be forged)."""
        if type(d) is not dict or set(d) != _FIELDS:
            raise LedgerError("emk: an index entry does not have an experience's fields")
        d = dict(d)
        acts, fails = d["actions"], d["failures"]
        if type(acts) is not list or type(fails) is not list or not all(type(f) is str for f in fails):
            raise LedgerError("emk: an index entry's actions or failures are not lists")
        out = []
        for a in acts:
            if (type(a) is not dict or set(a) != {"action", "allowed", "rule"} or type(a["action"]) is not str
                    or type(a["allowed"]) is not bool or type(a["rule"]) is not str):
                raise LedgerError("emk: an index entry holds a malformed action")
            out.append(Action(a["action"], a["allowed"], a["rule"]))
        d["actions"], d["failures"] = tuple(out), tuple(fails)
        for f in ("run_id", "agent", "task", "outcome", "outcome_kind"):
            if type(d[f]) is not str:
                raise LedgerError(f"emk: an index entry's {f} is not a str")
        for f in ("pid", "parent", "more_actions", "tokens", "tool_calls", "usd_nano", "errors"):
            if type(d[f]) is not int or d[f] < 0:
                raise LedgerError(f"emk: an index entry's {f} is not a non-negative int")
        for f in ("started_ms", "ended_ms", "at"):
            v = d[f]
            if v is None and f == "ended_ms":
                continue
            if type(v) not in (int, float) or not math.isfinite(v) or v < 0:
                raise LedgerError(f"emk: an index entry's {f} is not a finite non-negative number")
        return cls(**d)


_FIELDS = {"run_id", "pid", "agent", "parent", "task", "actions", "more_actions", "failures", "outcome",
           "outcome_kind", "started_ms", "ended_ms", "at", "tokens", "tool_calls", "usd_nano", "errors"}


def encode(body: dict[str, Any]) -> bytes:
    """The canonical bytes an experience is addressed by (sorted keys, no spaces, UTF-8)."""
    return json.dumps(canonical(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_id(body: dict[str, Any]) -> str:
    return hashlib.sha256(encode(body)).hexdigest()


def _outcome_kind(reason: str) -> str:
    return reason.split("(", 1)[0]


def _clean(s: str) -> str:
    """A log string as an experience holds it: a lone surrogate (which no UTF-8 encoding,
    so no content id, can hold) becomes U+FFFD."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "\ufffd" for c in s)


def _short(value: Any, limit: int = MAX_TASK) -> str:
    """`value` as text of at most `limit` characters, built in at most about `limit`
    characters of work: a 50 MB argument or one nested 10,000 deep costs no more to show
    than a small one. For a JSON value that fits, the text is exactly
    `json.dumps(value, sort_keys=True, ensure_ascii=False)` (so ids do not depend on it)."""
    limit = max(limit, 2)
    if isinstance(value, str):
        s = _clean(value[:limit])
        return s if len(value) <= limit else s[: limit - 1] + "…"
    out: list[str] = []
    room = [limit + 1]      # one past the limit: enough to know that it was cut

    def put(text: str) -> bool:
        if room[0] <= 0:
            return False
        out.append(text[: room[0]])
        room[0] -= len(text)
        return room[0] > 0

    def walk(v: Any, depth: int) -> bool:
        t = type(v)
        if v is None or t is bool:
            return put("null" if v is None else ("true" if v else "false"))
        if t is int:
            return put(str(v) if v.bit_length() <= 128 else f'"<int of {v.bit_length()} bits>"')
        if t is float:
            return put(json.dumps(v))
        if t is str:
            return put(json.dumps(_clean(v[:room[0]]), ensure_ascii=False))
        if depth >= MAX_RENDER_DEPTH:
            return put("…")
        if t is list or t is tuple:
            if not put("["):
                return False
            for i, x in enumerate(v):
                if (i and not put(", ")) or not walk(x, depth + 1):
                    return False
            return put("]")
        if t is dict:
            if not put("{"):
                return False
            keys = v.keys() if len(v) <= 64 else None
            first = True
            # only the first few keys (in sorted order) can fit: pick them without sorting all
            cand = sorted(v, key=str) if keys is not None else heapq.nsmallest(limit // 4 + 1, v, key=str)
            for key in cand:
                if (not first and not put(", ")) or not put(json.dumps(_clean(str(key)), ensure_ascii=False)) \
                        or not put(": ") or not walk(v[key], depth + 1):
                    return False
                first = False
            return put("}")
        return put(json.dumps(f"<{t.__name__}>"))

    walk(value, 0)
    s = "".join(out)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def derive(store: Any, run_id: str) -> tuple[list[Experience], int]:
    """The experiences of one run, folded from its stored event log; and how many events.
    An event whose data is not what the kernel writes (a wrong type, a bool, NaN, an
    infinity or a negative number for a cost or a time, nesting too deep to decode) is a
    `LedgerError` naming the run, never a crash and never an entry."""
    try:
        return _derive(store, run_id)
    except LedgerError as e:
        raise LedgerError(f"emk: run {str(run_id)[:80]}: an event in its log is not what the kernel writes "
                          f"({str(e).removeprefix('emk: ')[:160]})") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError, RecursionError) as e:
        raise LedgerError(f"emk: run {str(run_id)[:80]}: an event in its log is not what the kernel writes "
                          f"({type(e).__name__}: {str(e)[:120]})") from None


def _count(v: Any, what: str) -> int:
    if type(v) is not int or not 0 <= v < 1 << 63:
        raise LedgerError(f"emk: a {what} in the log is {_shown(v)}, not an int in 0..2**63-1")
    return v


def _time(v: Any, what: str) -> float:
    if type(v) not in (int, float) or not math.isfinite(v) or not 0 <= v <= MAX_TIME_S * 1000:
        raise LedgerError(f"emk: a {what} in the log is {_shown(v)}, not a finite non-negative time")
    return v


def _shown(v: Any) -> str:
    from ..abi.errors import shown
    return shown(v, 40)


def _derive(store: Any, run_id: str) -> tuple[list[Experience], int]:
    info = store.get_run(run_id)
    base = _time(info.created_at, "run creation time")
    recs: dict[int, dict[str, Any]] = {}
    spawn_args: dict[int, Any] = {}
    n = 0
    for ev in store.events(run_id):
        n += 1
        kind, pid = ev.kind, ev.pid
        if kind == "sys":
            d = ev.data
            if isinstance(d, dict) and d.get("@") == "Spawn":
                spawn_args[_count(pid, "pid")] = d.get("args")
            continue
        if kind not in ("spawn", "policy", "charge", "exit", "log", "error"):
            continue
        d = ev.data
        if kind == "spawn":
            if type(d) is not list or len(d) < 2 or type(d[1]) is not str:
                raise LedgerError(f"emk: a spawn event in the log is not [parent, name]")
            parent, name = _count(d[0], "parent pid"), _clean(d[1][:200])
            args = spawn_args.pop(parent, None)
            recs[_count(pid, "pid")] = {
                "pid": pid, "agent": name, "parent": parent,
                "task": name if args is None else f"{name} {_short(args, MAX_TASK - len(name) - 1)}",
                "actions": [], "more": 0, "failures": [], "outcome": "running",
                "started": _time(ev.time, "time"), "ended": None, "tokens": 0, "tool_calls": 0, "usd_nano": 0,
                "errors": 0}
            continue
        r = recs.get(pid)
        if r is None:
            continue
        if kind == "policy":
            if type(d) is not list or len(d) < 3 or type(d[0]) is not str or d[1] not in (True, False) \
                    or type(d[1]) not in (bool, int) or type(d[2]) is not str:
                raise LedgerError("emk: a policy event in the log is not [action, allowed, rule]")
            if len(r["actions"]) < MAX_ACTIONS:
                r["actions"].append(Action(_clean(d[0][:200]), bool(d[1]), _clean(d[2][:200])))
            else:
                r["more"] += 1
        elif kind == "charge":
            if type(d) is not list or len(d) < 4:
                raise LedgerError("emk: a charge event in the log is not [what, tokens, tool calls, usd nano]")
            r["tokens"] += _count(d[1], "token charge")
            r["tool_calls"] += _count(d[2], "tool-call charge")
            r["usd_nano"] += _count(d[3], "usd charge")
        elif kind == "exit":
            if type(d) is not str:
                raise LedgerError("emk: an exit event in the log is not an exit reason")
            r["outcome"] = _clean(d[:MAX_TASK])
            r["ended"] = _time(ev.time, "time")
        elif kind == "error":
            r["errors"] += 1
        elif kind == "log" and isinstance(d, list) and len(d) == 3 and isinstance(d[2], dict):
            if d[1] == TASK_MSG and isinstance(d[2].get("task"), str):
                r["task"] = _short(d[2]["task"])
            elif d[1] == FAILURE_MSG and isinstance(d[2].get("kind"), str):
                r["failures"].append(_clean(d[2]["kind"][:64]))
    out = [Experience(run_id, r["pid"], r["agent"], r["parent"], r["task"], tuple(r["actions"]), r["more"],
                      tuple(r["failures"]), r["outcome"], _outcome_kind(r["outcome"]), r["started"], r["ended"],
                      round(base + r["started"] / 1000.0, 6), r["tokens"], r["tool_calls"], r["usd_nano"],
                      r["errors"]) for r in recs.values()]
    return out, n


@dataclass(frozen=True)
class Verified:
    run_id: str
    ok: bool
    missing: tuple[str, ...]      # derived from the log, absent from the index
    extra: tuple[str, ...]        # in the index, not derivable from the log (forged)
    tampered: tuple[str, ...]     # bytes that do not hash to their id
    head: str = ""                # what is wrong with the head ("" when it is right)


class Ledger:
    """The ledger over one store. `experiences(run)` and `query(...)` use the index, built
    or repaired from the log as needed; nothing here is written except that index."""

    def __init__(self, store: Any, *, embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None,
                 audit: tuple[Iterable[Any], Any, bytes] | None = None) -> None:
        self.store = store
        self.embed = embed
        self.rebuilt = 0          # runs whose index was (re)built from the log
        self.repaired = 0         # of those, because an entry was tampered with or lost
        self._runs: dict[str, tuple[int, list[Experience]]] = {}
        if audit is not None:
            from ..audit import verify
            records, anchor, key = audit
            rep = verify(records, anchor, key)
            if not rep.ok:
                raise LedgerError(f"emk: the flight recorder's chain does not verify: {rep.summary()}")

    # -- the index ------------------------------------------------------------------------
    def _head_key(self, run_id: str) -> str:
        return f"{PREFIX}{run_id}/head"

    def _entry_key(self, run_id: str, eid: str) -> str:
        return f"{PREFIX}{run_id}/x/{eid}"

    def rebuild(self, run_id: str) -> list[Experience]:
        """Derive the run's experiences from its log and write its index afresh."""
        run_id = _run_id(run_id)
        exps, n = derive(self.store, run_id)
        old = [k for k, _ in self.store.kv_items(f"{PREFIX}{run_id}/")]
        if old:
            self.store.kv_delete(old)
        ids = [e.id for e in exps]
        self.store.kv_put([(self._entry_key(run_id, e.id), encode(e.body())) for e in exps])
        self.store.kv_put([(self._head_key(run_id), json.dumps({"format": FORMAT, "events": n, "ids": ids})
                            .encode())])
        self.store.flush()
        self.rebuilt += 1
        self._runs[run_id] = (n, exps)
        return exps

    def _head(self, run_id: str) -> tuple[int, list[str]] | None:
        """The run's index head (events derived from, entry ids), or None if it is absent
        or not a head this ledger writes (then it is rebuilt and the repair counted)."""
        raw = self.store.kv_get(self._head_key(run_id))
        if raw is None:
            return None
        try:
            head = json.loads(raw)
        except (ValueError, RecursionError):
            head = None
        if type(head) is dict and type(head.get("format")) is int and head["format"] != FORMAT:
            return None                       # written by another version of the ledger: derive again
        if (type(head) is not dict or set(head) != {"format", "events", "ids"} or head["format"] != FORMAT
                or type(head["events"]) is not int or head["events"] < 0 or type(head["ids"]) is not list
                or not all(type(i) is str and _HEX64.fullmatch(i) for i in head["ids"])
                or len(set(head["ids"])) != len(head["ids"])):
            self.repaired += 1
            return None
        return head["events"], head["ids"]

    def _load(self, run_id: str) -> list[Experience] | None:
        """The run's experiences from its index, or None if it must be rebuilt: no head, a
        malformed head, a run that grew since, or entries that are not exactly the head's
        (one missing, one added, one whose bytes do not hash to its id or do not decode)."""
        head = self._head(run_id)
        if head is None:
            return None
        events, ids = head
        if events != self.store.get_run(run_id).events:
            return None                       # the run has grown since: derive again
        stored = dict(self.store.kv_items(f"{PREFIX}{run_id}/x/"))
        if set(stored) != {self._entry_key(run_id, i) for i in ids}:
            self.repaired += 1                # an entry lost, or one the head does not list
            return None
        out = []
        for eid in ids:
            data = stored[self._entry_key(run_id, eid)]
            if hashlib.sha256(data).hexdigest() != eid:
                self.repaired += 1
                return None
            try:
                exp = Experience.from_body(json.loads(data))
            except (ValueError, TypeError, KeyError, RecursionError, LedgerError):
                self.repaired += 1
                return None
            out.append(exp)
        return out

    def experiences(self, run_id: str) -> list[Experience]:
        """One run's experiences, from the index (checked entry by entry), rebuilt from
        the log if it is missing, stale or tampered with."""
        run_id = _run_id(run_id)
        events = self.store.get_run(run_id).events
        cached = self._runs.get(run_id)
        if cached is not None and cached[0] == events:
            return cached[1]
        exps = self._load(run_id)
        if exps is None:
            return self.rebuild(run_id)
        self._runs[run_id] = (events, exps)
        return exps

    def verify(self, run_id: str) -> Verified:
        """Re-derive the run from its log and compare with its stored index: its entries
        (missing, extra, tampered) and its head (which must list exactly the derived ids,
        and the number of events they were derived from)."""
        run_id = _run_id(run_id)
        exps, n = derive(self.store, run_id)
        derived = {e.id for e in exps}
        stored: dict[str, bytes] = {}
        for k, v in self.store.kv_items(f"{PREFIX}{run_id}/x/"):
            stored[k.rsplit("/", 1)[1]] = v
        tampered = tuple(sorted(i for i, v in stored.items() if hashlib.sha256(v).hexdigest() != i))
        missing = tuple(sorted(derived - set(stored)))
        extra = tuple(sorted(set(stored) - derived - set(tampered)))
        before = self.repaired
        head = self._head(run_id)
        self.repaired = before                # verifying repairs nothing
        if head is None:
            problem = "no head, or a malformed one"
        elif head[0] != n:
            problem = f"the head says {head[0]} events; the log holds {n}"
        elif sorted(head[1]) != sorted(derived):
            problem = "the head does not list exactly the experiences the log derives"
        else:
            problem = ""
        return Verified(run_id, not (missing or extra or tampered or problem), missing, extra, tampered, problem)

    # -- queries --------------------------------------------------------------------------
    def all(self, runs: Iterable[str] | None = None) -> list[Experience]:
        ids = _runs(runs) if runs is not None else [r.run_id for r in self.store.runs()]
        out: list[Experience] = []
        for rid in ids:
            out.extend(self.experiences(rid))
        return out

    def get(self, eid: str, runs: Iterable[str] | None = None) -> Experience | None:
        if type(eid) is not str or not _HEX64.fullmatch(eid):
            raise LedgerQueryError(f"emk: an experience id is 64 lowercase hex digits, got {_shown(eid)}")
        for e in self.all(runs):
            if e.id == eid:
                return e
        return None

    def query(self, *, agent: str | None = None, outcome: str | None = None, since: float | None = None,
              until: float | None = None, similar: str | None = None, k: int = 10,
              runs: Iterable[str] | None = None) -> list[Experience]:
        """Experiences matching every filter given: `agent` (process name), `outcome` (the
        exit kind, "normal", "fault", "quota"..., or the exact reason), `since`/`until`
        (wall seconds, inclusive), then, if `similar` is given, ranked by similarity to it
        (BM25 over task, actions, failures and outcome, fused with vectors when the ledger
        has an embedder), else oldest first; at most `k`. An argument of the wrong type or
        out of range is a `LedgerQueryError` (a `BadArgument`), checked before any work."""
        agent, outcome, similar = (_text(w, v) for w, v in (("agent", agent), ("outcome", outcome),
                                                             ("similar", similar)))
        since, until = _seconds("since", since), _seconds("until", until)
        if since is not None and until is not None and since > until:
            raise LedgerQueryError(f"emk: the time range ends before it starts (since {since!r} > until {until!r})")
        if type(k) is not int or not 1 <= k <= MAX_K:
            raise LedgerQueryError(f"emk: k must be an int in 1..{MAX_K}, got {_shown(k)}")
        run_ids = None if runs is None else _runs(runs)
        pool = [e for e in self.all(run_ids)
                if (agent is None or e.agent == agent)
                and (outcome is None or e.outcome_kind == outcome or e.outcome == outcome)
                and (since is None or e.at >= since) and (until is None or e.at <= until)]
        if similar is None:
            return sorted(pool, key=lambda e: (e.at, e.run_id, e.pid))[:k]
        return self._rank(pool, similar, k)

    def _rank(self, pool: list[Experience], similar: str, k: int) -> list[Experience]:
        from ..userland.caas.index import RRF_K, VectorIndex
        bm = Bm25Recaller()
        for i, e in enumerate(pool):
            bm.add(i, e.text())
        lists = [bm.search(similar, k)]
        if self.embed is not None and pool:
            from ..userland.caas.embed import check_vectors
            try:
                got, asked = self.embed([e.text() for e in pool]), self.embed([similar])
            except Exception as e:   # the embedder's own failure, whatever its class, is the ledger's typed one
                raise LedgerError(f"emk: the embedder failed ({type(e).__name__}: {str(e)[:200]})") from None
            try:   # the embedder's reply is checked like any input: a bad one ranks nothing
                rows = check_vectors(got, len(pool))
                q = check_vectors(asked, 1, len(rows[0]))[0]
            except ValueError as e:
                raise LedgerError(f"emk: the embedder's reply is refused: {e}") from None
            vi = VectorIndex()
            for i, row in enumerate(rows):
                vi.add(i, row)
            lists.append(vi.search(q, k))
        score: dict[int, float] = {}
        for ranked in lists:
            for r, i in enumerate(ranked, 1):
                score[i] = score.get(i, 0.0) + 1.0 / (RRF_K + r)
        return [pool[i] for i in sorted(score, key=lambda i: (-score[i], i))[:k]]


def _text(what: str, v: Any) -> str | None:
    """A query string as a plain str (a subclass's own __eq__ never runs), bounded, UTF-8."""
    if v is None:
        return None
    try:
        return A.text(f"emk: {what}", v, max_len=MAX_QUERY_TEXT)
    except BadArgument as e:
        raise LedgerQueryError(str(e)) from None


def _seconds(what: str, v: Any) -> float | None:
    if v is None:
        return None
    if type(v) not in (int, float) or (type(v) is int and not -10**15 < v < 10**15) or not math.isfinite(v) \
            or not 0 <= v <= MAX_TIME_S:
        raise LedgerQueryError(f"emk: {what} must be a finite number of wall seconds in 0..{MAX_TIME_S:.0e}, "
                               f"got {_shown(v)}")
    return float(v)


def _run_id(v: Any) -> str:
    if type(v) is not str or not v or len(v) > 200:
        raise LedgerQueryError(f"emk: a run id is a non-empty str of at most 200 characters, got {_shown(v)}")
    return v


def _runs(v: Any) -> list[str]:
    """A list of run ids: a list or tuple (never a lazy iterable that could run forever) of
    at most MAX_RUNS, each a plain non-empty str."""
    if type(v) not in (list, tuple):
        raise LedgerQueryError(f"emk: runs must be a list of run ids, got {type(v).__name__}")
    if len(v) > MAX_RUNS:
        raise LedgerQueryError(f"emk: {len(v)} runs in one query; at most {MAX_RUNS}")
    return list(dict.fromkeys(_run_id(r) for r in v))   # a run named twice is searched once


class EmkDriver(Driver):
    """The `emk` device: agents query the ledger through syscalls (read-only).

        read {"op": "query", "agent"?, "outcome"?, "since"?, "until"?, "similar"?, "k"?, "runs"?}
             → [experience dict with its "id"]
        read {"op": "get", "id": str} → experience dict | None
        read {"op": "verify", "run": str} → {"ok", "missing", "extra", "tampered", "head"}
    """

    name = "emk"

    def __init__(self, ledger: Ledger, *, name: str = "emk") -> None:
        self.ledger = ledger
        self.name = name

    def open(self, owner: int, params: Any) -> None:
        return None

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        kind = req.get("op") if isinstance(req, dict) else None
        if op != "read" or kind not in ("query", "get", "verify"):
            raise DriverError(f"{self.name}: reads are {{'op': 'query'|'get'|'verify', ...}}; the ledger is "
                              "written only by the event log")
        return (f"{self.name}.{kind}", {k: v for k, v in req.items() if k != "op"})

    _FIELDS = {"query": {"op", "agent", "outcome", "since", "until", "similar", "k", "runs"},
               "get": {"op", "id"}, "verify": {"op", "run"}}

    def read(self, handle: Any, req: Any) -> DriverResult:
        self.action("read", handle, req)
        op = req["op"]
        try:
            unknown = [k for k in req if k not in self._FIELDS[op]]
            if unknown:
                raise LedgerQueryError(f"emk: unknown {op} field(s) "
                                       f"{sorted(_shown(k) for k in unknown)[:5]}")
            if op == "get":
                e = self.ledger.get(req.get("id"))
                return DriverResult(None if e is None else e.to_dict(), Cost(reductions=1))
            if op == "verify":
                v = self.ledger.verify(req.get("run"))
                return DriverResult({"ok": v.ok, "missing": list(v.missing), "extra": list(v.extra),
                                     "tampered": list(v.tampered), "head": v.head}, Cost(reductions=1))
            runs = req.get("runs")
            found = self.ledger.query(agent=req.get("agent"), outcome=req.get("outcome"), since=req.get("since"),
                                      until=req.get("until"), similar=req.get("similar"), k=req.get("k", 10),
                                      runs=None if runs is None else _runs(runs))
        except LedgerError as e:
            raise DriverError(str(e)) from None
        except (LookupError, AgentOSError) as e:   # no such run; a damaged store
            raise DriverError(f"emk: {e}") from None
        return DriverResult([e.to_dict() for e in found], Cost(reductions=1))

    def write(self, handle: Any, data: Any) -> DriverResult:
        raise DriverError(f"{self.name}: the ledger is read-only; experiences come from the event log")


__all__ = ["Action", "EmkDriver", "Experience", "Ledger", "LedgerError", "LedgerQueryError", "TASK_MSG", "Verified", "content_id",
           "derive", "encode"]
