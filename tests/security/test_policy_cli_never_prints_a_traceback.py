"""`agentctl policy validate|test` on hostile files: one line per problem on stderr, a
documented exit code (1 invalid policy or failed case, 2 bad input), never a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from agentos.cli.main import app

from .test_policy_file_bombs_are_refused_quickly import ALIAS_BOMB, HEAD

runner = CliRunner()
GOOD = HEAD + "policies:\n  - {name: calc, action: calc, constraints: {x: {max: 3}}}\n"


def _invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    return r.exit_code, r.output


HOSTILE = {
    "alias_bomb": ALIAS_BOMB.encode(),
    "deep": (HEAD + "policies: " + "[" * 5000 + "]" * 5000).encode(),
    "bad_utf8": HEAD.encode() + b"policies: []\n\xff\xfe\n",
    "list_key": (HEAD + "? [a, b]\n: 1\npolicies: []\n").encode(),
    "nul": HEAD.encode() + b"policies: [\x00]\n",
    "tag": b"kernel: !!python/object/apply:os.system ['true']\n",
    "unclosed_md": b"# Security\n\n```yaml\nkernel: {}\n",
    "empty": b"",
    "scalar": b"42\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_validate_refuses_hostile_files_in_one_line_each(tmp_path: Path, name: str) -> None:
    p = tmp_path / "security.yaml"
    p.write_bytes(HOSTILE[name])
    code, out = _invoke("policy", "validate", str(p))
    assert code == 1 and out.startswith("invalid: ")
    assert all(line.startswith("invalid: ") for line in out.strip().splitlines())


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_test_refuses_hostile_cases_files(tmp_path: Path, name: str) -> None:
    pol = tmp_path / "security.yaml"
    pol.write_text(GOOD)
    cases = tmp_path / "cases.yaml"
    cases.write_bytes(HOSTILE[name])
    code, out = _invoke("policy", "test", str(pol), str(cases))
    assert code == 2 and len(out.strip().splitlines()) == 1 and out.startswith("bad cases file")


def test_validate_lists_every_error_one_per_line(tmp_path: Path) -> None:
    p = tmp_path / "security.md"
    p.write_text("# policy\n\n```yaml\n" + HEAD + "policies:\n  - {action: calc, effect: permit}\n"
                 "  - {action: toolz.x}\n  - {action: calc, colour: red}\n```\n")
    code, out = _invoke("policy", "validate", str(p))
    lines = out.strip().splitlines()
    assert code == 1 and len(lines) == 3
    assert [ln.split(":")[2] for ln in lines] == ["6", "7", "8"]
    assert "got None" not in out


@pytest.mark.parametrize("target", ["missing.yaml", "."])
def test_validate_on_a_missing_file_or_directory(tmp_path: Path, target: str) -> None:
    code, out = _invoke("policy", "validate", str(tmp_path / target))
    assert code == 1 and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("case, words", [
    ("- {action: calc}\n", "case 1 needs action and expect"),
    ("- {action: calc, expect: allow}\n- {action: calc, expect: maybe}\n", "case 2: expect is"),
    ("- {action: calc, expect: allow, pid: -3}\n", "case 1: pid"),
    ("- {action: calc, expect: allow, pid: 1.5}\n", "case 1: pid"),
    ("- {action: calc, expect: allow, args: [1, 2]}\n", "case 1: args"),
    ("- {action: [calc], expect: allow}\n", "case 1: action"),
    ("- {action: calc, expect: allow, colour: red}\n", "case 1: unknown keys"),
    ("cases: 3\n", "expected a list"),
])
def test_bad_cases_are_numbered_as_the_table_numbers_them(tmp_path: Path, case: str, words: str) -> None:
    pol = tmp_path / "security.yaml"
    pol.write_text(GOOD)
    cases = tmp_path / "cases.yaml"
    cases.write_text(case)
    code, out = _invoke("policy", "test", str(pol), str(cases))
    assert code == 2 and words in out and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("opt", ["query", "query=", "query=nosuchmodule:fn", "query=os:sep", "query=bogus"])
def test_bad_effect_options_are_one_line(tmp_path: Path, opt: str) -> None:
    pol = tmp_path / "security.yaml"
    pol.write_text(GOOD)
    cases = tmp_path / "cases.yaml"
    cases.write_text("- {action: calc, expect: allow, args: {x: 1}}\n")
    code, out = _invoke("policy", "test", str(pol), str(cases), "--effect", opt)
    assert code == 2 and len(out.strip().splitlines()) == 1


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=120))
def test_no_bytes_as_a_policy_make_the_cli_trace(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "fuzz.yaml"
    p.write_bytes(HEAD.encode() + data)
    code, _ = _invoke("policy", "validate", str(p))
    assert code in (0, 1)
