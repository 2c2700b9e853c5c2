"""Numbers and paths in a policy file are hostile too: a 400-digit integer used to escape
the loader as an OverflowError (a duration, a range bound) or as a ValueError with no
line (past Python's 4,300-digit limit); `guardrails.ontology: /dev/zero` read forever; and
the pure-Python YAML parser took tens of seconds over a file within the size bound."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentos.cli.main import app
from agentos.policy import PolicyEngine, PolicyLoadError, parse_policy

HEAD = 'kernel: {version: "1.0", mode: strict}\n'
BIG = "9" * 400
HUGE = "9" * 5000


@pytest.mark.parametrize("body, line", [
    (f"policies:\n - action: tools.pay\n   requires_approval: true\n   approval_timeout: {BIG}\n", 5),
    (f"policies:\n - action: tools.pay\n   constraints: {{amount: {{min: {BIG}}}}}\n", 4),
    (f"policies:\n - action: tools.pay\n   constraints: {{amount: {{max: -{BIG}}}}}\n", 4),
    (f"policies:\n - action: tools.pay\n   constraints: {{to: {{max_length: {HUGE}}}}}\n", 4),
    (f"policies:\n - action: tools.pay\n   constraints: {{to: {{enum: [1, {HUGE}]}}}}\n", 4),
    (f"policies:\n - action: tools.pay\n   constraints: {{to: {{max: 0x{'f' * 300}}}}}\n", 4),
])
def test_huge_integers_are_a_load_error_naming_the_line(body: str, line: int) -> None:
    with pytest.raises(PolicyLoadError) as ei:
        parse_policy(HEAD + body, path="security.yaml")
    assert ei.value.line == line, str(ei.value)
    assert "digits" in str(ei.value)


def test_a_lone_surrogate_made_by_an_escape_is_a_load_error() -> None:
    with pytest.raises(PolicyLoadError) as ei:
        parse_policy(HEAD + 'policies:\n - action: "tools.\\udc80"\n', path="security.yaml")
    assert ei.value.line == 3


@pytest.mark.parametrize("target", ["/dev/zero", "/", "/proc/self/fd/0", "missing.owl"])
def test_an_ontology_that_is_not_a_regular_file_is_a_load_error(target: str) -> None:
    text = HEAD + f"guardrails: {{ontology: {target}}}\npolicies:\n - {{class: HighRiskAction, effect: deny}}\n"
    t0 = time.perf_counter()
    with pytest.raises(PolicyLoadError) as ei:
        PolicyEngine.from_text(text, path="/nonexistent/security.yaml")
    assert time.perf_counter() - t0 < 5.0
    assert "ontology" in str(ei.value)


def test_a_megabyte_of_rules_parses_in_seconds_not_minutes() -> None:
    rules = "".join(f" - {{action: tools.t{i}, effect: deny}}\n" for i in range(9_000))
    text = HEAD + "policies:\n" + rules
    assert len(text) < 1 << 20
    t0 = time.perf_counter()
    spec = parse_policy(text, path="security.yaml")
    assert len(spec.rules) == 9_000
    assert time.perf_counter() - t0 < 10.0


def test_validate_prints_one_line_for_a_huge_number(tmp_path: Path) -> None:
    f = tmp_path / "security.yaml"
    f.write_text(HEAD + f"policies:\n - action: tools.pay\n   constraints: {{amount: {{min: {HUGE}}}}}\n")
    r = CliRunner().invoke(app, ["policy", "validate", str(f)])
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    assert "digits" in r.output and ":4:" in r.output


@pytest.mark.parametrize("char", ["\x1b", "\x01", "\x7f"])
def test_a_raw_control_character_names_its_line(char: str) -> None:
    text = "# comment é\n" + HEAD + f"policies:\n - action: tools.x\n   description: \"a{char}b\"\n"
    with pytest.raises(PolicyLoadError) as ei:
        parse_policy(text, path="security.yaml")
    assert ei.value.line == 5, str(ei.value)
