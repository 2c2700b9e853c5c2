"""Telemetry for a kernel: OpenTelemetry traces following the GenAI semantic conventions.

`GenAITracer` is a kernel `Observer`; `configure_tracing()` builds a tracer provider the
standard way (OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set). opentelemetry-sdk
is an optional extra (`agentos[otel]`), imported only when a tracer is made.
"""
from __future__ import annotations

from typing import Any

__all__ = ["GenAITracer", "configure_tracing"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import tracing

        return getattr(tracing, name)
    raise AttributeError(name)
