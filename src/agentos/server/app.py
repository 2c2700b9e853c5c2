"""The daemon's control API (starlette), behind `auth.Guard`.

Routes (JSON unless said; field names are documented in docs/operations.md):

    GET  /v1/version                      {"agentos", "abi"}
    GET  /v1/ps                           {"processes": [row...], "nodes"?: [...], "remote"?: [...]}
                                          row: see `ps_row`; on a cluster node, nodes: its members
                                          (Cluster.nodes), remote: their processes (Cluster.remote_ps)
    GET  /v1/procs/{pid}/budget           {"pid", "used", "reserved", "remaining"}
    GET  /v1/procs/{pid}/logs?after=N     {"events": [log, fault and exit events of pid]}
    POST /v1/procs/{pid}/signal           {"signal": "KILL|STOP|CONT|TERM|INT|USR1"}
    POST /v1/procs/{pid}/hibernate        {"ok", "pid", "state"}: to the hibernation store now
    POST /v1/procs/{pid}/wake             {"ok", "pid", "state"}: back from it
    GET  /v1/procs/{pid}/export           {"pid", "file"}: a message loop's agent file (it is
                                          hibernated first; sched/agentfile.py says what it holds)
    POST /v1/import                       {"file", "parent"?}: start the agent a file describes
                                          under `parent` (default: the daemon's root) → {"ok", "pid"}
    POST /v1/submit                       {"path", "args"?, "quota"?, "name"?, "priority"?}
    GET  /v1/events?after=N&pid=&kind=&follow=1   NDJSON, one event a line; with follow,
                                          streams until the client goes or the daemon stops
    GET  /v1/stream?q=&page=&size=&pid=&kind=   server-sent events (`state`) for the
                                          dashboard, at most 10 a second; see view.py
    GET  /v1/approvals                    {"pending": [...]}
    POST /v1/approvals/{id}               {"approve": true|false}
    POST /v1/stop                         stop the daemon

Every answer to a bad request is a 4xx with {"error": "<one line>"}; nothing a client
sends reaches the kernel unchecked.
"""
from __future__ import annotations

import asyncio
import json
import math
from typing import Any, AsyncIterator

from .. import __version__
from ..abi.types import ABI_VERSION

MAX_BODY = 64 * 1024
FOLLOW_POLL_S = 0.25
MIN_INTERVAL_S = 0.1      # the dashboard stream: at most 10 updates a second per client
NODES_REFRESH_S = 1.0     # a cluster node's dashboard refreshes its nodes' lease ages this often


