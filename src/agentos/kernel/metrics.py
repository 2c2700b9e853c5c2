"""Metrics folded from the event stream, and their Prometheus exposition.

The folder is an event sink: it sees every batch the log flushes and keeps counters, so
metrics cost nothing on the syscall path and always agree with the log.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ..abi.syscalls import SYSCALLS
from ..abi.types import USD_SCALE
from operator import itemgetter

_SYSCALL_NAMES = {cls: spec.name for cls, spec in SYSCALLS.items()}
_KIND = itemgetter(2)
_DATA = itemgetter(3)

FAILURE_MSG = "failure"
MAX_FAILURE_KINDS = 32
_FAILURE_KIND = re.compile(r"[a-z][a-z_]{0,31}")


def failure_kind(data: Any) -> str | None:
    """The kind of a failure a `log` event carries (`sys.log(level, "failure", kind=...)`,
    see `userland/failures.py`), or None. Any process may log, so the label is held to a
    short lower-case identifier; the fold keeps at most `MAX_FAILURE_KINDS` of them."""
    if type(data) is not tuple or len(data) != 3 or data[1] != FAILURE_MSG or type(data[2]) is not dict:
        return None
    kind = data[2].get("kind")
    return kind if type(kind) is str and _FAILURE_KIND.fullmatch(kind) else "other"


class Metrics:
    """Counters over the event stream. Folding is C-speed for the common case: kinds and
    request types are counted with `Counter.update(map(...))`; only the rare events
    (everything but syscalls) are looked at one by one."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.types: Counter[type] = Counter()
        self.exits: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.tokens = 0
        self.tool_calls = 0
        self.usd_nano = 0

    @property
    def syscalls(self) -> dict[str, int]:
        names = _SYSCALL_NAMES
        return {names[t]: n for t, n in self.types.items() if t in names}

    @property
    def spawned(self) -> int:
        return self.kinds["spawn"]

    def observe(self, batch: list[tuple[float, int, str, Any]], first_seq: int = 0) -> None:
        self.kinds.update(map(_KIND, batch))
        self.types.update(map(type, map(_DATA, batch)))
        for _, _, kind, data in [e for e in batch if e[2] != "sys"]:
            if kind == "charge":
                _, t, c, u = data
                self.tokens += t
                self.tool_calls += c
                self.usd_nano += u
            elif kind == "exit":
                self.exits[str(data).split("(", 1)[0]] += 1
            elif kind == "error":
                self.errors[data[0]] += 1
            elif kind == "log":
                fk = failure_kind(data)
                if fk is not None:
                    if fk not in self.failures and len(self.failures) >= MAX_FAILURE_KINDS:
                        fk = "other"
                    self.failures[fk] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "events": dict(self.kinds),
            "syscalls": self.syscalls,
            "syscalls_total": sum(self.syscalls.values()),
            "exits": dict(self.exits),
            "errors": dict(self.errors),
            "failures": dict(self.failures),
            "spawned": self.spawned,
            "tokens": self.tokens,
            "tool_calls": self.tool_calls,
            "usd": self.usd_nano / USD_SCALE,
        }

    def exposition(self, snap: dict[str, Any]) -> str:
        """Prometheus text format, built with prometheus_client when it is installed."""
        try:
            from prometheus_client import CollectorRegistry, generate_latest
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        except ImportError:  # the exporter is optional: fall back to the same text by hand
            return _by_hand(snap)

        class _Collector:
            def collect(self) -> Any:
                c = CounterMetricFamily("agentos_syscalls", "Syscalls handled", labels=["syscall"])
                for name, n in sorted(snap["syscalls"].items()):
                    c.add_metric([name], n)
                yield c
                e = CounterMetricFamily("agentos_exits", "Process exits by reason", labels=["reason"])
                for name, n in sorted(snap["exits"].items()):
                    e.add_metric([name], n)
                yield e
                f = CounterMetricFamily("agentos_failures", "Failures reported, by kind", labels=["kind"])
                for name, n in sorted(snap.get("failures", {}).items()):
                    f.add_metric([name], n)
                yield f
                for key, help_ in (("tokens", "LLM tokens charged"), ("tool_calls", "Tool calls charged"),
                                   ("usd", "US dollars charged"), ("spawned", "Processes spawned")):
                    yield CounterMetricFamily(f"agentos_{key}", help_, value=snap[key])
                for key, help_ in (("processes", "Live processes"), ("caps_live", "Live capabilities"),
                                   ("accounts_open", "Open accounts")):
                    yield GaugeMetricFamily(f"agentos_{key}", help_, value=snap[key])

        reg = CollectorRegistry()
        reg.register(_Collector())
        return generate_latest(reg).decode()


def _by_hand(snap: dict[str, Any]) -> str:
    lines = ["# HELP agentos_syscalls_total Syscalls handled", "# TYPE agentos_syscalls_total counter"]
    for name, n in sorted(snap["syscalls"].items()):
        lines.append(f'agentos_syscalls_total{{syscall="{name}"}} {n}')
    lines += ["# HELP agentos_exits_total Process exits by reason", "# TYPE agentos_exits_total counter"]
    for name, n in sorted(snap["exits"].items()):
        lines.append(f'agentos_exits_total{{reason="{name}"}} {n}')
    lines += ["# HELP agentos_failures_total Failures reported, by kind", "# TYPE agentos_failures_total counter"]
    for name, n in sorted(snap.get("failures", {}).items()):
        lines.append(f'agentos_failures_total{{kind="{name}"}} {n}')
    for key in ("tokens", "tool_calls", "usd", "spawned"):
        lines += [f"# TYPE agentos_{key}_total counter", f"agentos_{key}_total {snap[key]}"]
    for key in ("processes", "caps_live", "accounts_open"):
        lines += [f"# TYPE agentos_{key} gauge", f"agentos_{key} {snap[key]}"]
    return "\n".join(lines) + "\n"
