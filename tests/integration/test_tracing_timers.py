"""SLA timers fire in traces of their own, linked to the trace of the task's assignment.

Routing runs in this process (isolated topics and Redis database, response times shortened
to seconds), traced into an in-memory span exporter.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link

from contracts.events import Envelope, EventType
from ocsea.runtime.kafka import event_headers
from ocsea.runtime.telemetry import recording_spans
from testkit.kafka import read_all
from testkit.routing_harness import (
    Isolation,
    claimed_redis_db,
    envelopes,
    routing_instance,
    short_directory,
    triaged_event,
)
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, into memory, for this test only."""
    exporter = InMemorySpanExporter()
    with recording_spans(SimpleSpanProcessor(exporter), "ocsea-routing"):
        yield exporter


async def publish_traced(bootstrap: str, topic: str, event: Envelope, traceparent: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        headers = {**event_headers(event), "traceparent": traceparent}
        await producer.send_and_wait(
            topic,
            event.model_dump_json().encode(),
            key=str(event.case_id).encode(),
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()


def trace_of(span: ReadableSpan | Link) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def published_to(spans: Sequence[ReadableSpan], topic: str) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.kind.name == "PRODUCER"
        and (s.attributes or {}).get("messaging.destination.name") == topic
    ]


async def test_timer_events_are_traced_apart_and_linked_to_the_assignment(
    stack_env: dict[str, str], tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    bootstrap = stack_env["OCSEA_KAFKA_BOOTSTRAP"]
    async with claimed_redis_db(stack_env) as db:
        isolation = Isolation.create(tmp_path, short_directory(p1_ack=2, fraction=0.5), db)
        async with routing_instance(stack_env, isolation) as routing:
            trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
            triaged = triaged_event()
            await publish_traced(
                bootstrap, routing.topics.triaged, triaged, f"00-{trace_id}-{caller}-01"
            )

            async def warned() -> list[Envelope] | None:
                events = envelopes(await read_all(bootstrap, routing.topics.tasks))
                found = [
                    e
                    for e in events
                    if e.case_id == triaged.case_id and e.event_type == EventType.TASK_SLA_WARNING
                ]
                return found or None

            await wait_for(warned, within=20, what="the SLA warning of the case's task")

            def fired() -> list[ReadableSpan]:
                return [
                    s
                    for s in exporter.get_finished_spans()
                    if s.name == "fire sla timers"
                    and any(trace_of(link) == trace_id for link in s.links)
                ]

            async def fired_and_published() -> list[ReadableSpan] | None:
                spans = fired()
                traces = {trace_of(s) for s in spans}
                tasks = published_to(exporter.get_finished_spans(), routing.topics.tasks)
                return spans if any(trace_of(s) in traces for s in tasks) else None

            timer_spans = await wait_for(fired_and_published, what="the timer's spans")

    spans = exporter.get_finished_spans()
    # The assignment was made in the partner's trace.
    assignments = [s for s in published_to(spans, routing.topics.tasks) if trace_of(s) == trace_id]
    assert assignments, "the assignment's publish is in the report's trace"
    # The timer fired in a trace of its own, whose root links to the assignment's trace…
    for span in timer_spans:
        assert trace_of(span) != trace_id
        assert span.parent is None
        [link] = span.links
        assert trace_of(link) == trace_id
    # …and the timer's events were published in that trace.
    timer_traces = {trace_of(s) for s in timer_spans}
    warnings = [s for s in published_to(spans, routing.topics.tasks) if trace_of(s) in timer_traces]
    assert warnings
    for span in warnings:
        attributes = span.attributes or {}
        assert attributes["messaging.system"] == "kafka"
        assert span.resource.attributes["service.name"] == "ocsea-routing"
