"""Reading a topic from its beginning to its current end, outside any consumer group."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from contracts.events import Envelope


async def partitions_of(bootstrap: str, topic: str) -> set[int]:
    """The topic's partitions, from the cluster itself (none if the topic does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [description] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description.get("error_code"):
        return set()
    return {int(p["partition"]) for p in description.get("partitions", [])}


async def replay(
    bootstrap: str,
    topic: str,
    handle: Callable[[Envelope], Awaitable[None]],
    *,
    within_s: float = 600.0,
) -> int:
    """Hand every envelope of `topic`, in partition order, to `handle`; returns how many.

    The end is fixed when the replay starts; what arrives later is the live consumers' work.
    Records that are not envelopes were dead-lettered by the consumers and are skipped here.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await partitions_of(bootstrap, topic))]
        if not tps:
            return 0
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + within_s
        count = 0
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not replay {topic} within {within_s} s")
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=2000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        remaining.discard(tp)
                        break
                    try:
                        envelope = Envelope.model_validate_json(record.value)
                    except ValidationError:
                        continue
                    await handle(envelope)
                    count += 1
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return count
    finally:
        await consumer.stop()
