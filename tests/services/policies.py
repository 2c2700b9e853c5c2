"""Policies for the registry tests, with an ontology built in memory (no OWL file)."""
from __future__ import annotations

import textwrap

from agentos.policy import PolicyEngine
from agentos.policy.loader import parse_policy
from agentos.policy.ontology import SubsumptionIndex

ONTOLOGY = SubsumptionIndex({
    "Arithmetic": frozenset({"Arithmetic"}),
    "Addition": frozenset({"Addition", "Arithmetic"}),
    "Multiplication": frozenset({"Multiplication", "Arithmetic"}),
    "Storage": frozenset({"Storage"}),
})


def md(yaml_text: str) -> str:
    return "# Security\n\n```yaml\n" + textwrap.dedent(yaml_text).strip() + "\n```\n"


def policy(yaml_text: str, *, ontology: bool = False) -> PolicyEngine:
    text = textwrap.dedent(yaml_text).strip()
    if ontology:
        text += "\nguardrails: {ontology: in-memory.owl}"
    spec = parse_policy(md(text), path="security.md", extra_families=["registry"])
    return PolicyEngine(spec, ontology=ONTOLOGY if ontology else None)
