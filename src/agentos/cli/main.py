"""The `agentctl` entry point.

Command groups live in `cmd_*.py` modules beside this one; each defines `register(app)`.
They are discovered at start-up so that adding an area never edits this file, and each
imports its heavy libraries inside its commands, so `agentctl --help` stays fast.

Exit codes every command shares: 0 success; 1 the command's own failure (a run that did
not end normally, a failed verification, ...); 2 bad input (an unknown run, a bad option
value); 3 the store could not be read or written (a damaged, truncated or foreign file):
one line on stderr naming the store, never a traceback.
"""
from __future__ import annotations

import functools
import importlib
import os
import pkgutil
from typing import Any, Callable

import typer
import typer.core

EXIT_STORE = 3  # the store is damaged, truncated, not a store, or unreachable
EXIT_USAGE = 2  # a bad option, argument or command name
EXIT_ERROR = 1  # the command failed (a refused input, a file it cannot use, a fault)
EXIT_INTERRUPTED = 130


class _OneLineUsageErrors(typer.core.TyperGroup):
    """A usage error (unknown option, a value of the wrong type, a missing argument) is one
    line on stderr and exit 2, as every other bad input is, not a usage box."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as e:
            _usage_error(e)
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as e:
            _usage_error(e)
            raise


def _usage_error(e: Exception) -> None:
    """Print a usage error as one line and exit 2; anything else is left to propagate.
    (Matched by class name: recent typer versions parse with their own copy of click.)"""
    names = {c.__name__ for c in type(e).__mro__}
    if "UsageError" not in names or "NoArgsIsHelpError" in names:  # a bare group: its help
        return
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path + ": " if ctx is not None else ""
    msg = " ".join(str(e.format_message()).split())  # type: ignore[attr-defined]
    typer.echo(f"{where}{msg}", err=True)
    raise typer.Exit(EXIT_USAGE)


app = typer.Typer(
    cls=_OneLineUsageErrors,
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


_GUARDED: set[Callable[..., Any]] = set()


def _store_errors_are_one_line(callback: Callable[..., Any]) -> Callable[..., Any]:
    """A `StoreError` from any command is one line on stderr and exit code 3."""

    if callback in _GUARDED:
        return callback

    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        from ..store import StoreError

        try:
            return callback(*args, **kwargs)
        except StoreError as e:  # a driver's message may span lines (psycopg's does): one line
            typer.echo(f"error: {_one_line(e)}", err=True)
            raise typer.Exit(EXIT_STORE) from None
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as e:
            if _is_click_flow(e) or os.environ.get("AGENTOS_TRACEBACK"):
                raise  # typer's own exits and aborts; or the operator asked for the traceback
            from ..abi.errors import AgentOSError

            if isinstance(e, (AgentOSError, OSError, ValueError)):  # bad input or an unusable file
                typer.echo(f"error: {_one_line(e)}", err=True)
            else:  # never a traceback: say what broke, and how to see where
                typer.echo(f"error: {type(e).__name__}: {_one_line(e)} (AGENTOS_TRACEBACK=1 shows where)",
                           err=True)
            raise typer.Exit(EXIT_ERROR) from None
    _GUARDED.add(guarded)
    return guarded


def _one_line(e: BaseException, limit: int = 500) -> str:
    try:
        text = " ".join(str(e).split())
    except Exception:
        text = ""
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    text = text or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_click_flow(e: BaseException) -> bool:
    """typer.Exit, click's Abort and usage errors are how commands end: not failures."""
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"Exit", "Abort", "ClickException"})


def _guard_all(t: typer.Typer) -> None:
    for info in t.registered_commands:
        if info.callback is not None:
            info.callback = _store_errors_are_one_line(info.callback)
    for group in t.registered_groups:
        if group.typer_instance is not None:
            _guard_all(group.typer_instance)


_load_commands()
_guard_all(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
