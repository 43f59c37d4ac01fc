"""The reliable consumer's raw mode, which the audit ledger ingests with, on the real broker:
any bytes handed over in batches, failures retried until they pass (never dead-lettered, never
skipped), offsets committed only after the handler returned."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from contracts.topics import dlq_of
from ocsea.runtime.consumer import (
    ProcessedMarkers,
    RawHandler,
    RawRecord,
    ReliableConsumer,
    RetryPolicy,
)
from ocsea.runtime.kafka import make_broker
from ocsea.runtime.settings import Settings
from testkit.kafka import read_all
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration


async def consume(
    settings: Settings,
    topic: str,
    group: str,
    handler: RawHandler,
    publish: Sequence[tuple[bytes, bytes]],
    until: Callable[[], Awaitable[bool]],
) -> None:
    redis = Redis.from_url(settings.redis_url)
    broker = make_broker(settings, service="test", registry=CollectorRegistry())
    ReliableConsumer(
        broker,
        topics=[topic],
        group_id=group,
        raw_handler=handler,
        markers=ProcessedMarkers(redis, 600),
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.05),
    )
    await broker.start()
    try:
        for key, value in publish:
            await broker.publish(value, topic=topic, key=key, headers={"claim": "x"})
        await wait_for(until, within=20, what="the records")
    finally:
        await broker.stop()
        await redis.aclose()


async def test_raw_records_are_retried_until_recorded_and_committed_after(
    stack_env: dict[str, str],
) -> None:
    settings = Settings(
        kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"], redis_url=stack_env["OCSEA_REDIS_URL"]
    )
    topic = f"ocsea.test.raw.{uuid.uuid4().hex[:8]}"
    group = f"ocsea-test-{uuid.uuid4().hex[:8]}"
    bodies = [b"not json at all", b'{"event_id": "claims to be one"}', b"\xff\xfe"]
    recorded: list[RawRecord] = []
    calls = 0

    async def flaky(batch: Sequence[RawRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:  # more failures than one round of retries: a redelivery must follow
            raise ConnectionError("database down")
        recorded.extend(batch)

    async def all_recorded() -> bool:
        return len(recorded) >= len(bodies)

    await consume(
        settings,
        topic,
        group,
        flaky,
        publish=[(b"case-key", body) for body in bodies],
        until=all_recorded,
    )
    assert [r.value for r in recorded] == bodies  # each once, in order, as sent
    assert calls > 5
    for record in recorded:
        assert record.key == b"case-key"
        assert ("claim", b"x") in record.headers
        assert record.origin.topic == topic
        assert record.origin.body_sha256 == hashlib.sha256(record.value).hexdigest()
        assert record.timestamp_ms > 0
    assert await read_all(settings.kafka_bootstrap, dlq_of(topic)) == []

    # The same group again: the committed offsets hold, only the new record arrives.
    again: list[RawRecord] = []

    async def collect(batch: Sequence[RawRecord]) -> None:
        again.extend(batch)

    async def sentinel_seen() -> bool:
        return any(r.value == b"sentinel" for r in again)

    await consume(
        settings, topic, group, collect, publish=[(b"case-key", b"sentinel")], until=sentinel_seen
    )
    assert [r.value for r in again] == [b"sentinel"]
