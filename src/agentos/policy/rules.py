"""Compiled rule parts: argument constraints, rate limits, and action patterns.

Everything here is built once at load; the per-call work is calling small closures.
Constraints fail closed in both directions: each check says "holds", "false" or "cannot
be evaluated" (argument missing or renamed, wrong type, NaN, NUL byte in a path, a lone
surrogate). An allow applies only when every check holds; a deny applies unless one of
its checks was evaluated and is false. Regexes run on RE2 (linear time, no
backtracking), after `max_length`.
"""
from __future__ import annotations

import posixpath
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

# spawn, send, signal.<SIG>, vfs.<op>: governed by capabilities, and by policy only where a
# rule names them (`*` does not)
from ..kernel.decision import is_kernel_action

PERIODS_MS = {"second": 1000.0, "minute": 60_000.0, "hour": 3_600_000.0, "day": 86_400_000.0}
_PERIOD_ALIASES = {"s": "second", "sec": "second", "seconds": "second", "m": "minute", "min": "minute",
                   "minutes": "minute", "h": "hour", "hr": "hour", "hours": "hour", "d": "day", "days": "day"}

# A check returns None when satisfied, else (FALSE or UNKNOWN, a sentence saying what was wrong).
Check = Callable[[dict[str, Any]], "tuple[int, str] | None"]


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


def compile_regex(pattern: str) -> Any:
    """An RE2 program for `pattern` (linear-time matching, no backtracking).

    Raises ValueError with RE2's reason when RE2 does not accept the pattern (for example
    a backreference or a lookaround, which need backtracking)."""
    try:
        import re2
    except ImportError as e:  # a core dependency; say how to get it back
        raise ValueError("regex constraints need google-re2 (pip install google-re2)") from e
    if not isinstance(pattern, str):
        raise ValueError(f"a regex must be a string, got {type(pattern).__name__}")
    opts = re2.Options()
    opts.log_errors = False
    opts.never_capture = True
    opts.max_mem = 8 << 20
    try:
        pattern.encode("utf-8")
        return re2.compile(pattern, opts)
    except UnicodeEncodeError:
        raise ValueError("the pattern holds a lone surrogate") from None
    except Exception as e:  # re2.error carries bytes
        msg = e.args[0] if e.args else e
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise ValueError(f"RE2 rejects it: {msg}") from None


# A check's answer: None when it holds; else (FALSE, why) when the argument was evaluated
# and the condition is false, or (UNKNOWN, why) when it could not be evaluated (missing,
# wrong type, NaN, a lone surrogate). Allows need every check to hold; a deny stands
# unless some check is FALSE.
FALSE = 0
UNKNOWN = 1


