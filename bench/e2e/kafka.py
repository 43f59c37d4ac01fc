"""Kafka, read and written directly: the task watcher, the bare relay baseline, topic upkeep.

The watcher reads `ocsea.tasks.events.v1` itself (no consumer group: it commits nothing and
moves no one's offsets) and notes when each report's first `task.assigned` appears; a report
with several tasks (child protection and police) counts once, at its first.

The baseline is what the broker and aiokafka alone achieve on this machine in the same run: N
messages of a report event's size relayed through four consume→produce stages, each stage with
its own idempotent `acks=all` producer and its own consumer group, committing a batch's offsets
only after every message it produced for that batch was acknowledged — the delivery rule the
services keep, with none of their work. Its rate (messages through all four stages per second)
is the ceiling an end-to-end reports/s figure is compared with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts import topics

TASK_ASSIGNED = b"task.assigned"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why and what to do."""


async def partitions_of(bootstrap: str, topic: str, within: float) -> list[int]:
    """The topic's partitions, from the cluster itself, once it exists and every partition
    has a leader (the services create their topics as they start)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + within
        while True:
            [description] = await admin.describe_topics([topic])
            partitions = description.get("partitions", [])
            led = all(int(p.get("leader", -1)) >= 0 for p in partitions)
            if not description.get("error_code") and partitions and led:
                return sorted(int(p["partition"]) for p in partitions)
            if time.monotonic() > deadline:
                raise BenchError(f"topic {topic} does not exist after {within:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def report_id_of_assignment(value: bytes | None, headers: object) -> str | None:
    """The report id of a `task.assigned` record, else None (cheap on other records: the
    event type is a header; only assignments are parsed)."""
    if value is None:
        return None
    event_type = None
    for key, header_value in headers if isinstance(headers, list | tuple) else ():
        if key == "event_type":
            event_type = header_value
            break
    if event_type is not None and event_type != TASK_ASSIGNED:
        return None
    if event_type is None and TASK_ASSIGNED not in value:
        return None
    try:
        envelope = json.loads(value)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or envelope.get("event_type") != "task.assigned":
        return None
    data = envelope.get("data")
    found = data.get("report_id") if isinstance(data, dict) else None
    found = found or envelope.get("report_id")
    return str(found) if found else None


@dataclass
class TaskWatcher:
    """Notes when the first `task.assigned` of every report from now on was produced
    (monotonic seconds)."""

    bootstrap: str
    seen: dict[str, float] = field(default_factory=dict)
    on_assigned: Callable[[str, float], None] | None = None
    records: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self, within: float = 60) -> None:
        partitions = [
            TopicPartition(topics.TASKS_EVENTS, p)
            for p in await partitions_of(self.bootstrap, topics.TASKS_EVENTS, within)
        ]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            # Times come from the records themselves: reading them a little later costs no
            # precision, and polling less leaves the CPU to the system under test.
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        self._consumer = consumer
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the lazy seek now, before anything is posted
            await consumer.position(tp)
        self._task = asyncio.create_task(self._run(consumer), name="task-watcher")

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        # When routing produced the record (its CreateTime), on this process's monotonic
        # clock: the benchmark's own delay in reading it (its event loop is busy posting)
        # must not count as the system's.
        wall_to_monotonic = time.monotonic() - time.time()
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=20_000)
            now = time.monotonic()
            for records in batches.values():
                self.records += len(records)
                for record in records:
                    report_id = report_id_of_assignment(record.value, record.headers)
                    if report_id is None or report_id in self.seen:
                        continue
                    at = now
                    if record.timestamp_type == 0 and record.timestamp > 0:
                        at = min(now, record.timestamp / 1000 + wall_to_monotonic)
                    self.seen[report_id] = at
                    if self.on_assigned is not None:
                        self.on_assigned(report_id, at)

    def check(self) -> None:
        """Raise if the watcher stopped (a broker failure), rather than wait on it forever."""
        if self._task is not None and self._task.done():
            error = self._task.exception()
            raise BenchError(f"the task watcher stopped: {error!r}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def average_record_size(bootstrap: str, topic: str, *, limit: int = 200) -> int | None:
    """Mean value size of the records at the start of a topic (the warm-up's reports)."""
    found = await partitions_of(bootstrap, topic, 10)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in found]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        sizes: list[int] = []
        deadline = time.monotonic() + 10
        while len(sizes) < limit and time.monotonic() < deadline:
            if all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                break
            for records in (await consumer.getmany(timeout_ms=200)).values():
                sizes += [len(r.value) for r in records if r.value is not None]
        return sum(sizes) // len(sizes) if sizes else None
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class RelayResult:
    messages: int
    message_bytes: int
    stages: int
    seconds: float
    complete: bool

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


