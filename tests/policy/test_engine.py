"""Decisions: constraints, deny-wins, default deny, modes, rate limits, read_only."""
from __future__ import annotations

import posixpath

from hypothesis import given, settings, strategies as st

from agentos import VirtualClock

from .helpers import engine, make_kernel

BASE = """
kernel: {version: "1.0", mode: %s}
policies:
  - name: calc-range
    action: calc
    effect: allow
    constraints:
      x: {min: 0, max: 10}
  - name: writes
    action: file_write
    effect: allow
    constraints:
      path: {path_under: /work/sandbox}
  - name: no-etc
    action: file_write
    effect: deny
    constraints:
      path: {path_under: /work/sandbox/etc}
  - name: pay-enum
    action: pay
    effect: allow
    constraints:
      to: {enum: [alice, bob]}
      amount: {min: 1, max: 100}
  - name: sql-ro
    action: sql
    effect: allow
    mode: read_only
"""


def test_constraints_allow_and_name_the_violated_rule() -> None:
    e = engine(BASE % "strict")
    assert e.check(1, "tools.calc", {"x": 3}).allowed
    d = e.check(1, "tools.calc", {"x": 11})
    assert not d.allowed and d.rule == "calc-range" and d.effect == "kill" and "above the maximum" in d.reason
    assert not e.check(1, "tools.calc", {"x": True}).allowed      # a bool is not a number
    assert not e.check(1, "tools.calc", {}).allowed               # missing argument fails closed
    assert not e.check(1, "tools.calc", {"x": float("nan")}).allowed
    assert e.check(1, "tools.pay", {"to": "alice", "amount": 5}).allowed
    assert not e.check(1, "tools.pay", {"to": "mallory", "amount": 5}).allowed


def test_deny_wins_over_allow() -> None:
    e = engine(BASE % "strict")
    assert e.check(1, "tools.file_write", {"path": "/work/sandbox/a.txt"}).allowed
    d = e.check(1, "tools.file_write", {"path": "/work/sandbox/etc/passwd"})
    assert not d.allowed and d.rule == "no-etc"


def test_strict_default_deny_for_unmatched_actions() -> None:
    e = engine(BASE % "strict")
    d = e.check(1, "tools.wire_transfer", {"amount": 1})
    assert not d.allowed and d.rule == "default-deny" and d.effect == "kill"
    assert not e.check(1, "kv.set", {"op": "set", "key": "a"}).allowed


def test_permissive_logs_and_allows_violations() -> None:
    e = engine(BASE % "permissive")
    d = e.check(1, "tools.calc", {"x": 99})
    assert d.allowed and d.effect == "log" and d.rule == "calc-range" and d.extra["would"] == "kill"
    d2 = e.check(1, "tools.wire_transfer", {"amount": 1})
    assert d2.allowed and d2.rule == "default-deny"


def test_audit_mode_enforces_nothing_and_says_what_it_would_do() -> None:
    e = engine(BASE % "audit")
    d = e.check(1, "tools.file_write", {"path": "/etc/shadow"})
    assert d.allowed and d.effect == "log" and "would deny" in d.reason


def test_read_only_mode_uses_the_tools_classifier() -> None:
    k = make_kernel(BASE % "strict")
    e = k.policy
    assert e.check(1, "tools.sql", {"q": "SELECT 1"}).allowed
    d = e.check(1, "tools.sql", {"q": "DELETE FROM users"})
    assert not d.allowed and "read_write" in d.reason
    d = e.check(1, "tools.sql", {"q": "SELECT 1; DROP TABLE users"})
    assert not d.allowed and "cannot classify" in d.reason


def test_read_only_without_a_tool_is_denied() -> None:
    e = engine(BASE % "strict")  # not attached to a kernel: no tool registry
    d = e.check(1, "tools.sql", {"q": "SELECT 1"})
    assert not d.allowed and "no effect classifier" in d.reason


RATE = """
kernel: {version: "1.0", mode: strict}
policies:
  - name: calc-rl
    action: calc
    effect: allow
    rate_limit: "3/minute"
  - name: pay-rl
    action: pay
    effect: allow
    rate_limit: "1/second"
    rate_per: process
"""


def test_rate_limit_uses_the_kernel_clock() -> None:
    k = make_kernel(RATE)
    clock: VirtualClock = k.clock  # type: ignore[assignment]
    e = k.policy
    assert [e.check(1, "tools.calc", {"x": 1}).allowed for _ in range(4)] == [True, True, True, False]
    d = e.check(2, "tools.calc", {"x": 1})
    assert not d.allowed and "rate limit 3/minute" in d.reason   # kernel-wide by default
    clock.advance(60_001)
    assert e.check(1, "tools.calc", {"x": 1}).allowed


def test_rate_limit_per_process() -> None:
    k = make_kernel(RATE)
    e = k.policy
    assert e.check(1, "tools.pay", {"amount": 1}).allowed
    assert not e.check(1, "tools.pay", {"amount": 1}).allowed
    assert e.check(2, "tools.pay", {"amount": 1}).allowed


def test_dry_run_takes_no_rate_slot() -> None:
    k = make_kernel(RATE)
    e = k.policy
    for _ in range(10):
        assert e.check(1, "tools.calc", {"x": 1}, dry_run=True).allowed
    assert [e.check(1, "tools.calc", {"x": 1}).allowed for _ in range(4)] == [True, True, True, False]


def test_wildcards() -> None:
    e = engine("""
kernel: {version: "1.0", mode: strict}
policies:
  - {action: "tools.*", effect: allow}
  - {action: "kv.*", effect: deny}
  - {action: spawn, effect: allow}
""")
    assert e.check(1, "tools.anything", {}).allowed
    assert not e.check(1, "kv.get", {}).allowed
    assert e.check(1, "spawn", {}).allowed
    assert not e.check(1, "llm.chat", {}).allowed


def test_a_star_rule_matches_everything() -> None:
    e = engine('kernel: {version: "1.0", mode: strict}\npolicies:\n  - {action: "*", effect: allow}')
    assert e.check(1, "llm.chat", {}).allowed and e.check(1, "tools.x", {}).allowed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "etc", "sandbox", "/"]), max_size=8))
def test_path_under_never_admits_a_path_outside_the_root(parts: list[str]) -> None:
    e = engine(BASE % "strict")
    path = "/work/sandbox/" + "/".join(parts)
    allowed = e.check(1, "tools.file_write", {"path": path}).allowed
    norm = posixpath.normpath(path)
    inside = norm == "/work/sandbox" or norm.startswith("/work/sandbox/")
    in_etc = norm == "/work/sandbox/etc" or norm.startswith("/work/sandbox/etc/")
    assert allowed == (inside and not in_etc)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 5_000, allow_nan=False), min_size=1, max_size=60))
def test_rate_limit_never_grants_more_than_n_per_window(gaps: list[float]) -> None:
    k = make_kernel("""
kernel: {version: "1.0", mode: strict}
policies:
  - {name: rl, action: calc, effect: allow, rate_limit: "3/second"}
""")
    clock: VirtualClock = k.clock  # type: ignore[assignment]
    granted: list[float] = []
    for g in gaps:
        clock.advance(g)
        if k.policy.check(1, "tools.calc", {"x": 1}).allowed:
            granted.append(clock.now())
    for i, t in enumerate(granted):
        assert sum(1 for u in granted[i:] if u - t < 1000.0) <= 3
