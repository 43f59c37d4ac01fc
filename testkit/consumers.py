"""The shared reliable consumer (`ocsea.runtime.consumer`) on the real broker, for its tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from ocsea.runtime.consumer import Handler, ProcessedMarkers, ReliableConsumer, RetryPolicy
from ocsea.runtime.kafka import make_broker
from ocsea.runtime.settings import Settings


@asynccontextmanager
async def running_consumer(
    settings: Settings,
    topic: str,
    handler: Handler,
    *,
    event_types: frozenset[str] | None = None,
) -> AsyncIterator[tuple[KafkaBroker, ReliableConsumer]]:
    """A reliable consumer of `topic` in a fresh group, with quick retries, started."""
    redis = Redis.from_url(settings.redis_url)
    broker = make_broker(settings, service="test", registry=CollectorRegistry())
    consumer = ReliableConsumer(
        broker,
        topics=[topic],
        group_id=f"ocsea-test-{uuid.uuid4().hex[:8]}",
        handler=handler,
        markers=ProcessedMarkers(redis, 600),
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05),
        event_types=event_types,
    )
    await broker.start()
    try:
        yield broker, consumer
    finally:
        await broker.stop()
        await redis.aclose()
