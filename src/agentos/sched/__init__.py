"""Epistemic scheduling: the kernel's agent graph and the priorities read from it.

`SchedConfig` (here, light) says whether the scheduler runs and how; `graph.AgentGraph`
(rustworkx, imported only when it runs) keeps the graph and recomputes centrality. The
kernel uses them through `KernelConfig.sched` and a policy file's `scheduling:` section;
see docs/scheduling.md.
"""
from __future__ import annotations

from .config import Measure, SchedConfig, SchedConfigError

__all__ = ["Measure", "SchedConfig", "SchedConfigError"]
