"""Move a run between stores as JSON lines: one header, then journal rows, then events.

Used for golden recorded runs checked into the tests, and to copy a run out of one
store into another. Event rows keep their canonical bytes, so a moved run replays and
compares exactly as it did where it was recorded.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator


def dump_run(store: Any, run_id: str, *, portable: bool = True) -> Iterator[str]:
    """Lines describing the whole run. `portable` drops absolute source paths."""
    info = store.get_run(run_id)
    meta = json.loads(json.dumps(info.meta))
    if portable:
        for entry in [meta.get("init") or {}, *(meta.get("images") or {}).values()]:
            entry["file"] = None
    yield json.dumps({"run": {"run_id": info.run_id, "name": info.name, "status": info.status,
                              "meta": meta, "summary": info.summary}}, sort_keys=True)
    for e in store.journal(run_id):
        yield json.dumps({"j": json.loads(e.to_json())}, sort_keys=True)
    for ev in store.events(run_id):
        yield json.dumps({"e": ev.raw.decode()})


def load_run(store: Any, lines: Iterable[str]) -> str:
    """Write a dumped run into `store`; returns its run id there."""
    from ..kernel.journal import JournalEntry

    it = iter(lines)
    head = json.loads(next(it))["run"]
    rid = store.create_run(head["name"], head["meta"], head["run_id"])
    jrows: list[tuple[int, str]] = []
    erows: list[tuple[int, float, int, str, bytes]] = []
    for line in it:
        if not line.strip():
            continue
        row = json.loads(line)
        if "j" in row:
            jrows.append((len(jrows), JournalEntry(**row["j"]).to_json()))
        else:
            raw = row["e"].encode()
            seq, t, pid, kind, _ = json.loads(raw)
            erows.append((seq, t, pid, kind, raw))
    store.append_journal(rid, jrows)
    store.append_events(rid, erows)
    store.update_run(rid, status=head["status"], summary=head["summary"])
    store.flush()
    return rid


__all__ = ["dump_run", "load_run"]
