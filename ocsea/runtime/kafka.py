"""The one Kafka broker factory and the one way to publish an event."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry

from contracts.events import Envelope
from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import tracer_provider


def make_broker(settings: Settings, *, service: str, registry: CollectorRegistry) -> KafkaBroker:
    """A broker whose producer waits for every in-sync replica (`acks=all`) with idempotence,
    so a `publish` that returns means the event is durably in Kafka, exactly once."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"ocsea-{service}",
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=int(settings.publish_timeout_s * 1000),
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=tracer_provider()),
            KafkaPrometheusMiddleware(registry=registry, app_name=f"ocsea-{service}"),
        ],
        logger=get_logger(f"ocsea.{service}.broker"),
    )


def event_headers(envelope: Envelope) -> dict[str, str]:
    """Routing metadata only: ids and type, never payload content."""
    return {
        "event_id": str(envelope.event_id),
        "event_type": envelope.event_type,
        "schema_version": envelope.schema_version,
        "producer": envelope.producer,
    }


async def publish_event(broker: KafkaBroker, topic: str, envelope: Envelope) -> Any:
    """Publish keyed by `case_id` (a case's events stay in order) and wait for the broker's ack."""
    return await broker.publish(
        envelope.model_dump_json().encode(),
        topic=topic,
        key=str(envelope.case_id).encode(),
        headers=event_headers(envelope),
        correlation_id=str(envelope.event_id),
    )
