"""Streaming PROV-O writers: Turtle and JSON-LD, one step at a time.

A writer holds nothing but the run's process ids and the previous step's IRIs, so export
time is linear in the number of steps and memory does not grow with them: steps come from
an iterator and their triples go straight to the output stream. Each step is an
`aos:InteractionRecord` (a prov:Activity) that `prov:used` the outputs of the steps it
depends on (its `after`: the same process's previous step, the senders' steps behind the
messages it received, its parent's step before the spawn; the run's input when none) and
`prov:wasInformedBy` those steps, whose own output `prov:wasGeneratedBy` it, that
`prov:wasAssociatedWith` the process that took it, with `prov:startedAtTime` and
`prov:endedAtTime`. A process is a `prov:Agent` (and `prov:SoftwareAgent`) that
`prov:actedOnBehalfOf` the process that spawned it. A step that does not know its
dependencies is chained to the one before it. A lesson a step stored is an `aos:Lesson`
(a prov:Entity) that `prov:wasGeneratedBy` that step and `prov:wasDerivedFrom` the step
it was learned from, in whichever run that was (a reinforced lesson gains the new
derivation and `prov:wasInfluencedBy` the step).
"""
from __future__ import annotations

import datetime as _dt
import json
from typing import TextIO

from .model import InteractionRecord, ReplayManifest

AOS = "https://agentos.dev/ns/prov#"
PROV = "http://www.w3.org/ns/prov#"
XSD = "http://www.w3.org/2001/XMLSchema#"


def run_iri(run_id: str) -> str:
    """The run's IRI. Anything but unreserved characters is percent-encoded, so any run id
    (spaces, quotes, `>`, non-ASCII) gives a valid IRI and the document still parses."""
    from urllib.parse import quote

    return f"urn:agentos:run:{quote(str(run_id), safe='-._~')}"


def lesson_iri(lesson_id: str) -> str:
    return f"urn:agentos:lesson:{lesson_id}"


def _safe_id(lesson_id: str) -> str:
    """Lesson ids are hex; anything else is percent-encoded so the IRI stays valid."""
    from urllib.parse import quote

    return quote(lesson_id, safe="")


def _lesson_nodes(s: InteractionRecord, step: str) -> list[tuple[str, dict[str, str | None]]]:
    out = []
    for l in s.lessons:
        src = f"{run_iri(l.source_run)}/step/{int(l.source_step)}" \
            if l.source_run is not None and l.source_step is not None else None
        out.append((lesson_iri(_safe_id(l.lesson_id)), {"id": l.lesson_id, "text": l.text, "src": src,
                                                       "gen": None if l.merged else step,
                                                       "infl": step if l.merged else None}))
    return out


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _dec(x: float) -> str:
    text = f"{x:.9f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _lit(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # JSON string escapes are valid Turtle escapes


class _Links:
    """What a step used and was informed by: its recorded dependencies (`after`), or, for a
    step that does not know them, the step before it in the order given."""

    __slots__ = ("base", "prev_step", "prev_out")

    def __init__(self, base: str) -> None:
        self.base = base
        self.prev_step: str | None = None
        self.prev_out = base + "/input"

    def of(self, s: InteractionRecord) -> tuple[list[str], list[str]]:
        if s.after is None:
            return [self.prev_out], [] if self.prev_step is None else [self.prev_step]
        steps = [f"{self.base}/step/{int(j)}" for j in s.after]
        return [st + "/out" for st in steps] or [self.base + "/input"], steps

    def done(self, step: str) -> None:
        self.prev_step, self.prev_out = step, step + "/out"


def _times(m: ReplayManifest, s: InteractionRecord) -> tuple[str, str] | None:
    """prov:startedAtTime and prov:endedAtTime, when the step knows when it started."""
    if s.started_ms is None:
        return None
    t0 = m.created_at + float(s.started_ms) / 1000.0
    return _iso(t0), _iso(t0 + max(0.0, float(s.elapsed_ms)) / 1000.0)


def _agent(base: str, pid: int) -> str:
    return f"{base}/agent/{int(pid)}"


