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
from ..kernel.process import ZERO
from .config import Measure, SchedConfig

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel
    from ..kernel.process import Process

LEVELS = 16            # the run queue's levels (kernel/scheduler.py)
ANCESTRY_WALK = 64     # generations an ancestry test walks; further apart counts as descendant
_TINY = 1e-12          # traffic weight below this is dropped as decayed to nothing
PENDING_MAX = 1 << 16  # sender/receiver pairs counted before they are folded into the edges

# node payload: [process, depth in the spawn tree]
# edge payload: [struct lo->hi, struct hi->lo, traffic lo->hi, traffic hi->lo, effective weight,
#                node payload of lo, node payload of hi]  (lo < hi: the two node indices)
_S0, _S1, _T0, _T1, _EFF, _LO, _HI = range(7)
_effective = itemgetter(_EFF)


def level_of(base: int, cent: float, alpha: float) -> int:
    """The run-queue level of effective priority base * (1 + alpha * cent), floored."""
    lvl = int(base * (1.0 + alpha * cent))
    return lvl if lvl < LEVELS else LEVELS - 1


def _ancestor(nu: list[Any], nv: list[Any]) -> list[Any] | None:
    """The node payload of whichever of two nodes is the other's ancestor in the spawn
    lineage, or None. Beyond ANCESTRY_WALK generations apart, the shallower one is taken
    as the ancestor: the cap errs toward bounding influence, never toward buying it."""
    du = nu[1]
    dv = nv[1]
    if du == dv:
        return None
    if du > dv:
        deep, shallow, steps = nu, nv, du - dv
    else:
        deep, shallow, steps = nv, nu, dv - du
    if steps > ANCESTRY_WALK:
        return shallow
    p = deep[0]
    for _ in range(steps):
        p = p.parent
        if p is None:
            return None
    return shallow if p is shallow[0] else None


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
        g = self.g
        if pnode is None:
            proc.gnode = g.add_node([proc, 0])
        else:
            pl = g[pnode]
            cl = [proc, pl[1] + 1]
            node = proc.gnode = g.add_node(cl)
            w = 1.0 + len(proc.spawn_caps)  # the spawn, and each capability passed with it
            # a new node has no edge yet: add the spawn edge directly (lo < hi orientation)
            g.add_edge(pnode, node, [w, 0.0, 0.0, 0.0, 0.0, pl, cl] if pnode < node
                       else [0.0, w, 0.0, 0.0, 0.0, cl, pl])
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
            if len(pending) >= PENDING_MAX:  # no recomputation for a long while: fold, stay bounded
                self._absorb()
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
        self._add(u, v, _S0 if u < v else _S1, w)

    def _add(self, u: int, v: int, d: int, w: float) -> None:
        """Add `w` to slot `d` of the edge between nodes u and v (made if missing)."""
        lo, hi = (u, v) if u < v else (v, u)
        g = self.g
        if g.has_edge(lo, hi):
            g.get_edge_data(lo, hi)[d] += w
        else:
            p = [0.0, 0.0, 0.0, 0.0, 0.0, g[lo], g[hi]]
            p[d] = w
            g.add_edge(lo, hi, p)

    def _absorb(self) -> None:
        """Fold the pending counters into the edges' traffic weights."""
        pending = self.pending
        add = self._add
        for (src, dst), n in pending.items():
            u, v = src.gnode, dst.gnode
            if u is None or v is None or u == v:
                continue  # one of them exited since; a process's notes to itself are no edge
            add(u, v, _T0 if u < v else _T1, float(n))
        pending.clear()

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
        if decay < 1.0:
            for p in g.edges():
                if p[_T0] or p[_T1]:
                    t0 = p[_T0] * decay
                    t1 = p[_T1] * decay
                    p[_T0] = t0 if t0 > _TINY else 0.0
                    p[_T1] = t1 if t1 > _TINY else 0.0
        if self.pending:
            self._absorb()
        edges = g.edges()
        # The subtree cap: an edge between a process and one of its descendants counts
        # toward the ancestor's draw; a process drawing more than subtree_cap has each such
        # edge scaled down so the draw is exactly the cap.
        anc: list[Any] = []
        draw: dict[int, float] = {}
        for p in edges:
            a = _ancestor(p[_LO], p[_HI])
            anc.append(a)
            if a is not None:
                key = id(a)
                draw[key] = draw.get(key, 0.0) + p[_S0] + p[_S1] + p[_T0] + p[_T1]
        cap = self.cfg.subtree_cap
        factor = {a: cap / w for a, w in draw.items() if w > cap}
        out: dict[int, float] = {}
        for p, a in zip(edges, anc):
            f = factor.get(id(a), 1.0) if a is not None and factor else 1.0
            o0 = (p[_S0] + p[_T0]) * f
            o1 = (p[_S1] + p[_T1]) * f
            p[_EFF] = o0 + o1
            if o0:
                u = p[_LO][0].gnode
                out[u] = out.get(u, 0.0) + o0
            if o1:
                v = p[_HI][0].gnode
                out[v] = out.get(v, 0.0) + o1
        return out

    def _assign(self, scores: Any, *, isolated_zero: bool) -> None:
        g = self.g
        alpha = self.cfg.alpha
        thr = self.cfg.threshold
        if scores is not None and not isinstance(scores, dict):
            scores = dict(zip(scores.keys(), scores.values()))  # a CentralityMapping, read once
        top = max(scores.values(), default=0.0) if scores else 0.0
        if not (top > 0.0 and math.isfinite(top)):
            top = 0.0
        protected = 0
        degree = g.degree
        get = scores.get if scores and top else None
        last = LEVELS - 1
        for payload in g.nodes():
            proc = payload[0]
            c = ZERO  # shared: a process outside every edge pays nothing for its centrality
            if get is not None:
                x = get(proc.gnode, 0.0)
                if x > 0.0 and not (isolated_zero and degree(proc.gnode) == 0):
                    c = round(x / top, 6) or ZERO
            proc.cent = c
            if c >= thr:
                protected += 1
            lvl = int(proc.priority * (1.0 + alpha * c))  # level_of, inlined: once per process
            proc.level = lvl if lvl < last else last
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
