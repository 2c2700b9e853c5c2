"""Durability commands: runs, events, replay, export prov, snapshot, restore.

All read the default store (`$AGENTOS_STORE`, else `$AGENTOS_HOME/store.db`, with
AGENTOS_HOME defaulting to ./.agentos) unless `--store URL` names another. RUN is a run
id, a unique prefix of one, or a run name (the latest run of that name).

Exit codes: 0 done (replay: identical); 1 the command's own failure (a replay that
diverged, a restored process that did not end normally); 2 bad input (no such run, a bad
option, an unreadable snapshot file); 3 the store is damaged, truncated or not a store
(one line on stderr naming the file).
"""
from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer


def _plain(value: Any) -> str:
    """A process's own text (its name, its result) as inert text: no terminal escapes."""
    from .render import plain

    return plain(value if isinstance(value, str) else repr(value), 500)

StoreOpt = typer.Option(None, "--store", help="store URL (sqlite:///path, postgresql://..., a path)")


def _open(url: Optional[str], *, read: bool = True) -> Any:
    """The store named by --store (else the default one). A command that only reads refuses
    a file path that does not exist, so a typo never creates an empty store (and directories)."""
    from pathlib import Path

    from ..store import StoreError, open_default_store, open_store

    if url and read and url not in ("memory", "memory:") and not url.startswith(("postgresql://", "postgres://")):
        path = url[len("sqlite://"):] if url.startswith("sqlite://") else url
        if path.startswith("//"):
            path = path[1:]
        if "://" not in path and not Path(path).exists():
            raise StoreError(f"no store at {path} (a command that reads never creates one)")
    return open_store(url) if url else open_default_store()


def _run(store: Any, ref: str) -> Any:
    from ..store import NoSuchRun, resolve

    try:
        return resolve(store, ref)
    except NoSuchRun as e:  # a damaged store is a StoreError: exit 3, from the command guard
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)


