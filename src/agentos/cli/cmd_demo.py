"""`agentctl demo`: run the team-of-agents demo in examples/demo.py.

Offline on the embedded model by default; `--base-url` (or AGENTOS_LLM_BASE_URL) points it
at any OpenAI-compatible endpoint instead. The program lives in examples/ so it can be
read and run on its own; this command finds it beside the source tree.
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


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(base_url: str = typer.Option(None, envvar="AGENTOS_LLM_BASE_URL",
                                          help="An OpenAI-compatible endpoint (default: the embedded model)."),
             model: str = typer.Option(None, envvar="AGENTOS_LLM_MODEL", help="Model name at that endpoint."),
             api_key: str = typer.Option(None, help="API key (default: $OPENAI_API_KEY)."),
             no_stream: bool = typer.Option(False, help="Do not stream the model's tokens."),
             ) -> None:
        """A small team of LLM agents under one kernel: planner, ReAct workers, a supervisor, a budget."""
        path = demo_path()
        if not path.is_file():
            typer.echo(f"the demo program is not at {path}; run from a source checkout or set AGENTOS_DEMO",
                       err=True)
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
