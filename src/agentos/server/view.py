"""What the dashboard shows, computed on the server so that a page never holds more than
it can draw: at most `MAX_ROWS` process rows (a page of a search), aggregates by name and
state for the rest, the last events matching the page's filters, pending approvals, cost
per agent, the audit status, and the cluster's nodes and their processes when the daemon is one.

Every string here may have been written by an agent; the page puts them into the DOM as
text only (never as HTML).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

MAX_ROWS = 200
MAX_EVENTS = 100


def _budget(row: dict[str, Any]) -> dict[str, Any]:
    u, rem, res_ = row["used"], row["remaining"], row.get("reserved") or {}
    return {res: {"used": u.get(res), "reserved": res_.get(res, 0), "left": rem.get(res)}
            for res in ("tokens", "tool_calls", "usd")}


def audit_view(audit: Any) -> dict[str, Any]:
    """The flight recorder's state: records written and durable, commits, the latest signed
    checkpoint's size, checkpoint errors; `configured: false` without one."""
    if audit is None:
        return {"configured": False}
    out: dict[str, Any] = {"configured": True}
    for name, attr in (("records", "seq"), ("durable", "durable"), ("commits", "commits"),
                       ("checkpoint_errors", "checkpoint_errors")):
        v = getattr(audit, attr, None)
        if isinstance(v, int):
            out[name] = v
    latest = getattr(audit, "latest", None)
    size = getattr(latest, "size", None) if latest is not None else None
    out["last_checkpoint_size"] = size if isinstance(size, int) else None
    return out


def dashboard_view(daemon: Any, *, q: str = "", page: int = 0, size: int = MAX_ROWS, pid: int | None = None,
                   kind: str | None = None) -> dict[str, Any]:
    """The dashboard's state for one client's query."""
    k = daemon.kernel
    size = max(1, min(size, MAX_ROWS))
    rows = k.ps()
    live = len(rows)
    agg: Counter[tuple[str, str]] = Counter((str(r["name"]), r["state"]) for r in rows)
    if q:
        ql = q.lower()
        rows = [r for r in rows if ql in str(r["name"]).lower() or ql == str(r["pid"])]
    rows.sort(key=lambda r: r["pid"])
    total = len(rows)
    shown = rows[page * size:(page + 1) * size]
    events, _ = daemon.hub.since(max(0, daemon.hub.last_seq - 5000), pid=pid, kind=kind)
    audit_status = audit_view(k.audit)
    fold = daemon.folder
    top = sorted(fold.cost_by_name.items(), key=lambda kv: -kv[1])[:10]
    return {
        "seq": daemon.hub.last_seq,
        "total": total, "page": page, "size": size, "live": live,
        "processes": [{"pid": r["pid"], "name": r["name"], "state": r["state"], "parent": r["parent"],
                       "wait": r["wait"], "budget": _budget(r)} for r in shown],
        "aggregate": [{"name": n, "state": s, "count": c} for (n, s), c in agg.most_common(50)],
        "events": events[-MAX_EVENTS:],
        "approvals": daemon.approvals.list(),
        "cost": {n: round(v, 9) for n, v in top},
        "tokens": {n: fold.tokens_by_name.get(n, 0) for n, _ in top},
        "audit": audit_status,
        "root": daemon.root_pid,
        "nodes": cluster_nodes(daemon),
        "remote": None if getattr(daemon, "cluster", None) is None else daemon.cluster.remote_ps()[:MAX_ROWS],
    }


def cluster_nodes(daemon: Any) -> list[dict[str, Any]] | None:
    """The cluster's nodes as this node sees them (`Cluster.nodes`), or None when the
    daemon is not a node of a cluster."""
    cluster = getattr(daemon, "cluster", None)
    return None if cluster is None else cluster.nodes()


__all__ = ["MAX_ROWS", "cluster_nodes", "dashboard_view"]
