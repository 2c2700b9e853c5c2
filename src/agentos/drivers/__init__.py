"""Ring-1 drivers. Each imports its optional libraries on first use."""
from .kv import KVDriver
from .tools import Tool, ToolsDriver, tool

__all__ = ["KVDriver", "Tool", "ToolsDriver", "tool"]
