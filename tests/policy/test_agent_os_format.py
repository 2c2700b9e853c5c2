"""Policy files written for Microsoft's Agent OS / Agent Governance Toolkit load as they are.

The files in `agent_os/` are that project's `security.md` v1.0 templates (strict,
permissive, audit) and its effect-less rule example; each names its origin.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from agentos.abi.errors import PolicyDenied
from agentos.abi.types import ExitKind, Signal
from agentos.drivers.effects import sql_effect
from agentos.drivers.tools import ToolsDriver, tool
from agentos.policy import ApprovalChannel, PolicyEngine

from .helpers import make_kernel

HERE = Path(__file__).parent / "agent_os"
RAN: list[str] = []


@tool(effect=sql_effect)
def database_query(q: str) -> str:
    RAN.append(q)
    return "rows"


@tool()
def send_email(to: str) -> str:
    RAN.append(to)
    return "sent"


@tool()
def api_call(url: str) -> str:
    RAN.append(url)
    return "ok"


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


def _kernel(name: str, **kw: object) -> object:
    k = make_kernel(policy=PolicyEngine.load(HERE / name), **kw)  # type: ignore[arg-type]
    k.register_driver(ToolsDriver([database_query, send_email, api_call], name="office"))
    return k


@pytest.mark.parametrize("name, mode, rules", [("strict.yaml", "strict", 7), ("permissive.yaml", "permissive", 1),
                                               ("audit.yaml", "audit", 1), ("no_effect.md", "strict", 3)])
def test_the_spec_templates_load_as_they_are(name: str, mode: str, rules: int) -> None:
    eng = PolicyEngine.load(HERE / name)
    assert eng.mode == mode and len(eng.rules) == rules


def test_a_rule_without_effect_allows_under_its_conditions() -> None:
    eng = PolicyEngine.load(HERE / "no_effect.md", families=["office"])
    assert [r.effect for r in eng.rules] == ["allow", "allow", "allow"]
    assert [s.name for s in eng.spec.signals or ()] == ["SIGSTOP", "SIGKILL"]
    assert eng.check(1, "tools.send_email", {"to": "x"}).effect == "approve"
    assert eng.check(1, "tools.api_call", {"url": "u"}).allowed
    # mode: read_only needs a classifier; with none known the call is refused, not waved through
    assert not eng.check(1, "tools.database_query", {"q": "SELECT 1"}).allowed


def test_an_effectless_rule_runs_in_a_kernel_with_its_rate_limit_and_read_only_mode() -> None:
    text = (HERE / "no_effect.md").read_text().replace("action: database_query", "action: office.database_query") \
        .replace("action: api_call", "action: office.api_call").replace("50/hour", "2/hour")
    k = make_kernel(policy=PolicyEngine.from_text(text, path="security.md", families=["office"]))
    k.register_driver(ToolsDriver([database_query, send_email, api_call], name="office"))

    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("office")
        out = [await sys.read(h, {"tool": "database_query", "args": {"q": "SELECT * FROM t"}})]
        out += [await sys.read(h, {"tool": "api_call", "args": {"url": str(i)}}) for i in range(2)]
        await sys.read(h, {"tool": "api_call", "args": {"url": "third"}})   # over 2/hour: SIGPOLICY
        return out
    res = k.run(main, grant=["office"])
    assert res.reason.kind is ExitKind.POLICY and "api_call" in res.reason.detail
    assert RAN == ["SELECT * FROM t", "0", "1"]

    async def writer(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("office")
        await sys.read(h, {"tool": "database_query", "args": {"q": "DELETE FROM t"}})
    RAN.clear()
    k2 = make_kernel(policy=PolicyEngine.from_text(text, path="security.md", families=["office"]))
    k2.register_driver(ToolsDriver([database_query, send_email, api_call], name="office"))
    res = k2.run(writer, grant=["office"])
    assert res.reason.kind is ExitKind.POLICY and RAN == []


def test_strict_template_denies_what_it_denies_and_asks_approval() -> None:
    eng = PolicyEngine.load(HERE / "strict.yaml")
    assert not eng.check(1, "tools.code_execution", {}).allowed
    assert not eng.check(1, "tools.database_write", {}).allowed
    assert eng.check(1, "tools.file_write", {"path": "/x"}).effect == "approve"
    assert eng.check(1, "tools.file_read", {"path": "/x"}).allowed
    assert eng.check(1, "tools.unlisted", {}).rule == "default-deny"


def test_permissive_template_allows_and_logs() -> None:
    eng = PolicyEngine.load(HERE / "permissive.yaml")
    d = eng.check(1, "tools.anything", {})
    assert d.allowed and d.extra.get("log") is True


def test_audit_template_dry_run_answers_without_performing() -> None:
    k = _kernel("audit.yaml", approvals=ApprovalChannel(lambda r: True))

    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("office")
        try:
            await sys.read(h, {"tool": "api_call", "args": {"url": "https://example.org"}})
        except PolicyDenied as e:
            return str(e)
        return "performed"
    res = k.run(main, grant=["office"])  # type: ignore[attr-defined]
    assert "dry run" in res.value and RAN == []


def test_signals_of_the_spec_are_the_kernels() -> None:
    eng = PolicyEngine.load(HERE / "strict.yaml")
    assert eng.spec.signals == (Signal.SIGSTOP, Signal.SIGKILL, Signal.SIGINT)
    assert eng.governs_kernel == frozenset({"signal"})
    assert not eng.check(1, "signal.SIGTERM", {}).allowed
    assert eng.check(1, "signal.SIGINT", {}).allowed
