"""The shared reliable consumer against the real broker: retries, dead-letter, no blocking."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest

from contracts.events import Actor, ActorKind, Envelope, EventType, make_event
from contracts.topics import dlq_of
from ocsea.runtime.consumer import Origin, RetryPolicy
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.settings import Settings
from testkit.consumers import running_consumer
from testkit.kafka import create_topic, read_all
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration


def triaged_event(case_id: uuid.UUID) -> Envelope:
    from services.triage.domain.case import triage
    from testkit.triage_events import received

    return make_event(
        event_type=EventType.REPORT_TRIAGED,
        case_id=case_id,
        producer="test",
        actor=Actor(kind=ActorKind.SYSTEM, id="test"),
        data=triage(received()),
    )


async def test_poison_message_goes_to_dlq_and_the_partition_moves_on(
    stack_env: dict[str, str],
) -> None:
    settings = Settings(
        kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"], redis_url=stack_env["OCSEA_REDIS_URL"]
    )
    topic = f"ocsea.test.reliable.{uuid.uuid4().hex[:8]}"
    case_id = uuid.uuid4()
    poison, good = triaged_event(case_id), triaged_event(case_id)
    attempts: Counter[str] = Counter()
    handled: list[str] = []

    async def handler(envelope: Envelope, origin: Origin) -> None:
        attempts[str(envelope.event_id)] += 1
        if envelope.event_id == poison.event_id:
            raise RuntimeError("handler bug")
        handled.append(str(envelope.event_id))

    async with running_consumer(settings, topic, handler) as (broker, _):
        await publish_event(broker, topic, poison)
        await publish_event(broker, topic, good)  # same key: same partition, after the poison

        async def good_handled() -> bool:
            return str(good.event_id) in handled

        await wait_for(good_handled, what="the message after the poison one")

        async def dead_lettered() -> list[Any] | None:
            return await read_all(settings.kafka_bootstrap, dlq_of(topic)) or None

        [record] = await wait_for(dead_lettered, what="the poison message on the DLQ")

    assert attempts[str(poison.event_id)] == 3
    assert attempts[str(good.event_id)] == 1
    assert Envelope.model_validate_json(record.value).event_id == poison.event_id
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["x-ocsea-origin-topic"] == topic
    assert headers["x-ocsea-attempts"] == "3"
    assert headers["x-ocsea-error-type"] == "RuntimeError"
    assert "handler bug" in headers["x-ocsea-error"]
    assert int(headers["x-ocsea-origin-offset"]) >= 0
    assert record.key == str(case_id).encode()


async def test_unparseable_message_is_dead_lettered_without_retries(
    stack_env: dict[str, str],
) -> None:
    settings = Settings(
        kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"], redis_url=stack_env["OCSEA_REDIS_URL"]
    )
    topic = f"ocsea.test.garbage.{uuid.uuid4().hex[:8]}"
    calls: list[Envelope] = []

    async def handler(envelope: Envelope, origin: Origin) -> None:
        calls.append(envelope)

    async with running_consumer(settings, topic, handler) as (broker, _):
        await broker.publish(b'{"not": "an envelope"}', topic=topic, key=b"k")

        async def dead_lettered() -> list[Any] | None:
            return await read_all(settings.kafka_bootstrap, dlq_of(topic)) or None

        [record] = await wait_for(dead_lettered, what="the garbage on the DLQ")
    assert calls == []
    assert record.value == b'{"not": "an envelope"}'
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["x-ocsea-error-type"] == "ValidationError"
    assert headers["x-ocsea-attempts"] == "1"


async def test_a_consumer_of_some_event_types_leaves_the_others_unparsed(
    stack_env: dict[str, str],
) -> None:
    """Records of other types are passed over by their header (even one that would not parse:
    it is never read), records without the header are parsed, and the group moves on."""
    settings = Settings(
        kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"], redis_url=stack_env["OCSEA_REDIS_URL"]
    )
    topic = f"ocsea.test.types.{uuid.uuid4().hex[:8]}"
    case_id = uuid.uuid4()
    wanted, last = triaged_event(case_id), triaged_event(case_id)
    handled: list[uuid.UUID] = []

    async def handler(envelope: Envelope, origin: Origin) -> None:
        handled.append(envelope.event_id)

    async with running_consumer(
        settings, topic, handler, event_types=frozenset({EventType.REPORT_TRIAGED})
    ) as (broker, _):
        await publish_event(broker, topic, wanted)
        other = b"not even JSON"
        key = str(case_id).encode()
        await broker.publish(other, topic=topic, key=key, headers={"event_type": "task.assigned"})
        await broker.publish(last.model_dump_json().encode(), topic=topic, key=key)  # no header

        async def both_handled() -> bool:
            return last.event_id in handled

        await wait_for(both_handled, what="the records after the unwanted one")
    assert handled == [wanted.event_id, last.event_id]
    assert await read_all(settings.kafka_bootstrap, dlq_of(topic)) == []


async def test_a_batch_commits_only_the_partitions_it_read(stack_env: dict[str, str]) -> None:
    """Each batch's commit is one offset record per partition it read, not one per partition
    the member holds: the others keep no committed offset until a record of theirs is done."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    settings = Settings(
        kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"], redis_url=stack_env["OCSEA_REDIS_URL"]
    )
    topic = f"ocsea.test.commits.{uuid.uuid4().hex[:8]}"
    await create_topic(settings.kafka_bootstrap, topic, partitions=4)
    event = triaged_event(uuid.uuid4())
    handled: list[uuid.UUID] = []

    async def handler(envelope: Envelope, origin: Origin) -> None:
        handled.append(envelope.event_id)

    async with running_consumer(settings, topic, handler) as (broker, consumer):
        await publish_event(broker, topic, event)

        async def done() -> bool:
            return event.event_id in handled

        await wait_for(done, what="the record handled")
        group = consumer.group_id
        reader = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
        )
        await reader.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(4)]

            async def committed() -> dict[int, int | None] | None:
                found = {tp.partition: await reader.committed(tp) for tp in partitions}
                return found if any(v is not None for v in found.values()) else None

            offsets = await wait_for(committed, what="the batch's commit")
        finally:
            await reader.stop()
    assert sorted(offsets.values(), key=str) == [1, None, None, None]