def compile_constraint(arg: str, spec: dict[str, Any]) -> Check:
    """One argument's constraint spec (keys: min, max, enum, regex, path_under, max_length).

    `max_length` is evaluated first, so no other test ever sees an over-long value."""
    tests: list[Callable[[Any], tuple[int, str] | None]] = []
    if "max_length" in spec:
        ml = spec["max_length"]

        def max_length(v: Any) -> tuple[int, str] | None:
            if not isinstance(v, (str, bytes, list, tuple, dict)):
                return UNKNOWN, f"{arg} has no length (a {type(v).__name__})"
            n = len(v)
            return None if n <= ml else (FALSE, f"{arg} is {n} long, over the maximum {ml}")
        tests.append(max_length)
    if "min" in spec or "max" in spec:
        lo, hi = spec.get("min"), spec.get("max")

        def rng(v: Any, lo: Any = lo, hi: Any = hi) -> tuple[int, str] | None:
            if not _is_number(v):
                return UNKNOWN, f"{arg} must be a number, got {type(v).__name__}"
            if v != v:
                return UNKNOWN, f"{arg} is NaN"
            if lo is not None and v < lo:
                return FALSE, f"{arg}={v!r} is below the minimum {lo}"
            if hi is not None and v > hi:
                return FALSE, f"{arg}={v!r} is above the maximum {hi}"
            return None
        tests.append(rng)
    if "enum" in spec:
        allowed = list(spec["enum"])
        types = {type(a) for a in allowed}

        def enum(v: Any) -> tuple[int, str] | None:
            # bool is not 1 and 1.0 is not "1": compare type and value
            if type(v) not in types:
                return UNKNOWN, f"{arg} is a {type(v).__name__}; the allowed values are {allowed!r}"
            if isinstance(v, float) and v != v:
                return UNKNOWN, f"{arg} is NaN"
            for a in allowed:
                if type(a) is type(v) and a == v:
                    return None
            return FALSE, f"{arg}={v!r:.80} is not one of {allowed!r}"
        tests.append(enum)
    if "regex" in spec:
        rx = compile_regex(spec["regex"])
        pattern = spec["regex"]

        def regex(v: Any) -> tuple[int, str] | None:
            if not isinstance(v, str):
                return UNKNOWN, f"{arg} must be a string, got {type(v).__name__}"
            try:
                ok = rx.fullmatch(v) is not None
            except UnicodeEncodeError:
                return UNKNOWN, f"{arg} is not valid Unicode (a lone surrogate)"
            return None if ok else (FALSE, f"{arg}={v!r:.80} does not match /{pattern}/")
        tests.append(regex)
    if "path_under" in spec:
        roots_raw = spec["path_under"]
        roots = [posixpath.normpath(r) for r in ([roots_raw] if isinstance(roots_raw, str) else roots_raw)]

        def under(v: Any) -> tuple[int, str] | None:
            if not isinstance(v, str):
                return UNKNOWN, f"{arg} must be a path string, got {type(v).__name__}"
            if "\x00" in v:
                return UNKNOWN, f"{arg} holds a NUL byte"
            for root in roots:
                p = normalise_path(v, root)
                if p is not None and (p == root or p.startswith(root.rstrip("/") + "/")):
                    return None
            return FALSE, f"{arg}={v!r:.80} is not under {' or '.join(roots)} once normalised"
        tests.append(under)

    def check(args: dict[str, Any]) -> tuple[int, str] | None:
        v = args.get(arg, MISSING) if isinstance(args, dict) else MISSING
        if v is MISSING:
            return UNKNOWN, f"argument {arg!r} is missing"
        unknown = None
        for t in tests:
            out = t(v)
            if out is not None:
                if out[0] == FALSE:
                    return out
                if unknown is None:
                    unknown = out
        return unknown
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
    dry_run: bool = False                    # allowed calls are answered, not performed
    min_trust: float | None = None           # the caller's trust score must be at least this
    target_min_trust: float | None = None    # send: the target's trust score must be at least this
    windows: dict[Any, RateWindow] = field(default_factory=dict, repr=False)

    def matches_action(self, action: str) -> bool:
        for pat in self.actions:
            if pat == action:
                return True
            if pat == "*":  # every action on the world; kernel actions only by name
                if not is_kernel_action(action):
                    return True
                continue
            if pat.endswith(".*") and action.startswith(pat[:-1]):
                return True
        return False

    def unmet(self, args: Any) -> str | None:
        """None if every constraint holds for `args` (what an allow needs), else the first failure."""
        a = args if isinstance(args, dict) else {}
        for c in self.constraints:
            out = c(a)
            if out is not None:
                return out[1]
        return None

    def deny_applies(self, args: Any) -> bool:
        """A deny stands unless one of its constraints was evaluated and is false."""
        a = args if isinstance(args, dict) else {}
        for c in self.constraints:
            out = c(a)
            if out is not None and out[0] == FALSE:
                return False
        return True

    def window(self, pid: int) -> RateWindow:
        key = pid if self.rate_per == "process" else None
        w = self.windows.get(key)
        if w is None:
            assert self.rate is not None
            w = self.windows[key] = RateWindow(self.rate[0], self.rate[1])
        return w
