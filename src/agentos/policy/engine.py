"""The policy engine: what the kernel's chokepoint asks before an action.

Two kinds of action. Actions on the world (device operations, `dial`, `spawn_remote`)
are governed by policy: in strict mode they are denied unless a rule allows them.
Kernel actions (`spawn`, `send`, `signal.<SIG>`, `vfs.read|write|list`) are governed by
capabilities; policy has a say only where a rule names one (by name: `*` does not) or,
for signals, where the file has a `signals` list. `governs_kernel` tells the kernel
which of them to ask about at all, so an unnamed action costs no policy work.

Rule semantics (order-independent; adding a rule can only narrow what is allowed): the
rules that name an action (exactly, by `family.*`, `*`, a bare tool name, or an ontology
class the tool falls under) are its candidates. A candidate deny applies unless one of
its constraints was evaluated and is false (a missing or renamed argument, NaN or a
wrong type cannot get a deny out of the way). Otherwise every candidate allow's
conditions must hold: its constraints evaluate true and, with `mode: read_only`, the
tool's declared effect classifier says read-only (unclassifiable: not read-only). No
candidate allow: default deny for an action on the world, capabilities decide for a
kernel action. Every candidate allow must have room in its rate limit; one needing
approval makes the decision "approve"; one with `dry_run` answers without performing.
Candidates depend only on the action name, so they are worked out once per action and
cached; the per-call work is the constraints.

Modes: strict enforces everything (a violation is effect "kill": SIGPOLICY). permissive
allows what strict would deny, with effect "log" and the rule named (approvals are still
asked: they are a human gate, not a violation). audit enforces nothing: every decision
is allowed and logged. `check(..., dry_run=True)` (what `sys.check_policy` calls)
answers the same way and changes nothing: no rate-limit slot is taken.
"""
from __future__ import annotations

import time as _time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ..abi.policy import Decision
from ..kernel.decision import BY_CAPS as _BY_CAPS
from .errors import PolicyLoadError
from .loader import PolicySpec, parse_policy, read_policy_text
from .ontology import SubsumptionIndex, load_ontology
from .rules import Rule, is_kernel_action

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel

# actions that only read, for `mode: read_only` on actions that are not tools
READ_ONLY_ACTIONS = frozenset({"kv.get", "kv.keys", "kv.has", "vfs.read", "vfs.list", "tools.list",
                               "gateway.stats", "secure_gateway.stats",
                               "lessons.get", "lessons.list", "lessons.stats", "runs.list", "runs.digest"})
# families whose operations are not tools: a tool name in guardrails.tools never types them
NOT_TOOLS = frozenset({"kv", "llm", "local", "vfs", "bus", "sandbox", "lessons", "runs", "gateway", "secure_gateway"})

_NO_EXTRA: dict[str, Any] = {}


class _Plan:
    """The candidate rules for one action name, split by effect."""

    __slots__ = ("denies", "allows", "simple", "kernel", "fixed", "dry_run", "allowed")

    def __init__(self, denies: tuple[Rule, ...], allows: tuple[Rule, ...], kernel: bool,
                 fixed: Decision | None = None) -> None:
        self.denies = denies
        self.allows = allows
        self.kernel = kernel
        self.fixed = fixed            # a deny that needs no arguments (signals list, untyped tool)
        self.allowed: Decision | None = None  # the allow every call that passes gets (made once)
        self.dry_run = next((r for r in allows if r.dry_run), None)
        # one unconditional allow and nothing else (or, for a kernel action, nothing at all):
        # the decision is a constant
        self.simple: Decision | None = None
        if fixed is None and not denies:
            if not allows and kernel:
                self.simple = _BY_CAPS
            elif len(allows) == 1 and self.dry_run is None:
                r = allows[0]
                if not (r.constraints or r.mode == "read_only" or r.rate or r.requires_approval
                        or r.min_trust is not None or r.target_min_trust is not None):
                    self.simple = Decision(True, r.name, f"allowed by {r.name}", "allow",
                                           {"log": True} if r.log else _NO_EXTRA)


