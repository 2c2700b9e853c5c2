"""The kernel's garbage-collector policy: what the collector does while a kernel runs.

A running kernel allocates a few container objects per syscall (requests, events, journal
entries) and keeps some of them (the event ring, a journal). With CPython's default
thresholds (700 net allocations per young collection) the collector runs thousands of times
a second, and every run walks what the kernel and its host hold. While the dispatch loop
runs, `GcPolicy` therefore

- freezes what existed when the kernel booted (`gc.freeze()`: the host's modules and data,
  the kernel's tables), so no collection walks it again;
- raises the collection thresholds (`threshold`), so young collections run every few tens
  of thousands of net allocations instead of every 700;

and when the kernel returns, normally or by an exception, gives the interpreter back
exactly its settings: thresholds, enabled or disabled, and what was frozen. Only the
outermost running kernel applies the policy (a kernel run inside another's driver leaves
it alone), and a host that froze objects itself keeps its own freeze: the policy then only
tunes thresholds.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

from .args import shown


@dataclass(frozen=True)
class GcPolicy:
    """Collector settings while a kernel runs; `KernelConfig(gc=None)` leaves them alone."""

    threshold: tuple[int, int, int] = (50_000, 20, 10)
    freeze: bool = True

    def __post_init__(self) -> None:
        t = self.threshold
        if not (isinstance(t, tuple) and len(t) == 3 and all(type(x) is int and 0 <= x <= _C_INT_MAX for x in t)):
            raise ValueError(f"GcPolicy.threshold must be three ints in 0..{_C_INT_MAX}, got {shown(t)}")
        if self.freeze is not True and self.freeze is not False:
            raise ValueError(f"GcPolicy.freeze must be True or False, got {shown(self.freeze)}")


_C_INT_MAX = 2**31 - 1  # what gc.set_threshold takes


_depth = 0   # running kernels that applied a policy, nested in this interpreter


class Applied:
    """The interpreter's settings before `apply`, to put back with `restore`."""

    __slots__ = ("threshold", "enabled", "froze", "outer")

    def __init__(self) -> None:
        self.threshold: tuple[int, int, int] = gc.get_threshold()
        self.enabled = gc.isenabled()
        self.froze = False
        self.outer = False


def apply(policy: GcPolicy | None) -> Applied | None:
    """Switch to `policy` (outermost kernel only). Returns what `restore` needs."""
    global _depth
    if policy is None:
        return None
    saved = Applied()
    if _depth == 0:
        saved.outer = True
        gc.set_threshold(*policy.threshold)  # first: if it fails, nothing has been frozen
        if policy.freeze and gc.get_freeze_count() == 0:  # a host's own freeze is left as it is
            gc.freeze()
            saved.froze = True
    _depth += 1
    return saved


def restore(saved: Applied | None) -> None:
    """Give the interpreter back the settings `apply` found."""
    global _depth
    if saved is None:
        return
    _depth -= 1
    if saved.outer:
        gc.set_threshold(*saved.threshold)
        if saved.froze:
            gc.unfreeze()
        (gc.enable if saved.enabled else gc.disable)()


def settings() -> dict[str, Any]:
    """The collector's current settings (for tests and diagnostics)."""
    return {"threshold": gc.get_threshold(), "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}


__all__ = ["GcPolicy", "apply", "restore", "settings"]
