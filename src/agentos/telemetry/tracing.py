"""OpenTelemetry traces of a kernel, in the GenAI semantic conventions.

Spans (parent/child follow the process tree):
  - `invoke_agent {name}` per process, from spawn to exit (`gen_ai.operation.name`
    invoke_agent, `gen_ai.agent.name`, `gen_ai.agent.id` = pid; exit reason; an error
    status when the process faulted, was killed or ran out of budget);
  - `chat {model}` per LLM call (`gen_ai.provider.name`, `gen_ai.request.model`,
    `gen_ai.response.model`, `gen_ai.usage.input_tokens` / `output_tokens`);
  - `execute_tool {name}` per tool call (`gen_ai.tool.name`);
  - `apply_guardrail` per policy decision (`agentos.policy.action`, `.allowed`, `.rule`).
Prompt and completion text is recorded (`gen_ai.input.messages`, `gen_ai.output.messages`)
only with `capture_content=True`.

The tracer is a kernel `Observer`: process spans open at `spawned` and close at `exited`;
driver calls are seen at `journaled` (the result, as journaled) and policy decisions in
the event batches (`flushed`). A driver call's span ends when its result is journaled and
starts at the time of the process's request when that event was already seen, else at
its end (then it has no duration). Hooks run on the kernel's thread and never block:
exporting is the span processor's business (batch it for production).
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from ..abi.types import ExitKind
from ..kernel.observer import Observer

OP = "gen_ai.operation.name"
_BAD_EXITS = {ExitKind.FAULT, ExitKind.KILLED, ExitKind.QUOTA, ExitKind.POLICY, ExitKind.DEADLINE}


def configure_tracing(service_name: str = "agentos", *, sample_ratio: float | None = None) -> Any:
    """A TracerProvider set up from the environment: OTLP/HTTP export when
    OTEL_EXPORTER_OTLP_ENDPOINT is set (the standard variables configure it), and a
    parent-based ratio sampler when `sample_ratio` is given (else OTEL_TRACES_SAMPLER)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    kw: dict[str, Any] = {"resource": Resource.create({"service.name": service_name})}
    if sample_ratio is not None:
        if not (0.0 <= sample_ratio <= 1.0):
            raise ValueError(f"sample_ratio must be in [0, 1], got {sample_ratio!r}")
        kw["sampler"] = ParentBased(TraceIdRatioBased(sample_ratio))
    provider = TracerProvider(**kw)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _usage(value: Any) -> tuple[int | None, int | None, str | None]:
    """(input tokens, output tokens, response model) from a chat result, dict or object."""
    if isinstance(value, dict):
        raw = value.get("usage")
        u: dict[str, Any] = raw if isinstance(raw, dict) else {}
        model = value.get("model")
        return u.get("prompt_tokens"), u.get("completion_tokens"), model if isinstance(model, str) else None
    p = getattr(value, "prompt_tokens", None)
    c = getattr(value, "completion_tokens", None)
    m = getattr(value, "model", None)
    return (p if isinstance(p, int) else None, c if isinstance(c, int) else None, m if isinstance(m, str) else None)


def _sampled(span: Any) -> bool:
    """Whether `span` was sampled (still true once it ended, unlike is_recording)."""
    return bool(span.get_span_context().trace_flags.sampled)


