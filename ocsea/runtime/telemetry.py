"""OpenTelemetry tracing: one provider per process, OTLP export when configured.

Span attributes carry ids and messaging metadata (OpenTelemetry messaging semantic
conventions, via FastStream's Kafka middleware), never report content.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_provider: TracerProvider | None = None


def tracer_provider(service_name: str = "ocsea") -> TracerProvider:
    """The process's provider, created on first use and installed globally."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(_provider)
    return _provider


def add_span_processor(processor: SpanProcessor) -> None:
    """For tests that inspect spans (e.g. that no personal data reaches an attribute)."""
    tracer_provider().add_span_processor(processor)
