"""The agent graph: processes as nodes; spawns, capability grants and messages as edges.

The kernel keeps one `AgentGraph` when `SchedConfig.enabled` (rustworkx, imported here,
lazily: only a kernel that runs the scheduler loads it). What it does, and when:

* Hot path, O(1) each: a spawn adds the child's node and a parent→child edge (plus one
  unit per capability passed at spawn); an exit removes the node; a send bumps a per-pair
  counter in `pending` (the out-degree counters), and a send carrying capabilities adds
  grant weight to the sender→receiver edge. Nothing else runs on send.
* A graph change (a node added or removed, a grant, a sender→receiver pair first seen
  since the last recomputation) is counted. The `every_changes`-th change arms a kernel
  timer due now, and the first change after a recomputation arms one `every_ms` later;
  whichever fires first recomputes. Timers fire at fixed points of the dispatch loop
  (between quanta, or when the loop is idle), so a replay recomputes at the same points,
  from the same graph, and decides the same.
* A recomputation folds the pending counters into traffic weights (decayed by
  `0.5 ** (dt / half_life_ms)` of kernel time since the last one), caps what each process
  draws from edges to its own descendants at `subtree_cap` (a swarm of chatty children
  buys at most that much), computes the chosen centrality, scales it to [0, 1] by its
  maximum, and sets each process's `cent` and run-queue `level`. If eigenvector power
  iteration does not converge within `max_iter`, out-degree is used for that round and a
  `sched_fallback` event says so. Each recomputation is a `sched` event (nodes, edges,
  measure used, processes protected): the event log shows every decision replay must
  repeat. How long it took (wall time, not deterministic) is kept out of the event log,
  for the metrics exposition only.

Edges are undirected for eigenvector centrality (a relation makes both ends more central:
with spawn edges pointing away from an orchestrator, in-edge centrality would crown its
leaves, and a spawn tree is acyclic, where directed power iteration dies out). Each edge
keeps its weight per direction, which the out-degree measure reads.
"""
from __future__ import annotations

import math
import time
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ..abi.types import KERNEL_PID
from .config import Measure, SchedConfig

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel
    from ..kernel.process import Process

LEVELS = 16            # the run queue's levels (kernel/scheduler.py)
ANCESTRY_WALK = 64     # generations an ancestry test walks; further apart counts as descendant
_TINY = 1e-12          # traffic weight below this is dropped as decayed to nothing

# edge payload: [struct lo->hi, struct hi->lo, traffic lo->hi, traffic hi->lo, effective weight]
_S0, _S1, _T0, _T1, _EFF = range(5)
_effective = itemgetter(_EFF)


def level_of(base: int, cent: float, alpha: float) -> int:
    """The run-queue level of effective priority base * (1 + alpha * cent), floored."""
    lvl = int(base * (1.0 + alpha * cent))
    return lvl if lvl < LEVELS else LEVELS - 1


