"""Scheduling over many agents: hibernation of waiting processes to a store, and message
loops that hibernate completely (`loop.py`, `hibernate.py`, `hibstore.py`, `agentfile.py`)."""
from __future__ import annotations

from .agentfile import AGENT_FORMAT, AgentFileError, export_agent, import_agent
from .hibernate import STUB_LIMIT, HibernationConfig, Hibernator, stub_bytes
from .hibstore import (
    HibernationStore, HibernationStoreError, KVHibernationStore, MemoryHibernationStore, SqliteHibernationStore,
)
from .loop import LoopExit, loop_exit, message_loop

__all__ = ["AGENT_FORMAT", "AgentFileError", "HibernationConfig", "HibernationStore", "HibernationStoreError", "Hibernator", "KVHibernationStore",
           "LoopExit", "MemoryHibernationStore", "STUB_LIMIT", "SqliteHibernationStore", "loop_exit",
           "export_agent", "import_agent", "message_loop", "stub_bytes"]
