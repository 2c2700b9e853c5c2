"""Core commands: run a program, list syscalls, run the benchmark suite."""
from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Optional

import typer


def load_program(path: Path) -> Any:
    """Import a program file. It defines `init` (async def init(sys, args)); optionally
    `setup(kernel)` to register drivers, `GRANT` (device names), `QUOTA`, `ARGS`, `POLICY`."""
    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist")
    spec = importlib.util.spec_from_file_location(f"agentos_program_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise typer.BadParameter(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    init = getattr(module, "init", None)
    if init is None or not inspect.iscoroutinefunction(init):
        raise typer.BadParameter(f"{path} must define `async def init(sys, args)`")
    return module


def register(app: typer.Typer) -> None:
    @app.command()
    def syscalls() -> None:
        """List the syscall table: name, group, reductions and purpose."""
        from rich.console import Console
        from rich.table import Table

        from ..abi.syscalls import table

        t = Table(title="agentos syscalls")
        for col in ("name", "group", "reductions", "purpose"):
            t.add_column(col)
        for spec in table():
            t.add_row(spec.name, spec.group, str(spec.reductions), spec.doc.split("\n")[0])
        Console().print(t)

    @app.command()
    def run(file: Path = typer.Argument(..., help="a Python file defining `async def init(sys, args)`"),
            allow_all: bool = typer.Option(False, "--allow-all", help="allow every action (no policy)"),
            policy_file: Optional[Path] = typer.Option(
                None, "--policy", help="policy file (default: .agents/security.md when it exists)"),
            deterministic: bool = typer.Option(
                True, "--deterministic/--real-clock",
                help="VirtualClock and seeded refs (replays byte for byte), or the wall clock"),
            seed: int = typer.Option(0, help="seed for deterministic mode"),
            record: bool = typer.Option(True, help="record the run in the default store ($AGENTOS_HOME)"),
            narrate: bool = typer.Option(True, help="print what processes do as they do it")) -> None:
        """Boot a kernel with FILE's `init`, then print a process table and a summary.

        The policy is, in order: --allow-all, --policy FILE, the program's POLICY,
        .agents/security.md in the current directory; with none, the kernel is strict and
        refuses every action on the world."""
        from rich.console import Console

        from .. import AllowAll, Kernel, ProcessHistory
        from .render import Narrator, exit_style, history_table, untrusted
        from .render import console as render_console
        from .strict import CliNoPolicy

        console = render_console()
        module = load_program(file)
        k = Kernel(deterministic=deterministic, seed=seed, policy=CliNoPolicy("run"),
                   event_batch=1 if narrate else 4096)
        history = ProcessHistory.attach(k)
        if narrate:
            k.events.add_raw_sink(Narrator(console).observe)
        if hasattr(module, "setup"):
            module.setup(k)
        # loaded once the drivers are registered: rules can name them by their own names
        try:
            policy = AllowAll() if allow_all else _policy(policy_file, getattr(module, "POLICY", None), k.drivers)
        except typer.Exit:
            from .cmd_policy import _stop_drivers

            _stop_drivers(k)
            raise
        if policy is not None:
            k.policy = policy
        kw = dict(grant=list(getattr(module, "GRANT", [])), quota=getattr(module, "QUOTA", None),
                  args=getattr(module, "ARGS", None))
        run_id = None
        if record:
            from ..store import recorded

            with recorded(k, file.stem) as run_id:
                res = k.run(module.init, **kw)
        else:
            res = k.run(module.init, **kw)
        console.print(history_table(history, title=f"processes of {file.name}"))
        m = k.metrics()
        console.print(f"[bold]init[/] ended [{exit_style(str(res.reason))}]{untrusted(str(res.reason))}[/]"
                      f"{'' if res.value is None else ' → ' + untrusted(repr(res.value), 200)}")
        console.print(f"{m['spawned']} processes, {m['syscalls_total']} syscalls, {m['tokens']} tokens, "
                      f"{m['tool_calls']} tool calls, ${m['usd']:.6f}; exits: {m['exits']}")
        if run_id is not None:
            console.print(f"recorded as run [bold]{run_id}[/] (agentctl events {run_id}; agentctl replay {run_id})")
        raise typer.Exit(0 if res.reason.normal else 1)

    @app.command()
    def bench(quick: bool = typer.Option(False, help="smaller loops, for a smoke run"),
              only: Optional[list[str]] = typer.Option(None, help="benchmark modules, e.g. bench_kernel"),
              out: Optional[Path] = typer.Option(None, help="JSON output path")) -> None:
        """Run the benchmark suite (bench/run.py): ops/s beside the bare-trampoline ceiling."""
        import runpy

        runner = _find_bench()
        argv = [str(runner)] + (["--quick"] if quick else []) + (["--only", *only] if only else []) \
            + (["--out", str(out)] if out else [])
        old = sys.argv
        sys.argv = argv
        try:
            runpy.run_path(str(runner), run_name="__main__")
        except SystemExit as e:
            raise typer.Exit(int(e.code or 0))
        finally:
            sys.argv = old


def _policy(path: Path | None, from_program: Any, drivers: Any) -> Any:
    """The policy object for `run`: an explicit file, the program's own, or the project's."""
    if path is None and from_program is not None:
        return from_program
    if path is None:
        default = Path(".agents/security.md")
        if not default.exists():
            return None
        path = default
    from ..policy import PolicyEngine, PolicyLoadError

    try:
        return PolicyEngine.for_drivers(path, drivers)
    except PolicyLoadError as e:
        for err in e.errors:
            typer.echo(f"invalid policy: {err.one_line()}", err=True)
        raise typer.Exit(1) from None


def _find_bench() -> Path:
    here = Path.cwd().resolve()
    candidates = [p / "bench" / "run.py" for p in (here, *here.parents)]
    candidates.append(Path(__file__).resolve().parents[3] / "bench" / "run.py")
    for c in candidates:
        if c.exists():
            return c
    raise typer.BadParameter("bench/run.py not found: run `agentctl bench` from an agentos checkout")
