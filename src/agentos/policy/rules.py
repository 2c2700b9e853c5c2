"""Compiled rule parts: argument constraints, rate limits, and action patterns.

Everything here is built once at load; the per-call work is calling small closures.
A constraint that cannot be evaluated (argument missing, wrong type, NUL byte in a
path) fails closed: the rule's condition is not met.
"""
from __future__ import annotations

import posixpath
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

PERIODS_MS = {"second": 1000.0, "minute": 60_000.0, "hour": 3_600_000.0, "day": 86_400_000.0}
_PERIOD_ALIASES = {"s": "second", "sec": "second", "seconds": "second", "m": "minute", "min": "minute",
                   "minutes": "minute", "h": "hour", "hr": "hour", "hours": "hour", "d": "day", "days": "day"}

# A check returns None when satisfied, else a sentence saying what was wrong.
Check = Callable[[dict[str, Any]], "str | None"]


class _Missing:
    pass


MISSING = _Missing()


def parse_rate(text: Any) -> tuple[int, float, str]:
    """`"N/period"` → (N, window ms, canonical period). Raises ValueError with the reason."""
    if not isinstance(text, str) or "/" not in text:
        raise ValueError(f"rate_limit must be a string \"N/period\", got {text!r}")
    n_s, _, per = text.partition("/")
    per = per.strip().lower()
    per = _PERIOD_ALIASES.get(per, per)
    if per not in PERIODS_MS:
        raise ValueError(f"rate_limit period {per!r} is not one of {', '.join(PERIODS_MS)}")
    try:
        n = int(n_s.strip())
    except ValueError:
        raise ValueError(f"rate_limit count {n_s.strip()!r} is not an integer") from None
    if n <= 0:
        raise ValueError(f"rate_limit count must be positive, got {n}")
    return n, PERIODS_MS[per], per


class RateWindow:
    """A sliding window of the last N grant times (kernel clock, ms)."""

    __slots__ = ("n", "window", "times")

    def __init__(self, n: int, window: float) -> None:
        self.n = n
        self.window = window
        self.times: deque[float] = deque()

    def room(self, now: float) -> bool:
        times = self.times
        edge = now - self.window
        while times and times[0] <= edge:
            times.popleft()
        return len(times) < self.n

    def take(self, now: float) -> None:
        self.times.append(now)


def normalise_path(value: str, root: str) -> str | None:
    """`value` made absolute under `root` and normalised; None if it cannot be a path."""
    if "\x00" in value:
        return None
    p = value if value.startswith("/") else posixpath.join(root, value)
    p = posixpath.normpath(p)
    if p.startswith("//"):
        p = "/" + p.lstrip("/")
    return p


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compile_constraint(arg: str, spec: dict[str, Any]) -> Check:
    """One argument's constraint spec (keys: min, max, enum, regex, path_under, max_length)."""
    tests: list[Callable[[Any], str | None]] = []
    if "min" in spec or "max" in spec:
        lo, hi = spec.get("min"), spec.get("max")

        def rng(v: Any, lo: Any = lo, hi: Any = hi) -> str | None:
            if not _is_number(v):
                return f"{arg} must be a number, got {type(v).__name__}"
            if v != v:
                return f"{arg} is NaN"
            if lo is not None and v < lo:
                return f"{arg}={v!r} is below the minimum {lo}"
            if hi is not None and v > hi:
                return f"{arg}={v!r} is above the maximum {hi}"
            return None
        tests.append(rng)
    if "enum" in spec:
        allowed = list(spec["enum"])

        def enum(v: Any) -> str | None:
            # bool is not 1 and 1.0 is not "1": compare type and value
            for a in allowed:
                if type(a) is type(v) and a == v:
                    return None
            return f"{arg}={v!r} is not one of {allowed!r}"
        tests.append(enum)
    if "regex" in spec:
        rx = re.compile(spec["regex"])

        def regex(v: Any) -> str | None:
            if not isinstance(v, str):
                return f"{arg} must be a string, got {type(v).__name__}"
            return None if rx.fullmatch(v) else f"{arg}={v!r} does not match /{rx.pattern}/"
        tests.append(regex)
    if "max_length" in spec:
        ml = spec["max_length"]

        def max_length(v: Any) -> str | None:
            try:
                n = len(v)
            except TypeError:
                return f"{arg} has no length"
            return None if n <= ml else f"{arg} is {n} long, over the maximum {ml}"
        tests.append(max_length)
    if "path_under" in spec:
        roots_raw = spec["path_under"]
        roots = [posixpath.normpath(r) for r in ([roots_raw] if isinstance(roots_raw, str) else roots_raw)]

        def under(v: Any) -> str | None:
            if not isinstance(v, str):
                return f"{arg} must be a path string, got {type(v).__name__}"
            for root in roots:
                p = normalise_path(v, root)
                if p is not None and (p == root or p.startswith(root.rstrip("/") + "/")):
                    return None
            return f"{arg}={v!r} is not under {' or '.join(roots)} once normalised"
        tests.append(under)

    def check(args: dict[str, Any]) -> str | None:
        v = args.get(arg, MISSING) if isinstance(args, dict) else MISSING
        if v is MISSING:
            return f"argument {arg!r} is missing"
        for t in tests:
            why = t(v)
            if why is not None:
                return why
        return None
    return check


@dataclass
class Rule:
    name: str
    line: int
    effect: str                              # allow | deny
    actions: tuple[str, ...] = ()            # exact action names, "fam.*" or "*"
    classes: tuple[str, ...] = ()            # ontology classes
    mode: str | None = None                  # read_only | read_write
    requires_approval: bool = False
    approval_timeout_ms: float | None = None
    rate: tuple[int, float, str] | None = None
    rate_per: str = "kernel"                 # kernel | process
    constraints: tuple[Check, ...] = ()
    log: bool = False
    windows: dict[Any, RateWindow] = field(default_factory=dict, repr=False)

    def matches_action(self, action: str) -> bool:
        for pat in self.actions:
            if pat == "*" or pat == action:
                return True
            if pat.endswith(".*") and action.startswith(pat[:-1]):
                return True
        return False

    def unmet(self, args: Any) -> str | None:
        """None if every constraint holds for `args`, else the first failure."""
        a = args if isinstance(args, dict) else {}
        for c in self.constraints:
            why = c(a)
            if why is not None:
                return why
        return None

    def window(self, pid: int) -> RateWindow:
        key = pid if self.rate_per == "process" else None
        w = self.windows.get(key)
        if w is None:
            assert self.rate is not None
            w = self.windows[key] = RateWindow(self.rate[0], self.rate[1])
        return w