def write_turtle(m: ReplayManifest, out: TextIO) -> int:
    base = run_iri(m.id)
    w = out.write
    w(f"@prefix aos: <{AOS}> .\n@prefix prov: <{PROV}> .\n@prefix xsd: <{XSD}> .\n\n")
    w(f"<{base}> a aos:ReplayManifest, prov:Entity ;\n  aos:id {_lit(m.id)} ;\n"
      f"  aos:process_id {int(m.process_id)} ;\n  aos:agent_id {_lit(m.agent_id)} ;\n"
      f"  aos:created_at \"{_iso(m.created_at)}\"^^xsd:dateTime")
    if m.initial_budget_usd is not None:
        w(f" ;\n  aos:initial_budget_usd \"{_dec(m.initial_budget_usd)}\"^^xsd:decimal")
    w(" .\n")
    w(f"<{base}/input> a prov:Entity .\n")
    agents: set[int] = set()
    links = _Links(base)
    n = 0
    for s in m.steps:
        pid = s.process_id if s.process_id is not None else m.process_id
        agent = _agent(base, pid)
        if pid not in agents and len(agents) < 65536:  # bounded: a run's processes, not its steps
            agents.add(pid)
            name = s.agent_id or (m.agent_id if pid == m.process_id else f"pid{pid}")
            w(f"<{agent}> a aos:Agent, prov:Agent, prov:SoftwareAgent ; aos:process_id {int(pid)} ; "
              f"aos:agent_id {_lit(name)}")
            if s.parent_process_id is not None:
                w(f" ;\n  prov:actedOnBehalfOf <{_agent(base, s.parent_process_id)}> .\n"
                  f"<{_agent(base, s.parent_process_id)}> a prov:Agent")
            w(" .\n")
        step = f"{base}/step/{s.index}"
        outv = step + "/out"
        used, informers = links.of(s)
        w(f"<{base}> aos:HAS_STEP <{step}> .\n")
        w(f"<{step}> a aos:InteractionRecord, prov:Activity ;\n  aos:step_id {_lit(s.step_id)} ;\n"
          f"  aos:step_type {_lit(s.step_type)} ;\n  aos:index {int(s.index)} ;\n"
          f"  aos:payload_json {_lit(s.payload_json)} ;\n"
          f"  aos:step_cost_usd \"{_dec(s.step_cost_usd)}\"^^xsd:decimal ;\n"
          f"  aos:step_tokens {int(s.step_tokens)} ;\n  aos:step_tool_calls {int(s.step_tool_calls)} ;\n"
          f"  aos:elapsed_ms \"{float(s.elapsed_ms)!r}\"^^xsd:double ;\n"
          f"  prov:used {', '.join(f'<{u}>' for u in used)} ;\n  prov:wasAssociatedWith <{agent}>")
        if informers:
            w(f" ;\n  prov:wasInformedBy {', '.join(f'<{i}>' for i in informers)}")
        times = _times(m, s)
        if times is not None:
            w(f" ;\n  prov:startedAtTime \"{times[0]}\"^^xsd:dateTime ;\n"
              f"  prov:endedAtTime \"{times[1]}\"^^xsd:dateTime")
        w(f" .\n<{outv}> a aos:StepOutput, prov:Entity ; prov:wasGeneratedBy <{step}> .\n")
        for iri, l in _lesson_nodes(s, step):
            w(f"<{iri}> a aos:Lesson, prov:Entity ; aos:lesson_id {_lit(l['id'] or '')} ; "
              f"aos:lesson_text {_lit(l['text'] or '')}")
            if l["gen"]:
                w(f" ;\n  prov:wasGeneratedBy <{l['gen']}>")
            if l["infl"]:
                w(f" ;\n  prov:wasInfluencedBy <{l['infl']}>")
            if l["src"]:
                w(f" ;\n  prov:wasDerivedFrom <{l['src']}>")
            w(" .\n")
        links.done(step)
        n += 1
    return n


_CONTEXT = {
    "aos": AOS, "prov": PROV, "xsd": XSD,
    "HAS_STEP": {"@id": "aos:HAS_STEP", "@type": "@id"},
    "used": {"@id": "prov:used", "@type": "@id"},
    "wasGeneratedBy": {"@id": "prov:wasGeneratedBy", "@type": "@id"},
    "wasAssociatedWith": {"@id": "prov:wasAssociatedWith", "@type": "@id"},
    "wasInformedBy": {"@id": "prov:wasInformedBy", "@type": "@id"},
    "wasDerivedFrom": {"@id": "prov:wasDerivedFrom", "@type": "@id"},
    "wasInfluencedBy": {"@id": "prov:wasInfluencedBy", "@type": "@id"},
    "actedOnBehalfOf": {"@id": "prov:actedOnBehalfOf", "@type": "@id"},
    "startedAtTime": {"@id": "prov:startedAtTime", "@type": "xsd:dateTime"},
    "endedAtTime": {"@id": "prov:endedAtTime", "@type": "xsd:dateTime"},
    "lesson_id": "aos:lesson_id", "lesson_text": "aos:lesson_text",
    "id": "aos:id", "agent_id": "aos:agent_id", "step_id": "aos:step_id", "step_type": "aos:step_type",
    "payload_json": "aos:payload_json",
    "process_id": {"@id": "aos:process_id", "@type": "xsd:integer"},
    "index": {"@id": "aos:index", "@type": "xsd:integer"},
    "step_tokens": {"@id": "aos:step_tokens", "@type": "xsd:integer"},
    "step_tool_calls": {"@id": "aos:step_tool_calls", "@type": "xsd:integer"},
    "created_at": {"@id": "aos:created_at", "@type": "xsd:dateTime"},
    "initial_budget_usd": {"@id": "aos:initial_budget_usd", "@type": "xsd:decimal"},
    "step_cost_usd": {"@id": "aos:step_cost_usd", "@type": "xsd:decimal"},
    "elapsed_ms": {"@id": "aos:elapsed_ms", "@type": "xsd:double"},
}


