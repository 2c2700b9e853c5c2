"""The policy engine: what the kernel's chokepoint asks before every action on the world.

Rule semantics (order-independent; adding a rule can only narrow what is allowed): the
rules that name an action (exactly, by `family.*`, `*`, a bare tool name, or an ontology
class the tool falls under) are its candidates. A candidate deny whose constraints hold
denies. Otherwise the action needs at least one candidate allow, and every candidate
allow's conditions must hold: its constraints and, with `mode: read_only`, the tool's
declared effect classifier saying read-only (unclassifiable: not read-only). So a broad
`tools.*: allow` never widens what a `file_write` rule constrains. No candidate allow:
default deny. Every candidate allow must have room in its rate limit; one needing
approval makes the decision "approve". Which rules are candidates depends only on the action name, so it is
worked out once per action and cached; the per-call work is the constraints.

Modes: strict enforces everything (a violation is effect "kill": SIGPOLICY). permissive
allows what strict would deny, with effect "log" and the rule named (approvals are still
asked: they are a human gate, not a violation). audit enforces nothing: every decision
is allowed and logged. `check(..., dry_run=True)` (what `sys.check_policy` calls)
answers the same way and changes nothing: no rate-limit slot is taken.
"""
from __future__ import annotations

import time as _time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..kernel.kernel import Decision
from .loader import PolicyLoadError, PolicySpec, parse_policy, read_policy_text
from .ontology import SubsumptionIndex, load_ontology
from .rules import Rule

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel

# actions that only read, for `mode: read_only` on actions that are not tools
READ_ONLY_ACTIONS = frozenset({"kv.get", "kv.keys", "kv.has", "vfs.read", "vfs.list", "tools.list",
                               "lessons.get", "lessons.list", "lessons.stats", "runs.list", "runs.digest"})

_NO_EXTRA: dict[str, Any] = {}


class _Plan:
    """The candidate rules for one action name, split by effect."""

    __slots__ = ("denies", "allows", "simple")

    def __init__(self, denies: tuple[Rule, ...], allows: tuple[Rule, ...]) -> None:
        self.denies = denies
        self.allows = allows
        # one unconditional allow and nothing else: the decision is a constant
        self.simple: Decision | None = None
        if not denies and len(allows) == 1:
            r = allows[0]
            if not (r.constraints or r.mode == "read_only" or r.rate or r.requires_approval):
                self.simple = Decision(True, r.name, f"allowed by {r.name}", "allow", _NO_EXTRA)


