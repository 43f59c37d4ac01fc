"""Reading the private stack from outside the system: every event on its topics, every entry of
its ledger, and how many records sit on the `.dlq` topics.

The follower reads with no consumer group (it commits nothing and moves no one's offsets),
from the beginning of each topic and on, through any broker restart: it keeps its positions
and starts a new consumer from them when the old one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.e2e.kafka import partitions_of
from contracts import topics
from drills.check import Ledger

EVENT_TOPICS = topics.ALL_EVENT_TOPICS
# Only task events need their payload in the checks; a report's is sealed personal data and
# large, so it is dropped as soon as it is read.
_KEPT_DATA_PREFIX = "task."


def slim_event(value: bytes | None) -> dict[str, Any] | None:
    """The envelope fields the checks use, or None when the record is no envelope."""
    if value is None:
        return None
    try:
        envelope = json.loads(value)
    except ValueError:
        return None
    if not isinstance(envelope, dict):
        return None
    event_type = str(envelope.get("event_type"))
    data = envelope.get("data") if event_type.startswith(_KEPT_DATA_PREFIX) else None
    return {
        "event_id": envelope.get("event_id"),
        "event_type": event_type,
        "case_id": envelope.get("case_id"),
        "report_id": envelope.get("report_id"),
        "occurred_at": envelope.get("occurred_at"),
        "data": data if isinstance(data, dict) else {},
    }


class Follower:
    """Reads `topic_names` from their beginning, and keeps reading until stopped."""

    def __init__(
        self,
        bootstrap: str,
        topic_names: Sequence[str],
        on_event: Callable[[dict[str, Any] | None], None],
    ) -> None:
        self.bootstrap = bootstrap
        self.topic_names = tuple(topic_names)
        self.on_event = on_event
        self.positions: dict[TopicPartition, int] = {}
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="drill-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                fetch_max_wait_ms=200,
                max_partition_fetch_bytes=4 * 1024 * 1024,
            )
            try:
                await consumer.start()
                await self._assign(consumer)
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=5_000)
                    for tp, records in batches.items():
                        for record in records:
                            self.on_event(slim_event(record.value))
                        if records:
                            self.positions[tp] = records[-1].offset + 1
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker went away: start again from the positions kept
                self.restarts += 1
                await asyncio.sleep(1)  # a pause between attempts, not a synchronisation
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topic_names
            for p in await partitions_of(self.bootstrap, topic, 60)
        ]
        consumer.assign(partitions)
        for tp in partitions:
            if tp in self.positions:
                consumer.seek(tp, self.positions[tp])
            else:
                await consumer.seek_to_beginning(tp)

    async def caught_up(self) -> bool:
        """Whether everything on the topics as of now has been read."""
        ends = await end_offsets(self.bootstrap, self.topic_names)
        return all(self.positions.get(tp, 0) >= end for tp, end in ends.items())


async def end_offsets(bootstrap: str, topic_names: Sequence[str]) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topic_names))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(d["topic"], int(p["partition"]))
        for d in described
        if not d.get("error_code")
        for p in d.get("partitions", [])
    ]
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp: int(offset) for tp, offset in ends.items()}


async def dead_letters(bootstrap: str) -> dict[str, int]:
    """Records on each `.dlq` topic of the broker (whichever exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.endswith(topics.DLQ_SUFFIX)]
    finally:
        await admin.close()
    counts: dict[str, int] = dict.fromkeys(names, 0)
    for tp, end in (await end_offsets(bootstrap, names)).items() if names else ():
        counts[tp.topic] += end
    return counts


def added(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {
        topic: count - before.get(topic, 0)
        for topic, count in after.items()
        if count > before.get(topic, 0)
    }


class LedgerReader:
    """Reads the ledger's entries, in order, through the auditors' API."""

    def __init__(
        self, client: httpx.AsyncClient, audit_url: str, token: str, ledger: Ledger
    ) -> None:
        self.client = client
        self.url = audit_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ledger = ledger
        self.next = 0

    async def read(self, drill: str) -> int:
        """Read every entry recorded so far; return the ledger's size."""
        while True:
            response = await self.client.get(
                f"{self.url}/v1/audit/entries", params={"from": self.next}, headers=self.headers
            )
            response.raise_for_status()
            body = response.json()
            for item in body["entries"]:
                self.ledger.add(json.loads(item["leaf"]), drill)
            self.next += len(body["entries"])
            if not body["entries"] or self.next >= int(body["tree_size"]):
                return int(body["tree_size"])

    async def sign_checkpoint(self, within: float = 120) -> dict[str, Any]:
        """A checkpoint signed now (retried while the ledger cannot answer)."""
        deadline = time.monotonic() + within
        while True:
            try:
                response = await self.client.post(
                    f"{self.url}/v1/audit/checkpoint", headers=self.headers
                )
                if response.status_code == 200:
                    result: dict[str, Any] = response.json()
                    return result
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the audit service signed no checkpoint in {within:.0f} s")
            await asyncio.sleep(0.5)
