"""Outside ways to answer approvals: a loopback HTTP endpoint and an interactive prompt.

HTTP (`ApprovalServer`): starlette on uvicorn, bound to 127.0.0.1 only, behind the same
guard as the daemon's control API: every request must carry `Authorization: Bearer
<token>` (made here and handed to the operator, never to a process, so an agent that can
reach loopback through some tool still cannot approve itself), name the server itself in
`Host`, and a POST must be JSON with no foreign Origin. `GET /approvals` lists pending
requests; `POST /approvals/<id>` with `{"approve": true|false}` answers one. The server
runs on the kernel's asyncio loop. The daemon (`agentctl serve`) answers the same on its
control API.

Prompt (`PromptApprover`): a callback for `ApprovalChannel` that asks on a terminal in a
worker thread, so the kernel keeps running other processes while a person reads.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import sys
from typing import Any, Callable, TextIO

from .approvals import ApprovalChannel, ApprovalRequest

_MAX_BODY = 64 * 1024


class ApprovalServer:
    """`GET /approvals` and `POST /approvals/<id>` on loopback, on starlette/uvicorn behind
    the daemon's guard (`agentos.server.auth.Guard`: bearer token, the server's own Host,
    no foreign Origin, JSON bodies). `agentctl serve` serves the same answers on its control
    API (`/v1/approvals`); this one is for a kernel run without the daemon."""

    def __init__(self, channel: ApprovalChannel, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"the approval endpoint listens on loopback only, not {host!r}")
        self.channel = channel
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(32)
        self._http: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> "ApprovalServer":
        from ..server.asgi import LoopServer

        self._http = LoopServer(self._app(), self.host, self.port)
        self._http.bind()
        self.port = self._http.port
        await self._http.start()
        self.channel.outside += 1
        return self

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self.channel.outside -= 1

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from ..server.auth import Guard

        async def listing(request: Request) -> Any:
            return JSONResponse({"pending": self.channel.list()})

        async def answer(request: Request) -> Any:
            raw = await request.body()
            if len(raw) > _MAX_BODY:
                return JSONResponse({"error": "body too large"}, 413)
            try:
                body = json.loads(raw or b"{}")
            except (ValueError, RecursionError):
                return JSONResponse({"error": "body is not JSON"}, 400)
            approve = body.get("approve") if isinstance(body, dict) else None
            if not isinstance(approve, bool):
                return JSONResponse({"error": "body must be {\"approve\": true|false}"}, 400)
            rid = request.path_params["rid"]
            if not self.channel.answer(rid, approve, by="http"):
                return JSONResponse({"error": f"no pending approval {rid[:80]!r}"}, 404)
            return JSONResponse({"ok": True, "id": rid, "approved": approve})

        app = Starlette(routes=[Route("/approvals", listing), Route("/approvals/{rid}", answer, methods=["POST"])])
        return Guard(app, self.token, lambda: self.port, public=frozenset())


class PromptApprover:
    """`ApprovalChannel(callback=PromptApprover())`: ask a person on a terminal."""

    def __init__(self, read: Callable[[str], str] | None = None, out: TextIO | None = None) -> None:
        self._read = read or input
        self._out = out or sys.stderr

    def __call__(self, r: ApprovalRequest) -> "asyncio.Future[bool]":
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, self._ask, r)

    def _ask(self, r: ApprovalRequest) -> bool:
        args = json.dumps(r.view(r.deadline)["args"], sort_keys=True)
        self._out.write(f"\napproval needed: pid {r.pid} ({r.name}) wants {r.action} {args}\n"
                        f"  rule: {r.rule}\n")
        self._out.flush()
        try:
            ans = self._read("approve? [y/N] ")
        except EOFError:
            return False
        return ans.strip().lower() in ("y", "yes")
