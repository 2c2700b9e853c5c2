"""The `runs` device: recorded runs, read back from the store, for agents that learn.

A process that holds this device can look at finished runs: what each step did and what
came of it, in the same numbering the PROV export uses (step i of run R is
`urn:agentos:run:R/step/i`), so a lesson can name the step it came from. Reads only;
each is journaled like any device read, so a replay sees the history the live run saw.

    read {"op": "list", "name": str | None, "limit": 20} → [{"run", "name", "status", "exit",
          "created_at"}], newest first, finished runs only
    read {"op": "digest", "run": id | prefix | name, "max_steps": 60, "max_chars": 300}
        → {"run", "name", "status", "exit", "outcome", "steps": [{"step", "type", "pid", "agent",
           "text"}], "notes": [{"pid", "msg", "fields"}], "omitted": n}

`outcome` is the last `outcome` log event of the run (what `userland.distill.report_outcome`
writes: {"ok": bool, "detail": str}), or None. A digest keeps the first 5 steps and the
last `max_steps - 5`, each step's text cut to `max_chars`, so a prompt built from it fits a
small model's context.
"""
from __future__ import annotations

import json
from typing import Any

from ..abi.driver import Driver, DriverResult
from ..abi.errors import DriverError
from ..abi.types import Cost, Pid

MAX_STEPS = 500
MAX_CHARS = 4000
MAX_NOTES = 100
HEAD = 5


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(0, n - 1)] + "…"


def _dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


def step_text(step_type: str, payload: dict[str, Any], limit: int) -> str:
    """One line saying what a provenance step did."""
    if step_type == "prompt":
        msgs = (payload.get("request") or {}).get("messages") or []
        last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
        content = last.get("content")
        text = content if isinstance(content, str) else _dumps(content)
        return _cut(f"asked {payload.get('device')} ({len(msgs)} messages); last {last.get('role')}: {text}", limit)
    if step_type == "response":
        res = payload.get("result") or {}
        if isinstance(res, dict) and "error" in res and "message" in res:
            return _cut(f"{payload.get('device')} failed: {res.get('message')}", limit)
        calls = res.get("tool_calls") if isinstance(res, dict) else None
        if calls:
            return _cut("model called " + ", ".join(f"{c.get('name')}({_dumps(c.get('arguments'))})"
                                                    for c in calls if isinstance(c, dict)), limit)
        content = res.get("content") if isinstance(res, dict) else res
        return _cut(f"model answered: {content if isinstance(content, str) else _dumps(content)}", limit)
    if step_type == "tool_call":
        res = payload.get("result")
        if isinstance(res, dict) and set(res) == {"error", "message"}:
            out = f"error: {res['message']}"
        else:
            out = res if isinstance(res, str) else _dumps(res)
        req = payload.get("request")
        if isinstance(req, dict) and set(req) == {"tool", "args"}:   # a tools device call: its arguments
            req = req["args"]
        return _cut(f"{payload.get('action') or payload.get('device')} {_dumps(req)} → {out}", limit)
    return _cut(f"{step_type}: {_dumps(payload)}", limit)


