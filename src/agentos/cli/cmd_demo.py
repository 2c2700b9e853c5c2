"""`agentctl demo`: the kernel tour (scripted agents under real enforcement)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(seed: int = typer.Option(0, help="seed for the deterministic run")) -> None:
        """A supervised team of agents with tools: a restart, a budget kill, refused capabilities."""
        from rich.console import Console
        from rich.rule import Rule

        from ..kernel import AllowAll, Kernel
        from ..kernel.history import attach_history
        from . import demo_kernel
        from .render import Narrator, exit_style, history_table
        from .render import console as render_console

        console = render_console()
        console.print(Rule("agentos kernel tour"))
        console.print("A supervisor keeps a calculator agent alive; a planner uses it by name; a spender "
                      "has a budget of 3 tool calls; an intruder tries to act without capabilities.\n")
        k = Kernel(deterministic=True, seed=seed, policy=AllowAll(), event_batch=1)
        history = attach_history(k)
        k.events.add_raw_sink(Narrator(console).observe)
        demo_kernel.setup(k)
        res = k.run(demo_kernel.init, grant=demo_kernel.GRANT, quota=demo_kernel.QUOTA)
        console.print()
        console.print(history_table(history, title="every process, and what it cost"))
        m = k.metrics()
        console.print(f"init: [{exit_style(str(res.reason))}]{res.reason}[/] ({res.value}); "
                      f"{m['spawned']} processes, {m['syscalls_total']} syscalls, {m['tool_calls']} tool calls; "
                      f"exits {m['exits']}")
