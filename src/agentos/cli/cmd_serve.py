"""Operating a live kernel: serve, submit, ps, top, kill/stop/cont/term, budget, logs,
approvals.

`agentctl serve` runs the daemon (agentos.server); every other command here talks to it
over its HTTP API, finding it through `$AGENTOS_HOME/serve.json` and its bearer token in
`$AGENTOS_HOME/serve.token`. Every command takes `--json`; the field names are listed in
docs/operations.md. Exit codes: 0 done, 1 the daemon refused (one line on stderr says
why), 2 bad usage, 3 no daemon reachable.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

EXIT_REFUSED = 1
EXIT_NO_DAEMON = 3

JsonOpt = typer.Option(False, "--json", help="print JSON (fields in docs/operations.md)")


TABLE_ROWS = 1000
"""The most processes `serve` keeps for the table it prints when it stops (live ones and the
latest ended; older ended ones are counted, not kept), so a long-lived daemon stays bounded."""


def _home() -> Path:
    from ..store import agentos_home

    return agentos_home()


def _client() -> Any:
    from ..server import Client, TokenError

    try:
        return Client(_home())
    except TokenError as e:
        typer.echo(f"agentctl: {e}", err=True)
        raise typer.Exit(EXIT_NO_DAEMON) from None


def _call(fn: Any, *args: Any) -> Any:
    from ..server.client import ApiError

    try:
        return fn(*args)
    except ApiError as e:
        typer.echo(f"agentctl: {e}", err=True)
        raise typer.Exit(EXIT_NO_DAEMON if e.status == 0 else EXIT_REFUSED) from None


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")


def _quota(tokens: Optional[int], tool_calls: Optional[int], usd: Optional[float],
           wall_ms: Optional[float]) -> dict[str, Any] | None:
    q = {k: v for k, v in (("tokens", tokens), ("tool_calls", tool_calls), ("usd", usd), ("wall_ms", wall_ms))
         if v is not None}
    for k, v in q.items():
        if v != v or v in (float("inf"), float("-inf")) or v < 0:
            typer.echo(f"agentctl: --{k.replace('_', '-')} must be a finite non-negative number, got {v}", err=True)
            raise typer.Exit(2)
    return q or None


def _tree(rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Rows in tree order with their depth (children under their parent)."""
    by_parent: dict[int, list[dict[str, Any]]] = {}
    pids = {r["pid"] for r in rows}
    for r in rows:
        by_parent.setdefault(r["parent"] if r["parent"] in pids else 0, []).append(r)
    out: list[tuple[int, dict[str, Any]]] = []
    stack = [(0, r) for r in sorted(by_parent.get(0, []), key=lambda r: -r["pid"])]
    while stack:
        depth, r = stack.pop()
        out.append((depth, r))
        for c in sorted(by_parent.get(r["pid"], []), key=lambda r: -r["pid"]):
            stack.append((depth + 1, c))
    return out


def _prio_cell(r: dict[str, Any]) -> str:
    """The base priority, and the effective one when the agent-graph scheduler raised it."""
    base, eff = r.get("priority"), r.get("effective_priority")
    if (type(eff) is int or type(eff) is float) and type(base) is int and eff != base and math.isfinite(eff):
        return f"{base}→{eff:.2f}"
    return str(base)


def _ps_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    from .render import trust_cell, untrusted

    def left(rem: Any) -> str:
        return "∞" if rem is None else str(rem)

    def cell(used: Any, held: Any, rem: Any, usd: bool = False) -> str:
        fmt = (lambda v: f"{v:.6f}") if usd else str
        return fmt(used) + (f" +{fmt(held)} held" if held else "") + "/" + left(rem)

    t = Table(title=title)
    for col in ("pid", "name", "state", "wait", "prio", "tokens used/left", "tool calls used/left", "usd used/left",
                "trust"):
        t.add_column(col)
    for depth, r in _tree(rows):
        u, rem, held = r["used"], r["remaining"], r.get("reserved") or {}
        if u is None or rem is None:  # hibernated: its usage is in the store until it wakes
            spent = ["(stored)"] * 3
        else:
            spent = [cell(u["tokens"], held.get("tokens", 0), rem["tokens"]),
                     cell(u["tool_calls"], held.get("tool_calls", 0), rem["tool_calls"]),
                     cell(u["usd"], held.get("usd", 0), rem["usd"], usd=True)]
        t.add_row(str(r["pid"]), "  " * depth + untrusted(r["name"], 60), r["state"], str(r["wait"] or ""),
                  _prio_cell(r), *spent, trust_cell(r.get("trust")))
    return t


