"""An ASGI app served by uvicorn on the caller's asyncio loop, on a socket bound to
127.0.0.1 here, without uvicorn's own signal handling (the daemon or the kernel's owner
keeps its own): `start()` runs uvicorn's startup, `close()` its shutdown."""
from __future__ import annotations

import socket
from typing import Any

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class LoopServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"agentos servers listen on loopback only, not {host!r}")
        self.app = app
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.sock: socket.socket | None = None
        self.server: Any = None

    def bind(self) -> socket.socket:
        if self.sock is None:
            fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, self.port))
            s.listen(128)
            s.setblocking(False)
            self.sock = s
            self.port = s.getsockname()[1]
        return self.sock

    async def start(self) -> None:
        import uvicorn

        sock = self.bind()
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=1)
        config.load()
        self.server = uvicorn.Server(config)
        self.server.lifespan = config.lifespan_class(config)
        await self.server.startup(sockets=[sock])

    async def close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.server.force_exit = True
            await self.server.shutdown(sockets=[self.sock] if self.sock else None)
            self.server = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


__all__ = ["LoopServer"]
