"""Scheduling settings: `SchedConfig`, validated where it is built.

One frozen dataclass holds every knob of the agent-graph scheduler: whether it runs, which
centrality measure, the boost `alpha`, the protection `threshold`, when centrality is
recomputed (every `every_changes` graph changes or `every_ms` of kernel clock), how fast
message traffic decays, how much weight a process may gain from its own descendants, and
the bounded-bypass rule that keeps every ready process running.

Invariant: an instance that exists is valid. A non-finite, negative, out-of-range or
mistyped value is a `SchedConfigError` naming the field and the value, whether the value
came from Python (`KernelConfig.sched`) or from a policy file's `scheduling:` section
(the loader turns the error into a `PolicyLoadError` with its line). This module imports
nothing heavy: rustworkx is imported by `sched.graph` only when the scheduler runs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

from ..abi.errors import KernelError


class SchedConfigError(KernelError):
    """A scheduling setting that cannot be used (names the field and the value)."""


class Measure(str, Enum):
    """How centrality is computed from the agent graph."""

    EIGENVECTOR = "eigenvector"   # undirected weighted eigenvector centrality (power iteration)
    OUT_DEGREE = "out_degree"     # weighted out-degree (spawns, grants, messages sent)


def _shown(v: Any) -> str:
    try:
        text = repr(v)
    except Exception:
        text = f"a {type(v).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _number(name: str, v: Any, *, lo: float, hi: float = math.inf, lo_open: bool = False,
            allow_inf: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SchedConfigError(f"sched.{name} must be a number, got {_shown(v)}")
    if isinstance(v, int):  # the base conversions: a subclass's own __float__ never runs
        try:
            f = int.__float__(v)
        except OverflowError:  # an int too large for a float (10**400): out of every range here
            raise SchedConfigError(f"sched.{name} must be a finite number, got an integer of "
                                   f"{int.bit_length(v)} bits") from None
    else:
        f = float.__float__(v)
    if math.isnan(f) or (math.isinf(f) and not allow_inf):
        raise SchedConfigError(f"sched.{name} must be a finite number, got {_shown(v)}")
    if f < lo or (lo_open and f == lo) or f > hi:
        lo_txt = f"> {lo:g}" if lo_open else f">= {lo:g}"
        hi_txt = f" and <= {hi:g}" if hi != math.inf else ""
        raise SchedConfigError(f"sched.{name} must be {lo_txt}{hi_txt}, got {_shown(v)}")
    return f


def _count(name: str, v: Any, *, lo: int, hi: int, optional: bool = False) -> int | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise SchedConfigError(f"sched.{name} must be an integer{' or None' if optional else ''}, got {_shown(v)}")
    v = int.__index__(v)  # a plain int (a subclass's own comparisons never run)
    if not lo <= v <= hi:
        raise SchedConfigError(f"sched.{name} must be in {lo}..{hi}, got {_shown(v)}")
    return v


@dataclass(frozen=True)
class SchedConfig:
    """The agent-graph scheduler's settings (see docs/scheduling.md).

    `enabled=False` (the default) keeps the kernel exactly as without the scheduler: no
    graph, strict priority levels, no rustworkx import, one None test on send and spawn."""

    enabled: bool = False
    measure: Measure | str = Measure.EIGENVECTOR
    alpha: float = 0.5                # effective priority = base * (1 + alpha * centrality)
    threshold: float = 0.8            # centrality at or above which a process is protected
    every_changes: int | None = 256   # K: recompute after this many graph changes (None: never)
    every_ms: float | None = 1000.0   # T: ... or this long after the first change (None: never)
    half_life_ms: float = 10_000.0    # message traffic weight halves over this much kernel time
    subtree_cap: float = 8.0          # most edge weight a process draws from its own descendants
    bypass: int = 4                   # every bypass-th dispatch serves the levels round-robin
    max_iter: int = 200               # power-iteration cap (eigenvector); past it: out-degree
    tol: float = 1e-6                 # eigenvector convergence tolerance

    def __post_init__(self) -> None:
        if self.enabled is not True and self.enabled is not False:
            raise SchedConfigError(f"sched.enabled must be true or false, got {_shown(self.enabled)}")
        m = self.measure
        try:
            measure = Measure(m) if type(m) is str or type(m) is Measure else None  # no str subclass's __hash__
        except ValueError:
            measure = None
        if measure is None:
            raise SchedConfigError(f"sched.measure must be one of {', '.join(x.value for x in Measure)}, "
                                   f"got {_shown(m)}")
        set_ = object.__setattr__
        set_(self, "measure", measure)
        set_(self, "alpha", _number("alpha", self.alpha, lo=0.0, hi=100.0))
        set_(self, "threshold", _number("threshold", self.threshold, lo=0.0, hi=1.0, lo_open=True))
        set_(self, "every_changes", _count("every_changes", self.every_changes, lo=1, hi=1 << 40, optional=True))
        if self.every_ms is not None:
            set_(self, "every_ms", _number("every_ms", self.every_ms, lo=0.0, hi=1e12, lo_open=True))
        set_(self, "half_life_ms", _number("half_life_ms", self.half_life_ms, lo=0.0, hi=1e15, lo_open=True))
        set_(self, "subtree_cap", _number("subtree_cap", self.subtree_cap, lo=0.0, hi=1e12, lo_open=True))
        set_(self, "bypass", _count("bypass", self.bypass, lo=1, hi=1 << 20))
        set_(self, "max_iter", _count("max_iter", self.max_iter, lo=1, hi=100_000))
        set_(self, "tol", _number("tol", self.tol, lo=0.0, hi=1.0, lo_open=True))

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (what a recorded run keeps, so replay rebuilds the same)."""
        d = asdict(self)
        d["measure"] = Measure(self.measure).value
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "SchedConfig":
        """The inverse of `as_dict`; an unknown key or a bad value is a `SchedConfigError`."""
        if not isinstance(d, dict):
            raise SchedConfigError(f"sched settings must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        plain: dict[str, Any] = {}
        for k, v in dict.items(d):  # the base dict's items: a subclass's own __iter__/keys never run
            if type(k) is not str:  # before any hash or compare: a str subclass's own never run
                raise SchedConfigError(f"a sched setting's name must be a string, got a {type(k).__name__}")
            if k not in known:
                raise SchedConfigError(f"unknown sched setting {_shown(k)} (known: {', '.join(sorted(known))})")
            plain[k] = v
        return cls(**plain)


def typed_init(cls: Any, err: type[KernelError], prefix: str) -> None:
    """Make `cls(...)` refuse an unknown keyword or too many positional arguments with
    `err` naming them, as it refuses a bad value (a dataclass's own is a bare TypeError)."""
    init = cls.__init__
    names = tuple(f.name for f in fields(cls))

    def __init__(self: Any, *args: Any, **kw: Any) -> None:
        if len(args) > len(names):
            raise err(f"{prefix} takes at most {len(names)} settings, got {len(args)} positional")
        unknown = sorted(k for k in kw if k not in names)
        if unknown:
            raise err(f"unknown {prefix} setting {_shown(unknown[0])} (known: {', '.join(sorted(names))})")
        dup = [n for n in names[:len(args)] if n in kw]
        if dup:
            raise err(f"{prefix} setting {dup[0]!r} given twice")
        init(self, *args, **kw)

    __init__.__doc__ = init.__doc__
    cls.__init__ = __init__


typed_init(SchedConfig, SchedConfigError, "sched")
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SchedConfig))

__all__ = ["FIELDS", "Measure", "SchedConfig", "SchedConfigError"]