class AgentGraph:
    """The kernel's weighted process graph and the centrality read from it."""

    __slots__ = ("k", "cfg", "rx", "g", "pending", "changes", "k_timer", "t_timer", "last_fold",
                 "recomputes", "fallbacks", "last_seconds", "total_seconds", "max_seconds", "protected",
                 "measure_used")

    def __init__(self, kernel: "Kernel", cfg: SchedConfig) -> None:
        import rustworkx as rx  # the `graph` extra; only a kernel running the scheduler needs it

        self.k = kernel
        self.cfg = cfg
        self.rx = rx
        self.g: Any = rx.PyGraph(multigraph=False)
        self.pending: dict[tuple[Process, Process], int] = {}
        self.changes = 0
        self.k_timer: list[Any] | None = None
        self.t_timer: list[Any] | None = None
        self.last_fold = kernel.clock.now()
        self.recomputes = 0
        self.fallbacks = 0
        self.last_seconds = 0.0
        self.total_seconds = 0.0
        self.max_seconds = 0.0
        self.protected = 0
        self.measure_used = Measure(cfg.measure).value

    # -- hot path hooks ---------------------------------------------------------------
    def spawned(self, proc: "Process") -> None:
        """A process started: its node, and the spawn edge from its parent (an `_on_spawn` hook)."""
        parent = proc.parent
        pnode = parent.gnode if parent is not None else None
        depth = self.g[pnode][1] + 1 if pnode is not None else 0
        proc.gnode = self.g.add_node([proc, depth])
        if pnode is not None:
            self._struct(parent, proc, 1.0 + len(proc.spawn_caps))  # type: ignore[arg-type]
        self._changed()

    def exited(self, proc: "Process", reason: Any = None) -> None:
        """A process ended: it leaves the graph (an `_on_exit` hook)."""
        node = proc.gnode
        if node is not None:
            proc.gnode = None
            self.g.remove_node(node)
            self._changed()

    def sent(self, src: "Process", dst: "Process") -> None:
        """A message from `src` to `dst`: one increment of their pair's counter."""
        key = (src, dst)
        pending = self.pending
        n = pending.get(key)
        if n is None:
            pending[key] = 1
            self._changed()
        else:
            pending[key] = n + 1

    def granted(self, src: "Process", dst: "Process", n: int) -> None:
        """`src` passed `n` capabilities to `dst` on a message."""
        if src.gnode is not None and dst.gnode is not None:
            self._struct(src, dst, float(n))
            self._changed()

    def _struct(self, a: "Process", b: "Process", w: float) -> None:
        u, v = a.gnode, b.gnode
        if u is None or v is None or u == v:
            return
        lo, hi, d = (u, v, _S0) if u < v else (v, u, _S1)
        g = self.g
        if g.has_edge(lo, hi):
            g.get_edge_data(lo, hi)[d] += w
        else:
            p = [0.0, 0.0, 0.0, 0.0, 0.0]
            p[d] = w
            g.add_edge(lo, hi, p)

    def _changed(self) -> None:
        self.changes += 1
        cfg = self.cfg
        if self.changes == 1 and cfg.every_ms is not None and self.t_timer is None:
            self.t_timer = self.k.timers.add(self.k.clock.now() + cfg.every_ms, self._fire, None)
        if cfg.every_changes is not None and self.changes >= cfg.every_changes and self.k_timer is None:
            self.k_timer = self.k.timers.add(self.k.clock.now(), self._fire, None)

    def _fire(self, _: Any) -> None:
        self.recompute()

    # -- recomputation ----------------------------------------------------------------
    def recompute(self) -> None:
        """Fold, cap, measure, and set every process's centrality and level."""
        t0 = time.perf_counter()
        timers = self.k.timers
        timers.cancel(self.k_timer)
        timers.cancel(self.t_timer)
        self.k_timer = self.t_timer = None
        self.changes = 0
        out = self._fold()
        cfg = self.cfg
        g = self.g
        used = Measure(cfg.measure)
        scores: Any = None
        if used is Measure.EIGENVECTOR and g.num_edges():
            try:
                scores = self.rx.eigenvector_centrality(g, weight_fn=_effective, default_weight=0.0,
                                                        max_iter=cfg.max_iter, tol=cfg.tol)
            except self.rx.FailedToConverge:
                self.fallbacks += 1
                self.k.events.emit(KERNEL_PID, "sched_fallback", ("eigenvector", "out_degree", cfg.max_iter))
                used = Measure.OUT_DEGREE
        if used is Measure.OUT_DEGREE:
            scores = out
        self._assign(scores, isolated_zero=used is Measure.EIGENVECTOR)
        self.measure_used = used.value
        self.recomputes += 1
        self.k.events.emit(KERNEL_PID, "sched", (g.num_nodes(), g.num_edges(), used.value, self.protected))
        dt = time.perf_counter() - t0
        self.last_seconds = dt
        self.total_seconds += dt
        if dt > self.max_seconds:
            self.max_seconds = dt

    def _fold(self) -> dict[int, float]:
        """Decay traffic, add the pending counters, apply the subtree cap. Returns each
        node's (capped) weighted out-degree."""
        g = self.g
        now = self.k.clock.now()
        dt = now - self.last_fold
        self.last_fold = now
        decay = 0.5 ** (dt / self.cfg.half_life_ms) if dt > 0 else 1.0
        edges = g.edge_index_map()
        if decay < 1.0:
            for _, _, p in edges.values():
                if p[_T0] or p[_T1]:
                    t0 = p[_T0] * decay
                    t1 = p[_T1] * decay
                    p[_T0] = t0 if t0 > _TINY else 0.0
                    p[_T1] = t1 if t1 > _TINY else 0.0
        pending = self.pending
        if pending:
            for (src, dst), n in pending.items():
                u, v = src.gnode, dst.gnode
                if u is None or v is None or u == v:
                    continue  # one of them exited since; a process's notes to itself are no edge
                lo, hi, d = (u, v, _T0) if u < v else (v, u, _T1)
                if g.has_edge(lo, hi):
                    g.get_edge_data(lo, hi)[d] += n
                else:
                    p = [0.0, 0.0, 0.0, 0.0, 0.0]
                    p[d] = float(n)
                    g.add_edge(lo, hi, p)
            pending.clear()
            edges = g.edge_index_map()
        # The subtree cap: an edge between a process and one of its descendants counts
        # toward the ancestor's draw; a process drawing more than subtree_cap has each such
        # edge scaled down so the draw is exactly the cap.
        anc_of: list[tuple[list[float], int | None]] = []
        draw: dict[int, float] = {}
        for u, v, p in edges.values():
            a = self._ancestor(u, v)
            raw = p[_S0] + p[_S1] + p[_T0] + p[_T1]
            anc_of.append((p, a))
            if a is not None:
                draw[a] = draw.get(a, 0.0) + raw
        cap = self.cfg.subtree_cap
        factor = {a: cap / w for a, w in draw.items() if w > cap}
        out: dict[int, float] = {}
        for (u, v, _), (p, a) in zip(edges.values(), anc_of):
            f = factor.get(a, 1.0) if a is not None else 1.0
            p[_EFF] = (p[_S0] + p[_S1] + p[_T0] + p[_T1]) * f
            o0 = (p[_S0] + p[_T0]) * f
            o1 = (p[_S1] + p[_T1]) * f
            if o0:
                out[u] = out.get(u, 0.0) + o0
            if o1:
                out[v] = out.get(v, 0.0) + o1
        return out

    def _ancestor(self, u: int, v: int) -> int | None:
        """The node of whichever of u, v is the other's ancestor (in spawn lineage), or None.
        Beyond ANCESTRY_WALK generations apart, the shallower one is taken as the ancestor:
        the cap errs toward bounding influence, never toward buying it."""
        g = self.g
        pu, du = g[u]
        pv, dv = g[v]
        if du == dv:
            return None
        if du > dv:
            deep, shallow, anc, steps = pu, pv, v, du - dv
        else:
            deep, shallow, anc, steps = pv, pu, u, dv - du
        if steps > ANCESTRY_WALK:
            return anc
        p = deep
        for _ in range(steps):
            p = p.parent
            if p is None:
                return None
        return anc if p is shallow else None

    def _assign(self, scores: Any, *, isolated_zero: bool) -> None:
        g = self.g
        alpha = self.cfg.alpha
        thr = self.cfg.threshold
        top = 0.0
        if scores:
            for x in scores.values():
                if x > top:
                    top = x
        protected = 0
        degree = g.degree
        for node in g.node_indices():
            proc = g[node][0]
            c = 0.0
            if top > 0.0:
                x = scores.get(node, 0.0) if isinstance(scores, dict) else (scores[node] if node in scores else 0.0)
                if not (isolated_zero and degree(node) == 0):
                    c = round(x / top, 6)
                    if not math.isfinite(c) or c < 0.0:
                        c = 0.0
            proc.cent = c
            if c >= thr:
                protected += 1
            lvl = level_of(proc.priority, c, alpha)
            proc.level = lvl
        self.protected = protected

    # -- reading ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Sizes and counters (the recomputation times are wall-clock figures)."""
        return {"nodes": self.g.num_nodes(), "edges": self.g.num_edges(), "pending": len(self.pending),
                "changes": self.changes, "recomputes": self.recomputes, "fallbacks": self.fallbacks,
                "protected": self.protected, "measure": self.measure_used,
                "recompute_seconds_last": self.last_seconds, "recompute_seconds_total": self.total_seconds,
                "recompute_seconds_max": self.max_seconds}


__all__ = ["AgentGraph", "level_of"]
