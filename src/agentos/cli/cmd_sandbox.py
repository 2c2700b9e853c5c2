"""`agentctl sandbox run FILE`: run untrusted agent code in the process sandbox.

FILE defines `async def main(sys, args)`; it is never imported by agentctl, only read
as text and handed to a sandboxed child, under the given rlimits and allow-list. What the
program logs is printed as plain text, never as terminal markup.

Exit codes: 0 the program ended normally; 1 it did not (fault, kill, quota...); 2 bad
arguments (a missing file, --args that is not JSON, a bad limit or allow-list).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _fail(msg: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def register(app: typer.Typer) -> None:
    sandbox_app = typer.Typer(help="Run untrusted agent code in a child OS process behind a reference monitor.")
    app.add_typer(sandbox_app, name="sandbox")

    @sandbox_app.command("run")
    def run(file: Path = typer.Argument(..., help="Python source defining `async def main(sys, args)`"),
            args: Optional[str] = typer.Option(None, help="JSON passed as `args`"),
            mem_mb: int = typer.Option(256, help="address-space limit (MiB)"),
            cpu_s: int = typer.Option(10, help="CPU-time limit (seconds)"),
            nproc: int = typer.Option(4, help="process limit (its own uid)"),
            nofile: int = typer.Option(32, help="open-file limit"),
            fsize_mb: int = typer.Option(16, help="largest file it may write (MiB)"),
            allow: Optional[str] = typer.Option(None, help="comma-separated syscall allow-list "
                                                "(default: the standard list)"),
            allow_all_policy: bool = typer.Option(False, "--allow-all", help="policy: allow every action"),
            workdir: Optional[Path] = typer.Option(None, help="its writable directory: a path that does not "
                                                   "exist yet, which the kernel creates for it (default: a "
                                                   "fresh private one, removed afterwards)"),
            ) -> None:
        """Run FILE sandboxed; print its result, exit reason and what the sandbox achieved."""
        from rich.console import Console

        from .. import AllowAll, Kernel
        from ..sandbox import DEFAULT_ALLOW, SandboxLimits, install, sandbox
        from .render import plain, untrusted

        console = Console()
        try:
            code = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise _fail(f"cannot read {file}: {e}") from None
        try:
            parsed = json.loads(args) if args is not None else None
        except (ValueError, RecursionError) as e:
            raise _fail(f"--args is not JSON: {e}") from None
        try:
            limits = SandboxLimits(as_bytes=mem_mb << 20, cpu_s=cpu_s, nproc=nproc, nofile=nofile,
                                   fsize=fsize_mb << 20)
        except (ValueError, TypeError, OverflowError) as e:
            raise _fail(str(e)) from None
        allowed = DEFAULT_ALLOW if allow is None else frozenset(a.strip() for a in allow.split(",") if a.strip())
        try:
            img = sandbox(code, limits=limits, allow=allowed, name=file.stem,
                          workdir=str(workdir) if workdir else None)
        except (ValueError, SyntaxError) as e:
            raise _fail(f"{file}: {e}") from None
        from .strict import CliNoPolicy

        k = Kernel(policy=AllowAll() if allow_all_policy else CliNoPolicy("sandbox run", "--allow-all"))
        install(k)
        out: dict[str, object] = {}

        async def init(sys, _):
            _pid, cap = await sys.spawn(img, args=parsed, caps=["sandbox"])
            out["reason"] = str(await sys.waitpid(cap))

        res = k.run(init, grant=["sandbox"])
        if "reason" not in out:  # the sandboxed process could not even be started (its args...)
            raise _fail(f"cannot start {plain(file.name)}: {plain(str(res.reason), 500)}")
        started = [e.data[2] for e in k.events.events(kind="log") if e.data[1] == "sandbox started"]
        logs = [e.data for e in k.events.events(kind="log") if e.pid == 2 and e.data[1] != "sandbox started"]
        for level, msg, fields in logs:
            console.print(f"[dim]{untrusted(level, 20)}[/dim] {untrusted(msg)} {untrusted(fields) if fields else ''}")
        if started:
            s = started[0]
            console.print(untrusted(f"child pid {s.get('child')} uid {s.get('uid')}: network {s.get('net')}, "
                                    f"file system {s.get('fs')}, seccomp {s.get('seccomp')}"))
        reason = str(out.get("reason"))
        console.print(f"exit: [{'green' if reason == 'normal' else 'red'}]{untrusted(reason)}[/]")
        raise typer.Exit(0 if reason == "normal" else 1)
