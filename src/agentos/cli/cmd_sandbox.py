"""`agentctl sandbox run FILE`: run untrusted agent code in the process sandbox.

FILE defines `async def main(sys, args)`; it is never imported by agentctl, only read
as text and handed to a sandboxed child, under the given rlimits and allow-list.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


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
            workdir: Optional[Path] = typer.Option(None, help="its writable directory (default: a fresh one)"),
            ) -> None:
        """Run FILE sandboxed; print its result, exit reason and what the sandbox achieved."""
        from rich.console import Console

        from ..kernel import AllowAll, Kernel
        from ..sandbox import DEFAULT_ALLOW, SandboxLimits, install, sandbox

        console = Console()
        if not file.exists():
            raise typer.BadParameter(f"{file} does not exist")
        try:
            parsed = json.loads(args) if args is not None else None
        except ValueError as e:
            raise typer.BadParameter(f"--args is not JSON: {e}") from None
        limits = SandboxLimits(as_bytes=mem_mb << 20, cpu_s=cpu_s, nproc=nproc, nofile=nofile,
                               fsize=fsize_mb << 20)
        allowed = DEFAULT_ALLOW if allow is None else frozenset(a.strip() for a in allow.split(",") if a.strip())
        try:
            img = sandbox(file.read_text(), limits=limits, allow=allowed, name=file.stem,
                          workdir=str(workdir) if workdir else None)
        except (ValueError, SyntaxError) as e:
            raise typer.BadParameter(str(e)) from None
        from .strict import CliNoPolicy

        k = Kernel(policy=AllowAll() if allow_all_policy else CliNoPolicy("sandbox run", "--allow-all"))
        install(k)
        out: dict[str, object] = {}

        async def init(sys, _):
            _pid, cap = await sys.spawn(img, args=parsed, caps=["sandbox"])
            out["reason"] = str(await sys.waitpid(cap))

        k.run(init, grant=["sandbox"])
        started = [e.data[2] for e in k.events.events(kind="log") if e.data[1] == "sandbox started"]
        logs = [e.data for e in k.events.events(kind="log") if e.pid == 2 and e.data[1] != "sandbox started"]
        for level, msg, fields in logs:
            console.print(f"[dim]{level}[/dim] {msg} {fields if fields else ''}")
        if started:
            s = started[0]
            console.print(f"child pid {s.get('child')} uid {s.get('uid')}: network {s.get('net')}, "
                          f"file system {s.get('fs')}, seccomp {s.get('seccomp')}")
        reason = str(out.get("reason"))
        console.print(f"exit: [{'green' if reason == 'normal' else 'red'}]{reason}[/]")
        raise typer.Exit(0 if reason == "normal" else 1)