def _print_event(e: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        from .render import plain

        data = json.dumps(e["data"], sort_keys=True, ensure_ascii=False)
        line = f"{e['seq']:>8} {e['time']:>12.3f} {e['pid']:>6} {e['kind']:<12} {data[:160]}"
        sys.stdout.write(plain(line) + "\n")


def _follow(pid: int | None, kind: str | None, limit: int, as_json: bool) -> None:
    """Stream the daemon's events (`GET /v1/events?follow=1`) until Ctrl-C or the daemon stops."""
    from urllib.parse import urlencode

    from ..server.client import ApiError
    from .cmd_serve import EXIT_NO_DAEMON, EXIT_REFUSED, _client

    q = {"follow": "1", **({"pid": str(pid)} if pid is not None else {}), **({"kind": kind} if kind else {})}
    c = _client()
    n = 0
    try:
        for e in c.stream("/v1/events?" + urlencode(q)):
            if "gap" in e:
                typer.echo(f"({e['gap']} events were missed: the daemon's ring moved on)", err=True)
                continue
            _print_event(e, as_json)
            sys.stdout.flush()
            n += 1
            if limit and n >= limit:
                return
    except KeyboardInterrupt:
        return
    except ApiError as err:
        typer.echo(f"agentctl: {err}", err=True)
        raise typer.Exit(EXIT_NO_DAEMON if err.status == 0 else EXIT_REFUSED) from None


def _cost(summary: dict[str, Any]) -> dict[str, Any]:
    """What a run cost, from its summary (the kernel's charges, as `ps` and metrics show
    them): totals and, by pid, every process that was charged anything. A run recorded
    before summaries carried costs, or still running, shows zeros."""
    def num(v: Any, kind: type) -> Any:
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else kind()
    procs = summary.get("processes")
    return {"tokens": num(summary.get("tokens"), int), "tool_calls": num(summary.get("tool_calls"), int),
            "usd": num(summary.get("usd"), float), "processes": procs if isinstance(procs, dict) else {}}


def register(app: typer.Typer) -> None:
    @app.command()
    def runs(store: Optional[str] = StoreOpt,
             as_json: bool = typer.Option(False, "--json", help="one JSON object per run (fields in docs/operations.md)")) -> None:
        """List stored runs: id, name, status, events, start time. A run whose kernel died
        without finishing shows as `crashed`."""
        import datetime as dt

        from rich.console import Console
        from rich.table import Table

        from ..store import effective_status

        st = _open(store)
        try:
            t = Table(title="agentos runs")
            for col in ("run", "name", "status", "events", "started (UTC)", "exit", "tokens", "tool calls", "usd"):
                t.add_column(col, no_wrap=col in ("run", "started (UTC)"))
            for r in st.runs():
                status = effective_status(st, r.run_id, r.status)
                cost = _cost(r.summary)
                if as_json:
                    sys.stdout.write(json.dumps({"run": r.run_id, "name": r.name, "status": status,
                                                 "events": r.events, "started": r.created_at,
                                                 "exit": r.summary.get("exit"), **cost}, sort_keys=True) + "\n")
                    continue
                when = dt.datetime.fromtimestamp(r.created_at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                t.add_row(r.run_id, r.name, status, str(r.events), when, str(r.summary.get("exit", "")),
                          str(cost["tokens"]), str(cost["tool_calls"]), f"{cost['usd']:.6f}")
            if not as_json:
                Console().print(t)
        finally:
            st.close()

    @app.command()
    def events(run: Optional[str] = typer.Argument(None, help="a stored run (omit with --follow: the daemon's)"),
               pid: Optional[int] = typer.Option(None, "--pid", help="only this process"),
               kind: Optional[str] = typer.Option(None, "--kind", help="only this event kind (sys, exit, ...)"),
               limit: int = typer.Option(0, "--limit", help="at most this many (0: all)"),
               follow: bool = typer.Option(False, "--follow", "-f",
                                           help="stream the running daemon's events as they happen"),
               as_json: bool = typer.Option(False, "--json",
                                            help="one JSON object per line: seq, time, pid, kind, data"),
               store: Optional[str] = StoreOpt) -> None:
        """Print a run's events (seq, time, pid, kind, data); --follow streams the daemon's."""
        if follow:
            _follow(pid, kind, limit, as_json)
            return
        if run is None:
            typer.echo("agentctl events: name a run (see `agentctl runs`) or pass --follow", err=True)
            raise typer.Exit(2)
        st = _open(store)
        try:
            info = _run(st, run)
            for n, e in enumerate(st.events(info.run_id, pid=pid, kind=kind)):
                if limit and n >= limit:
                    break
                _print_event({"seq": e.seq, "time": e.time, "pid": e.pid, "kind": e.kind, "data": e.data}, as_json)
        finally:
            st.close()

    @app.command()
    def replay(run: str, store: Optional[str] = StoreOpt) -> None:
        """Replay a run from its journal (no live calls); report identical or the first divergence."""
        from .. import AgentOSError, Kernel

        st = _open(store)
        try:
            info = _run(st, run)
            from ..store import StoreError

            init = info.meta.get("init") if isinstance(info.meta, dict) else None
            if isinstance(init, dict) and (init.get("module"), init.get("name")) == ("agentos.server.daemon", "root"):
                # a daemon's programs were started through its control API, which the
                # journal does not hold: a replay would only show root waiting
                typer.echo(f"error: run {info.run_id} was served (agentctl serve or demo): its programs were "
                           f"started through the control API, which a replay cannot repeat; its events are in "
                           f"`agentctl events {info.run_id}`", err=True)
                raise typer.Exit(2)
            try:
                rep = Kernel.replay_from(st, info.run_id)
            except StoreError:
                raise  # a damaged store: exit 3, from the command guard
            except AgentOSError as e:  # e.g. the program's code cannot be found any more
                typer.echo(f"error: cannot replay run {info.run_id}: {e}", err=True)
                raise typer.Exit(2)
            typer.echo(str(rep))
            for note in rep.notes:
                typer.echo(f"  note: {note}")
            if not rep.identical:
                raise typer.Exit(1)
        finally:
            st.close()

    export_app = typer.Typer(help="Export runs in other formats.", no_args_is_help=True)
    app.add_typer(export_app, name="export")

    @export_app.command("prov")
    def export_prov(run: str,
                    format: str = typer.Option("turtle", "--format", "-f", help="turtle or jsonld"),
                    output: Optional[str] = typer.Option(None, "-o", "--output", help="file (default: stdout)"),
                    store: Optional[str] = StoreOpt) -> None:
        """Export a run as PROV-O (streamed: constant memory however long the run)."""
        from ..provenance import export

        if format not in ("turtle", "jsonld"):
            typer.echo(f"error: --format must be turtle or jsonld, not {format!r}", err=True)
            raise typer.Exit(2)
        st = _open(store)
        try:
            info = _run(st, run)
            n = export((st, info.run_id), format, output or sys.stdout)
            if output:
                typer.echo(f"wrote {n} steps of run {info.run_id} to {output} ({format})")
        finally:
            st.close()

    @app.command()
    def snapshot(pid: int, run: str = typer.Option(..., "--run", help="the stored run the process belongs to"),
                 at: Optional[int] = typer.Option(None, "--at", help="event seq to snapshot at (replays to it)"),
                 output: Optional[str] = typer.Option(None, "-o", "--output", help="file (default: stdout)"),
                 store: Optional[str] = StoreOpt) -> None:
        """Snapshot process PID of a run: its latest SIGUSR1 checkpoint, or (with --at, or when it
        has none) its state at an event, rebuilt by replaying the run with no live calls."""
        from .. import AgentOSError, Kernel, KernelError

        st = _open(store)
        try:
            info = _run(st, run)
            snap = None
            if at is None:
                cps = [c for c in st.snapshots(info.run_id) if c["pid"] == pid]
                if cps:
                    snap = st.get_snapshot(cps[-1]["snap_id"])
            if snap is None:
                target = at
                if target is None:  # its last wait in recv: where a message loop is whole
                    sys_events = list(st.events(info.run_id, pid=pid, kind="sys"))
                    if not sys_events:
                        typer.echo(f"error: run {info.run_id} has no syscalls of pid {pid}", err=True)
                        raise typer.Exit(2)
                    recvs = [e.seq for e in sys_events if isinstance(e.data, dict) and e.data.get("@") == "Recv"]
                    target = recvs[-1] if recvs else sys_events[-1].seq
                taken: dict[str, Any] = {}

                def probe(k: Any, ev: Any) -> bool:
                    if ev.seq >= target:
                        try:
                            taken["snap"] = k.snapshot(pid)
                        except KernelError:  # not alive at that point
                            pass
                    return ev.seq >= target

                from ..store import StoreError

                try:
                    Kernel.replay_from(st, info.run_id, probe=probe)
                except StoreError:
                    raise  # a damaged store: exit 3, from the command guard
                except AgentOSError as e:
                    typer.echo(f"error: cannot rebuild run {info.run_id}: {e}", err=True)
                    raise typer.Exit(2)
                snap = taken.get("snap")
                if snap is None:
                    typer.echo(f"error: pid {pid} was not alive at event {target} of run {info.run_id}", err=True)
                    raise typer.Exit(1)
            text = json.dumps(snap, indent=2, sort_keys=True)
            if output:
                with open(output, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
                typer.echo(f"wrote snapshot of pid {pid} ({_plain(snap['name'])}) to {output}")
            else:
                typer.echo(text)
        finally:
            st.close()

    @app.command()
    def restore(file: str,
                allow_all: bool = typer.Option(False, "--allow-all", help="run under AllowAll instead of "
                                               "strict default deny (only for snapshots you trust)"),
                record: bool = typer.Option(True, "--record/--no-record", help="record to the default store"),
                store: Optional[str] = StoreOpt) -> None:
        """Start a snapshotted process again in a fresh kernel and run it to its end."""
        from .. import ABI_VERSION, AgentOSError, AllowAll, BootInfo, Kernel, Observer, ProcessImage, Right
        from ..drivers.kv import KVDriver

        try:
            with open(file, encoding="utf-8") as f:
                snap = json.load(f)
        except (OSError, ValueError) as e:
            typer.echo(f"error: cannot read snapshot {file}: {e}", err=True)
            raise typer.Exit(2)
        if not isinstance(snap, dict) or snap.get("abi_version") != ABI_VERSION:
            v = snap.get("abi_version") if isinstance(snap, dict) else None
            typer.echo(f"error: the snapshot was taken under ABI version {v}; this kernel speaks "
                       f"version {ABI_VERSION}", err=True)
            raise typer.Exit(1)
        try:
            image = ProcessImage.from_entry(snap.get("image") or {})
        except AgentOSError as e:
            typer.echo(f"error: cannot find the snapshot's image: {e}", err=True)
            raise typer.Exit(2)
        from .strict import CliNoPolicy

        k = Kernel(policy=AllowAll() if allow_all else CliNoPolicy("restore", "--allow-all"))
        if "kv" in (snap.get("devices") or ()):
            k.register_driver(KVDriver())
        holder: dict[str, Any] = {}

        class RestoreAtBoot(Observer):
            """Restores the snapshot as init's child, and gives init a cap to wait on it."""

            def booted(self, kernel: Kernel, init: Any, boot: BootInfo) -> None:
                pid = kernel.restore(snap, image, parent=init.pid)
                holder["pid"] = pid
                holder["cap"] = kernel.grant_process(init.pid, pid, Right.MONITOR | Right.KILL)

        async def restorer(sys_: Any, args: Any) -> Any:
            return str(await sys_.waitpid(holder["cap"]))

        k.add_observer(RestoreAtBoot())
        st = None
        if record:
            from ..store import record_run

            st = _open(store, read=False)
            rid = record_run(k, st, f"restore:{snap.get('name')}")
            typer.echo(f"recording as run {rid}")
        from ..store import StoreError

        try:
            res = k.run(restorer)
        except StoreError:
            raise  # the store is damaged: exit 3, from the command guard
        except AgentOSError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1)
        finally:
            if st is not None:
                st.close()
        typer.echo(f"restored pid {holder.get('pid')} ({_plain(snap.get('name'))}) exited: {_plain(res.value)}")