async def relay_baseline(
    bootstrap: str,
    *,
    messages: int,
    message_bytes: int,
    partitions: int,
    stages: int = 4,
    within: float = 120,
    progress: Callable[[int], None] | None = None,
) -> RelayResult:
    """Preload `messages` into the first topic, then time the four stages relaying all of them
    to the last topic (stage consumers have their partitions assigned, so no group rebalance
    is timed)."""
    run = uuid.uuid4().hex[:8]
    names = [f"ocsea-bench.relay.{run}.{i}" for i in range(stages + 1)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        try:
            for name in names:  # every partition has its leader before the clock starts
                await partitions_of(bootstrap, name, 30)
            return await _relay(bootstrap, names, messages, message_bytes, within, progress)
        finally:
            with contextlib.suppress(Exception):
                await admin.delete_topics(names)
    finally:
        await admin.close()


def _producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )


async def _relay(
    bootstrap: str,
    names: list[str],
    messages: int,
    message_bytes: int,
    within: float,
    progress: Callable[[int], None] | None,
) -> RelayResult:
    loader = _producer(bootstrap)
    await loader.start()
    try:
        payload = os.urandom(message_bytes)
        sent = [
            await loader.send(names[0], payload, key=uuid.uuid4().bytes) for _ in range(messages)
        ]
        await asyncio.gather(*sent)
    finally:
        await loader.stop()

    relayed = [0] * (len(names) - 1)
    producers = [_producer(bootstrap) for _ in relayed]
    consumers = [
        AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=f"{names[i]}.stage",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
        )
        for i in range(len(relayed))
    ]
    for client in (*producers, *consumers):
        await client.start()
    try:
        for i, consumer in enumerate(consumers):
            found = await partitions_of(bootstrap, names[i], 30)
            consumer.assign([TopicPartition(names[i], p) for p in found])

        async def stage(i: int) -> None:
            consumer, producer = consumers[i], producers[i]
            while relayed[i] < messages:
                batches = await consumer.getmany(timeout_ms=100)
                records = [r for rs in batches.values() for r in rs]
                if not records:
                    continue
                acks = [await producer.send(names[i + 1], r.value, key=r.key) for r in records]
                await asyncio.gather(*acks)
                await consumer.commit()
                relayed[i] += len(records)
                if i == len(relayed) - 1 and progress is not None:
                    progress(relayed[i])

        started = time.monotonic()
        running = [asyncio.create_task(stage(i)) for i in range(len(relayed))]
        done, pending = await asyncio.wait(running, timeout=within)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()  # a stage's failure is the baseline's failure
        return RelayResult(
            messages=relayed[-1],
            message_bytes=message_bytes,
            stages=len(relayed),
            seconds=time.monotonic() - started,
            complete=not pending,
        )
    finally:
        for client in (*consumers, *producers):
            with contextlib.suppress(Exception):
                await client.stop()


async def delete_topics_and_wait(bootstrap: str, within: float = 60) -> list[str]:
    """Empty a private broker for a new run: delete every topic but Kafka's own, and wait until
    they are gone (the services re-create theirs, with this run's partition count)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if not t.startswith("__")]
        if names:
            await admin.delete_topics(names)
        deadline = time.monotonic() + within
        while set(names) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise BenchError(f"the private broker did not delete its topics in {within} s")
            await asyncio.sleep(0.2)
        return names
    finally:
        await admin.close()
