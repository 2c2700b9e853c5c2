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


PROGRAM = '''
from agentos.drivers.tools import ToolsDriver, tool
from agentos.abi.errors import PolicyDenied

@tool()
def calc(x: int) -> int:
    return x * 2

@tool()
def pay(amount: int) -> str:
    return f"paid {amount}"

GRANT = ["tools"]

def setup(k):
    k.register_driver(ToolsDriver([calc, pay]))

async def init(sys, args):
    h = await sys.open("tools")
    a = await sys.read(h, {"tool": "calc", "args": {"x": 2}})
    try:
        b = await sys.read(h, {"tool": "pay", "args": {"amount": 3}})
    except PolicyDenied as e:
        b = "refused"
    return a, b
'''


def _run(tmp_path: Path, approve: str, stdin: str = "") -> tuple[int, str]:
    pol = tmp_path / "security.md"
    pol.write_text(md(POLICY))
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    r = CliRunner().invoke(app, ["policy", "run", str(pol), str(prog), "--approve", approve,
                                 "--audit-dir", str(tmp_path / "audit"), "--durability", "os"], input=stdin)
    return r.exit_code, r.output


def test_policy_run_with_interactive_prompt(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTOS_AUDIT_KEY", "ab" * 32)
    code, out = _run(tmp_path, "prompt", "y\n")
    assert code == 0 and "(4, 'paid 3')" in out and "wants tools.pay" in out
    v = CliRunner().invoke(app, ["audit", "verify", "--dir", str(tmp_path / "audit")])
    assert v.exit_code == 0 and "ok:" in v.output


def test_policy_run_denies_without_an_approver(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTOS_AUDIT_KEY", "ab" * 32)
    code, out = _run(tmp_path, "deny")
    assert code == 0 and "(4, 'refused')" in out


def test_policy_run_refuses_rules_for_tools_the_kernel_lacks(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTOS_AUDIT_KEY", "ab" * 32)
    pol = tmp_path / "security.md"
    pol.write_text(md(POLICY + "  - {action: rm_rf, effect: allow}\n"))
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    r = CliRunner().invoke(app, ["policy", "run", str(pol), str(prog), "--audit-dir", str(tmp_path / "a")])
    assert r.exit_code == 1 and "unknown tool 'rm_rf'" in r.output


def test_policy_run_takes_audit_settings_from_the_policy(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTOS_AUDIT_KEY", "ab" * 32)
    pol = tmp_path / "security.md"
    pol.write_text(md(POLICY + "observability:\n  flight_recorder: true\n  audit_dir: logs/audit\n"
                               "  durability: os\n"))
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    r = CliRunner().invoke(app, ["policy", "run", str(pol), str(prog), "--approve", "deny"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "logs" / "audit" / "audit.db").exists()


SQL_POLICY = """
kernel: {version: "1.0", mode: strict}
policies:
  - action: database_query
    mode: read_only
"""


def test_policy_test_with_the_sql_effect_classifier(tmp_path: Path) -> None:
    p = tmp_path / "security.md"
    p.write_text(md(SQL_POLICY))
    cases = tmp_path / "cases.yaml"
    cases.write_text("""
- {action: database_query, args: {query: "SELECT * FROM users"}, expect: allow}
- {action: database_query, args: {query: "DELETE FROM users"}, expect: deny}
- {action: database_query, args: {query: "SELECT 1; DROP TABLE users"}, expect: deny}
""")
    r = CliRunner().invoke(app, ["policy", "test", str(p), str(cases), "--effect", "database_query=sql"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["policy", "test", str(p), str(cases)])   # no classifier: nothing is read-only
    assert r.exit_code == 1 and "1 case(s) failed: #1" in r.output


def test_policy_test_with_a_classifier_of_your_own(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "myeffects.py").write_text("def ro(args):\n    return 'read_only'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = tmp_path / "security.md"
    p.write_text(md(SQL_POLICY))
    cases = tmp_path / "cases.yaml"
    cases.write_text("- {action: database_query, args: {query: 'DELETE FROM t'}, expect: allow}\n")
    r = CliRunner().invoke(app, ["policy", "test", str(p), str(cases), "--effect", "database_query=myeffects:ro"])
    assert r.exit_code == 0, r.output


def test_failed_cases_are_named_by_the_numbers_shown(tmp_path: Path) -> None:
    p = tmp_path / "security.md"
    p.write_text(md(POLICY))
    cases = tmp_path / "cases.yaml"
    cases.write_text("- {action: calc, args: {x: 3}, expect: allow}\n- {action: calc, args: {x: 30}, expect: allow}\n")
    r = CliRunner().invoke(app, ["policy", "test", str(p), str(cases)])
    assert r.exit_code == 1 and "#2" in r.output and "#1," not in r.output


def test_validate_reports_kernel_actions_and_signals(tmp_path: Path) -> None:
    p = tmp_path / "security.md"
    p.write_text(md('kernel: {version: "1.0", mode: strict}\nsignals: [SIGTERM]\npolicies:\n'
                    '  - {action: spawn, effect: deny}\n'))
    r = CliRunner().invoke(app, ["policy", "validate", str(p)])
    assert r.exit_code == 0 and "signals SIGTERM" in r.output and "signal,spawn" in r.output


def test_validate_knows_drivers_registered_under_their_own_names(tmp_path: Path) -> None:
    p = tmp_path / "security.md"
    p.write_text(md('kernel: {version: "1.0", mode: strict}\npolicies:\n  - {action: github.create_issue}\n'))
    r = CliRunner().invoke(app, ["policy", "validate", str(p)])
    assert r.exit_code == 1 and "'github' is not an action family" in r.output
    r = CliRunner().invoke(app, ["policy", "validate", str(p), "--drivers", "github"])
    assert r.exit_code == 0, r.output


MCP_PROGRAM = '''
import sys
from agentos.drivers.mcp import MCPDriver

GRANT = ["calc"]
_server = None

def setup(k):
    global _server
    _server = MCPDriver(sys.executable, [{server!r}], name="calc")
    k.register_driver(_server)

async def init(sys_, args):
    h = await sys_.open("calc")
    try:
        return await sys_.read(h, {{"tool": "add", "args": {{"a": 2, "b": 3}}}})
    finally:
        _server.shutdown()
'''


def test_policy_run_names_an_mcp_driver_by_its_registered_name(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTOS_AUDIT_KEY", "ab" * 32)
    server = Path(__file__).parent.parent / "drivers" / "mcp_server.py"
    pol = tmp_path / "security.md"
    pol.write_text(md('kernel: {version: "1.0", mode: strict}\npolicies:\n  - {action: calc.add, mode: read_only}\n'))
    prog = tmp_path / "prog.py"
    prog.write_text(MCP_PROGRAM.format(server=str(server)))
    r = CliRunner().invoke(app, ["policy", "run", str(pol), str(prog), "--approve", "deny",
                                 "--audit-dir", str(tmp_path / "audit"), "--durability", "os"])
    assert r.exit_code == 0, r.output
    assert "'result': 5" in r.output
    pol.write_text(md('kernel: {version: "1.0", mode: strict}\npolicies:\n  - {action: calc.nope}\n'))
    r = CliRunner().invoke(app, ["policy", "run", str(pol), str(prog), "--audit-dir", str(tmp_path / "audit")])
    assert r.exit_code == 1 and "unknown tool 'nope'" in r.output


def test_strict_refusal_tells_cli_users_what_to_pass(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    r = CliRunner().invoke(app, ["run", str(prog), "--no-record", "--no-narrate"])
    assert r.exit_code == 1
    assert "--policy FILE" in r.output and "--allow-all" in r.output


def test_run_loads_a_policy_naming_a_driver_registered_by_setup(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM.replace("ToolsDriver([calc, pay])", "ToolsDriver([calc, pay], name='bank')")
                    .replace('GRANT = ["tools"]', 'GRANT = ["bank"]').replace('sys.open("tools")', 'sys.open("bank")'))
    pol = tmp_path / "security.md"
    pol.write_text(md('kernel: {version: "1.0", mode: strict}\npolicies:\n  - {action: "bank.*"}\n'))
    r = CliRunner().invoke(app, ["run", str(prog), "--no-record", "--no-narrate", "--policy", str(pol)])
    assert r.exit_code == 0, r.output
