"""Outside ways to answer approvals: a loopback HTTP endpoint and an interactive prompt.

HTTP (`ApprovalServer`): binds 127.0.0.1 only, and every request must carry
`Authorization: Bearer <token>`; the token is made here and handed to the operator, never
to a process, so an agent that can reach loopback (through some tool) still cannot
approve itself. `GET /approvals` lists pending requests; `POST /approvals/<id>` with
`{"approve": true|false}` answers one. The server runs on the kernel's asyncio loop.

Prompt (`PromptApprover`): a callback for `ApprovalChannel` that asks on a terminal in a
worker thread, so the kernel keeps running other processes while a person reads.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import sys
from typing import Any, Callable, TextIO

from .approvals import ApprovalChannel, ApprovalRequest

_MAX_BODY = 64 * 1024


class ApprovalServer:
    def __init__(self, channel: ApprovalChannel, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"the approval endpoint listens on loopback only, not {host!r}")
        self.channel = channel
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(32)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> "ApprovalServer":
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.channel.outside += 1
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            self.channel.outside -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._handle(reader)
        except Exception as e:  # a bad request never reaches the kernel
            status, body = 400, {"error": f"{type(e).__name__}: {e}"}
        data = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  405: "Method Not Allowed", 413: "Payload Too Large"}.get(status, "OK")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        try:
            await writer.drain()
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        auth = headers.get("authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            return 401, {"error": "a bearer token is required to answer approvals"}
        n = int(headers.get("content-length", "0") or 0)
        if n > _MAX_BODY:
            return 413, {"error": "body too large"}
        raw = await reader.readexactly(n) if n else b""
        if path.rstrip("/") == "/approvals":
            if method != "GET":
                return 405, {"error": "GET /approvals lists; POST /approvals/<id> answers"}
            return 200, {"pending": self.channel.list()}
        if path.startswith("/approvals/"):
            if method != "POST":
                return 405, {"error": "POST /approvals/<id> with {\"approve\": true|false}"}
            rid = path[len("/approvals/"):]
            body = json.loads(raw or b"{}")
            approve = body.get("approve") if isinstance(body, dict) else None
            if not isinstance(approve, bool):
                return 400, {"error": "body must be {\"approve\": true|false}"}
            if not self.channel.answer(rid, approve, by="http"):
                return 404, {"error": f"no pending approval {rid!r}"}
            return 200, {"ok": True, "id": rid, "approved": approve}
        return 404, {"error": f"no route {path}"}


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
