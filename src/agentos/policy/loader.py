"""Loading `.agents/security.md`: Markdown with one fenced yaml block, or plain YAML.

Two dialects load as they are: this project's (rules with `effect: allow|deny`) and the
Agent OS / Agent Governance Toolkit `security.md` v1.0 format, whose rules may carry no
`effect` (such a rule allows its action under its conditions: `mode`, `requires_approval`,
`rate_limit`, `constraints`, including the spec's `log` and `dry_run` flags).

Validation is strict and every error names its line in the file: an unknown key,
action, tool, ontology class, signal, mode or effect, a regex RE2 rejects, a rule on an
action nothing in this kernel enforces — each is a `PolicyLoadError`, never a silent
allow. The parse itself is bounded (see `yamlsafe`). Problems are collected, not
stopped at: the error raised lists every one (`PolicyLoadError.errors`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..abi.types import Signal
from . import yamlsafe
from .errors import PolicyLoadError
from .rules import Rule, compile_constraint, parse_rate
from .yamlsafe import LDict, LList

# Families of the drivers agentos ships (a driver registered under another name adds its
# name through `families=`), and the operations the fixed-vocabulary ones have.
ACTION_FAMILIES = frozenset({"tools", "kv", "llm", "local", "mcp", "wasm", "worker", "sandbox", "vfs",
                             "bus", "lessons", "runs", "gateway", "secure_gateway"})
FAMILY_OPS = {"kv": frozenset({"get", "keys", "has", "set", "delete"}),
              "vfs": frozenset({"read", "write", "list"}),
              "bus": frozenset({"publish", "subscribe", "declare"}),
              "lessons": frozenset({"recall", "get", "list", "stats", "add", "forget", "prune"}),
              "runs": frozenset({"list", "digest"}),
              "gateway": frozenset({"take", "inject", "stats"}),
              "secure_gateway": frozenset({"take", "inject", "stats"})}
# Kernel actions (governed by capabilities; by policy only where a rule names them).
KERNEL_ACTIONS = frozenset({"spawn", "send", "signal", "kill"})
# Actions on the world every kernel enforces itself: kernel/remote.py asks policy at
# `dial` (and when `lookup` hands out a proxy to another node's process), the cluster's
# calls at `spawn_remote`; a kernel on no network refuses both after asking. Nothing here
# depends on which subsystems this process happened to import.
ENFORCED_BY_EVERY_KERNEL = frozenset({"dial", "spawn_remote"})

MODES = ("strict", "permissive", "audit")
VERSIONS = ("1", "1.0")
TOP_KEYS = {"kernel", "signals", "policies", "guardrails", "observability", "trust", "scheduling"}
KERNEL_KEYS = {"version", "mode"}
RULE_KEYS = {"name", "action", "actions", "class", "classes", "effect", "mode", "requires_approval",
             "approval_timeout", "rate_limit", "rate_per", "constraints", "description", "min_trust",
             "target_min_trust"}
CONSTRAINT_KEYS = {"min", "max", "enum", "regex", "path_under", "max_length"}
CONSTRAINT_FLAGS = {"log", "dry_run"}
GUARDRAIL_KEYS = {"ontology", "reasoner", "tools"}
OBSERVABILITY_KEYS = {"metrics", "traces", "flight_recorder", "audit_dir", "durability"}
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_FAMILY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-:/]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
MAX_RULES = 10_000
# the kernel's own evidence of misbehaviour (services/trust.py feeds these)
TRUST_EVIDENCE = ("policy_denial", "policy_violation", "cap_refused", "child_quota_kill", "failed_verification")
TRUST_KEYS = {"initial", "kill_below", "report_floor", "report_weight", "per_reporter_cap",
              "per_target_cap", "evidence"}


_FENCE = re.compile(r"^(\s*)(```|~~~)\s*(yaml|yml)\s*$", re.IGNORECASE)


def extract_yaml(text: str, path: str = "") -> tuple[str, int]:
    """The YAML text and its line offset in the file (Markdown fence or the whole file)."""
    lines = text.splitlines()
    blocks: list[tuple[int, int]] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m:
            fence = m.group(2)
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                j += 1
            if j >= len(lines):
                raise PolicyLoadError("the ```yaml block is never closed", i + 1, path)
            blocks.append((i + 1, j))
            i = j
        i += 1
    if not blocks:
        if path.endswith(".md") and not re.search(r"^\s*kernel\s*:", text, re.MULTILINE):
            raise PolicyLoadError("no fenced ```yaml block found in the Markdown file", 0, path)
        return text, 0
    if len(blocks) > 1:
        raise PolicyLoadError(f"{len(blocks)} fenced yaml blocks; a policy file holds exactly one "
                              f"(second at line {blocks[1][0]})", blocks[1][0], path)
    start, end = blocks[0]
    return "\n".join(lines[start:end]), start


@dataclass(frozen=True)
class TrustSettings:
    """The `trust:` section: how the kernel scores processes (scores are in [0, 1]).

    `initial`: a new process's score. `kill_below`: below it the kernel raises SIGTRUST.
    `report_floor`: peers' reports alone never take a score below it (it is above
    `kill_below`, so reports can refuse access through `min_trust` but never kill).
    `report_weight`: the most one report can take off, before it is scaled by its weight
    and the reporter's own score. `per_reporter_cap`: the most one reporter, with every
    ancestor that is not also the target's, can take off one target in total (a swarm of
    children shares its parent's cap). `per_target_cap`: the most all reports together
    can take off one target. `evidence`: what each kind of misbehaviour the kernel sees
    itself takes off (0 turns one off)."""

    initial: float = 1.0
    kill_below: float = 0.2
    report_floor: float = 0.3
    report_weight: float = 0.05
    per_reporter_cap: float = 0.1
    per_target_cap: float = 0.4
    evidence: tuple[tuple[str, float], ...] = (("policy_denial", 0.1), ("policy_violation", 0.05),
                                               ("cap_refused", 0.02), ("child_quota_kill", 0.02),
                                               ("failed_verification", 0.02))

    def weight_of(self, kind: str) -> float:
        for k, w in self.evidence:
            if k == kind:
                return w
        return 0.0


@dataclass
class PolicySpec:
    version: str
    mode: str
    rules: list[Rule]
    signals: tuple[Signal, ...] | None = None   # None: the file has no signals list (no restriction)
    ontology: str | None = None
    reasoner: str = "auto"
    tool_classes: dict[str, str] = field(default_factory=dict)
    tool_class_lines: dict[str, int] = field(default_factory=dict)
    observability: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    class_lines: list[tuple[str, int]] = field(default_factory=list)
    trust: TrustSettings = field(default_factory=TrustSettings)
    scheduling: Any = None   # a sched.SchedConfig from the `scheduling:` section, or None


def parse_duration_ms(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if not math.isfinite(v) or v <= 0:
            raise ValueError("must be a positive, finite duration")
        return float(v) * 1000.0  # a bare number is seconds
    m = _DURATION.match(v) if isinstance(v, str) else None
    if not m:
        raise ValueError(f"{v!r:.60} is not a duration like 30s, 500ms, 5m")
    n = float(m.group(1))
    unit = m.group(2) or "s"
    ms = n * {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]
    if not math.isfinite(ms) or ms <= 0:
        raise ValueError("must be a positive, finite duration")
    return ms


def normalise_action(name: Any, *, known_tools: Iterable[str] | None, line: int, path: str,
                     extra_families: Iterable[str] = ()) -> str:
    """The canonical action a rule names, or a `PolicyLoadError` saying why it names none."""
    if not isinstance(name, str) or not name:
        raise PolicyLoadError(f"an action must be a non-empty string, got {name!r:.60}", line, path)
    if name == "*" or name in ("spawn", "send"):
        return name
    if name in ("signal", "signal.*"):
        return "signal.*"
    if name == "kill":
        return "signal.SIGKILL"
    if name in ENFORCED_BY_EVERY_KERNEL:
        return name
    families = ACTION_FAMILIES | set(extra_families)
    if "." not in name:
        if not _TOOL_NAME.match(name):
            raise PolicyLoadError(f"{name!r:.60} is not an action or tool name", line, path)
        name = f"tools.{name}"
    fam, _, op = name.partition(".")
    if fam == "signal":
        try:
            Signal[op]
        except KeyError:
            raise PolicyLoadError(f"unknown signal in action {name!r:.60} "
                                  f"(known: {', '.join(s.name for s in Signal)})", line, path) from None
        return name
    if fam not in families:
        known = sorted(families | {"spawn", "send", "signal", "kill"})
        raise PolicyLoadError(f"unknown action {name!r:.60}: {fam!r:.40} is not an action family or a "
                              f"registered driver (known: {', '.join(known)})", line, path)
    if not op:
        raise PolicyLoadError(f"action {name!r:.60} has no operation after the dot", line, path)
    if op == "*":
        return name
    if fam in FAMILY_OPS and op not in FAMILY_OPS[fam]:
        raise PolicyLoadError(f"unknown action {name!r:.60}: {fam} actions are "
                              f"{', '.join(sorted(FAMILY_OPS[fam]))}", line, path)
    if fam == "tools" and known_tools is not None and op not in set(known_tools) and op != "list":
        raise PolicyLoadError(f"unknown tool {op!r:.60} (known tools: {', '.join(sorted(known_tools)) or 'none'})",
                              line, path)
    return name


class _Errors:
    """Collects problems so a file's every error is reported at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[PolicyLoadError] = []

    def add(self, message: str, line: int) -> None:
        self.items.append(PolicyLoadError(message, line, self.path))

    def keep(self, e: PolicyLoadError) -> None:
        self.items.extend(e.errors)


