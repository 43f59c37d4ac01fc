"""The reliable consumer's spans: one per record, continuing the trace its producer started
(OpenTelemetry messaging conventions), and none at all when tracing is off."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from aiokafka import ConsumerRecord
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, StatusCode

from ocsea.runtime.telemetry import tracing

if TYPE_CHECKING:
    from ocsea.runtime.consumer import RawRecord

_tracer = trace.get_tracer("ocsea.consumer")


def record_span(record: ConsumerRecord, group_id: str) -> AbstractContextManager[object]:
    """A span per record, continuing the trace its producer started (FastStream's middleware
    sees only the batch), so one report keeps one trace through every stage."""
    if not tracing():
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(
        f"process {record.topic}",
        context=producer_context(record.headers),
        kind=SpanKind.CONSUMER,
        attributes=process_attributes(record.topic, record.partition, record.offset, group_id),
    )


def producer_context(headers: Sequence[tuple[str, bytes]] | None) -> Context:
    return propagate.extract({k: v.decode("latin-1") for k, v in (headers or ())})


def process_attributes(
    topic: str, partition: int, offset: int, group_id: str
) -> dict[str, str | int]:
    """OpenTelemetry messaging conventions for processing one Kafka record."""
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
        "messaging.consumer.group.name": group_id,
    }


@contextlib.contextmanager
def raw_record_spans(records: Sequence[RawRecord], group_id: str) -> Iterator[None]:
    """A span per record of a raw batch (the audit ledger's), each continuing its producer's
    trace, open while the batch is handled: the ledger's entry joins the report's trace."""
    if not tracing():
        yield
        return
    spans = [
        _tracer.start_span(
            f"process {r.origin.topic}",
            context=producer_context(r.headers),
            kind=SpanKind.CONSUMER,
            attributes=process_attributes(
                r.origin.topic, r.origin.partition, r.origin.offset, group_id
            ),
        )
        for r in records
    ]
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.set_status(StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        for span in spans:
            span.end()
