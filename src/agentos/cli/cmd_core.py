"""Core commands: run a program, list syscalls, run the benchmark suite."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer


def load_program(path: Path) -> Any:
    """Import a program file. It defines `init` (async def init(sys, args)); optionally
    `setup(kernel)` to register drivers, `GRANT` (device names), `QUOTA`, `ARGS`, `POLICY`.
    A program that fails to import is one line on stderr (file:line: error), exit 2."""
    from ..server.program import ProgramError
    from ..server.program import load_program as load

    try:
        return load(path)
    except ProgramError as e:
        typer.echo(f"agentctl: {e}", err=True)
        raise typer.Exit(2) from None


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
            trace: Optional[bool] = typer.Option(
                None, "--trace/--no-trace", help="OpenTelemetry traces (default: on when OTEL_EXPORTER_OTLP_ENDPOINT is set)"),
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
        tracing = maybe_trace(k, trace)
        run_id = None
        if record:
            from ..store import open_default_store, recorded

            st = open_default_store()
            try:
                with recorded(k, file.stem, st) as run_id:
                    res = run_interruptibly(k, module.init, kw)
                if k.stop_requested:
                    st.update_run(run_id, status="interrupted", summary={
                        "exit": str(res.reason), "stopped_by": k.stop_requested})
            finally:
                st.close()
        else:
            res = run_interruptibly(k, module.init, kw)
        if tracing is not None:
            tracing.shutdown()
        console.print(history_table(history, title=f"processes of {file.name}"))
        if k.stop_requested:
            console.print(f"[bold yellow]interrupted[/] by {k.stop_requested}: every process was stopped and "
                          f"driver calls in flight were cancelled"
                          + (f"; run {run_id} recorded as interrupted" if run_id else ""))
            raise typer.Exit(143 if k.stop_requested == "SIGTERM" else 130)
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


def maybe_trace(k: Any, trace: bool | None, *, served: bool = False) -> Any:
    """Trace `k` with OpenTelemetry (GenAI conventions) when asked, or by default when
    OTEL_EXPORTER_OTLP_ENDPOINT is set; returns the provider to shut down, or None. Prompt
    text is recorded only with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.

    A ratio sampler set the standard way (OTEL_TRACES_SAMPLER=[parentbased_]traceidratio,
    OTEL_TRACES_SAMPLER_ARG) is applied by the tracer once per trace, before any span is
    made; `served` makes each program submitted to a daemon a trace of its own."""
    import os

    if trace is None:
        trace = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if not trace:
        return None
    try:
        from ..telemetry import GenAITracer, configure_tracing
    except ImportError as e:
        typer.echo(f"agentctl: tracing needs the otel extra (pip install 'agentos[otel]'): {e}", err=True)
        raise typer.Exit(2) from None
    ratio = env_sample_ratio(os.environ)
    try:
        provider = configure_tracing(sample_ratio=None if ratio is None else 1.0)
    except ImportError as e:
        typer.echo(f"agentctl: tracing needs the otel extra (pip install 'agentos[otel]'): {e}", err=True)
        raise typer.Exit(2) from None
    capture = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() == "true"
    k.add_observer(GenAITracer(provider, capture_content=capture, sample_ratio=ratio,
                               trace_per_child_of_init=served))
    return provider


def env_sample_ratio(env: Any) -> float | None:
    """The trace ratio OTEL_TRACES_SAMPLER/OTEL_TRACES_SAMPLER_ARG ask for, or None (another
    sampler, or none: the provider's own then decides). A ratio that is not a number in
    [0, 1] is refused with one line, as the SDK's own default would silently use 1.0."""
    name = str(env.get("OTEL_TRACES_SAMPLER", "")).strip().lower()
    if name not in ("traceidratio", "parentbased_traceidratio"):
        return None
    raw = env.get("OTEL_TRACES_SAMPLER_ARG")
    if raw is None or not str(raw).strip():
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = float("nan")
    if not (0.0 <= ratio <= 1.0):
        typer.echo(f"agentctl: OTEL_TRACES_SAMPLER_ARG must be a ratio in [0, 1], got {raw!r}", err=True)
        raise typer.Exit(2)
    return ratio


def run_interruptibly(k: Any, init: Any, kw: dict[str, Any]) -> Any:
    """`k.run(init, **kw)`, with Ctrl-C and SIGTERM stopping the kernel cleanly: the
    signal handler only asks the kernel to stop (`request_stop`), and the kernel ends every
    process and cancels driver calls in flight between two dispatch batches."""
    import asyncio
    import signal

    def handler(signum: int, frame: Any) -> None:
        k.request_stop(signal.Signals(signum).name)

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave the process's handlers alone
            pass
    try:
        return asyncio.run(k.boot(init, **kw))
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


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