class PolicyEngine:
    def __init__(self, spec: PolicySpec, ontology: SubsumptionIndex | None = None,
                 tool_resolver: Callable[[str], Any] | None = None) -> None:
        self.spec = spec
        self.mode = spec.mode
        self.rules = spec.rules
        self.ontology = ontology
        self._now: Callable[[], float] = lambda: _time.monotonic() * 1000.0
        self._tool_resolver = tool_resolver
        self._kernel: Kernel | None = None
        self._plans: dict[str, _Plan] = {}
        self._ndrivers = -1
        if spec.class_lines or spec.tool_classes:
            if ontology is None:
                raise PolicyLoadError("rules name ontology classes but no ontology is loaded", 0, spec.path)
            for cls, line in spec.class_lines:
                if not ontology.has_class(cls):
                    raise PolicyLoadError(f"unknown ontology class {cls!r}", line, spec.path)
            for tool, cls in spec.tool_classes.items():
                if not ontology.has_class(cls):
                    raise PolicyLoadError(f"tool {tool!r} is typed by unknown ontology class {cls!r}",
                                          spec.tool_class_lines.get(tool, 0), spec.path)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, *, path: str = "", known_tools: Iterable[str] | None = None,
                  base_dir: str | Path | None = None, reasoner: str | None = None) -> "PolicyEngine":
        spec = parse_policy(text, path=path, known_tools=known_tools)
        onto = None
        if spec.ontology is not None:
            base = Path(base_dir) if base_dir is not None else (Path(path).parent if path else Path.cwd())
            opath = Path(spec.ontology)
            if not opath.is_absolute():
                opath = base / opath
            try:
                onto = load_ontology(opath, reasoner or spec.reasoner)
            except FileNotFoundError as e:
                raise PolicyLoadError(str(e), 0, path) from None
            except Exception as e:  # a broken ontology is a load error, not a crash
                raise PolicyLoadError(f"ontology {opath} does not load: {type(e).__name__}: {e}", 0, path) from None
        return cls(spec, onto)

    @classmethod
    def load(cls, path: str | Path, *, known_tools: Iterable[str] | None = None,
             reasoner: str | None = None) -> "PolicyEngine":
        """Load `.agents/security.md` (or a plain YAML policy) from a file."""
        return cls.from_text(read_policy_text(path), path=str(path), known_tools=known_tools, reasoner=reasoner)

    def attach(self, kernel: "Kernel") -> None:
        """Use the kernel's clock for rate limits and its drivers to find tools."""
        self._kernel = kernel
        self._now = kernel.clock.now
        self._plans.clear()

    # -- tools ------------------------------------------------------------------------
    def tool_for(self, action: str) -> Any:
        """The Tool object behind `<driver>.<tool>` among the kernel's drivers, or None."""
        if self._tool_resolver is not None:
            return self._tool_resolver(action)
        k = self._kernel
        if k is None:
            return None
        fam, _, name = action.partition(".")
        drv = k.drivers.get(fam)
        tools = getattr(drv, "tools", None)
        return tools.get(name) if isinstance(tools, dict) else None

    def classes_of(self, action: str) -> frozenset[str]:
        """The ontology classes (closed under subsumption) an action's tool belongs to."""
        onto = self.ontology
        if onto is None:
            return frozenset()
        fam, _, name = action.partition(".")
        out: set[str] = set()
        cls = self.spec.tool_classes.get(name) if fam == "tools" else None
        if cls is not None:
            out |= onto.closure(cls)
        out |= onto.individuals.get(name, frozenset()) if fam == "tools" else frozenset()
        t = self.tool_for(action)
        tcls = getattr(t, "ontology_class", None)
        if tcls:
            out |= onto.closure(tcls)
        return frozenset(out)

    def _plan(self, action: str) -> _Plan:
        k = self._kernel
        if k is not None and len(k.drivers) != self._ndrivers:  # tools may type themselves
            self._plans.clear()
            self._ndrivers = len(k.drivers)
        classes = self.classes_of(action) if self.ontology is not None else frozenset()
        denies: list[Rule] = []
        allows: list[Rule] = []
        for r in self.rules:
            if r.matches_action(action) or (classes and any(c in classes for c in r.classes)):
                (denies if r.effect == "deny" else allows).append(r)
        plan = _Plan(tuple(denies), tuple(allows))
        self._plans[action] = plan
        return plan

    # -- the check --------------------------------------------------------------------
    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        plan = self._plans.get(action)
        if plan is None or (self._kernel is not None and len(self._kernel.drivers) != self._ndrivers):
            plan = self._plan(action)
        if plan.simple is not None:
            d = plan.simple
        else:
            d = self._decide(pid, action, args, plan, dry_run)
        if self.mode == "strict" or d.allowed:
            return d
        return self._soften(d)

    def _decide(self, pid: int, action: str, args: Any, plan: _Plan, dry_run: bool) -> Decision:
        for r in plan.denies:
            if r.unmet(args) is None:
                return Decision(False, r.name, f"{action} is denied by rule {r.name}", "kill")
        applicable = plan.allows
        if not applicable:
            return Decision(False, "default-deny", f"no rule allows {action} (strict: default deny)", "kill")
        for r in applicable:
            why = r.unmet(args)
            if why is None and r.mode == "read_only":
                why = self._read_only(action, args)
            if why is not None:
                return Decision(False, r.name, f"{action} violates rule {r.name}: {why}", "kill")
        now = self._now()
        limited = [r for r in applicable if r.rate is not None]
        for r in limited:
            if not r.window(pid).room(now):
                n, _, per = r.rate  # type: ignore[misc]
                return Decision(False, r.name, f"{action} is over rule {r.name}'s rate limit {n}/{per}",
                                "kill", {"rate_limited": True})
        approval = next((r for r in applicable if r.requires_approval), None)
        if approval is not None:
            extra: dict[str, Any] = {"approval_rule": approval.name}
            if approval.approval_timeout_ms is not None:
                extra["timeout_ms"] = approval.approval_timeout_ms
            if limited:
                extra["rate_rules"] = [r.name for r in limited]
            return Decision(False, approval.name, f"{action} requires approval ({approval.name})",
                            "approve", extra)
        if not dry_run:
            for r in limited:
                r.window(pid).take(now)
        first = applicable[0]
        return Decision(True, first.name, f"allowed by {first.name}", "allow",
                        {"log": True} if first.log else _NO_EXTRA)

    def consume(self, pid: int, decision: Decision) -> None:
        """An approved action is about to run: take its rate-limit slots now."""
        names = decision.extra.get("rate_rules") if decision.extra else None
        if not names:
            return
        now = self._now()
        for r in self.rules:
            if r.name in names and r.rate is not None:
                r.window(pid).take(now)

    def _read_only(self, action: str, args: Any) -> str | None:
        t = self.tool_for(action)
        if t is not None:
            try:
                eff = t.classify(args if isinstance(args, dict) else {})
            except Exception:
                eff = "unknown"
            if eff == "read_only":
                return None
            if eff == "unknown":
                return "mode read_only: the tool's effect classifier cannot classify this call"
            return "mode read_only: the tool classifies this call as read_write"
        if action in READ_ONLY_ACTIONS:
            return None
        return "mode read_only: no effect classifier is known for this action"

    def _soften(self, d: Decision) -> Decision:
        if self.mode == "permissive":
            if d.effect == "approve":
                return d
            return Decision(True, d.rule, f"permissive: would deny: {d.reason}", "log",
                            {"violation": d.rule, "would": d.effect})
        return Decision(True, d.rule, f"audit: would {'ask approval' if d.effect == 'approve' else 'deny'}: "
                        f"{d.reason}", "log", {"violation": d.rule, "would": d.effect})

    def validate_tools(self, tools: Iterable[str], family: str = "tools") -> None:
        """Refuse rules naming a tool the kernel does not have (once its drivers are known)."""
        known = set(tools)
        for r in self.rules:
            for a in r.actions:
                fam, _, op = a.partition(".")
                if fam == family and op not in ("*", "list") and op not in known:
                    raise PolicyLoadError(f"rule {r.name} names unknown tool {op!r} (this kernel's tools: "
                                          f"{', '.join(sorted(known)) or 'none'})", r.line, self.spec.path)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "version": self.spec.version, "rules": len(self.rules),
                "signals": [s.name for s in self.spec.signals],
                "ontology": None if self.ontology is None else {
                    "classes": len(self.ontology.ancestors), "reasoner": self.ontology.reasoner}}


def load_policy(path: str | Path, **kw: Any) -> PolicyEngine:
    return PolicyEngine.load(path, **kw)
