"""Policy engine, `.agents/security.md` loader, approvals and ontological guardrails.

`PolicyEngine.load(path)` gives the object a kernel takes as `Kernel(policy=...)`;
`ApprovalChannel` is `Kernel(approvals=...)`; `ApprovalServer` serves it on loopback HTTP.
Optional libraries (owlready2 for guardrails) and the core ones only some policies need
(PyYAML to parse, google-re2 for regex constraints) load on first use.
"""
from __future__ import annotations

from .approvals import ApprovalChannel, ApprovalRequest
from .engine import PolicyEngine, load_policy
from .errors import PolicyLoadError
from .loader import PolicySpec, parse_policy
from .ontology import SubsumptionIndex, load_ontology

__all__ = ["ApprovalChannel", "ApprovalRequest", "ApprovalServer", "PolicyEngine", "PolicyLoadError",
           "PolicySpec", "PromptApprover", "SubsumptionIndex", "load_ontology", "load_policy", "parse_policy"]


def __getattr__(name: str) -> object:
    if name in ("ApprovalServer", "PromptApprover"):
        from . import approval_io

        return getattr(approval_io, name)
    raise AttributeError(name)
