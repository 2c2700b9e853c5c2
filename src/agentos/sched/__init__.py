"""Scheduling over many agents.

Epistemic scheduling: `SchedConfig` (here, light) says whether the scheduler runs and how;
`graph.AgentGraph` (rustworkx, imported only when it runs) keeps the agent graph and
recomputes centrality. The kernel uses them through `KernelConfig.sched` and a policy
file's `scheduling:` section; see docs/scheduling.md.

Hibernation: waiting processes go to a store, and message loops hibernate completely
(`loop.py`, `hibernate.py`, `hibstore.py`, `agentfile.py`).
"""
from __future__ import annotations

from .agentfile import AGENT_FORMAT, AgentFileError, export_agent, import_agent
from .config import Measure, SchedConfig, SchedConfigError
from .hibernate import (
    STUB_LIMIT, HibernationConfig, HibernationConfigError, HibernationRecordError, Hibernator, stub_bytes,
)
from .hibstore import (
    HibernationStore, HibernationStoreError, KVHibernationStore, MemoryHibernationStore, SqliteHibernationStore,
)
from .loop import LoopExit, loop_exit, message_loop

__all__ = ["AGENT_FORMAT", "AgentFileError", "HibernationConfig", "HibernationConfigError", "HibernationRecordError",
           "HibernationStore", "HibernationStoreError", "Hibernator", "KVHibernationStore", "LoopExit", "Measure",
           "MemoryHibernationStore", "STUB_LIMIT", "SchedConfig", "SchedConfigError", "SqliteHibernationStore",
           "export_agent", "import_agent", "loop_exit", "message_loop", "stub_bytes"]
