"""The `agentctl` entry point.

Command groups live in `cmd_*.py` modules beside this one; each defines `register(app)`.
They are discovered at start-up so that adding an area never edits this file, and each
imports its heavy libraries inside its commands, so `agentctl --help` stays fast.
"""
from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(
    name="agentctl",
    help="Control agentos kernels: run programs, inspect processes, events, budgets and audits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from .. import ABI_VERSION, __version__

        typer.echo(f"agentctl (agentos) {__version__}, ABI {ABI_VERSION}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """agentos control tool."""


def _load_commands() -> None:
    from .. import cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"{pkg.__name__}.{info.name}")
            module.register(app)


_load_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