def _text(x: Any, limit: int = 16_000) -> str:
    try:
        s = json.dumps(x, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        s = repr(x)
    return s[:limit]


_OFF = None      # spans[pid] for a process in an unsampled trace: no span, no OTel call
_HOST = False    # spans[pid] for a served kernel's init: each of its children starts a trace


class GenAITracer(Observer):
    """Spans for a kernel's processes, LLM calls, tool calls and policy decisions.

    Sampling is decided once per trace, at its root process, before any span work: with
    `sample_ratio` the tracer draws it itself (an unsampled trace never reaches
    OpenTelemetry), else the provider's sampler decides at the root's span. A process in
    an unsampled trace costs a dict entry; the journal hook is wired only while a sampled
    process runs. `trace_per_child_of_init=True` (a served kernel, whose init only waits)
    makes each child of init the root of a trace of its own.
    """

    def __init__(self, tracer_provider: Any = None, *, capture_content: bool = False,
                 provider_name: str | None = None, sample_ratio: float | None = None,
                 trace_per_child_of_init: bool = False) -> None:
        from opentelemetry import trace

        if sample_ratio is not None and not (isinstance(sample_ratio, (int, float))
                                             and not isinstance(sample_ratio, bool) and 0.0 <= sample_ratio <= 1.0):
            raise ValueError(f"sample_ratio must be a number in [0, 1], got {sample_ratio!r}")
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer = provider.get_tracer("agentos")
        self.trace = trace
        self.capture_content = capture_content
        self.provider_name = provider_name
        self.sample_ratio = sample_ratio
        self.per_child_of_init = trace_per_child_of_init
        self._draw = random.random
        self.spans: dict[int, Any] = {}       # live processes: span, _OFF (unsampled) or _HOST
        self.parents: dict[int, Any] = {}     # sampled process spans until their exit event is flushed
        self.requested: dict[int, int] = {}   # pid -> ns of its last driver request seen
        self.kernel: Any = None
        self._epoch_ns = 0
        self.recording = 0                    # open process spans that are sampled
        self.closing: set[int] = set()        # sampled processes ended, exit event not yet seen
        self._sinks: Any = None               # the kernel journal's sink list, when it has one

    # -- time: kernel ms -> epoch ns ------------------------------------------------------
    def attached(self, kernel: Any) -> None:
        self.kernel = kernel
        self._epoch_ns = time.time_ns() - int(kernel.clock.now() * 1e6)
        journal = getattr(kernel, "journal", None)
        self._sinks = journal.sinks if journal is not None else None
        # raw batches: no Event objects are built for this tracer, and an unsampled run
        # costs one truth test per batch
        kernel.events.add_raw_sink(self._raw)

    def _ns(self, kernel_ms: float | None = None) -> int:
        if self.kernel is None:
            return time.time_ns()
        ms = self.kernel.clock.now() if kernel_ms is None else kernel_ms
        if self.kernel.clock.virtual:
            return time.time_ns() if kernel_ms is None else self._epoch_ns + int(ms * 1e6)
        return self._epoch_ns + int(ms * 1e6)

    def _ctx(self, pid: int | None) -> Any:
        span = self.parents.get(pid) if pid is not None else None
        return self.trace.set_span_in_context(span) if span is not None else None

    # -- hooks ------------------------------------------------------------------------------
    def spawned(self, proc: Any) -> None:
        parent = proc.parent
        ppid = parent.pid if parent is not None else None
        pspan = self.spans.get(ppid, _HOST) if ppid is not None else _HOST
        if pspan is _OFF:
            self.spans[proc.pid] = _OFF     # in an unsampled trace: nothing to do, ever
            return
        if pspan is _HOST:                  # the root of a trace: sampled or not, once
            if ppid is None and self.per_child_of_init:
                self.spans[proc.pid] = _HOST
                return
            if self.sample_ratio is not None and (self.sample_ratio <= 0.0 or self._draw() >= self.sample_ratio):
                self.spans[proc.pid] = _OFF
                return
            context = None
        else:
            context = self.trace.set_span_in_context(pspan)  # type: ignore[arg-type]
        span = self.tracer.start_span(
            f"invoke_agent {proc.name}", context=context, start_time=self._ns(),
            attributes={OP: "invoke_agent", "gen_ai.agent.name": str(proc.name), "gen_ai.agent.id": str(proc.pid),
                        "agentos.pid": proc.pid, "agentos.parent_pid": ppid or 0})
        if not _sampled(span):              # the provider's sampler said no: the whole trace is off
            self.spans[proc.pid] = _OFF
            return
        self.spans[proc.pid] = self.parents[proc.pid] = span
        self.recording += 1
        if self.recording == 1 and self._sinks is not None and self._journaled not in self._sinks:
            self._sinks.append(self._journaled)

    def exited(self, proc: Any, reason: Any) -> None:
        span = self.spans.pop(proc.pid, _OFF)
        if span is _OFF or span is _HOST:
            return
        self.requested.pop(proc.pid, None)
        self.recording -= 1
        if self.recording == 0 and self._sinks is not None and self._journaled in self._sinks:
            self._sinks.remove(self._journaled)
        self.closing.add(proc.pid)  # its parent span is kept until its exit event is seen
        span.set_attribute("agentos.exit", str(reason))
        if getattr(reason, "kind", None) in _BAD_EXITS:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, str(reason)[:500]))
            span.set_attribute("error.type", getattr(reason.kind, "value", "error"))
        span.end(end_time=self._ns())

    def _raw(self, batch: list[tuple[float, int, str, Any]], first_seq: int = 0) -> None:
        if not self.recording and not self.closing:
            return
        parents = self.parents
        for t, pid, kind, data in batch:
            if pid not in parents:
                continue                    # the kernel, or a process in an unsampled trace
            if kind == "sys":
                if type(data).__name__ in ("Read", "Write"):
                    self.requested[pid] = self._ns(t)
            elif kind == "policy" and isinstance(data, tuple) and len(data) >= 3:
                at = self._ns(t)
                span = self.tracer.start_span("apply_guardrail", context=self._ctx(pid), start_time=at,
                                              attributes={OP: "apply_guardrail", "agentos.policy.action": str(data[0]),
                                                          "agentos.policy.allowed": bool(data[1]),
                                                          "agentos.policy.rule": str(data[2]), "agentos.pid": pid})
                span.end(end_time=at)
            elif kind == "exit":
                parents.pop(pid, None)  # events of this process after its exit: none
                self.closing.discard(pid)

    def _journaled(self, entry: Any) -> None:
        """A journal sink, wired only while a sampled process runs (see `spawned`)."""
        if entry.op not in ("read", "write") or entry.pid not in self.parents:
            return
        end = self._ns()
        start = min(self.requested.pop(entry.pid, end), end)
        action = entry.action or f"{entry.device}.{entry.op}"
        req = entry.request if isinstance(entry.request, dict) else {}
        if action.endswith(".chat"):
            model = req.get("model") if isinstance(req.get("model"), str) else None
            inp, out, resp_model = _usage(entry.value)
            attrs: dict[str, Any] = {OP: "chat", "gen_ai.provider.name": self.provider_name or entry.device,
                                     "agentos.pid": entry.pid}
            if model or resp_model:
                attrs["gen_ai.request.model"] = model or resp_model
            if resp_model:
                attrs["gen_ai.response.model"] = resp_model
            if inp is None and out is None and entry.tokens:
                inp, out = entry.tokens, 0
            if inp is not None:
                attrs["gen_ai.usage.input_tokens"] = inp
            if out is not None:
                attrs["gen_ai.usage.output_tokens"] = out
            if self.capture_content:
                attrs["gen_ai.input.messages"] = _text(req.get("messages"))
                attrs["gen_ai.output.messages"] = _text(entry.value)
            name = f"chat {attrs.get('gen_ai.request.model', entry.device)}"
        else:
            tool = req.get("tool") if isinstance(req.get("tool"), str) else action
            attrs = {OP: "execute_tool", "gen_ai.tool.name": tool, "agentos.action": action, "agentos.pid": entry.pid}
            if self.capture_content:
                attrs["gen_ai.tool.call.arguments"] = _text(req.get("args"))
                attrs["gen_ai.tool.call.result"] = _text(entry.value)
            name = f"execute_tool {tool}"
        span = self.tracer.start_span(name, context=self._ctx(entry.pid), start_time=start, attributes=attrs)
        if not entry.ok:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, str(entry.value)[:500]))
            span.set_attribute("error.type", entry.error_type or "error")
        span.end(end_time=end)


__all__ = ["GenAITracer", "configure_tracing"]
