"""Move a run between stores as JSON lines: one header, then journal rows, then events.

Used for golden recorded runs checked into the tests, and to copy a run out of one
store into another. Event rows keep their canonical bytes and journal rows the shape
they were recorded in (the header's metadata names the recording format), so a moved run
replays and compares exactly as it did where it was recorded, whatever its version.
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
    for row in store.journal_rows(run_id):
        yield json.dumps({"j": json.loads(row)}, sort_keys=True)
    for ev in store.events(run_id):
        yield json.dumps({"e": ev.raw.decode()})


def load_run(store: Any, lines: Iterable[str]) -> str:
    """Write a dumped run into `store`; returns its run id there."""
    from ..kernel.events import canonical, dumps_canonical

    it = iter(lines)
    head = json.loads(next(it))["run"]
    rid = store.create_run(head["name"], head["meta"], head["run_id"])
    jrows: list[tuple[int, str]] = []
    erows: list[tuple[int, float, int, str, bytes]] = []
    for n, line in enumerate(it, start=2):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or ("j" in row and not isinstance(row["j"], dict)):
            from .base import StoreError

            raise StoreError(f"line {n} of the dumped run is not a journal or event row")
        if "j" in row:
            jrows.append((len(jrows), dumps_canonical(canonical(row["j"]))))  # as recorded
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
