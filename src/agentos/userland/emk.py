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
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

from ..abi.driver import Driver, DriverResult
from ..abi.errors import DriverError
from ..abi.types import Cost
from ..kernel.canon import canonical
from ..kernel.recall import Bm25Recaller

TASK_MSG = "emk.task"            # sys.log("info", "emk.task", task="...") names a process's task
FAILURE_MSG = "failure"          # the failure model's log events
PREFIX = "emk/"
FORMAT = 1
MAX_TASK = 2000
MAX_ACTIONS = 1000               # per experience; past it, counted in `more_actions`
MAX_K = 1000


class LedgerError(Exception):
    """The ledger cannot be built or trusted: the log or the audit chain says why."""


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
    def from_body(cls, d: dict[str, Any]) -> "Experience":
        d = dict(d)
        d["actions"] = tuple(Action(**a) for a in d["actions"])
        d["failures"] = tuple(d["failures"])
        return cls(**d)


def encode(body: dict[str, Any]) -> bytes:
    """The canonical bytes an experience is addressed by (sorted keys, no spaces, UTF-8)."""
    return json.dumps(canonical(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_id(body: dict[str, Any]) -> str:
    return hashlib.sha256(encode(body)).hexdigest()


def _outcome_kind(reason: str) -> str:
    return reason.split("(", 1)[0]


def _short(value: Any, limit: int = MAX_TASK) -> str:
    s = value if isinstance(value, str) else json.dumps(canonical(value), sort_keys=True, ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def derive(store: Any, run_id: str) -> tuple[list[Experience], int]:
    """The experiences of one run, folded from its stored event log; and how many events."""
    info = store.get_run(run_id)
    base = float(info.created_at)
    recs: dict[int, dict[str, Any]] = {}
    spawn_args: dict[int, Any] = {}
    n = 0
    for ev in store.events(run_id):
        n += 1
        kind, pid = ev.kind, ev.pid
        if kind == "sys":
            d = ev.data
            if isinstance(d, dict) and d.get("@") == "Spawn":
                spawn_args[pid] = d.get("args")
            continue
        if kind not in ("spawn", "policy", "charge", "exit", "log", "error"):
            continue
        d = ev.data
        if kind == "spawn":
            parent, name = int(d[0]), str(d[1])
            args = spawn_args.pop(parent, None)
            recs[pid] = {"pid": pid, "agent": name, "parent": parent,
                         "task": name if args is None else f"{name} {_short(args, MAX_TASK - len(name) - 1)}",
                         "actions": [], "more": 0, "failures": [], "outcome": "running", "started": ev.time,
                         "ended": None, "tokens": 0, "tool_calls": 0, "usd_nano": 0, "errors": 0}
            continue
        r = recs.get(pid)
        if r is None:
            continue
        if kind == "policy":
            if len(r["actions"]) < MAX_ACTIONS:
                r["actions"].append(Action(str(d[0]), bool(d[1]), str(d[2])))
            else:
                r["more"] += 1
        elif kind == "charge":
            r["tokens"] += int(d[1])
            r["tool_calls"] += int(d[2])
            r["usd_nano"] += int(d[3])
        elif kind == "exit":
            r["outcome"] = str(d)
            r["ended"] = ev.time
        elif kind == "error":
            r["errors"] += 1
        elif kind == "log" and isinstance(d, list) and len(d) == 3 and isinstance(d[2], dict):
            if d[1] == TASK_MSG and isinstance(d[2].get("task"), str):
                r["task"] = _short(d[2]["task"])
            elif d[1] == FAILURE_MSG and isinstance(d[2].get("kind"), str):
                r["failures"].append(d[2]["kind"][:64])
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

    def _load(self, run_id: str) -> list[Experience] | None:
        """The run's experiences from its index, or None if it must be rebuilt."""
        raw = self.store.kv_get(self._head_key(run_id))
        if raw is None:
            return None
        try:
            head = json.loads(raw)
            ids = head["ids"]
            events = head["events"]
            if head.get("format") != FORMAT or not isinstance(ids, list):
                return None
        except (ValueError, KeyError, TypeError):
            self.repaired += 1
            return None
        if events != self.store.get_run(run_id).events:
            return None                       # the run has grown since: derive again
        out = []
        for eid in ids:
            data = self.store.kv_get(self._entry_key(run_id, str(eid)))
            if data is None or hashlib.sha256(data).hexdigest() != eid:
                self.repaired += 1
                return None
            try:
                exp = Experience.from_body(json.loads(data))
            except (ValueError, TypeError, KeyError):
                self.repaired += 1
                return None
            out.append(exp)
        return out

    def experiences(self, run_id: str) -> list[Experience]:
        """One run's experiences, from the index (checked entry by entry), rebuilt from
        the log if it is missing, stale or tampered with."""
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
        """Re-derive the run from its log and compare with its stored index."""
        derived = {e.id for e in derive(self.store, run_id)[0]}
        stored: dict[str, bytes] = {}
        for k, v in self.store.kv_items(f"{PREFIX}{run_id}/x/"):
            stored[k.rsplit("/", 1)[1]] = v
        tampered = tuple(sorted(i for i, v in stored.items() if hashlib.sha256(v).hexdigest() != i))
        missing = tuple(sorted(derived - set(stored)))
        extra = tuple(sorted(set(stored) - derived - set(tampered)))
        return Verified(run_id, not (missing or extra or tampered), missing, extra, tampered)

    # -- queries --------------------------------------------------------------------------
    def all(self, runs: Iterable[str] | None = None) -> list[Experience]:
        ids = list(runs) if runs is not None else [r.run_id for r in self.store.runs()]
        out: list[Experience] = []
        for rid in ids:
            out.extend(self.experiences(rid))
        return out

    def get(self, eid: str, runs: Iterable[str] | None = None) -> Experience | None:
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
        has an embedder), else oldest first; at most `k`."""
        _check_query(agent, outcome, since, until, similar, k)
        pool = [e for e in self.all(runs)
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
            vi = VectorIndex()
            for i, row in enumerate(self.embed([e.text() for e in pool])):
                vi.add(i, [float(x) for x in row])
            lists.append(vi.search([float(x) for x in self.embed([similar])[0]], k))
        score: dict[int, float] = {}
        for ranked in lists:
            for r, i in enumerate(ranked, 1):
                score[i] = score.get(i, 0.0) + 1.0 / (RRF_K + r)
        return [pool[i] for i in sorted(score, key=lambda i: (-score[i], i))[:k]]


def _check_query(agent: Any, outcome: Any, since: Any, until: Any, similar: Any, k: Any) -> None:
    for what, v in (("agent", agent), ("outcome", outcome), ("similar", similar)):
        if v is not None:
            if not isinstance(v, str) or len(v) > 4096:
                raise ValueError(f"emk: {what} must be a str of at most 4096 characters")
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"emk: {what} holds a lone surrogate") from None
    for what, v in (("since", since), ("until", until)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise ValueError(f"emk: {what} must be a finite number of seconds, got {v!r:.40}")
    if type(k) is not int or not 1 <= k <= MAX_K:
        raise ValueError(f"emk: k must be an int in 1..{MAX_K}, got {k!r:.40}")


class EmkDriver(Driver):
    """The `emk` device: agents query the ledger through syscalls (read-only).

        read {"op": "query", "agent"?, "outcome"?, "since"?, "until"?, "similar"?, "k"?, "runs"?}
             → [experience dict with its "id"]
        read {"op": "get", "id": str} → experience dict | None
        read {"op": "verify", "run": str} → {"ok", "missing", "extra", "tampered"}
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

    def read(self, handle: Any, req: Any) -> DriverResult:
        self.action("read", handle, req)
        op = req["op"]
        try:
            if op == "get":
                eid = req.get("id")
                if not isinstance(eid, str):
                    raise ValueError("emk: get needs an 'id' str")
                e = self.ledger.get(eid)
                return DriverResult(None if e is None else e.to_dict(), Cost(reductions=1))
            if op == "verify":
                run = req.get("run")
                if not isinstance(run, str):
                    raise ValueError("emk: verify needs a 'run' str")
                v = self.ledger.verify(run)
                return DriverResult({"ok": v.ok, "missing": list(v.missing), "extra": list(v.extra),
                                     "tampered": list(v.tampered)}, Cost(reductions=1))
            runs = req.get("runs")
            if runs is not None and (not isinstance(runs, list) or not all(isinstance(r, str) for r in runs)):
                raise ValueError("emk: runs must be a list of run ids")
            unknown = set(req) - {"op", "agent", "outcome", "since", "until", "similar", "k", "runs"}
            if unknown:
                raise ValueError(f"emk: unknown query field(s) {sorted(unknown)[:5]}")
            found = self.ledger.query(agent=req.get("agent"), outcome=req.get("outcome"), since=req.get("since"),
                                      until=req.get("until"), similar=req.get("similar"), k=req.get("k", 10),
                                      runs=runs)
        except ValueError as e:
            raise DriverError(str(e)) from None
        except LookupError as e:
            raise DriverError(f"emk: {e}") from None
        return DriverResult([e.to_dict() for e in found], Cost(reductions=1))

    def write(self, handle: Any, data: Any) -> DriverResult:
        raise DriverError(f"{self.name}: the ledger is read-only; experiences come from the event log")


__all__ = ["Action", "EmkDriver", "Experience", "Ledger", "LedgerError", "TASK_MSG", "Verified", "content_id",
           "derive", "encode"]
