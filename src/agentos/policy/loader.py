"""Loading `.agents/security.md`: Markdown with one fenced yaml block, or plain YAML.

Validation is strict and every error names its line in the file: an unknown key,
action family, tool, ontology class, signal, mode or effect is a `PolicyLoadError`,
never a silent allow. Duplicate keys are errors too (YAML would keep the last one).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..abi.errors import AgentOSError
from ..abi.types import Signal
from .rules import Rule, compile_constraint, parse_rate


class PolicyLoadError(AgentOSError):
    """A policy file that does not load; `line` is 1-based in the file (0: unknown)."""

    def __init__(self, message: str, line: int = 0, path: str = "") -> None:
        where = f"{path or 'policy'}:{line}: " if line else (f"{path}: " if path else "")
        super().__init__(where + message)
        self.line = line
        self.path = path


# Action families the kernel's drivers and syscalls name (`<family>.<op>`), and kernel actions.
ACTION_FAMILIES = frozenset({"tools", "kv", "llm", "local", "mcp", "wasm", "worker", "gateway",
                             "secure_gateway", "vfs", "sandbox", "net", "lessons", "runs"})
FAMILY_OPS = {"kv": frozenset({"get", "keys", "has", "set", "delete"}),
              "vfs": frozenset({"read", "write", "list"}),
              "lessons": frozenset({"recall", "get", "list", "stats", "add", "forget", "prune"}),
              "runs": frozenset({"list", "digest"})}
KERNEL_ACTIONS = frozenset({"spawn", "send", "signal", "spawn_remote", "dial"})
MODES = ("strict", "permissive", "audit")
TOP_KEYS = {"kernel", "signals", "policies", "guardrails", "observability"}
KERNEL_KEYS = {"version", "mode"}
RULE_KEYS = {"name", "action", "actions", "class", "classes", "effect", "mode", "requires_approval",
             "approval_timeout", "rate_limit", "rate_per", "constraints", "description"}
CONSTRAINT_KEYS = {"min", "max", "enum", "regex", "path_under", "max_length"}
GUARDRAIL_KEYS = {"ontology", "reasoner", "tools"}
OBSERVABILITY_KEYS = {"metrics", "traces", "flight_recorder", "audit_dir", "durability"}
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


class LDict(dict):
    """A mapping that remembers the line of each key."""
    line = 0
    lines: dict[Any, int]


class LList(list):
    line = 0
    lines: list[int]


def _yaml_loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any) -> LDict:
        m = LDict()
        m.line = node.start_mark.line + 1
        m.lines = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            kline = knode.start_mark.line + 1
            if key in m:
                raise PolicyLoadError(f"duplicate key {key!r} (first at line {m.lines[key]})", kline)
            m[key] = loader.construct_object(vnode, deep=True)
            m.lines[key] = kline
        return m

    def sequence(loader: Any, node: Any) -> LList:
        s = LList(loader.construct_object(n, deep=True) for n in node.value)
        s.line = node.start_mark.line + 1
        s.lines = [n.start_mark.line + 1 for n in node.value]
        return s

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


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


@dataclass
class PolicySpec:
    version: str
    mode: str
    rules: list[Rule]
    signals: tuple[Signal, ...] = ()
    ontology: str | None = None
    reasoner: str = "auto"
    tool_classes: dict[str, str] = field(default_factory=dict)
    tool_class_lines: dict[str, int] = field(default_factory=dict)
    observability: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    class_lines: list[tuple[str, int]] = field(default_factory=list)


def parse_duration_ms(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if v <= 0:
            raise ValueError("must be positive")
        return float(v) * 1000.0  # a bare number is seconds
    m = _DURATION.match(str(v)) if isinstance(v, str) else None
    if not m:
        raise ValueError(f"{v!r} is not a duration like 30s, 500ms, 5m")
    n = float(m.group(1))
    unit = m.group(2) or "s"
    ms = n * {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]
    if ms <= 0:
        raise ValueError("must be positive")
    return ms


def normalise_action(name: str, *, known_tools: Iterable[str] | None, line: int, path: str,
                     extra_families: Iterable[str] = ()) -> str:
    if not isinstance(name, str) or not name:
        raise PolicyLoadError(f"an action must be a non-empty string, got {name!r}", line, path)
    if name == "*" or name in KERNEL_ACTIONS:
        return name
    families = ACTION_FAMILIES | set(extra_families)
    if "." not in name:
        if not _TOOL_NAME.match(name):
            raise PolicyLoadError(f"{name!r} is not an action or tool name", line, path)
        name = f"tools.{name}"
    fam, _, op = name.partition(".")
    if fam not in families:
        raise PolicyLoadError(f"unknown action {name!r}: {fam!r} is not an action family "
                              f"(known: {', '.join(sorted(families | KERNEL_ACTIONS))})", line, path)
    if op == "*":
        return name
    if fam in FAMILY_OPS and op not in FAMILY_OPS[fam]:
        raise PolicyLoadError(f"unknown action {name!r}: {fam} actions are "
                              f"{', '.join(sorted(FAMILY_OPS[fam]))}", line, path)
    if fam == "tools" and known_tools is not None and op not in set(known_tools) and op != "list":
        raise PolicyLoadError(f"unknown tool {op!r} (known tools: {', '.join(sorted(known_tools)) or 'none'})",
                              line, path)
    if not op:
        raise PolicyLoadError(f"action {name!r} has no operation after the dot", line, path)
    return name


def _keys(d: Any, allowed: set[str], what: str, path: str, line: int) -> LDict:
    if not isinstance(d, dict):
        raise PolicyLoadError(f"{what} must be a mapping, got {type(d).__name__}", line, path)
    for k in d:
        if k not in allowed:
            kl = getattr(d, "lines", {}).get(k, line)
            raise PolicyLoadError(f"unknown key {k!r} in {what} (allowed: {', '.join(sorted(allowed))})", kl, path)
    return d  # type: ignore[return-value]


def parse_policy(text: str, *, path: str = "", known_tools: Iterable[str] | None = None,
                 extra_families: Iterable[str] = ()) -> PolicySpec:
    """Parse and validate policy text. Ontology classes are checked later, against the index."""
    import yaml

    body, offset = extract_yaml(text, path)
    tools = None if known_tools is None else list(known_tools)
    try:
        doc = yaml.load(body, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except PolicyLoadError as e:
        raise PolicyLoadError(str(e).split(": ", 1)[-1], e.line + offset, path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = (mark.line + 1 + offset) if mark is not None else 0
        raise PolicyLoadError(f"not valid YAML: {getattr(e, 'problem', None) or e}", line, path) from None
    if not isinstance(doc, dict):
        raise PolicyLoadError("the policy must be a mapping with kernel: and policies:", offset + 1, path)
    _shift(doc, offset)

    def at(d: Any, k: Any) -> int:
        return getattr(d, "lines", {}).get(k, getattr(d, "line", 0)) if isinstance(d, dict) else offset

    def lline(lst: Any, i: int) -> int:
        return lst.lines[i] if isinstance(lst, LList) else offset

    _keys(doc, TOP_KEYS, "the policy", path, offset + 1)
    if "kernel" not in doc:
        raise PolicyLoadError("missing the kernel: section (version and mode)", offset + 1, path)
    kern = _keys(doc["kernel"], KERNEL_KEYS, "kernel", path, at(doc, "kernel"))
    mode = kern.get("mode", "strict")
    if mode not in MODES:
        raise PolicyLoadError(f"kernel.mode must be one of {', '.join(MODES)}, got {mode!r}", at(kern, "mode"), path)
    version = str(kern.get("version", "1.0"))

    signals: list[Signal] = []
    sigs = doc.get("signals", [])
    if not isinstance(sigs, list):
        raise PolicyLoadError("signals must be a list of signal names", at(doc, "signals"), path)
    for i, s in enumerate(sigs):
        try:
            signals.append(Signal[str(s)])
        except KeyError:
            raise PolicyLoadError(f"unknown signal {s!r} (known: {', '.join(x.name for x in Signal)})",
                                  lline(sigs, i), path) from None

    guard = _keys(doc.get("guardrails") or LDict(), GUARDRAIL_KEYS, "guardrails", path, at(doc, "guardrails"))
    ontology = guard.get("ontology")
    if ontology is not None and not isinstance(ontology, str):
        raise PolicyLoadError("guardrails.ontology must be a file path", at(guard, "ontology"), path)
    reasoner = guard.get("reasoner", "auto")
    if reasoner not in ("auto", "hermit", "told"):
        raise PolicyLoadError(f"guardrails.reasoner must be auto, hermit or told, got {reasoner!r}",
                              at(guard, "reasoner"), path)
    tool_classes: dict[str, str] = {}
    tool_class_lines: dict[str, int] = {}
    tmap = guard.get("tools") or LDict()
    if not isinstance(tmap, dict):
        raise PolicyLoadError("guardrails.tools maps tool names to ontology classes", at(guard, "tools"), path)
    for tname, cls in tmap.items():
        if tools is not None and tname not in tools:
            raise PolicyLoadError(f"unknown tool {tname!r} in guardrails.tools", at(tmap, tname), path)
        if not isinstance(cls, str):
            raise PolicyLoadError(f"the class of tool {tname!r} must be a class name", at(tmap, tname), path)
        tool_classes[str(tname)] = cls
        tool_class_lines[str(tname)] = at(tmap, tname)

    obs = _keys(doc.get("observability") or LDict(), OBSERVABILITY_KEYS, "observability", path,
                at(doc, "observability"))
    if "durability" in obs and obs["durability"] not in ("fsync", "os"):
        raise PolicyLoadError("observability.durability must be fsync or os", at(obs, "durability"), path)

    pols = doc.get("policies")
    if pols is None:
        raise PolicyLoadError("missing the policies: list", offset + 1, path)
    if not isinstance(pols, list):
        raise PolicyLoadError("policies must be a list of rules", at(doc, "policies"), path)
    rules: list[Rule] = []
    class_lines: list[tuple[str, int]] = []
    for i, r in enumerate(pols):
        rl = lline(pols, i)
        r = _keys(r, RULE_KEYS, f"policies[{i}]", path, rl)
        acts_raw: list[Any] = []
        for k in ("action", "actions"):
            if k in r:
                v = r[k]
                acts_raw += [(x, lline(v, j)) for j, x in enumerate(v)] if isinstance(v, list) else [(v, at(r, k))]
        cls_raw: list[Any] = []
        for k in ("class", "classes"):
            if k in r:
                v = r[k]
                cls_raw += [(x, lline(v, j)) for j, x in enumerate(v)] if isinstance(v, list) else [(v, at(r, k))]
        if not acts_raw and not cls_raw:
            raise PolicyLoadError(f"policies[{i}] names no action and no class", rl, path)
        actions = tuple(normalise_action(a, known_tools=tools, line=ln, path=path, extra_families=extra_families)
                        for a, ln in acts_raw)
        for c, ln in cls_raw:
            if not isinstance(c, str) or not c:
                raise PolicyLoadError(f"an ontology class must be a name, got {c!r}", ln, path)
            class_lines.append((c, ln))
        if cls_raw and ontology is None:
            raise PolicyLoadError("a rule names an ontology class but guardrails.ontology is not set",
                                  cls_raw[0][1], path)
        effect = r.get("effect")
        if effect not in ("allow", "deny"):
            raise PolicyLoadError(f"effect must be allow or deny, got {effect!r}", at(r, "effect") if "effect" in r else rl, path)
        rmode = r.get("mode")
        if rmode is not None and rmode not in ("read_only", "read_write"):
            raise PolicyLoadError(f"mode must be read_only or read_write, got {rmode!r}", at(r, "mode"), path)
        appr = r.get("requires_approval", False)
        if not isinstance(appr, bool):
            raise PolicyLoadError("requires_approval must be true or false", at(r, "requires_approval"), path)
        timeout = None
        if "approval_timeout" in r:
            try:
                timeout = parse_duration_ms(r["approval_timeout"])
            except ValueError as e:
                raise PolicyLoadError(f"approval_timeout: {e}", at(r, "approval_timeout"), path) from None
        rate = None
        if "rate_limit" in r:
            try:
                rate = parse_rate(r["rate_limit"])
            except ValueError as e:
                raise PolicyLoadError(str(e), at(r, "rate_limit"), path) from None
        per = r.get("rate_per", "kernel")
        if per not in ("kernel", "process"):
            raise PolicyLoadError(f"rate_per must be kernel or process, got {per!r}", at(r, "rate_per"), path)
        checks, log = _constraints(r.get("constraints"), at(r, "constraints"), path)
        name = r.get("name") or f"policies[{i}]:{(acts_raw or cls_raw)[0][0]}"
        if effect == "deny" and (appr or rate or rmode):
            raise PolicyLoadError("a deny rule cannot carry requires_approval, rate_limit or mode", rl, path)
        rules.append(Rule(str(name), rl, effect, actions, tuple(c for c, _ in cls_raw), rmode, appr, timeout,
                          rate, per, checks, log))
    return PolicySpec(version, mode, rules, tuple(signals), ontology, reasoner, tool_classes,
                      tool_class_lines, dict(obs), path, class_lines)


def _shift(obj: Any, offset: int) -> None:
    """Make every remembered line a line of the file, not of the yaml block."""
    if isinstance(obj, LDict):
        obj.line += offset
        obj.lines = {k: v + offset for k, v in obj.lines.items()}
        for v in obj.values():
            _shift(v, offset)
    elif isinstance(obj, LList):
        obj.line += offset
        obj.lines = [v + offset for v in obj.lines]
        for v in obj:
            _shift(v, offset)


def _constraints(c: Any, line: int, path: str) -> tuple[tuple[Any, ...], bool]:
    if c is None:
        return (), False
    if not isinstance(c, dict):
        raise PolicyLoadError("constraints must map argument names to checks", line, path)
    out = []
    log = False
    for arg, spec in c.items():
        al = c.lines.get(arg, line) if isinstance(c, LDict) else line
        if arg == "log" and isinstance(spec, bool):
            log = spec
            continue
        spec = _keys(spec, CONSTRAINT_KEYS, f"constraints.{arg}", path, al)
        if not spec:
            raise PolicyLoadError(f"constraints.{arg} has no checks", al, path)
        for k in ("min", "max"):
            if k in spec and (isinstance(spec[k], bool) or not isinstance(spec[k], (int, float))):
                raise PolicyLoadError(f"constraints.{arg}.{k} must be a number", al, path)
        if "enum" in spec and (not isinstance(spec["enum"], list) or not spec["enum"]):
            raise PolicyLoadError(f"constraints.{arg}.enum must be a non-empty list", al, path)
        if "regex" in spec:
            try:
                re.compile(spec["regex"])
            except (re.error, TypeError) as e:
                raise PolicyLoadError(f"constraints.{arg}.regex does not compile: {e}", al, path) from None
        if "max_length" in spec and (not isinstance(spec["max_length"], int) or spec["max_length"] < 0):
            raise PolicyLoadError(f"constraints.{arg}.max_length must be a non-negative integer", al, path)
        if "path_under" in spec:
            roots = spec["path_under"]
            roots = [roots] if isinstance(roots, str) else roots
            if not isinstance(roots, list) or not roots or not all(isinstance(x, str) and x.startswith("/") for x in roots):
                raise PolicyLoadError(f"constraints.{arg}.path_under must be an absolute path or a list of them",
                                      al, path)
        out.append(compile_constraint(str(arg), spec))
    return tuple(out), log


def read_policy_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyLoadError("no such policy file", 0, str(path)) from None
