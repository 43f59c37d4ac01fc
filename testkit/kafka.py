"""Reading Kafka directly, as a test or a benchmark checks what a service published: no consumer
group, nothing committed."""

from __future__ import annotations

import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ocsea.runtime import topic_reader


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """A topic of a test's own, with as many partitions as the test needs to name."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    return await topic_reader.end_offsets(bootstrap, topic)


async def read_all(bootstrap: str, topic: str, *, within: float = 10.0) -> list[Any]:
    """Every record in a topic up to its current end."""
    try:
        return [
            record
            async for batch in topic_reader.read_to_end(bootstrap, [topic], within_s=within)
            for record in batch
        ]
    except topic_reader.TopicReadTimeoutError as exc:
        raise AssertionError(str(exc)) from exc


async def read_since(bootstrap: str, topic: str, offsets: dict[int, int]) -> list[Any]:
    """The records appended to a topic after `offsets` (from `end_offsets`), up to its end:
    cheaper than reading a long-lived topic from the beginning."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    ends = await end_offsets(bootstrap, topic)
    partitions = [TopicPartition(topic, p) for p, end in ends.items() if end > offsets.get(p, 0)]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, offsets.get(tp.partition, 0))
        records: list[Any] = []
        deadline = time.monotonic() + 10
        while any([await consumer.position(tp) < ends[tp.partition] for tp in partitions]):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            batch = await consumer.getmany(*partitions, timeout_ms=200)
            for items in batch.values():
                records.extend(r for r in items if r.offset < ends[r.partition])
        return records
    finally:
        await consumer.stop()