def _nodes_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    from .render import untrusted

    t = Table(title="cluster nodes")
    for col in ("node", "incarnation", "state", "processes", "lease age"):
        t.add_column(col)
    for r in rows:
        procs, age = r.get("procs"), r.get("lease_age")
        t.add_row(untrusted(str(r.get("node")), 64), str(r.get("incarnation")), untrusted(str(r.get("state")), 16),
                  "?" if procs is None else str(procs),
                  f"{age:.1f}s" if isinstance(age, (int, float)) else "?")
    return t


def _remote_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    from .render import untrusted

    t = Table(title="processes on other nodes")
    for col in ("node", "pid", "name", "state", "wait"):
        t.add_column(col)
    for r in rows:
        t.add_row(untrusted(str(r.get("node")), 64), str(r.get("pid")), untrusted(str(r.get("name")), 60),
                  untrusted(str(r.get("state")), 16), untrusted(str(r.get("wait") or ""), 32))
    return t


def _join_config(kernel: Any, url: str, node: Optional[str], key_file: Optional[Path], lease: float,
                 grant_children: int, grant_tokens: Optional[int]) -> Any:
    """The daemon's `Cluster` from the command line; a bad option is one line and exit 2."""
    import os
    import re
    import socket

    from .. import Quota
    from ..net.cluster import Cluster, ClusterConfig

    def bad(msg: str) -> Any:
        typer.echo(f"agentctl serve: {msg}", err=True)
        raise typer.Exit(2)

    if not url.startswith(("nats://", "tls://")):
        bad(f"--cluster must be a nats:// URL, got {url!r}")
    if node is None:
        node = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64] or "node"
    if key_file is not None:
        try:
            key = key_file.read_bytes().strip()
        except OSError as e:
            bad(f"cannot read --cluster-key-file: {e.strerror or e}")
    else:
        key = os.environ.get("AGENTOS_CLUSTER_KEY", "").encode()
    if len(key) < 16:
        bad("the cluster needs a shared key of at least 16 bytes (--cluster-key-file or $AGENTOS_CLUSTER_KEY)")
    if not (lease == lease and 0 < lease < 3600):
        bad(f"--lease must be a number of seconds in (0, 3600), got {lease}")
    if grant_children < 0 or (grant_tokens is not None and grant_tokens < 0):
        bad("--grant-children and --grant-tokens must not be negative")
    try:
        cfg = ClusterConfig(url, node, key, lease=lease,
                            grants={"*": Quota(children=grant_children, tokens=grant_tokens)})
        return Cluster(kernel, cfg)
    except ValueError as e:
        bad(str(e))


