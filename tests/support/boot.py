"""Shared test helper: run a program on a fresh deterministic kernel."""
from __future__ import annotations

from typing import Any, Iterable

from agentos import AllowAll, Kernel, RunResult


def boot(init: Any, *, drivers: Iterable[Any] = (), grant: Iterable[str] = (), quota: Any = None,
         args: Any = None, policy: Any = "allow", seed: int = 0, **config: Any) -> tuple[Kernel, RunResult]:
    """VirtualClock, seeded refs, AllowAll policy unless told otherwise."""
    if policy == "allow":
        policy = AllowAll()
    k = Kernel(deterministic=True, seed=seed, policy=policy, **config)
    for d in drivers:
        k.register_driver(d)
    res = k.run(init, grant=list(grant), quota=quota, args=args)
    return k, res
