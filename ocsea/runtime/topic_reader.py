"""Reading topics from their beginning to their end as of now, outside any consumer group.

One reader for every replay (routing's projection, triage's re-triage, the dead-letter tool,
the tests): it commits nothing and moves no group's offsets, fixes each partition's end when it
starts (what arrives later is the live consumers' work), and hands records over in partition
order, batch by batch, so a replay of a large topic never holds it all in memory.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


class TopicReadTimeoutError(TimeoutError):
    """The topics could not be read to their end within the time given."""


async def partitions_of(bootstrap: str, topics: Sequence[str]) -> list[TopicPartition]:
    """The topics' partitions, from the cluster itself (none for a topic that does not exist)."""
    if not topics:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(
        (
            TopicPartition(str(d["topic"]), int(p["partition"]))
            for d in described
            if not d.get("error_code")
            for p in d.get("partitions", [])
        ),
        key=lambda tp: (tp.topic, tp.partition),
    )


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset (the offset the next record will get)."""
    tps = await partitions_of(bootstrap, [topic])
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        offsets = await consumer.end_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


async def read_to_end(
    bootstrap: str,
    topics: Sequence[str],
    *,
    within_s: float,
    max_records: int = 2000,
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Batches of the topics' records up to each partition's end as of the call, each batch
    from one partition and in offset order. Raises `TopicReadTimeoutError` past `within_s`."""
    tps = await partitions_of(bootstrap, topics)
    if not tps:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        # Empty partitions are left out: nothing would ever arrive to say they were read.
        remaining = {tp: end for tp, end in ends.items() if end > starts[tp]}
        if not remaining:
            return
        consumer.assign(list(remaining))
        await consumer.seek_to_beginning(*remaining)
        deadline = time.monotonic() + within_s
        while remaining:
            if time.monotonic() > deadline:
                behind = ", ".join(sorted({tp.topic for tp in remaining}))
                raise TopicReadTimeoutError(
                    f"could not read {behind} to its end within {within_s} s"
                )
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=max_records)
            for tp, records in batch.items():
                end = remaining.get(tp, -1)
                wanted = [r for r in records if r.offset < end]
                if wanted:
                    yield wanted
            for tp in [tp for tp, end in remaining.items() if await consumer.position(tp) >= end]:
                del remaining[tp]
    finally:
        await consumer.stop()
