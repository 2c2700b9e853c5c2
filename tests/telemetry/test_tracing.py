"""GenAI traces: span names, attributes and parentage following the process tree, checked
with an in-memory exporter; content only when opted in."""
from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF  # noqa: E402

from agentos import AllowAll, Kernel  # noqa: E402
from agentos.drivers.chat import ChatReply  # noqa: E402
from agentos.drivers.scripted import ScriptedChat  # noqa: E402
from agentos.drivers.tools import ToolsDriver, tool  # noqa: E402
from agentos.telemetry import GenAITracer, configure_tracing  # noqa: E402


@tool()
def add(a: int, b: int) -> int:
    return a + b


async def worker(sys, args):  # type: ignore[no-untyped-def]
    llm = await sys.open("llm")
    reply = await sys.read(llm, {"model": "tiny-1", "messages": [{"role": "user", "content": "SECRET PROMPT"}]})
    tools = await sys.open("tools")
    return reply, await sys.read(tools, {"tool": "add", "args": {"a": 1, "b": 2}})


async def crasher(sys, args):  # type: ignore[no-untyped-def]
    raise RuntimeError("boom")


async def init(sys, args):  # type: ignore[no-untyped-def]
    _, cap = await sys.spawn(worker, caps=["llm", "tools"], name="worker")
    await sys.waitpid(cap)
    _, cap2 = await sys.spawn(crasher, name="crasher")
    await sys.waitpid(cap2)
    return "ok"


def _run(capture: bool = False, provider: TracerProvider | None = None) -> tuple[InMemorySpanExporter, dict]:  # type: ignore[type-arg]
    exp = InMemorySpanExporter()
    tp = provider or TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exp))
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([ChatReply("an answer", prompt_tokens=11, completion_tokens=7, model="tiny-1")]))
    k.register_driver(ToolsDriver([add]))
    k.add_observer(GenAITracer(tp, capture_content=capture, provider_name="scripted"))
    assert k.run(init, grant=["llm", "tools"], name="boss").value == "ok"
    return exp, {s.name: s for s in exp.get_finished_spans()}


def test_spans_follow_the_process_tree_with_genai_attributes() -> None:
    exp, spans = _run()
    boss, work = spans["invoke_agent boss"], spans["invoke_agent worker"]
    chat, tool_ = spans["chat tiny-1"], spans["execute_tool add"]
    assert boss.parent is None and work.parent.span_id == boss.context.span_id
    assert chat.parent.span_id == work.context.span_id and tool_.parent.span_id == work.context.span_id
    assert len({s.context.trace_id for s in exp.get_finished_spans()}) == 1
    assert work.attributes["gen_ai.operation.name"] == "invoke_agent" and work.attributes["gen_ai.agent.name"] == "worker"
    a = chat.attributes
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == ("chat", "scripted", "tiny-1")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (11, 7)
    assert tool_.attributes["gen_ai.tool.name"] == "add" and tool_.attributes["gen_ai.operation.name"] == "execute_tool"
    guards = [s for s in exp.get_finished_spans() if s.name == "apply_guardrail"]
    assert {g.attributes["agentos.policy.action"] for g in guards} >= {"llm.chat", "tools.add"}
    assert all(g.parent.span_id == work.context.span_id for g in guards if g.attributes["agentos.pid"] == 2)


def test_a_faulting_process_span_has_an_error_status() -> None:
    _, spans = _run()
    crash = spans["invoke_agent crasher"]
    assert crash.status.status_code.name == "ERROR" and "boom" in crash.attributes["agentos.exit"]
    assert spans["invoke_agent worker"].status.status_code.name != "ERROR"


def test_prompt_text_is_recorded_only_when_opted_in() -> None:
    _, spans = _run()
    assert not any("SECRET PROMPT" in str(v) for s in spans.values() for v in s.attributes.values())
    _, spans = _run(capture=True)
    assert "SECRET PROMPT" in spans["chat tiny-1"].attributes["gen_ai.input.messages"]


def test_an_unsampled_provider_records_nothing_and_the_run_is_unchanged() -> None:
    exp, spans = _run(provider=TracerProvider(sampler=ALWAYS_OFF))
    assert spans == {}


