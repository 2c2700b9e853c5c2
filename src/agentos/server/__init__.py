"""agentos as a service: `agentctl serve` runs one long-lived kernel with a control API on
127.0.0.1 (starlette on uvicorn), Prometheus metrics and a live dashboard.

Nothing here is imported by `import agentos`; starlette and uvicorn load when a daemon
serves (the `server` extra). See docs/operations.md for the API, its fields and its
security (bearer token, Host and Origin checks).
"""
from __future__ import annotations

from typing import Any

from .auth import TokenError, load_or_create_token, read_state, read_token

__all__ = ["Client", "Daemon", "TokenError", "load_or_create_token", "make_app", "read_state", "read_token"]


def __getattr__(name: str) -> Any:
    if name == "Daemon":
        from .daemon import Daemon

        return Daemon
    if name == "make_app":
        from .app import make_app

        return make_app
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(name)
