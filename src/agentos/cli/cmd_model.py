"""`agentctl model`: the embedded model outside a kernel.

`model serve` runs it as an OpenAI-compatible HTTP server (llama-cpp-python's server) on
loopback, so anything that speaks that API, the `llm` driver included, can use it.
`model info` says where the model is and whether it loads; `model path` prints the path.
Heavy imports happen inside the commands.
"""
from __future__ import annotations

import ipaddress
import os

import typer

model_app = typer.Typer(help="The embedded local model: serve it over HTTP, inspect it.",
                        no_args_is_help=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_server(model: str | None, host: str, port: int, n_ctx: int, threads: int | None,
                 alias: str) -> object:
    """The ASGI app for `serve` (separate so tests and embedding programs can reuse it)."""
    from llama_cpp.server.app import create_app  # type: ignore[import-not-found, import-untyped, unused-ignore]
    from llama_cpp.server.settings import ModelSettings, ServerSettings  # type: ignore[import-not-found, import-untyped, unused-ignore]

    from ..drivers.local import default_model_path

    path = model or default_model_path()
    n_threads = threads or max(1, min(4, os.cpu_count() or 1))
    return create_app(
        server_settings=ServerSettings(host=host, port=port),
        model_settings=[ModelSettings(model=path, model_alias=alias, n_ctx=n_ctx, n_threads=n_threads, chat_format="gemma",
                                      n_threads_batch=n_threads, seed=0, verbose=False)],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


@model_app.command("serve")
def serve(host: str = typer.Option("127.0.0.1", help="Address to bind (loopback unless --public)."),
          port: int = typer.Option(8088, help="TCP port."),
          model: str = typer.Option(None, help="A .gguf file (default: the packaged gemma3-270m)."),
          n_ctx: int = typer.Option(4096, help="Context window in tokens."),
          threads: int = typer.Option(None, help="CPU threads (default: up to 4)."),
          alias: str = typer.Option("gemma3-270m-q4_k_m", help="Model name clients ask for."),
          public: bool = typer.Option(False, help="Allow binding a non-loopback address."),
          ) -> None:
    """Serve the embedded model as an OpenAI-compatible API (POST /v1/chat/completions)."""
    if not _is_loopback(host) and not public:
        raise typer.BadParameter(f"{host} is not a loopback address; pass --public to expose the model",
                                 param_hint="--host")
    from rich.console import Console

    console = Console(stderr=True)
    try:
        with console.status(f"loading the model for {host}:{port} …"):
            asgi = build_server(model, host, port, n_ctx, threads, alias)
    except ImportError as e:
        console.print(f"[red]cannot serve: {e}. Install the 'local' extra (make demo does it).[/red]")
        raise typer.Exit(2) from None
    except Exception as e:
        console.print(f"[red]cannot serve: {type(e).__name__}: {e}[/red]")
        raise typer.Exit(2) from None
    import uvicorn  # type: ignore[import-not-found, import-untyped, unused-ignore]

    console.print(f"[green]serving {alias} at http://{host}:{port}/v1[/green] (Ctrl-C stops)")
    uvicorn.run(asgi, host=host, port=port, log_level="warning")  # type: ignore[arg-type]


@model_app.command("path")
def path() -> None:
    """Print the path of the embedded model's .gguf file."""
    from ..drivers.local import default_model_path

    typer.echo(default_model_path())


@model_app.command("info")
def info(load: bool = typer.Option(True, help="Load the model and time a short generation.")) -> None:
    """Where the model is, its size, and (with --load) load time and tokens/s on this machine."""
    import asyncio

    from rich.console import Console

    from ..abi.types import Pid
    from ..drivers.local import LocalDriver, default_model_path

    console = Console()
    p = default_model_path()
    console.print(f"model: {p} ({os.path.getsize(p) / 1e6:.0f} MB)")
    if not load:
        return
    drv = LocalDriver()
    with console.status("loading …"):
        secs = drv.load()
    console.print(f"loaded in {secs:.2f} s")

    async def one() -> None:
        await drv.read(drv.open(Pid(0), None), {"messages": [{"role": "user", "content": "Count from 1 to 20."}],
                                           "max_tokens": 64})

    with console.status("generating …"):
        asyncio.run(one())
    st = drv.stats
    console.print(f"prompt {st.prompt_tokens} tokens at {st.prompt_tokens_per_s:.0f} tok/s; "
                  f"generated {st.completion_tokens} tokens at {st.gen_tokens_per_s:.1f} tok/s")
    drv.shutdown()