class PolicyEngine:
    def __init__(self, spec: PolicySpec, ontology: SubsumptionIndex | None = None,
                 tool_resolver: Callable[[str], Any] | None = None) -> None:
        self.spec = spec
        self.mode = spec.mode
        self.rules = spec.rules
        self.scheduling = spec.scheduling  # a kernel booted with this policy schedules by it (sched/)
        self.ontology = ontology
        self._now: Callable[[], float] = lambda: _time.monotonic() * 1000.0
        self._tool_resolver = tool_resolver
        self._kernel: Kernel | None = None
        self._plans: dict[str, _Plan] = {}
        self._ndrivers = -1
        self.governs_kernel = self._kernel_actions_named()
        if spec.class_lines or spec.tool_classes:
            if ontology is None:
                raise PolicyLoadError("rules name ontology classes but no ontology is loaded", 0, spec.path)
            errors = [PolicyLoadError(f"unknown ontology class {cls!r}", line, spec.path)
                      for cls, line in spec.class_lines if not ontology.has_class(cls)]
            errors += [PolicyLoadError(f"tool {tool!r} is typed by unknown ontology class {cls!r}",
                                       spec.tool_class_lines.get(tool, 0), spec.path)
                       for tool, cls in spec.tool_classes.items() if not ontology.has_class(cls)]
            if errors:
                raise PolicyLoadError.collect(errors, spec.path)


    def set_tool_resolver(self, resolver: Callable[[str], Any] | None) -> None:
        """Who says which tool (class, effect) an action names, when no kernel is attached
        (`agentctl policy test --effect ...`)."""
        self._tool_resolver = resolver

    def _kernel_actions_named(self) -> frozenset[str]:
        """Which kernel actions ("spawn", "send", "signal", "vfs") any rule names."""
        out: set[str] = set()
        for r in self.rules:
            for a in r.actions:
                if a in ("spawn", "send"):
                    out.add(a)
                elif a.startswith("signal."):
                    out.add("signal")
                elif a.startswith("vfs."):
                    out.add("vfs")
                elif a.startswith("bus."):
                    out.add("bus")
        if self.spec.signals is not None:
            out.add("signal")
        return frozenset(out)

    def governs(self, action: str) -> bool:
        """Whether policy has a say on `action` (always, for an action on the world)."""
        if not is_kernel_action(action):
            return True
        head = action.split(".", 1)[0]
        return head in self.governs_kernel and not self._plan_for(action).simple is _BY_CAPS

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str | bytes, *, path: str = "", known_tools: Iterable[str] | None = None,
                  base_dir: str | Path | None = None, reasoner: str | None = None,
                  families: Iterable[str] = ()) -> "PolicyEngine":
        """`families`: names drivers are registered under beyond the standard ones (an MCP
        server registered as `github` makes `github.create_issue` an action rules can name)."""
        spec = parse_policy(text, path=path, known_tools=known_tools, extra_families=families)
        onto = None
        if spec.ontology is not None:
            base = Path(base_dir) if base_dir is not None else (Path(path).parent if path else Path.cwd())
            opath = Path(spec.ontology)
            if not opath.is_absolute():
                opath = base / opath
            _check_ontology_file(opath, path)
            try:
                onto = load_ontology(opath, reasoner or spec.reasoner)
            except FileNotFoundError as e:
                raise PolicyLoadError(str(e), 0, path) from None
            except ImportError as e:
                raise PolicyLoadError(f"guardrails need owlready2 (pip install 'agentos[ontology]'): {e}",
                                      0, path) from None
            except Exception as e:  # a broken ontology is a load error, not a crash
                raise PolicyLoadError(f"ontology {opath} does not load: {type(e).__name__}: {e}", 0, path) from None
        return cls(spec, onto)

    @classmethod
    def load(cls, path: str | Path, *, known_tools: Iterable[str] | None = None,
             reasoner: str | None = None, families: Iterable[str] = ()) -> "PolicyEngine":
        """Load `.agents/security.md` (or a plain YAML policy) from a file."""
        return cls.from_text(read_policy_text(path), path=str(path), known_tools=known_tools, reasoner=reasoner,
                             families=families)

    @classmethod
    def for_drivers(cls, path: str | Path, drivers: Mapping[str, Any], *,
                    reasoner: str | None = None) -> "PolicyEngine":
        """Load a policy for a kernel whose drivers are known: their registered names are
        action families, and a rule naming a tool none of them serves is a load error."""
        eng = cls.load(path, reasoner=reasoner, families=drivers)
        errors: list[PolicyLoadError] = []
        for name, drv in drivers.items():
            names = served_tool_names(drv)
            connect = getattr(drv, "connect", None)
            if names is None and serves_tools(drv) and callable(connect) and any(
                    a.startswith(name + ".") for r in eng.rules for a in r.actions):
                try:  # an MCP server: its tools (and their effects) are known once it is listed
                    connect()
                    names = served_tool_names(drv)
                except Exception as e:
                    errors.append(PolicyLoadError(f"rules name tools of driver {name!r}, which cannot list "
                                                  f"them: {type(e).__name__}: {e}", 0, str(path)))
            if names is not None:
                try:
                    eng.validate_tools(names, family=name)
                except PolicyLoadError as e:
                    errors.append(e)
            try:
                eng.check_driver(name, drv)
            except PolicyLoadError as e:
                errors.append(e)
        if errors:
            raise PolicyLoadError.collect(errors, str(path))
        return eng

    def attach(self, kernel: "Kernel") -> None:
        """Use the kernel's clock for rate limits and its drivers to find tools; refuse a
        driver already registered whose tools are typed by classes the ontology lacks."""
        self._kernel = kernel
        self._now = kernel.clock.now
        self._plans.clear()
        for name, drv in list(kernel.drivers.items()):
            self.check_driver(name, drv)

    # -- tools ------------------------------------------------------------------------
    def check_driver(self, name: str, driver: Any) -> None:
        """Registration check: every class a served tool is typed by must be in the ontology."""
        onto = self.ontology
        if onto is None:
            return
        bad = [(tool, cls) for tool, cls in sorted(served_tool_classes(driver).items())
               if not onto.has_class(cls)]
        if bad:
            listed = ", ".join(f"{t} ({c})" for t, c in bad)
            raise PolicyLoadError(f"driver {name!r} serves tools typed by classes the ontology does not "
                                  f"have: {listed}", 0, self.spec.path)
        self._plans.clear()

    def tool_for(self, action: str) -> Any:
        """The tool behind `<driver>.<tool>` among the kernel's drivers (anything with
        `ontology_class` and `classify(args)`), or None."""
        if self._tool_resolver is not None:
            return self._tool_resolver(action)
        k = self._kernel
        if k is None:
            return None
        fam, _, name = action.partition(".")
        drv = k.drivers.get(fam)
        return served_tool(drv, name) if drv is not None else None

    def _serves_tools(self, fam: str) -> bool:
        k = self._kernel
        drv = k.drivers.get(fam) if k is not None else None
        if drv is None:
            return fam not in NOT_TOOLS
        return serves_tools(drv)

    def classes_of(self, action: str) -> frozenset[str] | None:
        """The ontology classes (closed under subsumption) an action's tool belongs to, or
        None when the tool is typed by a class the ontology does not have."""
        onto = self.ontology
        if onto is None or is_kernel_action(action):
            return frozenset()
        fam, _, name = action.partition(".")
        out: set[str] = set()
        if self._serves_tools(fam):
            cls = self.spec.tool_classes.get(name)   # the class is the tool's, wherever it is served
            if cls is not None:
                out |= onto.closure(cls)
            out |= onto.individuals.get(name, frozenset())
        t = self.tool_for(action)
        tcls = getattr(t, "ontology_class", None)
        if tcls:
            if not isinstance(tcls, str) or not onto.has_class(tcls):
                return None
            out |= onto.closure(tcls)
        return frozenset(out)

    def _plan_for(self, action: str) -> _Plan:
        plan = self._plans.get(action)
        k = self._kernel
        if plan is None or (k is not None and len(k.drivers) != self._ndrivers):
            plan = self._plan(action)
        return plan

    def _plan(self, action: str) -> _Plan:
        k = self._kernel
        if k is not None and len(k.drivers) != self._ndrivers:  # tools may type themselves
            self._plans.clear()
            self._ndrivers = len(k.drivers)
        kernel = is_kernel_action(action)
        fixed = None
        classes = self.classes_of(action) if self.ontology is not None else frozenset()
        if classes is None:
            fixed = Decision(False, "ontology", f"{action}: the tool is typed by a class the ontology does not "
                                                f"have, so no class rule can be checked", "kill")
            classes = frozenset()
        sigs = self.spec.signals
        if sigs is not None and action.startswith("signal."):
            if action[7:] not in {s.name for s in sigs}:
                fixed = Decision(False, "signals", f"{action[7:]} is not in the policy's signals list "
                                                   f"({', '.join(s.name for s in sigs) or 'empty'})", "kill")
        denies: list[Rule] = []
        allows: list[Rule] = []
        for r in self.rules:
            if r.matches_action(action) or (classes and any(c in classes for c in r.classes)):
                (denies if r.effect == "deny" else allows).append(r)
        plan = _Plan(tuple(denies), tuple(allows), kernel, fixed)
        if len(self._plans) > 65536:  # action names come from processes: keep the cache bounded
            self._plans.clear()
        self._plans[action] = plan
        return plan

    # -- the check --------------------------------------------------------------------
    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
        plan = self._plan_for(action)
        if plan.simple is not None:
            d = plan.simple
        else:
            d = self._decide(pid, action, args, plan, dry_run)
        if not (self.mode == "strict" or d.allowed):
            d = self._soften(d)
        if plan.dry_run is not None and d.allowed:
            r = plan.dry_run
            return Decision(False, r.name, f"dry run: {action} is allowed ({d.rule}) but rule {r.name} says "
                                           f"not to perform it", "raise", {"dry_run": True, "would": d.effect})
        return d

    def _decide(self, pid: int, action: str, args: Any, plan: _Plan, dry_run: bool) -> Decision:
        if plan.fixed is not None:
            return plan.fixed
        for r in plan.denies:
            if r.deny_applies(args):
                if r.min_trust is None and r.target_min_trust is None:
                    return Decision(False, r.name, f"{action} is denied by rule {r.name}", "kill")
                low = self._below_trust(pid, action, args, r)
                if low is not None:
                    return low
        applicable = plan.allows
        if not applicable:
            if plan.kernel:
                return _BY_CAPS
            return Decision(False, "default-deny", f"no rule allows {action} (strict: default deny)", "kill")
        for r in applicable:
            if r.min_trust is not None or r.target_min_trust is not None:
                low = self._below_trust(pid, action, args, r)
                if low is not None:
                    return low
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
        d = plan.allowed
        if d is None:
            first = applicable[0]
            d = plan.allowed = Decision(True, first.name, f"allowed by {first.name}", "allow",
                                        {"log": True} if any(r.log for r in applicable) else _NO_EXTRA)
        return d

    def _trust_of(self, pid: Any) -> float | None:
        """The trust score the kernel keeps for `pid`; None when it cannot be known (no trust
        service, not a local process). The kernel itself (pid 0: a remote delivery, whose
        sender the ingress check has verified by attestation) is trusted."""
        if pid == 0 and type(pid) is int:
            return 1.0
        k = self._kernel
        svc = getattr(k, "trust", None) if k is not None else None
        if svc is None or type(pid) is not int:
            return None
        return svc.score(pid)

    @property
    def trust_settings(self) -> Any:
        """The `trust:` section of the file (`TrustSettings`), read by the trust service."""
        return self.spec.trust

    def _below_trust(self, pid: int, action: str, args: Any, r: Rule) -> Decision | None:
        """A refusal when the caller's (or a send's target's) trust is below what rule `r`
        asks, else None. A score that cannot be known is below any minimum (fail closed)."""
        need = r.min_trust
        if need is not None:
            score = self._trust_of(pid)
            if score is None or score < need:
                return _trust_refusal(action, r, "caller", score, need, "min_trust")
        need = r.target_min_trust
        if need is not None:
            to = args.get("to") if isinstance(args, dict) and "node" not in args else None
            score = self._trust_of(to)
            if score is None or score < need:
                return _trust_refusal(action, r, "target", score, need, "target_min_trust")
        return None

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
            if eff == "read_write":
                return "mode read_only: the tool classifies this call as read_write"
            return "mode read_only: the tool's effect classifier cannot classify this call"
        if action in READ_ONLY_ACTIONS:
            return None
        return "mode read_only: no effect classifier is known for this action"

    def _soften(self, d: Decision) -> Decision:
        if self.mode == "permissive":
            if d.effect == "approve":
                return d
            extra = {"violation": d.rule, "would": d.effect}
            if d.extra and "min_trust" in d.extra:  # a low score, not misbehaviour: no evidence
                extra["min_trust"] = d.extra["min_trust"]
            return Decision(True, d.rule, f"permissive: would deny: {d.reason}", "log", extra)
        return Decision(True, d.rule, f"audit: would {'ask approval' if d.effect == 'approve' else 'deny'}: "
                        f"{d.reason}", "log", {"violation": d.rule, "would": d.effect})

    def validate_tools(self, tools: Iterable[str], family: str = "tools") -> None:
        """Refuse rules naming a tool the kernel does not have (once its drivers are known)."""
        known = set(tools)
        errors = []
        for r in self.rules:
            for a in r.actions:
                fam, _, op = a.partition(".")
                if fam == family and op not in ("*", "list") and op not in known:
                    errors.append(PolicyLoadError(f"rule {r.name} names unknown tool {op!r} (driver {family!r} "
                                                  f"serves: {', '.join(sorted(known)) or 'none'})",
                                                  r.line, self.spec.path))
        if errors:
            raise PolicyLoadError.collect(errors, self.spec.path)

    def describe(self) -> dict[str, Any]:
        sigs = self.spec.signals
        return {"mode": self.mode, "version": self.spec.version, "rules": len(self.rules),
                "signals": None if sigs is None else [s.name for s in sigs],
                "governs_kernel": sorted(self.governs_kernel),
                "ontology": None if self.ontology is None else {
                    "classes": len(self.ontology.ancestors), "reasoner": self.ontology.reasoner}}


