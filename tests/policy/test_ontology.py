"""Ontological guardrails: a rule on a class governs every tool typed under it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentos.abi.types import ExitKind
from agentos.policy import PolicyEngine, PolicyLoadError, load_ontology

from .helpers import make_kernel, md

owlready2 = pytest.importorskip("owlready2")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="HermiT needs Java (default-jre-headless)")


def write_ontology(path: Path) -> Path:
    w = owlready2.World()
    o = w.get_ontology("http://example.org/risk.owl")
    with o:
        class HighRiskAction(owlready2.Thing):
            pass

        class FinancialTransaction(HighRiskAction):
            pass

        class WireTransfer(FinancialTransaction):
            pass

        class ReadAction(owlready2.Thing):
            pass

        class Audited(owlready2.Thing):
            pass

        class Irreversible(owlready2.Thing):
            pass

        class Dangerous(owlready2.Thing):  # defined: anything both audited and irreversible
            equivalent_to = [Audited & Irreversible]

        class Deletion(Audited, Irreversible):  # told: not under Dangerous; HermiT infers it
            pass

        WireTransfer("pay")       # the tool `pay` is typed by an individual
        Deletion("file_write")
    o.save(str(path))
    w.close()
    return path


POLICY = """
kernel: {version: "1.0", mode: strict}
guardrails:
  ontology: risk.owl
  reasoner: %s
policies:
  - name: no-high-risk
    class: HighRiskAction
    effect: deny
  - name: no-dangerous
    class: Dangerous
    effect: deny
  - {action: "tools.*", effect: allow}
"""


@pytest.fixture
def onto_dir(tmp_path: Path) -> Path:
    write_ontology(tmp_path / "risk.owl")
    return tmp_path


def _engine(onto_dir: Path, reasoner: str) -> PolicyEngine:
    p = onto_dir / "security.md"
    p.write_text(md(POLICY % reasoner))
    return PolicyEngine.load(p)


def test_told_subsumption_index(onto_dir: Path) -> None:
    idx = load_ontology(onto_dir / "risk.owl", "told")
    assert idx.reasoner == "told"
    assert idx.is_a("WireTransfer", "HighRiskAction") and not idx.is_a("ReadAction", "HighRiskAction")
    assert not idx.is_a("Deletion", "Dangerous")


@needs_java
def test_hermit_classifies_defined_classes(onto_dir: Path) -> None:
    idx = load_ontology(onto_dir / "risk.owl", "hermit")
    assert idx.reasoner == "hermit" and idx.is_a("Deletion", "Dangerous")
    assert "Dangerous" in idx.individuals["file_write"]


def test_class_rule_governs_a_tool_typed_by_a_subclass(onto_dir: Path, calls) -> None:  # type: ignore[no-untyped-def]
    eng = _engine(onto_dir, "told")
    d = eng.check(1, "tools.pay", {"amount": 1})
    assert not d.allowed and d.rule == "no-high-risk"
    assert eng.check(1, "tools.calc", {"x": 1}).allowed


def test_tool_declared_ontology_class_is_used(onto_dir: Path, calls) -> None:  # type: ignore[no-untyped-def]
    k = make_kernel(policy=_engine(onto_dir, "told"))

    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        await sys.read(h, {"tool": "wire_transfer", "args": {"amount": 10}})
    res = k.run(main, grant=["tools"])
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "no-high-risk" and calls == []


@needs_java
def test_hermit_inferred_class_is_enforced(onto_dir: Path) -> None:
    assert _engine(onto_dir, "told").check(1, "tools.file_write", {"path": "/x"}).allowed
    d = _engine(onto_dir, "hermit").check(1, "tools.file_write", {"path": "/x"})
    assert not d.allowed and d.rule == "no-dangerous"


def test_unknown_class_is_a_load_error_naming_the_line(onto_dir: Path) -> None:
    p = onto_dir / "security.md"
    text = md(POLICY % "told").replace("class: Dangerous", "class: Dangerus")
    p.write_text(text)
    with pytest.raises(PolicyLoadError, match="unknown ontology class 'Dangerus'") as ei:
        PolicyEngine.load(p)
    assert ei.value.line == next(i for i, ln in enumerate(text.splitlines(), 1) if "Dangerus" in ln)


def test_missing_ontology_file_is_a_load_error(tmp_path: Path) -> None:
    p = tmp_path / "security.md"
    p.write_text(md(POLICY % "told"))
    with pytest.raises(PolicyLoadError, match="does not exist"):
        PolicyEngine.load(p)


def test_guardrails_tools_mapping(onto_dir: Path) -> None:
    p = onto_dir / "security.md"
    p.write_text(md((POLICY % "told").replace("policies:", "  tools: {calc: FinancialTransaction}\npolicies:", 1)))
    eng = PolicyEngine.load(p)
    assert eng.check(1, "tools.calc", {"x": 1}).rule == "no-high-risk"
