"""agentctl policy validate / test."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from agentos.cli.main import app

from .helpers import md

POLICY = """
kernel: {version: "1.0", mode: strict}
policies:
  - name: calc-range
    action: calc
    effect: allow
    constraints:
      x: {min: 0, max: 10}
  - name: pay-gate
    action: pay
    effect: allow
    requires_approval: true
  - name: no-kv-writes
    action: kv.set
    effect: deny
"""


def test_validate_ok_and_error_with_line(tmp_path: Path) -> None:
    good = tmp_path / "security.md"
    good.write_text(md(POLICY))
    r = CliRunner().invoke(app, ["policy", "validate", str(good)])
    assert r.exit_code == 0 and "valid" in r.output and "3 rule(s)" in r.output
    bad = tmp_path / "bad.md"
    bad.write_text(md(POLICY.replace("effect: deny", "effect: deny\n    sneaky: true")))
    r = CliRunner().invoke(app, ["policy", "validate", str(bad)])
    assert r.exit_code == 1 and "unknown key 'sneaky'" in r.output and "bad.md:" in r.output


def test_validate_with_known_tools(tmp_path: Path) -> None:
    p = tmp_path / "security.md"
    p.write_text(md(POLICY))
    r = CliRunner().invoke(app, ["policy", "validate", str(p), "--tools", "calc"])
    assert r.exit_code == 1 and "unknown tool 'pay'" in r.output


def test_policy_test_cases(tmp_path: Path) -> None:
    p = tmp_path / "security.md"
    p.write_text(md(POLICY))
    cases = tmp_path / "cases.yaml"
    cases.write_text("""
- {action: calc, args: {x: 3}, expect: allow}
- {action: calc, args: {x: 30}, expect: deny, rule: calc-range}
- {action: tools.pay, args: {amount: 1}, expect: approve}
- {action: kv.set, args: {op: set, key: a}, expect: deny, rule: no-kv-writes}
- {action: llm.chat, expect: deny, rule: default-deny}
""")
    r = CliRunner().invoke(app, ["policy", "test", str(p), str(cases)])
    assert r.exit_code == 0, r.output
    cases.write_text("- {action: calc, args: {x: 30}, expect: allow}\n")
    r = CliRunner().invoke(app, ["policy", "test", str(p), str(cases)])
    assert r.exit_code == 1 and "FAIL" in r.output and "1 case(s) failed" in r.output