def _trust_refusal(action: str, r: Rule, who: str, score: float | None, need: float, key: str) -> Decision:
    have = "unknown" if score is None else f"{score:.3f}"
    return Decision(False, r.name, f"{action}: the {who}'s trust {have} is below rule {r.name}'s {key} {need:g}",
                    "raise", {"min_trust": need, "trust": score, "who": who})


# -- what a driver serves: tools with a class and an effect classifier -------------------

def serves_tools(driver: Any) -> bool:
    """Whether a driver's operations are tools (which ontology classes can type)."""
    return getattr(driver, "serves_tools", False) is True or isinstance(getattr(driver, "tools", None), dict)


def served_tool_names(driver: Any) -> Iterable[str] | None:
    """The names of the tools a driver serves, or None if it serves none or cannot say yet
    (an MCP server before it is first listed)."""
    fn = getattr(driver, "tool_names", None)
    if callable(fn):
        names = fn()
        return None if names is None else list(names)
    tools = getattr(driver, "tools", None)
    return list(tools) if isinstance(tools, dict) else None


def served_tool(driver: Any, name: str) -> Any:
    fn = getattr(driver, "tool_info", None)
    if callable(fn):
        return fn(name)
    tools = getattr(driver, "tools", None)
    return tools.get(name) if isinstance(tools, dict) else None