def test_configure_tracing_refuses_a_bad_ratio_and_exports_otlp_from_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        configure_tracing(sample_ratio=float("nan"))
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    tp = configure_tracing(sample_ratio=0.01)
    assert "0.01" in tp.sampler.get_description()


class _NoSpans:
    """A tracer provider whose tracer fails the test if any span is started."""

    def get_tracer(self, *a, **kw):  # type: ignore[no-untyped-def]
        return self

    def start_span(self, *a, **kw):  # type: ignore[no-untyped-def]
        raise AssertionError("an unsampled trace reached OpenTelemetry")


def test_an_unsampled_trace_never_reaches_opentelemetry_and_leaves_the_journal_unhooked() -> None:
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([ChatReply("an answer", prompt_tokens=11, completion_tokens=7, model="tiny-1")]))
    k.register_driver(ToolsDriver([add]))
    tracer = GenAITracer(_NoSpans(), sample_ratio=0.0)
    k.add_observer(tracer)
    assert tracer._journaled not in k.journal.sinks
    assert k.run(init, grant=["llm", "tools"], name="boss").value == "ok"
    assert tracer.spans == {} and tracer.parents == {} and tracer.recording == 0


def test_the_journal_hook_is_wired_only_while_a_sampled_process_runs() -> None:
    exp = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exp))
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([ChatReply("an answer", prompt_tokens=11, completion_tokens=7, model="tiny-1")]))
    k.register_driver(ToolsDriver([add]))
    tracer = GenAITracer(tp, sample_ratio=1.0)
    k.add_observer(tracer)
    seen: list[bool] = []

    async def probe(sys, args):  # type: ignore[no-untyped-def]
        seen.append(tracer._journaled in k.journal.sinks)
        return await init(sys, args)

    assert k.run(probe, grant=["llm", "tools"], name="boss").value == "ok"
    assert seen == [True] and tracer._journaled not in k.journal.sinks
    assert {"chat tiny-1", "execute_tool add"} <= {s.name for s in exp.get_finished_spans()}


def test_sampling_is_decided_once_per_trace_and_children_follow_their_root() -> None:
    exp = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exp))
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([ChatReply("a", prompt_tokens=1, completion_tokens=1, model="m")] * 8))
    k.register_driver(ToolsDriver([add]))
    tracer = GenAITracer(tp, sample_ratio=0.5, trace_per_child_of_init=True)
    draws = iter([0.9, 0.1, 0.9, 0.1])          # off, on, off, on: one draw per trace root
    tracer._draw = lambda: next(draws)
    k.add_observer(tracer)

    async def host(sys, args):  # type: ignore[no-untyped-def]
        for i in range(4):
            _, cap = await sys.spawn(init, caps=["llm", "tools", "spawn"], name=f"job-{i}")
            await sys.waitpid(cap)

    k.run(host, grant=["llm", "tools"], name="host")
    spans = exp.get_finished_spans()
    roots = sorted(s.name for s in spans if s.parent is None and s.name.startswith("invoke_agent"))
    assert roots == ["invoke_agent job-1", "invoke_agent job-3"]      # init (the host) has no span
    assert len({s.context.trace_id for s in spans}) == 2              # one trace per sampled job
    assert sum(s.name == "invoke_agent worker" for s in spans) == 2   # children follow their root


def test_a_bad_sample_ratio_is_refused() -> None:
    for bad in (float("nan"), -0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError):
            GenAITracer(TracerProvider(), sample_ratio=bad)  # type: ignore[arg-type]


def test_the_standard_ratio_sampler_variables_sample_once_per_trace_in_the_tracer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import typer

    from agentos.cli.cmd_core import env_sample_ratio, maybe_trace

    assert env_sample_ratio({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}) == 0.01
    assert env_sample_ratio({"OTEL_TRACES_SAMPLER": "always_on"}) is None
    for bad in ("nan", "2", "-1", "lots"):
        with pytest.raises(typer.Exit):
            env_sample_ratio({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": bad})
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
    k = Kernel(deterministic=True, policy=AllowAll())
    provider = maybe_trace(k, True, served=True)
    [tracer] = [o for o in k.observers if isinstance(o, GenAITracer)]
    assert tracer.sample_ratio == 0.01 and tracer.per_child_of_init
    assert "1.0" in provider.sampler.get_description()      # never sampled twice
    provider.shutdown()