class BadRequest(Exception):
    def __init__(self, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.status = status


def ps_row(row: dict[str, Any]) -> dict[str, Any]:
    """A process as the API shows it: pid, name, state, parent, priority (base), centrality
    and effective_priority (the agent-graph scheduler's; 0 and the base priority when it is
    off), reductions, mailbox, wait (what it waits for, or null), used/remaining (tokens,
    tool_calls, usd, ...; null while hibernated), trust (the score the kernel keeps for it,
    or null without a trust service)."""
    keys = ("pid", "name", "state", "parent", "priority", "centrality", "effective_priority", "reductions", "mailbox",
            "wait", "used", "reserved", "remaining", "trust")
    return {k: row.get(k) for k in keys}


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    # ASCII digits only: int() would also take " 2", "+2", "2_0" and other scripts' digits
    digits = value[1:] if value.startswith("-") else value
    if not (digits and digits.isascii() and digits.isdigit()):
        raise BadRequest(f"{name} must be an integer (decimal digits), got {value[:40]!r}")
    if value.startswith("-") or len(digits) > 19 or int(digits) > 2**62:
        raise BadRequest(f"{name} out of range: {value[:40]}{'...' if len(value) > 40 else ''}")
    n = int(digits)
    return n


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    f = float(text)
    if not math.isfinite(f):
        raise ValueError(f"{text[:40]} is past a float's range")
    return f


def strict_json(raw: bytes | str) -> Any:
    """JSON as the standard has it: NaN, Infinity and a number past a float's range (1e400,
    which Python reads as inf) are refused, not handed on as values no JSON can carry."""
    return json.loads(raw, parse_constant=_not_json, parse_float=_finite_float)


def make_app(daemon: Any) -> Any:
    """The ASGI app for `daemon` (a `Daemon`), wrapped in its Guard."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from .auth import Guard

    k = daemon.kernel

    def ok(body: Any, status: int = 200) -> Any:
        return JSONResponse(_json_safe(body), status_code=status)

    async def body_of(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"body larger than {limit} bytes", 413)
        raw = b"".join(chunks)
        try:
            data = strict_json(raw or b"{}")
        except (ValueError, RecursionError) as e:
            raise BadRequest(f"body is not JSON: {str(e)[:80]}") from None
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        return data

    def live_pid(request: Request) -> int:
        pid = _int(request.path_params.get("pid"), "pid")
        assert pid is not None
        p = k.procs.get(pid)  # one lookup, not a ps() of every process (a kernel may hold a million)
        if p is None or p.state.value == "exited":
            raise BadRequest(f"no live process {pid}", 404)
        return pid

    def guarded(fn: Any) -> Any:
        async def handler(request: Request) -> Any:
            try:
                return await fn(request)
            except BadRequest as e:
                return ok({"error": str(e)}, e.status)
        return handler

    async def version(request: Request) -> Any:
        return ok({"agentos": __version__, "abi": ABI_VERSION})

    async def ps(request: Request) -> Any:
        out: dict[str, Any] = {"processes": [ps_row(r) for r in k.ps()], "root": daemon.root_pid}
        if daemon.cluster is not None:
            out["nodes"] = daemon.cluster.nodes()
            out["remote"] = daemon.cluster.remote_ps()
        return ok(out)

    async def budget(request: Request) -> Any:
        pid = live_pid(request)
        row = next(r for r in k.ps() if r["pid"] == pid)
        return ok({"pid": pid, "used": row["used"], "reserved": row["reserved"], "remaining": row["remaining"]})

    async def logs(request: Request) -> Any:
        pid = _int(request.path_params.get("pid"), "pid")
        after = _int(request.query_params.get("after"), "after", 0) or 0
        k.events.flush()
        rows, gap = daemon.hub.since(after, pid=pid)
        keep = ("log", "fault", "exit", "error", "policy", "quota", "signal", "spawn")
        return ok({"events": [r for r in rows if r["kind"] in keep], "missed": gap})

    async def signal(request: Request) -> Any:
        pid = live_pid(request)
        body = await body_of(request)
        sig = body.get("signal")
        if not isinstance(sig, str) or not sig or len(sig) > 16:
            raise BadRequest('body must be {"signal": "KILL|STOP|CONT|TERM|INT|USR1"}')
        if pid == daemon.root_pid:
            raise BadRequest("the daemon's root is stopped with POST /v1/stop, not signalled", 409)
        from ..abi.errors import KernelError

        try:
            k.signal(pid, sig)
        except KernelError as e:
            raise BadRequest(str(e)) from None
        return ok({"ok": True, "pid": pid, "signal": sig.upper()})

    async def hibernate(request: Request) -> Any:
        return _hib_op(request, "hibernate")

    async def wake(request: Request) -> Any:
        return _hib_op(request, "wake")

    def _hib_op(request: Request, op: str) -> Any:
        pid = live_pid(request)
        if k.hibernation is None:
            raise BadRequest("hibernation is off in this daemon (agentctl serve --hibernate)", 409)
        if pid == daemon.root_pid:
            raise BadRequest("the daemon's root does not hibernate", 409)
        from ..abi.errors import KernelError

        try:
            done = k.hibernate(pid) if op == "hibernate" else k.thaw(pid)
        except KernelError as e:
            raise BadRequest(str(e), 409) from None
        k.events.flush()
        k.poke()
        if not done:
            raise BadRequest(f"{op}: the hibernation store failed (counted in hibernate_errors)", 503)
        return ok({"ok": True, "pid": pid, "state": k.procs[pid].state.value})

    async def export(request: Request) -> Any:
        pid = live_pid(request)
        if k.hibernation is None:
            raise BadRequest("hibernation is off in this daemon (agentctl serve --hibernate)", 409)
        if pid == daemon.root_pid:
            raise BadRequest("the daemon's root is not exported", 409)
        from ..abi.errors import AgentOSError, BadArgument
        from ..sched import export_agent

        try:
            blob = export_agent(k, pid)
        except AgentOSError as e:
            raise BadRequest(str(e), 400 if isinstance(e, BadArgument) else 409) from None
        finally:
            k.events.flush()
            k.poke()
        return ok({"pid": pid, "file": blob.decode("utf-8")})

    async def import_(request: Request) -> Any:
        from ..sched.agentfile import MAX_FILE_BYTES

        body = await body_of(request, 2 * MAX_FILE_BYTES + 4096)  # JSON-escaped text may double
        text, parent = body.get("file"), body.get("parent", daemon.root_pid)
        if not isinstance(text, str) or not text:
            raise BadRequest('body must hold the agent file: {"file": "<its text>", "parent": pid?}')
        if type(parent) is not int:
            raise BadRequest(f"parent must be a pid (an integer), got {type(parent).__name__}")
        if k.hibernation is None:
            raise BadRequest("hibernation is off in this daemon (agentctl serve --hibernate)", 409)
        from ..abi.errors import AgentOSError, BadArgument
        from ..sched import import_agent

        try:
            pid = import_agent(k, text, parent=parent)
        except AgentOSError as e:  # a bad file (400), or one this kernel cannot take now (409)
            raise BadRequest(str(e), 400 if isinstance(e, BadArgument) else 409) from None
        finally:
            k.events.flush()
            k.poke()
        return ok({"ok": True, "pid": pid}, 201)

    async def submit(request: Request) -> Any:
        body = await body_of(request)
        path = body.get("path")
        if not isinstance(path, str) or not path or "\x00" in path:
            raise BadRequest('body must name the program: {"path": "/abs/file.py"}')
        quota = body.get("quota")
        if quota is not None and not isinstance(quota, dict):
            raise BadRequest("quota must be an object of limits")
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise BadRequest("name must be a string of at most 200 characters")
        prio = body.get("priority")
        if prio is not None and type(prio) is not int:
            raise BadRequest("priority must be an integer")
        from ..abi.errors import AgentOSError
        from .program import ProgramError

        try:
            got = daemon.submit(path, args=body.get("args"), quota=quota, name=name, priority=prio)
        except (ProgramError, AgentOSError, ValueError, TypeError, RuntimeError) as e:
            raise BadRequest(f"{type(e).__name__}: {e}" if not isinstance(e, ProgramError) else str(e)) from None
        return ok(got, 201)

    async def events(request: Request) -> Any:
        q = request.query_params
        after = _int(q.get("after"), "after", 0) or 0
        pid = _int(q.get("pid"), "pid")
        kind = q.get("kind") or None
        follow = q.get("follow") in ("1", "true", "yes")

        async def lines() -> AsyncIterator[bytes]:
            seen = after
            while True:
                k.events.flush()
                rows, gap = daemon.hub.since(seen, pid=pid, kind=kind)
                if gap:
                    yield (json.dumps({"gap": gap}) + "\n").encode()
                for r in rows:
                    yield (json.dumps(_json_safe(r), ensure_ascii=False) + "\n").encode()
                seen = max(seen, daemon.hub.last_seq)
                if not follow or daemon.stopping:
                    return
                await daemon.hub.wait(FOLLOW_POLL_S)
                if await request.is_disconnected():
                    return

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def stream(request: Request) -> Any:
        """Server-sent events for the dashboard: the view for this client's query, sent when
        something changed and at most `1 / MIN_INTERVAL_S` times a second."""
        import time

        from .view import MAX_ROWS, cluster_nodes, dashboard_view

        qp = request.query_params
        q = (qp.get("q") or "")[:200]
        page = _int(qp.get("page"), "page", 0) or 0
        size = min(_int(qp.get("size"), "size", MAX_ROWS) or MAX_ROWS, MAX_ROWS)
        pid = _int(qp.get("pid"), "pid")
        kind = (qp.get("kind") or None)
        if kind is not None and len(kind) > 40:
            raise BadRequest("kind is too long")
        once = qp.get("once") in ("1", "true")

        def node_states() -> Any:
            nodes = cluster_nodes(daemon)
            return None if nodes is None else [(n["node"], n["state"], n["incarnation"], n["procs"]) for n in nodes]

        async def frames() -> AsyncIterator[bytes]:
            last_sent = 0.0
            last_seq = -1
            last_approvals = -1
            last_nodes: Any = ()
            while not daemon.stopping:
                k.events.flush()
                n_appr = len(daemon.approvals.pending)
                nodes = node_states()
                # a node going up or down changes the page even when no event was written,
                # and a cluster's lease ages are refreshed every NODES_REFRESH_S
                stale_nodes = nodes != last_nodes or (
                    nodes is not None and time.monotonic() - last_sent >= NODES_REFRESH_S)
                if daemon.hub.last_seq != last_seq or n_appr != last_approvals or stale_nodes:
                    wait = MIN_INTERVAL_S - (time.monotonic() - last_sent)
                    if wait > 0:
                        await asyncio.sleep(wait)  # coalesce: at most 10 updates a second
                        k.events.flush()
                    last_seq, last_approvals = daemon.hub.last_seq, len(daemon.approvals.pending)
                    last_nodes = node_states()
                    view = dashboard_view(daemon, q=q, page=page, size=size, pid=pid, kind=kind)
                    data = json.dumps(_json_safe(view), ensure_ascii=False)
                    last_sent = time.monotonic()
                    yield f"event: state\ndata: {data}\n\n".encode()
                    if once:
                        return
                await daemon.hub.wait(FOLLOW_POLL_S)
                if await request.is_disconnected():
                    return

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def approvals(request: Request) -> Any:
        return ok({"pending": daemon.approvals.list()})

    async def answer(request: Request) -> Any:
        rid = request.path_params["rid"]
        body = await body_of(request)
        approve = body.get("approve")
        if not isinstance(approve, bool):
            raise BadRequest('body must be {"approve": true|false}')
        if not daemon.approvals.answer(rid, approve, by="http"):
            raise BadRequest(f"no pending approval {rid[:80]!r}", 404)
        k.poke()
        return ok({"ok": True, "id": rid, "approved": approve})

    async def stop(request: Request) -> Any:
        asyncio.get_running_loop().call_soon(daemon.stop, "api")
        return ok({"ok": True, "stopping": True})

    async def metrics(request: Request) -> Any:
        from .metrics import exposition

        body, ctype = exposition(daemon)
        return Response(body, media_type=ctype)

    async def dashboard(request: Request) -> Any:
        from .dashboard import PAGE

        return Response(PAGE, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                 "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
                                 "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})

    routes = [
        Route("/", guarded(dashboard)),
        Route("/metrics", guarded(metrics)),
        Route("/v1/version", guarded(version)),
        Route("/v1/ps", guarded(ps)),
        Route("/v1/procs/{pid}/budget", guarded(budget)),
        Route("/v1/procs/{pid}/logs", guarded(logs)),
        Route("/v1/procs/{pid}/signal", guarded(signal), methods=["POST"]),
        Route("/v1/procs/{pid}/hibernate", guarded(hibernate), methods=["POST"]),
        Route("/v1/procs/{pid}/wake", guarded(wake), methods=["POST"]),
        Route("/v1/procs/{pid}/export", guarded(export)),
        Route("/v1/import", guarded(import_), methods=["POST"]),
        Route("/v1/submit", guarded(submit), methods=["POST"]),
        Route("/v1/events", guarded(events)),
        Route("/v1/approvals", guarded(approvals)),
        Route("/v1/stream", guarded(stream)),
        Route("/v1/approvals/{rid}", guarded(answer), methods=["POST"]),
        Route("/v1/stop", guarded(stop), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    return Guard(app, daemon.token, lambda: daemon.port)


__all__ = ["make_app", "ps_row", "strict_json"]
