"""OpenTelemetry tracing: one provider per process, and only when spans have somewhere to go.

Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) or `OCSEA_TRACE_FILE`
is set. Then the process gets an SDK provider named after its service (`service.name`), and
FastAPI, Redis, SQLAlchemy, httpx and FastStream's Kafka middleware are instrumented, with
the stable HTTP and database semantic conventions. With neither set nothing is instrumented
and no span is ever made: the services pay nothing for tracing they do not export.

W3C trace context is the only thing propagated (no baggage: a partner's baggage header is
untrusted input that must not travel on). Span attributes carry ids, routes, statement shapes
and messaging metadata, never report content: Redis commands appear as `SET ? ?`, SQL with
its placeholders only, URLs without their query values or credentials.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

P = ParamSpec("P")
R = TypeVar("R")

_provider: TracerProvider | None = None  # set while this process traces
_installed: TracerProvider | None = None  # the global provider, once installed
_decided = False
_tracer = trace.get_tracer("ocsea")

# Health checks and scrapes every few seconds would drown the traces that matter.
_UNTRACED_PATHS = "/healthz,/readyz,/metrics"
REDACTED = "REDACTED"


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
                "links": [
                    {
                        "trace_id": format(link.context.trace_id, "032x"),
                        "span_id": format(link.context.span_id, "016x"),
                    }
                    for link in span.links
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


def _configured_processors() -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    trace_file = os.environ.get("OCSEA_TRACE_FILE")
    if trace_file:
        # A local JSON-lines span log, for debugging without a collector and for the tests
        # that follow a report's trace and prove no personal data reaches a span.
        processors.append(SimpleSpanProcessor(JsonLinesSpanExporter(trace_file)))
    return processors


def tracer_provider(service_name: str = "ocsea") -> TracerProvider | None:
    """The process's provider, decided on first use: None when no exporter is configured
    (then nothing is instrumented and every span is a no-op)."""
    global _decided
    if not _decided:
        _decided = True
        processors = _configured_processors()
        if processors:
            _install(service_name, processors)
    return _provider


def tracing() -> bool:
    """Whether this process records spans."""
    return _provider is not None


@contextmanager
def recording_spans(processor: SpanProcessor, service_name: str = "ocsea") -> Iterator[None]:
    """Tracing on in this process while inside, spans going (also) to `processor`: for tests
    that inspect spans in memory. Objects built inside are traced; on leaving, the processor
    is shut down and a process that was not tracing before stops again (its clients are no
    longer instrumented), so later tests in the process are not traced."""
    global _decided, _provider
    before = (_decided, _provider)
    _decided = True
    provider = _provider or _install(service_name, [])
    provider.add_span_processor(processor)
    try:
        yield
    finally:
        processor.shutdown()
        if before[1] is None:
            _uninstrument_clients()
            _decided, _provider = before


def _install(service_name: str, processors: Sequence[SpanProcessor]) -> TracerProvider:
    global _provider, _installed
    if _installed is None:
        # The stable HTTP and database conventions (`url.path`, `http.route`,
        # `db.query.text`…), unless the deployment chose otherwise; read once, when the first
        # instrumentor starts.
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")
        _installed = TracerProvider(resource=Resource.create({"service.name": service_name}))
        # A process's global provider can be set only once.
        trace.set_tracer_provider(_installed)
        propagate.set_global_textmap(TraceContextTextMapPropagator())
    for processor in processors:
        _installed.add_span_processor(processor)
    _provider = _installed
    _instrument_clients(_installed)
    return _installed


def _instrument_clients(provider: TracerProvider) -> None:
    """Every Redis and httpx client of the process, whoever made it (intake's own Redis
    client, the console's sessions, triage's calls to routing, routing's webhooks)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # Redis spans carry the command with its arguments as `?` (the instrumentation's own
    # sanitising), never keys' values.
    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(
        tracer_provider=provider,
        request_hook=_scrub_client_span,
        async_request_hook=_scrub_client_span_async,
    )


def _uninstrument_clients() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().uninstrument()
    HTTPXClientInstrumentor().uninstrument()


# ---------------------------------------------------------------------------- HTTP


def url_without_query(url: str) -> str:
    """A URL as a span may show it: no credentials, no query, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _scrub_client_span(span: trace.Span, request: Any) -> None:
    # A webhook URL may carry a token in its query (`?token=…`), as any URL may carry data.
    if not span.is_recording():
        return
    url = request.url
    text = str(url) if not isinstance(url, tuple) else None
    if text is None:
        return
    attributes: Mapping[str, Any] = getattr(span, "attributes", None) or {}
    for name in ("url.full", "http.url"):
        if name in attributes:
            span.set_attribute(name, url_without_query(text))


async def _scrub_client_span_async(span: trace.Span, request: Any) -> None:
    _scrub_client_span(span, request)


def _scrub_server_span(span: trace.Span, scope: Mapping[str, Any]) -> None:
    # No route takes personal data in its query today; a query's values stay out of spans
    # all the same, so none ever can.
    if not scope.get("query_string") or not span.is_recording():
        return
    attributes: Mapping[str, Any] = getattr(span, "attributes", None) or {}
    if "url.query" in attributes:
        span.set_attribute("url.query", REDACTED)
    if "http.target" in attributes:
        span.set_attribute("http.target", str(scope.get("path", "")))
    if "http.url" in attributes:
        span.set_attribute("http.url", url_without_query(str(attributes["http.url"])))


def instrument_http_app(app: FastAPI) -> None:
    """Server spans for the app's requests, continuing the caller's `traceparent`."""
    provider = tracer_provider()
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=_UNTRACED_PATHS,
        server_request_hook=_scrub_server_span,
        # The ASGI send/receive sub-spans say nothing the server span does not.
        exclude_spans=["receive", "send"],
    )


# ---------------------------------------------------------------------------- databases


def instrument_engine(engine: AsyncEngine) -> None:
    """Client spans for an engine's statements: the SQL text with its placeholders, never
    the bound values."""
    provider = tracer_provider()
    if provider is None:
        return
    from opentelemetry import metrics
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    # EngineTracer rather than `SQLAlchemyInstrumentor().instrument(engine=…)`, which
    # instruments only the first engine of a process.
    usage = metrics.get_meter("ocsea.sqlalchemy").create_up_down_counter(
        "db.client.connections.usage"
    )
    tracer = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]


def db_client_span(
    system: str, operation: str, collection: str
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """A client span around a database call made without SQLAlchemy's cursor (the ledger's
    direct SQLite and asyncpg appends): what was done to which table, no statement text."""

    def decorate(call: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(call)
        async def traced(*args: P.args, **kwargs: P.kwargs) -> R:
            if _provider is None:
                return await call(*args, **kwargs)
            with _tracer.start_as_current_span(
                f"{operation} {collection}",
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system.name": system,
                    "db.operation.name": operation,
                    "db.collection.name": collection,
                },
            ):
                return await call(*args, **kwargs)

        return traced

    return decorate


# ---------------------------------------------------------------------------- routine work


@contextmanager
def untraced() -> Iterator[None]:
    """No spans from the clients inside: for polling done every fraction of a second (a
    due-queue's), and readiness probes, which would bury the traces of the work they find."""
    if _provider is None:
        yield
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


# ---------------------------------------------------------------------------- deferred work


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the span being recorded, to keep with work that runs later
    (a webhook's retries, a task's SLA timers); None when there is none to keep."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def _context_of(traceparent: str | bytes | None) -> trace.SpanContext | None:
    if not traceparent:
        return None
    text = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    context = trace.get_current_span(propagate.extract({"traceparent": text})).get_span_context()
    return context if context.is_valid else None


@contextmanager
def continued_span(
    name: str, traceparent: str | bytes | None, attributes: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Work done later on behalf of a traced operation, in that operation's trace (a webhook
    delivery of an assignment: the agency's system receives the same trace)."""
    if _provider is None:
        yield
        return
    parent = _context_of(traceparent)
    context = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent else None
    with _tracer.start_as_current_span(
        name, context=context, kind=SpanKind.INTERNAL, attributes=attributes
    ):
        yield


@contextmanager
def linked_span(
    name: str, traceparent: str | bytes | None, attributes: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Work that a traced operation caused but did not start (a timer firing hours after the
    assignment): a trace of its own, linked to the operation's."""
    if _provider is None:
        yield
        return
    origin = _context_of(traceparent)
    with _tracer.start_as_current_span(
        name,
        context=trace.set_span_in_context(trace.INVALID_SPAN),
        kind=SpanKind.INTERNAL,
        links=[Link(origin)] if origin else None,
        attributes=attributes,
    ):
        yield