async def test_an_infrastructure_outage_is_waited_out_never_dead_lettered(
    stack_env: dict[str, str],
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    settings = Settings(
        kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"], redis_url=stack_env["OCSEA_REDIS_URL"]
    )
    topic = f"ocsea.test.outage.{uuid.uuid4().hex[:8]}"
    event = triaged_event(uuid.uuid4())
    outage = {"left": 8}  # more failures than max_attempts allows a bug
    handled: list[str] = []
    stalled_seen: list[int] = []

    async def handler(envelope: Envelope, origin: Origin) -> None:
        if outage["left"] > 0:
            outage["left"] -= 1
            raise RedisConnectionError("Redis is restarting")
        handled.append(str(envelope.event_id))

    async def watch_health() -> None:
        while True:
            stalled_seen.append(consumer.health.stalled)
            await asyncio.sleep(0.002)

    async with running_consumer(settings, topic, handler) as (broker, consumer):
        watcher = asyncio.create_task(watch_health())
        try:
            await publish_event(broker, topic, event)

            async def done() -> bool:
                return handled == [str(event.event_id)]

            await wait_for(done, what="the event handled once the outage ended")
            dead = await read_all(settings.kafka_bootstrap, dlq_of(topic), within=2)
        finally:
            watcher.cancel()
    assert outage["left"] == 0
    assert dead == []
    assert consumer.health.stalled == 0
    # While it waited, the consumer said so (readiness reads this).
    assert max(stalled_seen) == 1


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.2, max_backoff_s=5.0)
    waits = [policy.backoff(attempt) for attempt in range(1, 200)]
    assert all(0 < w <= 5.0 for w in waits)
    assert 0.1 <= waits[0] <= 0.2
    assert len({round(w, 6) for w in waits[50:]}) > 1  # jitter: not all the same
