"""`agentctl demo`: the team-of-agents demo in examples/demo.py, or the kernel tour.

Offline on the embedded model by default; `--base-url` (or AGENTOS_LLM_BASE_URL) points it
at any OpenAI-compatible endpoint instead. The program lives in examples/ so it can be
read and run on its own; this command finds it beside the source tree. `--kernel` runs
the kernel tour instead: scripted agents, no model, a second on any machine.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import typer


def demo_path() -> Path:
    """examples/demo.py of this source tree, or $AGENTOS_DEMO."""
    env = os.environ.get("AGENTOS_DEMO")
    if env:
        return Path(env)
    import agentos

    return Path(agentos.__file__).resolve().parents[2] / "examples" / "demo.py"


def kernel_tour(seed: int, record: bool) -> None:
    """A supervised team of scripted agents with tools: a restart, a budget kill, refusals."""
    from rich.rule import Rule

    from .. import AllowAll, Kernel, ProcessHistory
    from . import demo_kernel
    from .render import Narrator, exit_style, history_table, untrusted
    from .render import console as render_console

    console = render_console()
    console.print(Rule("agentos kernel tour"))
    console.print("A supervisor keeps a calculator agent alive; a planner uses it by name; a spender "
                  "has a budget of 3 tool calls; an intruder tries to act without capabilities.\n")
    k = Kernel(deterministic=True, seed=seed, policy=AllowAll(), event_batch=1)
    history = ProcessHistory.attach(k)
    k.events.add_raw_sink(Narrator(console).observe)
    demo_kernel.setup(k)
    run_id = None
    if record:
        from ..store import recorded

        with recorded(k, "kernel-tour") as run_id:
            res = k.run(demo_kernel.init, grant=demo_kernel.GRANT, quota=demo_kernel.QUOTA)
    else:
        res = k.run(demo_kernel.init, grant=demo_kernel.GRANT, quota=demo_kernel.QUOTA)
    console.print()
    console.print(history_table(history, title="every process, and what it cost"))
    m = k.metrics()
    console.print(f"init: [{exit_style(str(res.reason))}]{untrusted(str(res.reason))}[/] ({untrusted(res.value)}); "
                  f"{m['spawned']} processes, {m['syscalls_total']} syscalls, {m['tool_calls']} tool calls; "
                  f"exits {m['exits']}")
    if run_id is not None:
        console.print(f"recorded as run [bold]{run_id}[/] (agentctl replay {run_id})")


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(base_url: str = typer.Option(None, envvar="AGENTOS_LLM_BASE_URL",
                                          help="An OpenAI-compatible endpoint (default: the embedded model)."),
             model: str = typer.Option(None, envvar="AGENTOS_LLM_MODEL", help="Model name at that endpoint."),
             api_key: str = typer.Option(None, help="API key (default: $OPENAI_API_KEY)."),
             no_stream: bool = typer.Option(False, help="Do not stream the model's tokens."),
             kernel: bool = typer.Option(False, "--kernel", help="Run the kernel tour (no model) instead."),
             seed: int = typer.Option(0, help="Seed of the kernel tour's deterministic run."),
             record: bool = typer.Option(True, help="Record the kernel tour in the default store."),
             ) -> None:
        """A small team of LLM agents under one kernel: planner, ReAct workers, a supervisor, a budget."""
        if kernel:
            kernel_tour(seed, record)
            return
        path = demo_path()
        if not path.is_file():
            typer.echo(f"the demo program is not at {path}; run from a source checkout, set AGENTOS_DEMO, "
                       f"or try `agentctl demo --kernel`", err=True)
            raise typer.Exit(2)
        spec = importlib.util.spec_from_file_location("agentos_demo", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["agentos_demo"] = module   # dataclasses look their module up there
        spec.loader.exec_module(module)
        argv: list[str] = []
        if base_url:
            argv += ["--base-url", base_url]
        if model:
            argv += ["--model", model]
        if api_key:
            argv += ["--api-key", api_key]
        if no_stream:
            argv.append("--no-stream")
        raise typer.Exit(module.main(argv))