def _hibernation(hibernate: bool, max_resident: Optional[int]) -> Any:
    """The daemon's `HibernationConfig` (None: off); a bad option is one line and exit 2."""
    def bad(msg: str) -> Any:
        typer.echo(f"agentctl serve: {msg}", err=True)
        raise typer.Exit(2)

    if not hibernate:
        if max_resident is not None:
            bad("--max-resident needs --hibernate (it says when waiting processes go to the store)")
        return None
    if max_resident is not None and max_resident < 1:
        bad(f"--max-resident must be an integer >= 1, got {max_resident}")
    from ..sched import HibernationConfig, HibernationConfigError

    try:
        return HibernationConfig(max_resident=max_resident)
    except HibernationConfigError as e:
        bad(str(e).replace("hibernation.max_resident", "--max-resident"))


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(port: int = typer.Option(0, help="TCP port on 127.0.0.1 (0: any free port)"),
              allow_all: bool = typer.Option(False, "--allow-all", help="allow every action (no policy)"),
              policy_file: Optional[Path] = typer.Option(None, "--policy", help="policy file"),
              tokens: Optional[int] = typer.Option(None, help="the daemon's token budget"),
              tool_calls: Optional[int] = typer.Option(None, "--tool-calls", help="the daemon's tool-call budget"),
              usd: Optional[float] = typer.Option(None, help="the daemon's dollar budget"),
              record: bool = typer.Option(True, help="record to the default store ($AGENTOS_HOME)"),
              cluster: Optional[str] = typer.Option(
                  None, "--cluster", help="join the NATS cluster at this URL (nats://host:port) as a node"),
              node: Optional[str] = typer.Option(None, "--node", help="this node's name (default: the host name)"),
              cluster_key_file: Optional[Path] = typer.Option(
                  None, "--cluster-key-file", help="file holding the cluster's shared key (else $AGENTOS_CLUSTER_KEY)"),
              lease: float = typer.Option(2.0, "--lease", help="seconds a node's lease holds without renewal"),
              grant_children: int = typer.Option(
                  100, "--grant-children", help="processes each peer may run here (its account)"),
              grant_tokens: Optional[int] = typer.Option(None, "--grant-tokens", help="tokens each peer may spend here"),
              hibernate: bool = typer.Option(
                  False, "--hibernate", help="hibernate waiting processes to the store (agentctl hibernate/wake)"),
              max_resident: Optional[int] = typer.Option(
                  None, "--max-resident", help="with --hibernate: hibernate past this many resident processes"),
              trace: Optional[bool] = typer.Option(
                  None, "--trace/--no-trace",
                  help="OpenTelemetry traces (default: on when OTEL_EXPORTER_OTLP_ENDPOINT is set)")) -> None:
        """Run a long-lived kernel with a control API and dashboard on 127.0.0.1.

        Programs are started with `agentctl submit FILE`. Ctrl-C or SIGTERM stops it: every
        process ends, driver calls in flight are cancelled, and the run is recorded as
        interrupted."""
        import asyncio

        from .. import AllowAll, Quota
        from ..server import Daemon, TokenError
        from .cmd_core import _policy, maybe_trace
        from .render import console as render_console
        from .strict import CliNoPolicy

        con = render_console()
        if not 0 <= port <= 65535:
            typer.echo(f"agentctl serve: --port must be in 0..65535 (0: any free port), got {port}", err=True)
            raise typer.Exit(2)
        q = _quota(tokens, tool_calls, usd, None)
        hib = _hibernation(hibernate, max_resident)
        try:
            policy = AllowAll() if allow_all else (_policy(policy_file, None, {}) or CliNoPolicy("serve"))
            daemon = Daemon(home=_home(), port=port, policy=policy, quota=Quota(**q) if q else None, record=record,
                            hibernation=hib)
        except (TokenError, OSError) as e:
            typer.echo(f"agentctl serve: {e}", err=True)
            raise typer.Exit(1) from None

        if cluster is not None:
            daemon.cluster = _join_config(daemon.kernel, cluster, node, cluster_key_file, lease,
                                          grant_children, grant_tokens)
        tracing = maybe_trace(daemon.kernel, trace, served=True)
        from .. import ProcessHistory

        history = ProcessHistory.attach(daemon.kernel, limit=TABLE_ROWS)

        def ready(d: Any) -> None:
            con.print(f"agentos daemon on [bold]{d.url}[/] (run {d.run_id or 'not recorded'})")
            con.print(f"dashboard: {d.url}/#token=<the token in {_home() / 'serve.token'}>")
            con.print("agentctl submit FILE | ps | top | kill PID | events --follow; Ctrl-C stops")

        try:
            asyncio.run(daemon.serve(on_ready=ready))
        except OSError as e:
            typer.echo(f"agentctl serve: {e}", err=True)
            raise typer.Exit(1) from None
        if tracing is not None:
            tracing.shutdown()
        from .render import history_table

        shown = "every process" if not history.dropped else \
            f"the last {len(history.records)} processes ({history.dropped} earlier ones not kept)"
        con.print(history_table(history, title=f"{shown} of this daemon, and what it cost"))
        m = daemon.kernel.metrics()
        con.print(f"daemon stopped ({daemon.stopping or 'root ended'}): {m['spawned']} processes, "
                  f"{m['syscalls_total']} syscalls, {m['tokens']} tokens, {m['tool_calls']} tool calls, "
                  f"${m['usd']:.6f}; exits: {m['exits']}"
                  + (f"; run {daemon.run_id} recorded as interrupted" if daemon.run_id and daemon.stopping else ""))
        raise typer.Exit({"SIGINT": 130, "SIGTERM": 143}.get(daemon.stopping or "", 0))

    @app.command()
    def submit(file: Path = typer.Argument(..., help="a program file defining `async def init(sys, args)`"),
               name: Optional[str] = typer.Option(None, help="process name (default: the file's stem)"),
               args: Optional[str] = typer.Option(None, help="JSON args for init"),
               tokens: Optional[int] = typer.Option(None, help="token budget (narrows the daemon's)"),
               tool_calls: Optional[int] = typer.Option(None, "--tool-calls", help="tool-call budget"),
               usd: Optional[float] = typer.Option(None, help="dollar budget"),
               wall_ms: Optional[float] = typer.Option(None, "--wall-ms", help="wall-clock budget in ms"),
               priority: Optional[int] = typer.Option(None, help="scheduling priority"),
               as_json: bool = JsonOpt) -> None:
        """Start FILE's `init` in the running daemon, as a child of its root."""
        body: dict[str, Any] = {"path": str(file.resolve())}
        if args is not None:
            from ..server.app import strict_json

            try:
                body["args"] = strict_json(args)
            except (ValueError, RecursionError) as e:
                typer.echo(f"agentctl submit: --args is not JSON: {e}", err=True)
                raise typer.Exit(2) from None
        q = _quota(tokens, tool_calls, usd, wall_ms)
        if q:
            body["quota"] = q
        if name is not None:
            body["name"] = name
        if priority is not None:
            body["priority"] = priority
        got = _call(_client().post, "/v1/submit", body)
        if as_json:
            _print_json(got)
        else:
            typer.echo(f"started pid {got['pid']} ({got['name']})")

    @app.command()
    def ps(as_json: bool = JsonOpt) -> None:
        """The daemon's processes as a tree: state, wait, priority, budget used/left."""
        got = _call(_client().get, "/v1/ps")
        if as_json:
            _print_json(got)
            return
        from .render import console

        console().print(_ps_table(got["processes"], "agentos ps"))
        if got.get("nodes"):
            console().print(_nodes_table(got["nodes"]))
        if got.get("remote"):
            console().print(_remote_table(got["remote"]))

    @app.command()
    def top(interval: float = typer.Option(1.0, help="seconds between refreshes"),
            iterations: int = typer.Option(0, help="stop after this many refreshes (0: until Ctrl-C)"),
            as_json: bool = JsonOpt) -> None:
        """A live `ps`, refreshing (Ctrl-C to leave). With --json: one snapshot per line."""
        if not (interval == interval) or not 0.05 <= interval <= 3600:
            typer.echo("agentctl top: --interval must be between 0.05 and 3600 seconds", err=True)
            raise typer.Exit(2)
        c = _client()
        n = 0
        try:
            if as_json:
                while True:
                    _print_json({"time": time.time(), **_call(c.get, "/v1/ps")})
                    sys.stdout.flush()
                    n += 1
                    if iterations and n >= iterations:
                        return
                    time.sleep(interval)
            from rich.live import Live

            from .render import console

            with Live(console=console(), auto_refresh=False) as live:
                while True:
                    rows = _call(c.get, "/v1/ps")["processes"]
                    live.update(_ps_table(rows, f"agentos top ({len(rows)} processes)"), refresh=True)
                    n += 1
                    if iterations and n >= iterations:
                        return
                    time.sleep(interval)
        except KeyboardInterrupt:
            return

    def _signal_cmd(sig: str, doc: str) -> None:
        def cmd(pid: int = typer.Argument(..., help="process id"), as_json: bool = JsonOpt) -> None:
            got = _call(_client().post, f"/v1/procs/{pid}/signal", {"signal": sig})
            if as_json:
                _print_json(got)
            else:
                typer.echo(f"SIG{sig} → pid {pid}")
        cmd.__doc__ = doc
        app.command(name=sig.lower() if sig != "CONT" else "cont")(cmd)

    _signal_cmd("KILL", "Kill process PID now (SIGKILL): its resources are returned, its children end.")
    _signal_cmd("STOP", "Suspend process PID (SIGSTOP) until `agentctl cont PID`.")
    _signal_cmd("CONT", "Resume a suspended process (SIGCONT).")
    _signal_cmd("TERM", "Ask process PID to end (SIGTERM, delivered as a message it can handle).")

    def _hib_cmd(op: str, doc: str) -> None:
        def cmd(pid: int = typer.Argument(..., help="process id"), as_json: bool = JsonOpt) -> None:
            got = _call(_client().post, f"/v1/procs/{pid}/{op}", {})
            if as_json:
                _print_json(got)
            else:
                typer.echo(f"pid {pid}: {got['state']}")
        cmd.__doc__ = doc
        app.command(name=op)(cmd)

    _hib_cmd("hibernate", "Hibernate process PID now: its context (and a message loop's state) go to the store.")
    _hib_cmd("wake", "Wake hibernated process PID: it carries on waiting where it was.")

    @app.command(name="export-agent")
    def export_cmd(pid: int = typer.Argument(..., help="process id of a message loop"),
                   out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the file here (else stdout)"),
                   ) -> None:
        """Export message loop PID as one portable agent file (it is hibernated first)."""
        got = _call(_client().get, f"/v1/procs/{pid}/export")
        text = got["file"]
        if out is None:
            sys.stdout.write(text + "\n")
            return
        try:
            out.write_text(text, encoding="utf-8")
        except (OSError, ValueError) as e:
            typer.echo(f"agentctl: cannot write {str(out)[:200]!r}: {type(e).__name__}: {e}"[:400], err=True)
            raise typer.Exit(2) from None
        typer.echo(f"pid {pid} → {out}")

    @app.command(name="import-agent")
    def import_cmd(file: Path = typer.Argument(..., help="an agent file made by `agentctl export`"),
                   parent: Optional[int] = typer.Option(None, "--parent", help="the importing process "
                                                        "(default: the daemon's root); the budget is carved from it"),
                   as_json: bool = JsonOpt) -> None:
        """Start the agent an agent file describes, under PARENT: its budget is carved from
        PARENT's and it is granted no capability PARENT lacks."""
        from ..sched.agentfile import MAX_FILE_BYTES

        try:
            size = file.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ValueError(f"it is {size} bytes, more than an agent file may be ({MAX_FILE_BYTES})")
            text = file.read_text(encoding="utf-8")
        except (OSError, ValueError) as e:
            typer.echo(f"agentctl: cannot read {str(file)[:200]!r}: {type(e).__name__}: {e}"[:400], err=True)
            raise typer.Exit(2) from None
        body: dict[str, Any] = {"file": text}
        if parent is not None:
            body["parent"] = parent
        got = _call(_client().post, "/v1/import", body)
        if as_json:
            _print_json(got)
        else:
            typer.echo(f"pid {got['pid']}")

    @app.command()
    def budget(pid: int = typer.Argument(..., help="process id"), as_json: bool = JsonOpt) -> None:
        """A process's budget: used, held by calls in flight, and remaining per resource."""
        got = _call(_client().get, f"/v1/procs/{pid}/budget")
        if as_json:
            _print_json(got)
            return
        for res in got["used"]:
            rem = got["remaining"].get(res)
            held = (got.get("reserved") or {}).get(res, 0)
            typer.echo(f"{res:12} used {got['used'][res]}  held {held}  left {'unlimited' if rem is None else rem}")

    @app.command()
    def logs(pid: int = typer.Argument(..., help="process id"), as_json: bool = JsonOpt) -> None:
        """A process's log lines, faults (with file:line) and exit, from the daemon."""
        from .render import plain

        got = _call(_client().get, f"/v1/procs/{pid}/logs")
        for e in got["events"]:
            if as_json:
                _print_json(e)
                continue
            d = e["data"]
            if e["kind"] == "log" and isinstance(d, list) and len(d) >= 2:
                line = f"{d[0]}: {d[1]}"
            else:
                line = f"{e['kind']}: {json.dumps(d, ensure_ascii=False)[:400]}"
            typer.echo(f"{e['time']:>12.1f}ms {plain(line, 2000)}")

    @app.command()
    def approvals(approve: Optional[str] = typer.Option(None, "--approve", help="approve the request with this id"),
                  deny: Optional[str] = typer.Option(None, "--deny", help="deny the request with this id"),
                  as_json: bool = JsonOpt) -> None:
        """List pending approval requests, or answer one (--approve ID / --deny ID)."""
        c = _client()
        if approve and deny:
            typer.echo("agentctl approvals: give --approve or --deny, not both", err=True)
            raise typer.Exit(2)
        if approve or deny:
            rid = approve or deny
            got = _call(c.post, f"/v1/approvals/{rid}", {"approve": bool(approve)})
            if as_json:
                _print_json(got)
            else:
                typer.echo(f"{'approved' if approve else 'denied'} {rid}")
            return
        got = _call(c.get, "/v1/approvals")
        if as_json:
            _print_json(got)
            return
        from .render import plain

        if not got["pending"]:
            typer.echo("no pending approvals")
        for r in got["pending"]:
            typer.echo(plain(f"{r.get('id')}  pid {r.get('pid')} ({r.get('process')}) wants {r.get('action')} "
                             f"{json.dumps(r.get('args'), ensure_ascii=False)[:200]}  rule {r.get('rule')}", 600))

    @app.command(name="shutdown")
    def shutdown_daemon(as_json: bool = JsonOpt) -> None:
        """Stop the running daemon (as Ctrl-C on `agentctl serve` does)."""
        got = _call(_client().post, "/v1/stop", {})
        if as_json:
            _print_json(got)
        else:
            typer.echo("daemon stopping")
