"""What `ps`, `metrics` and `metrics_text` report: live process rows and the counters
folded from the event stream."""
from __future__ import annotations

from typing import Any

from ..abi.types import USD_SCALE
from .process import EXITED, Process
from .state import KernelState


_STORED: dict[str, Any] = {"used": None, "remaining": None}


class Introspection(KernelState):
    """Mixed into `Kernel`."""

    # -- introspection ----------------------------------------------------------------
    def ps(self) -> list[dict[str, Any]]:
        """One row per live process: state, priority (base; its centrality in the agent graph
        and the effective priority they make), reductions, budget used, reserved by
        operations in flight, and left."""
        rows = []
        for p in self.procs.values():
            rows.append(self._row(p))
        return rows

    def _row(self, p: Process) -> dict[str, Any]:
        # a hibernated process's usage is in its stored record: shown when it wakes
        view = self.accounts.view(p.account) if p.account is not None else _STORED
        state = "suspended" if p.stopped and p.state is not EXITED else p.state.value
        rt, rc, ru = self.devices.reserved(p.pid)
        return {"pid": p.pid, "name": p.name, "state": state, "parent": p.parent.pid if p.parent else 0,
                "priority": p.priority, "centrality": p.cent,
                "effective_priority": self.effective_priority(p),  # type: ignore[attr-defined]
                "reductions": p.reductions,
                "mailbox": len(p.mailbox) if p.mailbox else 0, "used": view["used"],
                "reserved": {"tokens": rt, "tool_calls": rc, "usd": ru / USD_SCALE},
                "remaining": view["remaining"], "wait": p.wait_kind.value if p.wait_kind is not None else None,
                "exit": str(p.exit_reason) if p.exit_reason else None,
                "trust": self.trust.score(p.pid) if self.trust is not None else None}

    def metrics(self) -> dict[str, Any]:
        self.events.flush()
        m = self.metrics_folder.snapshot()
        m["processes"] = len(self.procs)
        m["caps_live"] = self.caps.live
        m["caps_ghost"] = self.caps.ghosts
        m["accounts_open"] = self.accounts.open_count
        m["messages_late_dropped"] = self.ipc.late_dropped
        m["messages_dead_letters"] = self.ipc.dead_letters
        m["pages_evicted"] = self.memory.evictions
        g = self.graph  # type: ignore[attr-defined]
        if g is not None:  # deterministic counts only: replay compares these
            m["sched_recomputes"] = g.recomputes
            m["sched_fallbacks"] = g.fallbacks
            m["sched_protected"] = g.protected
        hib = getattr(self, "hibernation", None)
        if hib is not None:
            m.update(hib.metrics())
        return m

    def metrics_text(self) -> str:
        """The metrics in Prometheus text exposition format (with the scheduler on, the
        centrality recomputation time gauges: wall-clock figures, so not in `metrics`)."""
        text = self.metrics_folder.exposition(self.metrics())
        g = self.graph  # type: ignore[attr-defined]
        if g is not None:
            text += "".join(
                f"# HELP agentos_{k} {h}\n# TYPE agentos_{k} gauge\nagentos_{k} {v!r}\n"
                for k, h, v in (
                    ("sched_recompute_seconds", "Duration of the last centrality recomputation", g.last_seconds),
                    ("sched_recompute_seconds_max", "Longest centrality recomputation", g.max_seconds),
                    ("sched_recompute_seconds_total", "Time spent recomputing centrality", g.total_seconds),
                    ("sched_recomputes", "Centrality recomputations", g.recomputes),
                    ("sched_protected", "Processes above the protection threshold", g.protected)))
        return text
