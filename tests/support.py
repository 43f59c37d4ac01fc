"""Test helpers: waiting on conditions with deadlines, and reading Kafka directly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what}; last value: {last!r}")


async def _partitions(bootstrap: str, topic: str) -> set[int]:
    """The topic's partitions, from the cluster itself (empty if it does not exist yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [description] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description.get("error_code"):
        return set()
    return {int(p["partition"]) for p in description.get("partitions", [])}


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = await _partitions(bootstrap, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        offsets = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: int(offset) for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, *, within: float = 10.0) -> list[Any]:
    """Every record in a topic up to its current end (no consumer group, nothing committed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await _partitions(bootstrap, topic)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + within

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {within}s")
            batch = await consumer.getmany(timeout_ms=200)
            for items in batch.values():
                records.extend(
                    r for r in items if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
        return records
    finally:
        await consumer.stop()
