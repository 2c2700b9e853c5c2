"""Running a program on a kernel with the agent-graph scheduler on, the program able to
read its kernel (centrality, levels) the way a test can: through a closure."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from agentos import AllowAll, Kernel
from agentos.sched import SchedConfig


def run_sched(program: Callable[[Any, Kernel, dict[str, Any]], Awaitable[Any]], *, quantum: int = 2000,
              quota: Any = None, **sched: Any) -> tuple[Kernel, Any, dict[str, Any]]:
    """Boot `program(sys, kernel, box)` as init; returns the kernel, the RunResult and the
    box the program filled (under replay the box the replay filled is checked equal)."""
    k = Kernel(deterministic=True, policy=AllowAll(), quantum=quantum,
               sched=SchedConfig(**{"enabled": True, **sched}))
    box: dict[str, Any] = {}

    async def init(sys: Any, args: Any) -> Any:
        return await program(sys, k, box)

    res = k.run(init, quota=quota)
    return k, res, box


def cents(k: Kernel) -> dict[str, float]:
    return {p.name: p.cent for p in k.procs.values()}
