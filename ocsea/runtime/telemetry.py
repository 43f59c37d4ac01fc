"""OpenTelemetry tracing: one provider per process, OTLP export when configured.

Span attributes carry ids and messaging metadata (OpenTelemetry messaging semantic
conventions, via FastStream's Kafka middleware), never report content.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

_provider: TracerProvider | None = None


class JsonLinesSpanExporter(SpanExporter):
    """One JSON object per finished span, appended to a file (Kafka keys are bytes: decoded)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            record = {
                "name": span.name,
                "trace_id": format(context.trace_id, "032x") if context else None,
                "span_id": format(context.span_id, "016x") if context else None,
                "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                "kind": span.kind.name,
                "start": span.start_time,
                "end": span.end_time,
                "service": span.resource.attributes.get("service.name"),
                "attributes": dict(span.attributes or {}),
                "events": [
                    {"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events
                ],
            }
            lines.append(json.dumps(record, default=_jsonable) + "\n")
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.writelines(lines)
        return SpanExportResult.SUCCESS


def _jsonable(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


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
        trace_file = os.environ.get("OCSEA_TRACE_FILE")
        if trace_file:
            # A local JSON-lines span log, for debugging without a collector and for the
            # test that proves no personal data reaches a span.
            _provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(trace_file)))
        trace.set_tracer_provider(_provider)
    return _provider


def add_span_processor(processor: SpanProcessor) -> None:
    """For tests that inspect spans (e.g. that no personal data reaches an attribute)."""
    tracer_provider().add_span_processor(processor)
