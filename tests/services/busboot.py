"""Run a program on a fresh deterministic kernel whose bus has its device (and a store)."""
from __future__ import annotations

from typing import Any

from agentos import AllowAll, Kernel, RunResult
from agentos.services import attach_bus as attach


def run_bus(init: Any, *, store: Any = None, args: Any = None, policy: Any = None, seed: int = 0,
            **config: Any) -> tuple[Kernel, RunResult]:
    k = Kernel(deterministic=True, seed=seed, policy=policy or AllowAll(), **config)
    attach(k, store=store)
    res = k.run(init, grant=["bus"], args=args)
    return k, res
