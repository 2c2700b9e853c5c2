"""`/metrics`: the daemon's kernel in Prometheus exposition format (prometheus-client).

Naming follows Prometheus: the `agentos_` prefix, base units (dollars, not nano-dollars),
`_total` on counters. No label carries a pid or a name an agent chose: with a million
agents that would be a million series. Labels are closed sets: a process state, a
syscall name from the registry, a policy decision (allow/deny) and its effect, a
resource, an exit kind.

Counts the kernel does not fold itself (quota kills, cost by agent) are folded here from
the event stream by `Folder`, a listener on the daemon's `EventHub`; policy decisions by
effect are counted by the daemon's policy (`SubmissionPolicy`), since the event log
records allowed/denied only. A quota kill is any exit `quota(resource)`: a refused
reservation, an overrun, a wall-clock budget that ran out.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterator

from ..abi.syscalls import table


class Folder:
    """Counters over event rows that the kernel's own metrics do not keep."""

    def __init__(self) -> None:
        self.policy: Counter[str] = Counter()
        self.quota: Counter[str] = Counter()
        self.names: dict[int, str] = {}             # live pid -> name (for cost by agent)
        self.usd_nano_by_name: Counter[str] = Counter()  # nano-dollars charged, by process name (exact)
        self.tokens_by_name: Counter[str] = Counter()
        self.tool_calls_by_name: Counter[str] = Counter()

    @property
    def cost_by_name(self) -> dict[str, float]:
        """Dollars charged, by process name: summed in whole nano-dollars, converted once."""
        return {n: v / 1e9 for n, v in self.usd_nano_by_name.items()}

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            kind = r["kind"]
            if kind == "policy":
                d = r["data"]
                allowed = isinstance(d, list) and len(d) > 1 and d[1] is True
                self.policy["allow" if allowed else "deny"] += 1
            elif kind == "spawn":
                d = r["data"]
                if isinstance(d, list) and len(d) > 1:
                    self.names[r["pid"]] = str(d[1])[:200]
            elif kind == "exit":
                self.names.pop(r["pid"], None)
                d = r["data"]
                if isinstance(d, str) and d.startswith("quota(") and d.endswith(")"):
                    res = d[6:-1]
                    self.quota[res if res in _RESOURCES else "other"] += 1
            elif kind == "charge":
                d = r["data"]
                if isinstance(d, list) and len(d) >= 4:
                    name = self.names.get(r["pid"], "?")
                    self.tokens_by_name[name] += d[1] if type(d[1]) is int else 0
                    self.tool_calls_by_name[name] += d[2] if type(d[2]) is int else 0
                    self.usd_nano_by_name[name] += d[3] if type(d[3]) is int else 0


_RESOURCES = {"tokens", "tool_calls", "usd", "wall_ms", "children", "mem", "max_mailbox", "reductions"}
_SYSCALLS = {s.name for s in table()}
STATES = ("ready", "running", "waiting", "suspended", "exited")


def collect(daemon: Any) -> Iterator[Any]:
    """The metric families of `daemon`'s kernel now."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    k = daemon.kernel
    snap = k.metrics()
    by_state: Counter[str] = Counter(r["state"] for r in k.ps())
    g = GaugeMetricFamily("agentos_processes", "Live processes by state", labels=["state"])
    for st in STATES:
        g.add_metric([st], by_state.get(st, 0))
    yield g
    c = CounterMetricFamily("agentos_syscalls", "Syscalls handled, by syscall", labels=["syscall"])
    for name, n in sorted(snap["syscalls"].items()):
        c.add_metric([name if name in _SYSCALLS else "other"], n)
    yield c
    e = CounterMetricFamily("agentos_process_exits", "Process exits, by exit kind", labels=["reason"])
    for name, n in sorted(snap["exits"].items()):
        e.add_metric([name], n)
    yield e
    fl = CounterMetricFamily("agentos_failures", "Failures reported by services, by kind", labels=["kind"])
    for name, n in sorted(snap.get("failures", {}).items()):
        fl.add_metric([name], n)
    yield fl
    err = CounterMetricFamily("agentos_syscall_errors", "Syscalls refused with an error", labels=["syscall"])
    for name, n in sorted(snap["errors"].items()):
        err.add_metric([str(name) if str(name) in _SYSCALLS else "other"], n)
    yield err
    fold: Folder = daemon.folder
    p = CounterMetricFamily("agentos_policy_decisions", "Policy decisions, by decision and effect",
                            labels=["decision", "effect"])
    counted = getattr(getattr(daemon, "policy", None), "decisions", None)
    if counted:
        for (allowed, eff), n in sorted(counted.items()):
            p.add_metric(["allow" if allowed else "deny", eff], n)
    else:  # a kernel not checked through the daemon's policy: the log's allow/deny only
        for d in ("allow", "deny"):
            p.add_metric([d, "unknown"], fold.policy.get(d, 0))
    yield p
    q = CounterMetricFamily("agentos_quota_kills", "Processes ended by an exhausted budget, by resource",
                            labels=["resource"])
    for res, n in sorted(fold.quota.items()):
        q.add_metric([res], n)
    yield q
    yield CounterMetricFamily("agentos_llm_tokens", "LLM tokens charged", value=snap["tokens"])
    yield CounterMetricFamily("agentos_tool_calls", "Tool calls charged", value=snap["tool_calls"])
    yield CounterMetricFamily("agentos_cost_dollars", "US dollars charged", value=snap["usd"])
    yield CounterMetricFamily("agentos_processes_spawned", "Processes spawned", value=snap["spawned"])
    yield CounterMetricFamily("agentos_events", "Events written to the kernel log", value=k.events.seq)
    yield GaugeMetricFamily("agentos_approvals_pending", "Approval requests waiting for a person",
                            value=len(daemon.approvals.pending))
    yield CounterMetricFamily("agentos_approvals_answered", "Approval requests answered",
                              value=daemon.approvals.answered)
    yield GaugeMetricFamily("agentos_capabilities_live", "Live capabilities", value=snap["caps_live"])
    audit = getattr(k, "audit", None)
    if audit is not None and isinstance(getattr(audit, "commits", None), int):
        yield CounterMetricFamily("agentos_audit_commits", "Flight-recorder group commits", value=audit.commits)
        yield CounterMetricFamily("agentos_audit_records", "Flight-recorder records written",
                                  value=getattr(audit, "seq", 0))


def exposition(daemon: Any) -> tuple[bytes, str]:
    """(body, content type) for GET /metrics."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    class _C:
        def collect(self) -> Iterator[Any]:
            return collect(daemon)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_C())
    return generate_latest(reg), CONTENT_TYPE_LATEST


__all__ = ["Folder", "collect", "exposition"]
