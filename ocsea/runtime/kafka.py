"""The one Kafka broker factory and the one way to publish an event."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry

from contracts import topics
from contracts.events import Envelope
from ocsea.runtime.lifecycle import check_producer_error
from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import tracer_provider


def make_broker(settings: Settings, *, service: str, registry: CollectorRegistry) -> KafkaBroker:
    """A broker whose producer waits for every in-sync replica (`acks=all`) with idempotence,
    so a `publish` that returns means the event is durably in Kafka, exactly once.

    With tracing on, FastStream's middleware makes the messaging spans (OpenTelemetry messaging
    conventions) and puts the W3C `traceparent` in every record's headers; with it off the
    middleware is left out altogether."""
    provider = tracer_provider()
    telemetry = [KafkaTelemetryMiddleware(tracer_provider=provider)] if provider else []
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"ocsea-{service}",
        acks="all",
        enable_idempotence=True,
        max_batch_size=settings.kafka_max_batch_bytes,
        request_timeout_ms=int(settings.publish_timeout_s * 1000),
        # Topics are created by `ensure_topics` with the deployment's partition count;
        # FastStream's own creation would make single-partition topics that cannot scale out.
        allow_auto_create_topics=False,
        middlewares=[
            *telemetry,
            KafkaPrometheusMiddleware(registry=registry, app_name=f"ocsea-{service}"),
        ],
        logger=get_logger(f"ocsea.{service}.broker"),
        # FastStream's per-message "Received"/"Processed" lines are debugging detail; the
        # services log what they did with each event themselves.
        log_level=logging.DEBUG,
    )


async def ensure_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """Create the project's topics that do not exist yet; returns the ones it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = sorted(set(names) - existing)
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        settings.topic_partitions,
                        settings.topic_replication_factor,
                        # The topics are the source of truth projections and the ledger are
                        # rebuilt from: kept until deleted on purpose (as deploy/kafka plans).
                        topic_configs={"retention.ms": "-1"},
                    )
                    for name in missing
                ]
            )
            for name, code, *message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"cannot create Kafka topic {name}: {code} {message}")
        return missing
    finally:
        await admin.close()


async def start_new_groups_at_end(
    bootstrap: str, groups: Iterable[tuple[str, Sequence[str]]]
) -> None:
    """Commit the current end offsets for each (group, topics) partition the group has never
    committed: a group new to existing topics starts from now instead of replaying history
    (`OCSEA_CONSUMER_NEW_GROUP_START=now`, for test systems on a shared broker)."""
    groups = list(groups)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        wanted = sorted({topic for _, names in groups for topic in names})
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    partitions_of = {
        str(d["topic"]): sorted(int(p["partition"]) for p in d.get("partitions", []))
        for d in described
        if not d.get("error_code")
    }
    for group_id, names in groups:
        partitions = [TopicPartition(t, p) for t in names for p in partitions_of.get(t, [])]
        if not partitions:
            continue
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            never = [tp for tp in partitions if await consumer.committed(tp) is None]
            if never:
                ends = await consumer.end_offsets(never)
                await consumer.commit({tp: offset for tp, offset in ends.items()})
        finally:
            await consumer.stop()


def project_topics() -> list[str]:
    """Every topic the services use, with the dead-letter twins of the consumed ones."""
    consumed = list(topics.ALL_EVENT_TOPICS)
    return consumed + [topics.dlq_of(t) for t in consumed] + list(topics.DISPATCH_TOPICS)


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
    try:
        return await broker.publish(
            envelope.model_dump_json().encode(),
            topic=topic,
            key=str(envelope.case_id).encode(),
            headers=event_headers(envelope),
            correlation_id=str(envelope.event_id),
        )
    except Exception as exc:
        check_producer_error(exc)
        raise
