"""Regex constraints run on RE2 (linear time) and after `max_length`: a long or crafted
argument cannot stall the kernel thread, and a pattern RE2 rejects does not load."""
from __future__ import annotations

import time

import pytest

from agentos.policy import PolicyLoadError, parse_policy

from ..policy.helpers import engine, md

POLICY = """
kernel: {version: "1.0", mode: strict}
policies:
  - name: grep
    action: calc
    constraints:
      x: {regex: "(a|aa)*$|(a+)+b", max_length: 100000000}
  - name: short
    action: pay
    constraints:
      to: {max_length: 64, regex: "(x+x+)+y"}
"""


def test_catastrophic_backtracking_pattern_runs_in_linear_time() -> None:
    e = engine(POLICY)
    t0 = time.perf_counter()
    d = e.check(1, "tools.calc", {"x": "a" * 5_000_000 + "!"})
    assert time.perf_counter() - t0 < 2.0
    assert not d.allowed and "does not match" in d.reason


def test_max_length_is_checked_before_the_regex_runs() -> None:
    e = engine(POLICY)
    t0 = time.perf_counter()
    d = e.check(1, "tools.pay", {"to": "x" * 40_000_000})
    assert time.perf_counter() - t0 < 0.5
    assert not d.allowed and "over the maximum 64" in d.reason


def test_redos_input_that_python_re_would_hang_on() -> None:
    e = engine(POLICY)
    t0 = time.perf_counter()
    assert not e.check(1, "tools.pay", {"to": "x" * 60}).allowed   # (x+x+)+y on 60 x's: years with backtracking
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("pattern", [r"(a)\\1", "(?=a)b", "(?<!x)y", "a{1001}{1001}"])
def test_a_pattern_re2_rejects_is_a_load_error_naming_the_rule(pattern: str) -> None:
    text = md('kernel: {version: "1.0", mode: strict}\npolicies:\n  - name: bad-one\n    action: calc\n'
              f'    constraints:\n      x: {{regex: "{pattern}"}}')
    with pytest.raises(PolicyLoadError) as ei:
        parse_policy(text, path="security.md")
    assert "rule bad-one" in str(ei.value) and "regex" in str(ei.value)
    assert ei.value.line == next(i for i, ln in enumerate(text.splitlines(), 1) if "regex" in ln)