def write_jsonld(m: ReplayManifest, out: TextIO) -> int:
    base = run_iri(m.id)
    w = out.write
    dump = json.dumps
    w('{"@context": ' + dump(_CONTEXT) + ',\n "@graph": [\n')
    head = {"@id": base, "@type": ["aos:ReplayManifest", "prov:Entity"], "id": m.id,
            "process_id": str(int(m.process_id)), "agent_id": m.agent_id, "created_at": _iso(m.created_at)}
    if m.initial_budget_usd is not None:
        head["initial_budget_usd"] = _dec(m.initial_budget_usd)
    w("  " + dump(head, ensure_ascii=False))
    w(",\n  " + dump({"@id": base + "/input", "@type": "prov:Entity"}))
    agents: set[int] = set()
    links = _Links(base)
    n = 0
    for s in m.steps:
        pid = s.process_id if s.process_id is not None else m.process_id
        agent = _agent(base, pid)
        if pid not in agents and len(agents) < 65536:
            agents.add(pid)
            name = s.agent_id or (m.agent_id if pid == m.process_id else f"pid{pid}")
            anode: dict[str, object] = {"@id": agent, "@type": ["aos:Agent", "prov:Agent", "prov:SoftwareAgent"],
                                        "process_id": str(int(pid)), "agent_id": name}
            if s.parent_process_id is not None:
                anode["actedOnBehalfOf"] = _agent(base, s.parent_process_id)
            w(",\n  " + dump(anode, ensure_ascii=False))
            if s.parent_process_id is not None:
                w(",\n  " + dump({"@id": _agent(base, s.parent_process_id), "@type": "prov:Agent"}))
        step = f"{base}/step/{s.index}"
        used, informers = links.of(s)
        node: dict[str, object] = {
            "@id": step, "@type": ["aos:InteractionRecord", "prov:Activity"],
            "@reverse": {"HAS_STEP": {"@id": base}},
            "step_id": s.step_id, "step_type": s.step_type, "index": str(int(s.index)),
            "payload_json": s.payload_json, "step_cost_usd": _dec(s.step_cost_usd),
            "step_tokens": str(int(s.step_tokens)), "step_tool_calls": str(int(s.step_tool_calls)),
            "elapsed_ms": repr(float(s.elapsed_ms)),
            "used": used, "wasAssociatedWith": agent}
        if informers:
            node["wasInformedBy"] = informers
        times = _times(m, s)
        if times is not None:
            node["startedAtTime"], node["endedAtTime"] = times
        w(",\n  " + dump(node, ensure_ascii=False))
        w(",\n  " + dump({"@id": step + "/out", "@type": ["aos:StepOutput", "prov:Entity"],
                          "wasGeneratedBy": step}))
        for iri, l in _lesson_nodes(s, step):
            lnode: dict[str, object] = {"@id": iri, "@type": ["aos:Lesson", "prov:Entity"],
                                        "lesson_id": l["id"], "lesson_text": l["text"]}
            for key, name in (("gen", "wasGeneratedBy"), ("infl", "wasInfluencedBy"), ("src", "wasDerivedFrom")):
                if l[key]:
                    lnode[name] = l[key]
            w(",\n  " + dump(lnode, ensure_ascii=False))
        links.done(step)
        n += 1
    w("\n ]}\n")
    return n


def write(m: ReplayManifest, out: TextIO, format: str = "turtle") -> int:
    """Write `m` to `out`; returns the number of steps written."""
    fmt = format.lower().replace("-", "")
    if fmt in ("turtle", "ttl"):
        return write_turtle(m, out)
    if fmt in ("jsonld", "json"):
        return write_jsonld(m, out)
    raise ValueError(f"unknown provenance format {format!r}: use 'turtle' or 'jsonld'")


__all__ = ["AOS", "PROV", "lesson_iri", "run_iri", "write", "write_jsonld", "write_turtle"]