class RunsDriver(Driver):
    """Read-only access to the runs recorded in `store` (None: the store this kernel
    records its own run to)."""

    name = "runs"

    def __init__(self, store: Any = None, *, name: str = "runs") -> None:
        self.store = store
        self.name = name

    def _recording(self) -> Any:
        """The run this kernel records to (a store `Recording`), if any."""
        return self.host.shared("recording", lambda: None) if self.host is not None else None

    def open(self, owner: Pid, params: Any) -> dict[str, Any]:
        if params not in (None, {}):
            raise DriverError(f"{self.name}: open takes no parameters")
        if self.store is None:
            self.store = getattr(self._recording(), "store", None)
            if self.store is None:
                raise DriverError(f"{self.name}: no store to read runs from: give the device one, or "
                                  f"record this run (agentctl run records to $AGENTOS_HOME)")
        return {"owner": owner}

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        if op != "read":
            raise DriverError(f"{self.name}: the runs device is read-only")
        if not isinstance(req, dict) or req.get("op") not in ("list", "digest"):
            raise DriverError(f"{self.name}: a read is {{'op': 'list'|'digest', ...}}, got {req!r:.80}")
        return (f"{self.name}.{req['op']}", {"run": req.get("run"), "name": req.get("name")})

    def read(self, handle: Any, req: Any) -> DriverResult:
        self.action("read", handle, req)
        from ..store.base import StoreError

        try:
            if req["op"] == "list":
                return self._list(req)
            return self._digest(req)
        except StoreError as e:
            raise DriverError(f"{self.name}: {e}") from None

    @staticmethod
    def _int(req: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
        v = req.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise DriverError(f"runs: {key} must be an int in {lo}..{hi}, got {v!r:.40}")
        return v

    def _list(self, req: dict[str, Any]) -> DriverResult:
        extra = sorted(set(req) - {"op", "name", "limit"})
        if extra:
            raise DriverError(f"{self.name}: unknown list field(s) {extra}")
        name = req.get("name")
        if name is not None and not isinstance(name, str):
            raise DriverError(f"{self.name}: name must be a string or null")
        limit = self._int(req, "limit", 20, 0, 1000)
        rows = [r for r in self.store.runs() if r.status != "running" and (name is None or r.name == name)]
        rows.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        out = [{"run": r.run_id, "name": r.name, "status": r.status, "exit": r.summary.get("exit"),
                "created_at": r.created_at} for r in rows[:limit]]
        return DriverResult(out, Cost(reductions=1 + len(out)))

    def _digest(self, req: dict[str, Any]) -> DriverResult:
        from ..provenance.model import manifest_from_store
        from ..store.base import resolve

        extra = sorted(set(req) - {"op", "run", "max_steps", "max_chars"})
        if extra:
            raise DriverError(f"{self.name}: unknown digest field(s) {extra}")
        ref = req.get("run")
        if not isinstance(ref, str) or not ref or len(ref) > 200:
            raise DriverError(f"{self.name}: digest needs 'run': a run id, unique prefix or name")
        max_steps = self._int(req, "max_steps", 60, HEAD + 1, MAX_STEPS)
        max_chars = self._int(req, "max_chars", 300, 20, MAX_CHARS)
        info = resolve(self.store, ref)
        if info.status == "running":
            raise DriverError(f"{self.name}: run {info.run_id} has not finished; a digest is of a finished run")
        steps: list[dict[str, Any]] = []
        tail: list[dict[str, Any]] = []
        n = 0
        for s in manifest_from_store(self.store, info.run_id).steps:
            try:
                payload = json.loads(s.payload_json)
            except ValueError:
                payload = {}
            row = {"step": s.index, "type": s.step_type, "pid": s.process_id, "agent": s.agent_id,
                   "text": step_text(s.step_type, payload if isinstance(payload, dict) else {}, max_chars)}
            n += 1
            if len(steps) < HEAD:
                steps.append(row)
            else:
                tail.append(row)
                if len(tail) > max_steps - HEAD:
                    tail.pop(0)
        notes: list[dict[str, Any]] = []
        outcome = None
        for ev in self.store.events(info.run_id, kind="log"):
            d = ev.data
            if not (isinstance(d, list) and len(d) == 3):
                continue
            msg, fields = d[1], d[2] if isinstance(d[2], dict) else {}
            if msg == "outcome":
                outcome = {"ok": fields.get("ok") is True, "detail": _cut(str(fields.get("detail", "")), max_chars)}
            dumped = _dumps(fields)
            notes.append({"pid": ev.pid, "msg": _cut(str(msg), 80),
                          "fields": fields if len(dumped) <= max_chars else {"summary": _cut(dumped, max_chars)}})
            if len(notes) > MAX_NOTES:
                notes.pop(0)
        out = {"run": info.run_id, "name": info.name, "status": info.status, "exit": info.summary.get("exit"),
               "outcome": outcome, "steps": steps + tail, "notes": notes, "omitted": n - len(steps) - len(tail)}
        return DriverResult(out, Cost(reductions=1 + n))


__all__ = ["RunsDriver", "step_text"]
