"""Ontological guardrails: an OWL class hierarchy classified once into a subsumption index.

At policy load the ontology (owlready2) is classified by HermiT when Java is present, or
read as told subsumption (the asserted `subClassOf` closure) when it is not; either way
the result is a dict from class name to the frozen set of itself and all its
superclasses. A call-time check is then a set lookup, never reasoning. Individuals in
the ontology whose name is a tool's name type that tool.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SubsumptionIndex:
    ancestors: dict[str, frozenset[str]]            # class → itself and every superclass
    individuals: dict[str, frozenset[str]] = field(default_factory=dict)  # name → classes (closed)
    reasoner: str = "told"
    classify_ms: float = 0.0

    def has_class(self, name: str) -> bool:
        return name in self.ancestors

    def closure(self, cls: str) -> frozenset[str]:
        return self.ancestors.get(cls, frozenset())

    def is_a(self, cls: str, sup: str) -> bool:
        return sup in self.ancestors.get(cls, ())


def java_available() -> bool:
    return shutil.which("java") is not None


def load_ontology(path: str | Path, reasoner: str = "auto") -> SubsumptionIndex:
    """Load and classify. `reasoner`: auto (HermiT if Java, else told), hermit, told."""
    import owlready2  # lazy: optional dependency

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"ontology file {p} does not exist")
    if reasoner not in ("auto", "hermit", "told"):
        raise ValueError(f"reasoner must be auto, hermit or told, got {reasoner!r}")
    use_hermit = reasoner == "hermit" or (reasoner == "auto" and java_available())
    if reasoner == "hermit" and not java_available():
        raise RuntimeError("reasoner: hermit needs Java (install default-jre-headless)")
    world = owlready2.World()
    onto = world.get_ontology(p.resolve().as_uri()).load()
    t0 = time.perf_counter()
    used = "told"
    if use_hermit:
        java = shutil.which("java")
        if java:
            owlready2.JAVA_EXE = java
        with onto:
            owlready2.sync_reasoner_hermit(world, infer_property_values=False, debug=0)
        used = "hermit"
    ancestors: dict[str, frozenset[str]] = {}
    for cls in world.classes():
        names = frozenset(a.name for a in cls.ancestors(include_self=True)
                          if isinstance(a, owlready2.ThingClass) and a is not owlready2.Thing)
        ancestors[cls.name] = names
    individuals: dict[str, frozenset[str]] = {}
    for ind in world.individuals():
        cls_names: set[str] = set()
        for c in ind.is_a:
            if isinstance(c, owlready2.ThingClass):
                cls_names |= ancestors.get(c.name, frozenset({c.name}))
        individuals[ind.name] = frozenset(cls_names)
    world.close()
    return SubsumptionIndex(ancestors, individuals, used, (time.perf_counter() - t0) * 1000.0)
