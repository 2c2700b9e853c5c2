"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

A real HTTP/1.1 server (stdlib `ThreadingHTTPServer`, one thread per connection, in a
background thread of its own), so the `openai` SDK talks to it exactly as to a provider:
`POST /v1/chat/completions`, JSON or SSE streaming (chunked transfer encoding), tool
calls, usage, and scripted failures (429 with Retry-After, 500, slow replies).

    with OpenAIServer() as srv:
        srv.script(Reply("hi", usage=(10, 2)), Fail(429, retry_after=0), Reply(tool_calls=[...]))
        driver = LLMDriver(base_url=srv.base_url, api_key="test")

Replies are served in script order; with the script empty, `responder(body)` (default: echo
the last user message) answers. Every request is logged (`srv.log`) with its body, headers
and outcome, including `aborted` when the client hung up before the reply was complete:
that is how tests prove a killed process's HTTP call was really cancelled. `capacity`
makes the server refuse (429) any request beyond that many in flight, like a provider's
concurrency limit; `service_time` is the time each request takes.
"""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Reply:
    """A successful completion. `usage=None` omits usage from the response."""

    content: str = ""
    tool_calls: list[tuple[str, str, Any]] = field(default_factory=list)  # (id, name, args)
    usage: tuple[int, int] | None = (10, 5)
    finish_reason: str | None = None
    model: str | None = None
    delay: float = 0.0           # before the response starts
    chunk_delay: float = 0.0     # between SSE chunks
    chunks: list[str] | None = None  # explicit content pieces when streaming


@dataclass
class Fail:
    """An error response."""

    status: int = 500
    message: str = "scripted failure"
    retry_after: float | None = None
    retry_after_ms: float | None = None
    delay: float = 0.0


@dataclass
class Raw:
    """Exactly these bytes as the response body (a broken or non-conforming endpoint)."""

    body: bytes = b"not json"
    status: int = 200
    content_type: str = "application/json"
    drip: float = 0.0            # seconds between single bytes of the body (a slow-loris endpoint)


class _ClientGone(Exception):
    pass


class OpenAIServer:
    def __init__(self, *, api_key: str | None = None, model: str = "test-model",
                 responder: Callable[[dict[str, Any]], Reply | Fail] | None = None,
                 capacity: int | None = None, service_time: float = 0.0) -> None:
        self.api_key = api_key
        self.model = model
        self.responder = responder or _echo
        self.capacity = capacity
        self.service_time = service_time
        self.log: list[dict[str, Any]] = []
        self._script: list[Reply | Fail | Raw] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.active = 0
        self.max_active = 0
        self.refused = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "OpenAIServer":
        server = self

        class Handler(_Handler):
            srv = server

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # -- scripting ---------------------------------------------------------------------
    def script(self, *replies: Reply | Fail | Raw) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.log.clear()
            self.max_active = self.refused = 0

    def _next(self, body: dict[str, Any]) -> Reply | Fail | Raw:
        with self._lock:
            if self._script:
                return self._script.pop(0)
        return self.responder(body)

    def wait_for(self, pred: Callable[["OpenAIServer"], bool], timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(self):
                return True
            time.sleep(0.005)
        return pred(self)


def _echo(body: dict[str, Any]) -> Reply:
    last = next((m for m in reversed(body.get("messages", [])) if m.get("role") == "user"), None)
    text = last.get("content") if last else ""
    if not isinstance(text, str):
        text = " ".join(p.get("text", "") for p in text if isinstance(p, dict))
    return Reply(f"echo: {text}")


class _Handler(BaseHTTPRequestHandler):
    srv: OpenAIServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.srv.model, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        srv = self.srv
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        entry: dict[str, Any] = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "t0": time.monotonic(),
                                 "status": None, "aborted": False}
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        entry["body"] = body
        with srv._lock:
            srv.log.append(entry)
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._finish(entry, 404, {"error": {"message": f"no route {self.path}"}})
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._finish(entry, 400, {"error": {"message": "body must be JSON with messages"}})
        if srv.api_key is not None and self.headers.get("authorization") != f"Bearer {srv.api_key}":
            return self._finish(entry, 401, {"error": {"message": "invalid api key"}})
        with srv._lock:
            if srv.capacity is not None and srv.active >= srv.capacity:
                srv.refused += 1
                refuse = True
            else:
                refuse = False
                srv.active += 1
                srv.max_active = max(srv.max_active, srv.active)
        if refuse:
            return self._finish(entry, 429, {"error": {"message": "over capacity", "type": "rate_limit"}})
        try:
            self._serve(entry, body)
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            entry["aborted"] = True
            self.close_connection = True
        finally:
            entry["t1"] = time.monotonic()
            with srv._lock:
                srv.active -= 1

    # -- replies -----------------------------------------------------------------------
    def _serve(self, entry: dict[str, Any], body: dict[str, Any]) -> None:
        srv = self.srv
        r = srv._next(body)
        if isinstance(r, Raw):
            entry["status"] = r.status
            self.send_response(r.status)
            self.send_header("content-type", r.content_type)
            self.send_header("content-length", str(len(r.body)))
            self.end_headers()
            if r.drip <= 0:
                self.wfile.write(r.body)
                self.wfile.flush()
                return
            for i in range(len(r.body)):
                if srv._stop.is_set():
                    return
                self.wfile.write(r.body[i:i + 1])
                self.wfile.flush()
                time.sleep(r.drip)
            return
        self._wait(r.delay + srv.service_time)
        if isinstance(r, Fail):
            headers = {}
            if r.retry_after is not None:
                headers["retry-after"] = f"{r.retry_after:g}"
            if r.retry_after_ms is not None:
                headers["retry-after-ms"] = f"{r.retry_after_ms:g}"
            kind = "rate_limit_exceeded" if r.status == 429 else "server_error"
            return self._finish(entry, r.status, {"error": {"message": r.message, "type": kind}}, headers)
        model = r.model or body.get("model") or srv.model
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._stream(entry, r, model, include_usage)
        msg: dict[str, Any] = {"role": "assistant", "content": r.content or None}
        if r.tool_calls:
            msg["tool_calls"] = [{"id": i, "type": "function",
                                  "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)}}
                                 for i, n, a in r.tool_calls]
        out: dict[str, Any] = {
            "id": f"chatcmpl-{len(srv.log)}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": msg,
                         "finish_reason": r.finish_reason or ("tool_calls" if r.tool_calls else "stop")}],
        }
        if r.usage is not None:
            out["usage"] = _usage(r.usage)
        self._finish(entry, 200, out)

    def _stream(self, entry: dict[str, Any], r: Reply, model: str, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        entry["status"] = 200
        base = {"id": f"chatcmpl-{len(self.srv.log)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model}

        def send(choices: list[Any], usage: Any = None) -> None:
            ev = dict(base, choices=choices)
            if usage is not None:
                ev["usage"] = usage
            self._chunk(f"data: {json.dumps(ev)}\n\n".encode())

        send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        pieces = r.chunks if r.chunks is not None else _split(r.content)
        for piece in pieces:
            self._wait(r.chunk_delay)
            send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        for k, (cid, name, args) in enumerate(r.tool_calls):
            text = args if isinstance(args, str) else json.dumps(args)
            self._wait(r.chunk_delay)
            send([{"index": 0, "delta": {"tool_calls": [{"index": k, "id": cid, "type": "function",
                                                         "function": {"name": name, "arguments": ""}}]},
                   "finish_reason": None}])
            for j in range(0, len(text), 7):  # arguments arrive in fragments, as from a provider
                send([{"index": 0, "delta": {"tool_calls": [{"index": k, "function": {"arguments": text[j:j + 7]}}]},
                       "finish_reason": None}])
        send([{"index": 0, "delta": {}, "finish_reason": r.finish_reason or ("tool_calls" if r.tool_calls else "stop")}])
        if include_usage and r.usage is not None:
            send([], _usage(r.usage))
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    # -- plumbing ----------------------------------------------------------------------
    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _wait(self, seconds: float) -> None:
        """Sleep, but notice a client that hangs up (a cancelled request) at once."""
        end = time.monotonic() + seconds
        sock: socket.socket = self.connection
        while True:
            left = end - time.monotonic()
            if left <= 0 or self.srv._stop.is_set():
                return
            r, _, _ = select.select([sock], [], [], min(left, 0.05))
            if r:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        raise _ClientGone()
                except (ConnectionResetError, OSError):
                    raise _ClientGone() from None
                time.sleep(min(left, 0.005))  # pipelined bytes: keep sleeping

    def _finish(self, entry: dict[str, Any], status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        entry["status"] = status
        self._json(status, obj, headers)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _usage(u: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": u[0], "completion_tokens": u[1], "total_tokens": u[0] + u[1]}


def _split(text: str, n: int = 4) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)] if text else []


__all__ = ["Fail", "OpenAIServer", "Raw", "Reply"]
