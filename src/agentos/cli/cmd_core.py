"""Core commands: syscalls (more are added as the kernel grows)."""
from __future__ import annotations

import typer


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