def _at(d: Any, k: Any, default: int) -> int:
    if isinstance(d, LDict):
        return d.lines.get(k, d.line)
    return default


def _lline(lst: Any, i: int, default: int) -> int:
    return lst.lines[i] if isinstance(lst, LList) and i < len(lst.lines) else default


def _mapping(d: Any, allowed: set[str], what: str, line: int, errs: _Errors) -> LDict | None:
    if not isinstance(d, dict):
        errs.add(f"{what} must be a mapping, got {_kind(d)}", line)
        return None
    for k in d:
        if k not in allowed:
            errs.add(f"unknown key {k!r:.60} in {what} (allowed: {', '.join(sorted(allowed))})", _at(d, k, line))
    return d if isinstance(d, LDict) else _as_ldict(d, line)


def _as_ldict(d: dict[str, Any], line: int) -> LDict:
    out = LDict(d)
    out.line = line
    out.lines = {k: line for k in d}
    return out


def _kind(v: Any) -> str:
    return "nothing" if v is None else {LDict: "mapping", LList: "list", dict: "mapping", list: "list",
                                        str: "text", bool: "true/false"}.get(type(v), type(v).__name__)


def parse_policy(text: str | bytes, *, path: str = "", known_tools: Iterable[str] | None = None,
                 extra_families: Iterable[str] = ()) -> PolicySpec:
    """Parse and validate policy text; every problem found is in the raised error's `errors`.

    Ontology classes are checked later, against the classified index."""
    text = yamlsafe.decode(text, path)
    body, offset = extract_yaml(text, path)
    doc = yamlsafe.load(body, path=path, line_offset=offset)
    top = offset + 1
    errs = _Errors(path)
    if not isinstance(doc, dict):
        raise PolicyLoadError(f"the policy must be a mapping with kernel: and policies:, got {_kind(doc)}",
                              getattr(doc, "line", 0) or top, path)
    tools = None if known_tools is None else list(known_tools)
    families = set(extra_families)
    _mapping(doc, TOP_KEYS, "the policy", top, errs)

    # -- kernel -------------------------------------------------------------------------
    mode, version = "strict", "1.0"
    if "kernel" not in doc:
        errs.add("missing the kernel: section (version and mode)", top)
    else:
        kern = _mapping(doc["kernel"], KERNEL_KEYS, "kernel", _at(doc, "kernel", top), errs)
        if kern is not None:
            m = kern.get("mode", "strict")
            if m not in MODES:
                errs.add(f"kernel.mode must be one of {', '.join(MODES)}, got {m!r:.60}", _at(kern, "mode", top))
            else:
                mode = m
            v = kern.get("version", "1.0")
            vs = str(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None
            if vs not in VERSIONS:
                errs.add(f"kernel.version {v!r:.40} is not supported (this kernel reads version 1.0)",
                         _at(kern, "version", top))
            else:
                version = "1.0"

    # -- signals ------------------------------------------------------------------------
    signals: tuple[Signal, ...] | None = None
    if "signals" in doc:
        sigs = doc["signals"]
        sline = _at(doc, "signals", top)
        if sigs is None:
            sigs = LList()
        if not isinstance(sigs, list):
            errs.add(f"signals must be a list of signal names, got {_kind(sigs)}", sline)
        else:
            got: list[Signal] = []
            for i, s in enumerate(sigs):
                try:
                    got.append(Signal[s] if isinstance(s, str) else Signal[""])
                except KeyError:
                    errs.add(f"unknown signal {s!r:.40} (known: {', '.join(x.name for x in Signal)})",
                             _lline(sigs, i, sline))
            signals = tuple(dict.fromkeys(got))

    # -- guardrails -----------------------------------------------------------------------
    ontology, reasoner = None, "auto"
    tool_classes: dict[str, str] = {}
    tool_class_lines: dict[str, int] = {}
    if doc.get("guardrails") is not None:
        gline = _at(doc, "guardrails", top)
        guard = _mapping(doc["guardrails"], GUARDRAIL_KEYS, "guardrails", gline, errs)
        if guard is not None:
            ontology = guard.get("ontology")
            if ontology is not None and (not isinstance(ontology, str) or not ontology or "\x00" in ontology):
                errs.add("guardrails.ontology must be a file path", _at(guard, "ontology", gline))
                ontology = None
            reasoner = guard.get("reasoner", "auto")
            if reasoner not in ("auto", "hermit", "told"):
                errs.add(f"guardrails.reasoner must be auto, hermit or told, got {reasoner!r:.40}",
                         _at(guard, "reasoner", gline))
                reasoner = "auto"
            tmap = guard.get("tools")
            if tmap is not None:
                if not isinstance(tmap, dict):
                    errs.add("guardrails.tools maps tool names to ontology classes", _at(guard, "tools", gline))
                else:
                    for tname, cls in tmap.items():
                        ln = _at(tmap, tname, gline)
                        if tools is not None and tname not in tools:
                            errs.add(f"unknown tool {tname!r:.60} in guardrails.tools", ln)
                        elif not isinstance(cls, str) or not cls:
                            errs.add(f"the class of tool {tname!r:.60} must be a class name", ln)
                        else:
                            tool_classes[tname] = cls
                            tool_class_lines[tname] = ln
                    if tmap and ontology is None:
                        errs.add("guardrails.tools types tools but guardrails.ontology is not set",
                                 _at(guard, "tools", gline))

    # -- observability --------------------------------------------------------------------
    obs: dict[str, Any] = {}
    if doc.get("observability") is not None:
        oline = _at(doc, "observability", top)
        o = _mapping(doc["observability"], OBSERVABILITY_KEYS, "observability", oline, errs)
        if o is not None:
            for k in ("metrics", "traces", "flight_recorder"):
                if k in o and not isinstance(o[k], bool):
                    errs.add(f"observability.{k} must be true or false", _at(o, k, oline))
            if "durability" in o and o["durability"] not in ("fsync", "os"):
                errs.add("observability.durability must be fsync or os", _at(o, "durability", oline))
            if "audit_dir" in o and (not isinstance(o["audit_dir"], str) or "\x00" in o["audit_dir"]):
                errs.add("observability.audit_dir must be a directory path", _at(o, "audit_dir", oline))
            obs = dict(o)

    # -- trust ------------------------------------------------------------------------------
    trust = TrustSettings()
    if doc.get("trust") is not None:
        trust = _trust(doc["trust"], _at(doc, "trust", top), errs) or trust

    # -- scheduling ---------------------------------------------------------------------------
    scheduling = None
    if "scheduling" in doc:
        scheduling = _scheduling(doc["scheduling"], _at(doc, "scheduling", top), errs)

    # -- policies ---------------------------------------------------------------------------
    rules: list[Rule] = []
    class_lines: list[tuple[str, int]] = []
    pols = doc.get("policies")
    if "policies" not in doc:
        errs.add("missing the policies: list", top)
    elif pols is None:
        pols = LList()
    if pols is not None and not isinstance(pols, list):
        errs.add(f"policies must be a list of rules, got {_kind(pols)}", _at(doc, "policies", top))
    elif pols is not None:
        pline = _at(doc, "policies", top)
        if len(pols) > MAX_RULES:
            errs.add(f"{len(pols)} rules; a policy holds at most {MAX_RULES}", pline)
            pols = pols[:0]
        names: dict[str, int] = {}
        for i, r in enumerate(pols):
            rl = _lline(pols, i, pline)
            rule = _rule(i, r, rl, errs, tools, families, ontology, class_lines)
            if rule is None:
                continue
            if rule.name in names:
                errs.add(f"rule name {rule.name!r:.60} is used twice (first at line {names[rule.name]})", rl)
                continue
            names[rule.name] = rl
            rules.append(rule)
    if errs.items:
        raise PolicyLoadError.collect(errs.items, path)
    return PolicySpec(version, mode, rules, signals, ontology, reasoner, tool_classes, tool_class_lines,
                      obs, path, class_lines, trust, scheduling)


def _score(v: Any) -> bool:
    """A trust amount: a finite number in [0, 1] (not a bool)."""
    return _finite(v) and 0.0 <= v <= 1.0


def _trust(t: Any, line: int, errs: _Errors) -> TrustSettings | None:
    """The `trust:` section, validated; None after recording why it is not one."""
    before = len(errs.items)
    d = _mapping(t, TRUST_KEYS, "trust", line, errs)
    if d is None:
        return None
    base = TrustSettings()
    vals: dict[str, float] = {}
    for k in ("initial", "kill_below", "report_floor", "report_weight", "per_reporter_cap", "per_target_cap"):
        if k in d:
            if not _score(d[k]):
                errs.add(f"trust.{k} must be a number in [0, 1], got {d[k]!r:.40}", _at(d, k, line))
            else:
                vals[k] = float(d[k])
    evidence = dict(base.evidence)
    if "evidence" in d:
        ev = _mapping(d["evidence"], set(TRUST_EVIDENCE), "trust.evidence", _at(d, "evidence", line), errs)
        if ev is not None:
            for k, w in ev.items():
                if k in TRUST_EVIDENCE:
                    if not _score(w):
                        errs.add(f"trust.evidence.{k} must be a number in [0, 1], got {w!r:.40}", _at(ev, k, line))
                    else:
                        evidence[k] = float(w)
    if len(errs.items) > before:
        return None
    initial = vals.get("initial", base.initial)
    kill = vals.get("kill_below", base.kill_below)
    floor = vals.get("report_floor", base.report_floor)
    if not kill < floor:
        errs.add(f"trust.report_floor ({floor:g}) must be above trust.kill_below ({kill:g}): peers' "
                 f"reports alone must never reach the kill threshold", _at(d, "report_floor", line))
    if not floor <= initial:
        errs.add(f"trust.initial ({initial:g}) must be at least trust.report_floor ({floor:g})",
                 _at(d, "initial", line))
    if len(errs.items) > before:
        return None
    return TrustSettings(initial, kill, floor, vals.get("report_weight", base.report_weight),
                         vals.get("per_reporter_cap", base.per_reporter_cap),
                         vals.get("per_target_cap", base.per_target_cap),
                         tuple((k, evidence[k]) for k in TRUST_EVIDENCE))


def _scheduling(d: Any, line: int, errs: _Errors) -> Any:
    """The `scheduling:` section as a `SchedConfig`; each bad value is an error at its line.
    Present means on (`enabled: true`) unless it says `enabled: false`."""
    from ..sched.config import FIELDS, SchedConfig, SchedConfigError

    sec = _mapping(d, set(FIELDS), "scheduling", line, errs)
    if sec is None:
        return None
    values: dict[str, Any] = {"enabled": True}
    bad = False
    for k, v in sec.items():
        if k not in FIELDS:
            bad = True
            continue
        if k == "every_ms" and isinstance(v, str):  # a duration (500ms, 2s) reads as in rules
            try:
                v = parse_duration_ms(v)
            except ValueError as e:
                errs.add(f"scheduling.every_ms {e}", _at(sec, k, line))
                bad = True
                continue
        try:
            SchedConfig(**{k: v})  # each value alone, so each error names its own line
        except SchedConfigError as e:
            errs.add(str(e).replace("sched.", "scheduling.", 1), _at(sec, k, line))
            bad = True
            continue
        values[k] = v
    if bad:
        return None
    try:
        return SchedConfig(**values)
    except SchedConfigError as e:
        errs.add(str(e).replace("sched.", "scheduling.", 1), line)
        return None


def _names(r: LDict, keys: tuple[str, str], rl: int) -> list[tuple[Any, int]]:
    out: list[tuple[Any, int]] = []
    for k in keys:
        if k in r:
            v = r[k]
            if isinstance(v, list):
                out += [(x, _lline(v, j, _at(r, k, rl))) for j, x in enumerate(v)]
            else:
                out.append((v, _at(r, k, rl)))
    return out


def _rule(i: int, r: Any, rl: int, errs: _Errors, tools: list[str] | None, families: set[str],
          ontology: str | None, class_lines: list[tuple[str, int]]) -> Rule | None:
    """One rule, or None after recording why it is not one."""
    before = len(errs.items)
    rd = _mapping(r, RULE_KEYS, f"policies[{i}]", rl, errs)
    if rd is None:
        return None
    acts_raw = _names(rd, ("action", "actions"), rl)
    cls_raw = _names(rd, ("class", "classes"), rl)
    if not acts_raw and not cls_raw:
        errs.add(f"policies[{i}] names no action and no class", rl)
        return None
    actions: list[str] = []
    for a, ln in acts_raw:
        try:
            actions.append(normalise_action(a, known_tools=tools, line=ln, path=errs.path, extra_families=families))
        except PolicyLoadError as e:
            errs.keep(e)
    for c, ln in cls_raw:
        if not isinstance(c, str) or not c:
            errs.add(f"an ontology class must be a name, got {c!r:.60}", ln)
        else:
            class_lines.append((c, ln))
    if cls_raw and ontology is None:
        errs.add("a rule names an ontology class but guardrails.ontology is not set", cls_raw[0][1])
    name = rd.get("name")
    if name is None:
        first = (acts_raw or cls_raw)[0][0]
        name = f"policies[{i}]:{first}" if isinstance(first, str) else f"policies[{i}]"
    elif not isinstance(name, str) or not name:
        errs.add(f"a rule name must be text, got {name!r:.60}", _at(rd, "name", rl))
        name = f"policies[{i}]"
    effect = rd.get("effect", "allow")  # the Agent OS format: no effect means allow under the conditions
    if effect not in ("allow", "deny"):
        errs.add(f"effect must be allow or deny, got {effect!r:.60}", _at(rd, "effect", rl))
    rmode = rd.get("mode")
    if rmode is not None and rmode not in ("read_only", "read_write"):
        errs.add(f"mode must be read_only or read_write, got {rmode!r:.60}", _at(rd, "mode", rl))
    appr = rd.get("requires_approval", False)
    if not isinstance(appr, bool):
        errs.add("requires_approval must be true or false", _at(rd, "requires_approval", rl))
    timeout = None
    if "approval_timeout" in rd:
        try:
            timeout = parse_duration_ms(rd["approval_timeout"])
        except ValueError as e:
            errs.add(f"approval_timeout: {e}", _at(rd, "approval_timeout", rl))
    rate = None
    if "rate_limit" in rd:
        try:
            rate = parse_rate(rd["rate_limit"])
        except ValueError as e:
            errs.add(str(e), _at(rd, "rate_limit", rl))
    per = rd.get("rate_per", "kernel")
    if per not in ("kernel", "process"):
        errs.add(f"rate_per must be kernel or process, got {per!r:.40}", _at(rd, "rate_per", rl))
    if "description" in rd and not isinstance(rd["description"], str):
        errs.add("description must be text", _at(rd, "description", rl))
    mins: dict[str, float | None] = {"min_trust": None, "target_min_trust": None}
    for k in mins:
        if k in rd:
            if not _score(rd[k]):
                errs.add(f"{k} must be a number in [0, 1], got {rd[k]!r:.40}", _at(rd, k, rl))
            else:
                mins[k] = float(rd[k])
    if mins["target_min_trust"] is not None and any(a != "send" for a in actions):
        errs.add("target_min_trust applies to send only (the trust of the process sent to)",
                 _at(rd, "target_min_trust", rl))
    checks, log, dry = _constraints(rd.get("constraints"), _at(rd, "constraints", rl), str(name), errs)
    if effect == "deny" and (appr is True or rate or rmode or dry):
        errs.add("a deny rule cannot carry requires_approval, rate_limit, mode or dry_run", rl)
    if len(errs.items) > before:
        return None
    return Rule(name, rl, effect, actions=tuple(actions), classes=tuple(c for c, _ in cls_raw), mode=rmode,
                requires_approval=appr, approval_timeout_ms=timeout, rate=rate, rate_per=per,
                constraints=checks, log=log, dry_run=dry, min_trust=mins["min_trust"],
                target_min_trust=mins["target_min_trust"])


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _constraints(c: Any, line: int, rule: str, errs: _Errors) -> tuple[tuple[Any, ...], bool, bool]:
    if c is None:
        return (), False, False
    if not isinstance(c, dict):
        errs.add(f"rule {rule}: constraints must map argument names to checks", line)
        return (), False, False
    out = []
    log = dry = False
    for arg, spec in c.items():
        al = _at(c, arg, line)
        if arg in CONSTRAINT_FLAGS and isinstance(spec, bool):
            if arg == "log":
                log = spec
            else:
                dry = spec
            continue
        where = f"rule {rule}: constraints.{arg}"
        before = len(errs.items)
        s = _mapping(spec, CONSTRAINT_KEYS, f"constraints.{arg}", al, errs)
        if s is None or len(errs.items) > before:
            continue
        if not s:
            errs.add(f"{where} has no checks", al)
            continue
        for k in ("min", "max"):
            if k in s and not _finite(s[k]):
                errs.add(f"{where}.{k} must be a finite number, got {s[k]!r:.40}", _at(s, k, al))
        if "min" in s and "max" in s and _finite(s["min"]) and _finite(s["max"]) and s["min"] > s["max"]:
            errs.add(f"{where}: min {s['min']} is above max {s['max']}", al)
        if "enum" in s:
            e = s["enum"]
            if not isinstance(e, list) or not e:
                errs.add(f"{where}.enum must be a non-empty list", _at(s, "enum", al))
            elif not all(x is None or isinstance(x, (str, bool, int)) or (isinstance(x, float) and math.isfinite(x))
                         for x in e):
                errs.add(f"{where}.enum holds only plain values (text, numbers, true/false, null)",
                         _at(s, "enum", al))
        if "regex" in s:
            from .rules import compile_regex

            try:
                compile_regex(s["regex"])
            except ValueError as ex:
                errs.add(f"{where}.regex does not compile: {ex}", _at(s, "regex", al))
        if "max_length" in s and (isinstance(s["max_length"], bool) or not isinstance(s["max_length"], int)
                                  or s["max_length"] < 0):
            errs.add(f"{where}.max_length must be a non-negative integer", _at(s, "max_length", al))
        if "path_under" in s:
            roots = s["path_under"]
            roots = [roots] if isinstance(roots, str) else roots
            if not isinstance(roots, list) or not roots or not all(
                    isinstance(x, str) and x.startswith("/") and "\x00" not in x for x in roots):
                errs.add(f"{where}.path_under must be an absolute path or a list of them", _at(s, "path_under", al))
        if len(errs.items) > before:
            continue
        out.append(compile_constraint(str(arg), s))
    return tuple(out), log, dry


def read_policy_text(path: str | Path) -> bytes:
    """The bytes of a policy file (bounded); a missing or unreadable file is a load error."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(yamlsafe.MAX_BYTES + 1)
    except FileNotFoundError:
        raise PolicyLoadError("no such policy file", 0, str(path)) from None
    except IsADirectoryError:
        raise PolicyLoadError("is a directory, not a policy file", 0, str(path)) from None
    except OSError as e:
        raise PolicyLoadError(f"cannot read: {e.strerror or e}", 0, str(path)) from None
    if len(data) > yamlsafe.MAX_BYTES:
        raise PolicyLoadError(f"larger than {yamlsafe.MAX_BYTES} bytes; a policy file is a page of rules",
                              0, str(path))
    return data


__all__ = ["ACTION_FAMILIES", "KERNEL_ACTIONS", "LDict", "LList", "PolicyLoadError", "PolicySpec", "TRUST_EVIDENCE",
           "TrustSettings",
           "extract_yaml", "normalise_action", "parse_policy", "read_policy_text"]
