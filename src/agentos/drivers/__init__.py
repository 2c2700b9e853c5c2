"""Ring-1 drivers. Each imports its optional libraries on first use."""
from .kv import KVDriver
from .llm import Backoff, LLMDriver
from .llm_sched import PriorityGate
from .mcp import MCPDriver
from .prices import PriceTable
from .tools import Tool, ToolsDriver, tool
from .worker import WorkerDriver

__all__ = ["Backoff", "KVDriver", "LLMDriver", "MCPDriver", "PriceTable", "PriorityGate", "Tool",
           "ToolsDriver", "WorkerDriver", "tool"]
