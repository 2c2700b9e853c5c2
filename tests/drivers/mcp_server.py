"""A real MCP server over stdio, for the `mcp` driver tests: `python mcp_server.py`."""
from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("test-tools")
NOTES = os.environ.get("MCP_TEST_NOTES", "")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@server.tool()
def write_note(text: str) -> str:
    """Append a line to the notes file."""
    with open(NOTES, "a") as f:
        f.write(text + "\n")
    return f"wrote {len(text)} chars"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason."""
    raise ValueError(reason)


@server.tool()
def slow(seconds: float) -> str:
    """Take a while, noting when it starts."""
    if NOTES:
        with open(NOTES, "a") as f:
            f.write(f"slow started {os.getpid()}\n")
    time.sleep(seconds)
    return "slept"


@server.tool()
def crash() -> str:
    """Kill the server process."""
    sys.stderr.write("crashing on purpose\n")
    sys.stderr.flush()
    os._exit(7)


if __name__ == "__main__":
    server.run("stdio")
