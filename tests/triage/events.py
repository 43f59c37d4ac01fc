"""Publishing `report.received` events straight to Kafka, as intake would (for tests that need
a second report on an existing case, or a recorded set with chosen timestamps)."""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import AIOKafkaProducer

from contracts import topics
from contracts.events import Actor, ActorKind, Envelope, EventType, ReportReceivedData, make_event
from ocsea.runtime.kafka import event_headers


def received_event(case_id: uuid.UUID, data: ReportReceivedData) -> Envelope:
    return make_event(
        event_type=EventType.REPORT_RECEIVED,
        case_id=case_id,
        report_id=data.report_id,
        producer="intake",
        actor=Actor(kind=ActorKind.PARTNER, id=data.partner_id),
        data=data,
    )


async def publish(
    bootstrap: str,
    events: list[Envelope],
    *,
    topic: str = topics.REPORTS_RECEIVED,
    timestamps_ms: list[int] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, event in enumerate(events):
            extra: dict[str, Any] = {}
            if timestamps_ms is not None:
                extra["timestamp_ms"] = timestamps_ms[i]
            await producer.send_and_wait(
                topic,
                event.model_dump_json().encode(),
                key=str(event.case_id).encode(),
                headers=[(k, v.encode()) for k, v in event_headers(event).items()],
                **extra,
            )
    finally:
        await producer.stop()
