"""A class rule governs a tool wherever it is served: a second tools device, an MCP
server, a worker pool, a WASM device. Serving `pay` elsewhere does not escape a
`HighRiskAction` deny, and a tool typed by a class the ontology lacks is refused when
its driver is registered."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from agentos.abi.types import ExitKind
from agentos.drivers.tools import ToolsDriver, tool
from agentos.policy import PolicyEngine, PolicyLoadError

from ..policy.helpers import make_kernel, md

owlready2 = pytest.importorskip("owlready2")

from ..policy.test_ontology import write_ontology  # noqa: E402

RAN: list[str] = []

POLICY = """
kernel: {version: "1.0", mode: strict}
guardrails:
  ontology: risk.owl
  reasoner: told
  tools: {transfer_funds: WireTransfer}
policies:
  - name: no-high-risk
    class: HighRiskAction
    effect: deny
  - {action: "*", effect: allow}
"""


@tool()
def transfer_funds(amount: int) -> str:
    RAN.append("transfer_funds")
    return "moved"


@tool(ontology_class="WireTransfer")
def wire(amount: int) -> str:
    RAN.append("wire")
    return "wired"


@tool()
def lookup(q: str) -> str:
    RAN.append("lookup")
    return "found"


def payout(amount: int) -> str:  # a worker function (module level: it pickles by name)
    return "paid"


@pytest.fixture
def eng(tmp_path: Path) -> PolicyEngine:
    write_ontology(tmp_path / "risk.owl")
    p = tmp_path / "security.md"
    p.write_text(md(POLICY))
    RAN.clear()
    return PolicyEngine.load(p, families=["bank", "mcp_bank", "pool", "sandboxed"])


def _call(device: str, req: Any, params: Any = None) -> Any:
    async def main(sys_: Any, args: Any) -> Any:
        h = await sys_.open(device, params)
        return await sys_.read(h, req)
    return main


@pytest.mark.parametrize("name", ["tools", "bank"])
def test_guardrails_typed_tool_is_governed_on_any_tools_device(eng: PolicyEngine, name: str) -> None:
    k = make_kernel(policy=eng)
    if name != "tools":
        k.register_driver(ToolsDriver([transfer_funds, lookup]), name)
    else:
        k.drivers["tools"].add(transfer_funds)
    res = k.run(_call(name, {"tool": "transfer_funds", "args": {"amount": 5}}), grant=[name])
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "no-high-risk" and RAN == []


def test_a_declared_class_goes_with_the_tool_to_another_device(eng: PolicyEngine) -> None:
    k = make_kernel(policy=eng)
    k.register_driver(ToolsDriver([wire, lookup]), "bank")
    assert k.run(_call("bank", {"tool": "lookup", "args": {"q": "x"}}), grant=["bank"]).value == "found"
    res = k.run(_call("bank", {"tool": "wire", "args": {"amount": 5}}), grant=["bank"])
    assert res.reason.kind is ExitKind.POLICY and RAN == ["lookup"]


def test_an_mcp_server_cannot_serve_a_high_risk_tool_past_the_rule(eng: PolicyEngine) -> None:
    from agentos.drivers.mcp import MCPDriver

    server = str(Path(__file__).parent.parent / "drivers" / "mcp_server.py")
    d = MCPDriver(sys.executable, [server], classes={"write_note": "WireTransfer"})
    k = make_kernel(policy=eng)
    k.register_driver(d, "mcp_bank")
    try:
        res = k.run(_call("mcp_bank", {"tool": "write_note", "args": {"text": "x"}}), grant=["mcp_bank"])
        assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "no-high-risk"
        assert d.starts == 0          # refused before the server was even started
        # a name typed in guardrails.tools is typed on the MCP device too
        assert not eng.check(1, "mcp_bank.transfer_funds", {"amount": 1}).allowed
    finally:
        d.shutdown()


def test_a_worker_function_typed_high_risk_is_refused(eng: PolicyEngine) -> None:
    from agentos.drivers.worker import WorkerDriver

    d = WorkerDriver({"payout": payout, "transfer_funds": payout}, classes={"payout": "FinancialTransaction"})
    k = make_kernel(policy=eng)
    k.register_driver(d, "pool")
    try:
        res = k.run(_call("pool", {"fn": "payout", "args": [5]}), grant=["pool"])
        assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "no-high-risk"
        assert not eng.check(1, "pool.transfer_funds", {"args": [1], "kwargs": {}}).allowed
        assert d.worker_pids() == []  # no worker ever started
    finally:
        d.shutdown()


def test_wasm_exports_are_typed_by_the_device(eng: PolicyEngine) -> None:
    pytest.importorskip("wasmtime")
    from agentos.drivers.wasm import WasmDriver
    from wasm_modules import ADD

    k = make_kernel(policy=eng)
    k.register_driver(WasmDriver(classes={"*": "WireTransfer"}), "sandboxed")
    res = k.run(_call("sandboxed", {"call": "add", "args": [1, 2]}, {"wat": ADD}), grant=["sandboxed"])
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "no-high-risk"
    # renaming the export does not help: every export not named is typed by "*"
    assert not eng.check(1, "sandboxed.harmless_name", {"call": "harmless_name"}).allowed


def test_a_tool_typed_with_an_unknown_class_is_refused_at_registration(eng: PolicyEngine) -> None:
    k = make_kernel(policy=eng)
    bad = tool("odd", ontology_class="NoSuchClass")(lambda: 1)
    with pytest.raises(PolicyLoadError, match="NoSuchClass"):
        k.register_driver(ToolsDriver([bad]), "odd")
    assert "odd" not in k.drivers


def test_a_kernel_already_holding_a_mistyped_tool_refuses_the_policy(eng: PolicyEngine) -> None:
    from agentos import Kernel

    k = Kernel(deterministic=True)
    k.register_driver(ToolsDriver([tool("odd", ontology_class="NoSuchClass")(lambda: 1)]), "odd")
    with pytest.raises(PolicyLoadError, match="NoSuchClass"):
        k.policy = eng


def test_a_tool_added_after_registration_with_an_unknown_class_fails_closed(eng: PolicyEngine) -> None:
    k = make_kernel(policy=eng)
    k.drivers["tools"].add(tool("late", ontology_class="NoSuchClass")(lambda: 1))
    d = eng.check(1, "tools.late", {})
    assert not d.allowed and d.rule == "ontology"