def served_tool_classes(driver: Any) -> dict[str, str]:
    """Tool name → the ontology class it declares, for every typed tool a driver serves."""
    fn = getattr(driver, "tool_classes", None)
    if callable(fn):
        return dict(fn())
    tools = getattr(driver, "tools", None)
    if not isinstance(tools, dict):
        return {}
    return {n: t.ontology_class for n, t in tools.items() if getattr(t, "ontology_class", None)}


MAX_ONTOLOGY_BYTES = 64 << 20


def _check_ontology_file(opath: Path, path: str) -> None:
    """The ontology a policy names is read whole: it must be a regular file of bounded
    size (a policy naming /dev/zero, a FIFO or a directory is a load error, not a hang)."""
    import stat

    try:
        st = opath.stat()
    except FileNotFoundError:
        raise PolicyLoadError(f"ontology file {opath} does not exist", 0, path) from None
    except OSError as e:
        raise PolicyLoadError(f"ontology {opath}: {e.strerror or e}", 0, path) from None
    except ValueError:  # a NUL byte in the path
        raise PolicyLoadError("the ontology path is not a valid path", 0, path) from None
    if not stat.S_ISREG(st.st_mode):
        raise PolicyLoadError(f"ontology {opath} is not a regular file", 0, path)
    if st.st_size > MAX_ONTOLOGY_BYTES:
        raise PolicyLoadError(f"ontology {opath} is {st.st_size} bytes; the limit is {MAX_ONTOLOGY_BYTES}",
                              0, path)


def load_policy(path: str | Path, **kw: Any) -> PolicyEngine:
    return PolicyEngine.load(path, **kw)
