from __future__ import annotations

import textwrap
from typing import Any

import pytest

from agentos import Kernel
from agentos.audit import FlightRecorder
from agentos.drivers.tools import ToolsDriver, tool
from agentos.policy import ApprovalChannel, PolicyEngine

CALLS: list[tuple[str, Any]] = []


@tool()
def calc(x: int) -> int:
    CALLS.append(("calc", x))
    return x * 2


@tool()
def pay(amount: int, to: str = "bob") -> str:
    CALLS.append(("pay", amount))
    return f"paid {amount} to {to}"


@tool()
def file_write(path: str, data: str = "") -> int:
    CALLS.append(("file_write", path))
    return len(data)


def _sql_effect(args: dict[str, Any]) -> str:
    q = args.get("q")
    if not isinstance(q, str):
        return "unknown"
    head = q.strip().split(None, 1)[0].lower() if q.strip() else ""
    if ";" in q.strip().rstrip(";"):
        return "unknown"          # several statements: refuse to guess
    return {"select": "read_only", "insert": "read_write", "update": "read_write",
            "delete": "read_write"}.get(head, "unknown")


@tool(effect=_sql_effect)
def sql(q: str) -> str:
    CALLS.append(("sql", q))
    return "rows"


@tool(ontology_class="WireTransfer")
def wire_transfer(amount: int) -> str:
    CALLS.append(("wire_transfer", amount))
    return "wired"


TOOLS = [calc, pay, file_write, sql, wire_transfer]


def md(yaml_text: str) -> str:
    return "# Security\n\nSome prose.\n\n```yaml\n" + textwrap.dedent(yaml_text).strip() + "\n```\n"


def engine(yaml_text: str, **kw: Any) -> PolicyEngine:
    return PolicyEngine.from_text(md(yaml_text), path="security.md", **kw)


def make_kernel(yaml_text: str | None = None, *, policy: Any = None, approvals: Any = None,
                audit: Any = None, **kw: Any) -> Kernel:
    if policy is None and yaml_text is not None:
        policy = engine(yaml_text)
    k = Kernel(deterministic=True, policy=policy, approvals=approvals, audit=audit, **kw)
    k.register_driver(ToolsDriver(TOOLS))
    return k


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


@pytest.fixture
def recorder() -> FlightRecorder:
    return FlightRecorder.in_memory(b"k" * 32)


@pytest.fixture
def calls() -> list[tuple[str, Any]]:
    return CALLS


__all__ = ["ApprovalChannel", "CALLS", "TOOLS", "engine", "make_kernel", "md"]
