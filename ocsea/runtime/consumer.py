"""The reliable consumer every service uses: nothing lost, nothing applied twice, and fast.

- Records are taken in batches (up to `batch_max`, without waiting for a batch to fill). A
  batch's records are grouped by key (`case_id`): groups run concurrently, each group's records
  one after another in offset order, so a case's events keep their order while different cases
  (and partitions) proceed together and their publishes are in flight together.
- The offsets are committed only after every record of the batch was handled or parked
  (FastStream `AckPolicy.NACK_ON_ERROR`, auto-commit off): a crash mid-batch means
  redelivery, never loss. Only the partitions the batch read are committed: aiokafka's
  default commits every assigned partition, an offset record each (the ledger's group has
  dozens), for every batch.
- A failing record is retried in place with exponential backoff, a bounded number of times,
  then published to the topic's `.dlq` twin with the error and its origin in headers; it never
  sinks its batch, and never blocks its partition.
- Events are deduplicated on `event_id` (processed markers in Redis, read for the whole batch
  in one round trip and written after success in one), and handlers are idempotent
  themselves, so a redelivery after a crash changes nothing.
- A consumer that wants only some event types (`event_types`) skips the others by the
  `event_type` header, without parsing them (a record without the header is parsed).
- Raw mode (`raw_handler`) is for recorders that take every record as it is, envelope or not,
  a batch at a time (the audit ledger, which also records the `.dlq` twins): see
  `ReliableConsumer._consume_raw`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.message import AckStatus, StreamMessage
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError
from redis.asyncio import Redis

from contracts.events import Envelope
from contracts.topics import Lane, dlq_of
from ocsea.runtime.consumer_spans import raw_record_spans, record_span
from ocsea.runtime.errors import is_infrastructure_error
from ocsea.runtime.lanes import LaneGate
from ocsea.runtime.lifecycle import check_producer_error
from ocsea.runtime.logging import get_logger
from ocsea.runtime.metrics import LATENCY_BUCKETS
from ocsea.runtime.settings import Settings

log = get_logger("ocsea.consumer")
T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where a message came from, and a digest of its exact bytes (for the audit ledger)."""

    topic: str
    partition: int
    offset: int
    body_sha256: str


Handler = Callable[[Envelope, Origin], Awaitable[None]]


async def _left_undecoded(_message: StreamMessage[object]) -> None:
    """FastStream's decoder for the reliable consumer: none. The handlers read the records'
    bytes themselves (pydantic parses them once); FastStream's default would `json.loads`
    every record first, for nothing."""
    return None


def _event_type_header(record: ConsumerRecord) -> str | None:
    for name, value in record.headers or ():
        if name == "event_type":
            return bytes(value).decode(errors="replace")
    return None


@dataclass(frozen=True)
class RawRecord:
    """A Kafka record exactly as it arrived, for handlers that must not assume an envelope."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    origin: Origin


RawHandler = Callable[[Sequence[RawRecord]], Awaitable[None]]


class PermanentError(Exception):
    """A failure that retrying cannot fix (e.g. a contract violation): dead-letter at once."""


def error_summary(exc: BaseException) -> str:
    """Describe a failure without echoing input values, which may be personal data."""
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return f"ValidationError: {'; '.join(parts)}"[:1000]
    return f"{type(exc).__name__}: {exc}"[:1000]


class ProcessedMarkers:
    """Which events a consumer group has already applied, by `event_id` (Redis)."""

    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    @staticmethod
    def _key(group: str, event_id: str) -> str:
        return f"ocsea:processed:{group}:{event_id}"

    async def seen_many(self, group: str, event_ids: Sequence[str]) -> list[bool]:
        if not event_ids:
            return []
        values = await self._redis.mget([self._key(group, e) for e in event_ids])
        return [value is not None for value in values]

    async def mark(self, group: str, event_id: str) -> None:
        await self._redis.set(self._key(group, event_id), "1", ex=self._ttl_s)

    async def mark_many(self, group: str, event_ids: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.set(self._key(group, event_id), "1", ex=self._ttl_s)
            await pipe.execute()


@dataclass
class RetryPolicy:
    max_attempts: int
    initial_backoff_s: float
    max_backoff_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.consumer_max_attempts,
            settings.consumer_backoff_initial_s,
            settings.consumer_backoff_max_s,
        )

    def backoff(self, attempt: int) -> float:
        """Exponential, capped, with jitter (so many waiting consumers do not retry in step)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2 ** min(attempt - 1, 30))
        return float(ceiling * random.uniform(0.5, 1.0))


@dataclass
class ConsumerHealth:
    """Records currently waiting out an infrastructure failure (readiness reports them)."""

    stalled: int = 0


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.retries = Counter(
            "ocsea_consumer_retries_total",
            "Handler failures retried, by consumer group and kind (infrastructure or handler)",
            ["group", "kind"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "ocsea_consumer_dead_letters_total",
            "Records parked on a .dlq twin, by consumer group",
            ["group"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "ocsea_consumer_batch_records",
            "Records per consumed batch, by consumer group",
            ["group"],
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
            registry=registry,
        )
        self.records = Counter(
            "ocsea_consumer_records",
            "Records a consumer group finished with, by outcome: applied, skipped as a "
            "duplicate, or not_wanted (a type the group does not handle; dead letters: "
            "ocsea_consumer_dead_letters_total)",
            ["group", "outcome"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "ocsea_consumer_handler_seconds",
            "Time one call of an event handler took (each attempt), by consumer group",
            ["group"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "ocsea_consumer_batch_seconds",
            "Time from taking a batch to having handled (or parked) every record of it, before "
            "its offsets are committed, by consumer group",
            ["group"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def start(self, group: str) -> None:
        """Show the group's counts at zero from the start: an alert on the increase of a
        counter sees its first dead letter only if the series was there before it."""
        self.dead_letters.labels(group)
        for outcome in ("applied", "duplicate"):
            self.records.labels(group, outcome)


class ReliableConsumer:
    """Wraps a handler of envelopes in batching, retry, dead-lettering, deduplication and
    safe commits."""

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        topics: Sequence[str],
        group_id: str,
        handler: Handler | None = None,
        markers: ProcessedMarkers,
        retry: RetryPolicy,
        raw_handler: RawHandler | None = None,
        raw_batch_size: int = 500,
        batch_max: int = 256,
        batch_wait_ms: int = 20,
        concurrency: int = 64,
        metrics: ConsumerMetrics | None = None,
        gate: LaneGate | None = None,
        lane: Lane | None = None,
        event_types: frozenset[str] | None = None,
    ) -> None:
        if (handler is None) == (raw_handler is None):
            raise ValueError("give exactly one of handler and raw_handler")
        if event_types is not None and raw_handler is not None:
            raise ValueError("a raw handler takes every record: no event_types")
        self.event_types = event_types
        self.broker = broker
        self.topics = tuple(topics)
        self.group_id = group_id
        self.handler = handler
        self.raw_handler = raw_handler
        self.markers = markers
        self.retry = retry
        self.metrics = metrics
        self.health = ConsumerHealth()
        # Only consumers of a lane's topics take part: other topics (e.g. the tasks topic)
        # carry both lanes' consequences and neither wait nor hold bulk back.
        self.gate = gate if lane is not None else None
        self.bulk = lane is Lane.BULK
        # Bounds the cases worked on at once (Redis connections, memory), not the batch.
        self._slots = asyncio.Semaphore(concurrency)
        # One subscriber (one group member) for all of a group's topics: several members of
        # one group joining one by one would each trigger a rebalance of the whole group.
        subscriber = broker.subscriber(
            *self.topics,
            group_id=group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=f"{group_id}:{','.join(self.topics)}",
            batch=True,
            max_records=raw_batch_size if raw_handler is not None else batch_max,
            # An idle consumer polls again after this long: the most a record waits when the
            # system is quiet (FastStream sleeps this long after an empty poll).
            batch_timeout_ms=batch_wait_ms,
            decoder=_left_undecoded,
        )
        subscriber(self._consume_raw if raw_handler else self._consume_batch)
        self._subscriber = subscriber
        if metrics is not None:
            metrics.start(group_id)

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records on each partition assigned to this member that it has not taken yet: the
        partition's end offset (asked of the broker) minus the member's position. Empty until
        the member has joined its group."""
        kafka = self._subscriber.consumer
        if kafka is None:
            return {}
        assigned = list(kafka.assignment())
        if not assigned:
            return {}
        ends = await kafka.end_offsets(assigned)
        lags: dict[tuple[str, int], int] = {}
        for tp in assigned:
            # A position not known yet (just assigned, being reset) is left out, not awaited.
            with contextlib.suppress(TimeoutError, IllegalStateError):
                position = await asyncio.wait_for(kafka.position(tp), timeout=1.0)
                if tp in ends:
                    lags[(tp.topic, tp.partition)] = max(0, int(ends[tp]) - int(position))
        return lags

    async def _consume_batch(self, message: KafkaMessage) -> None:
        started = time.perf_counter()
        if self.gate is None or self.bulk:
            await self._consume_records(message)
        else:
            with self.gate.live():
                await self._consume_records(message)
        await self._commit_read_partitions(message)
        if self.metrics is not None:
            self.metrics.batch_seconds.labels(self.group_id).observe(time.perf_counter() - started)

    async def _consume_records(self, message: KafkaMessage) -> None:
        received = message.raw_message
        records = received if isinstance(received, tuple) else (received,)
        parsed: list[tuple[ConsumerRecord, Envelope, Origin]] = []
        skipped = 0
        for record in records:
            if self.event_types is not None:
                stated = _event_type_header(record)
                if stated is not None and stated not in self.event_types:
                    skipped += 1
                    continue
            body = record.value or b""
            # The raw bytes, not FastStream's decoding: the digest must be of what was sent.
            origin = Origin(
                record.topic, record.partition, record.offset, hashlib.sha256(body).hexdigest()
            )
            try:
                envelope = Envelope.model_validate_json(body)
            except ValidationError as exc:
                await self._dead_letter(record, origin, exc, attempts=1)
                continue
            parsed.append((record, envelope, origin))
        if self.metrics is not None:
            self.metrics.batch_size.labels(self.group_id).observe(len(records))
            if skipped:
                self.metrics.records.labels(self.group_id, "not_wanted").inc(skipped)
        if not parsed:
            return
        ids = [str(envelope.event_id) for _, envelope, _ in parsed]
        seen = await self._until_done(lambda: self.markers.seen_many(self.group_id, ids))
        by_case: dict[bytes | str, list[tuple[ConsumerRecord, Envelope, Origin]]] = {}
        fresh: set[str] = set()
        for item, event_id, already in zip(parsed, ids, seen, strict=True):
            if already or event_id in fresh:
                log.debug("event.duplicate_skipped", event_id=event_id, topic=item[2].topic)
                continue
            fresh.add(event_id)
            by_case.setdefault(item[0].key or str(item[1].case_id), []).append(item)
        applied: list[str] = []
        # Every case runs to its end before the batch ends, even when one fails: a redelivery
        # must never overlap a case still being worked on.
        outcomes = await asyncio.gather(
            *(self._consume_case(items, applied) for items in by_case.values()),
            return_exceptions=True,
        )
        # Even when a dead letter could not be published (the batch is then redelivered),
        # what was applied is marked, so the redelivery skips it.
        if applied:
            await self._until_done(lambda: self.markers.mark_many(self.group_id, applied))
        if self.metrics is not None:
            self.metrics.records.labels(self.group_id, "applied").inc(len(applied))
            self.metrics.records.labels(self.group_id, "duplicate").inc(len(parsed) - len(fresh))
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _commit_read_partitions(self, message: KafkaMessage) -> None:
        """Commit the batch's partitions, each past its last record, once the batch is done.
        If that fails, FastStream's acknowledgement commits every partition's position
        afterwards, as it would have done anyway (and logs what fails there)."""
        consumer = message.consumer
        if not isinstance(consumer, AIOKafkaConsumer):
            return  # a test double: FastStream's acknowledgement commits
        received = message.raw_message
        offsets: dict[TopicPartition, int] = {}
        for record in received if isinstance(received, tuple) else (received,):
            partition = TopicPartition(record.topic, record.partition)
            offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            log.warning("consumer.commit_failed", group=self.group_id, error=error_summary(exc))
            return
        message.committed = AckStatus.ACKED

    async def _until_done(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run a step of the consumer's own (its markers) until Redis answers: failing here
        would rewind the batch and redeliver it at once, in a hot loop."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await step()
            except Exception as exc:
                if not is_infrastructure_error(exc):
                    raise
                log.warning(
                    "consumer.markers_unavailable", attempt=attempt, error=error_summary(exc)
                )
                self.health.stalled += 1
                try:
                    await asyncio.sleep(self.retry.backoff(attempt))
                finally:
                    self.health.stalled -= 1

    async def _consume_case(
        self, items: list[tuple[ConsumerRecord, Envelope, Origin]], applied: list[str]
    ) -> None:
        async with self._slots:
            for record, envelope, origin in items:
                if self.bulk and self.gate is not None:
                    await self.gate.bulk_turn()
                with record_span(record, self.group_id):
                    failure = await self._run_with_retries(envelope, origin)
                if failure is not None:
                    error, attempts = failure
                    await self._dead_letter(
                        record, origin, error, attempts=attempts, envelope=envelope
                    )
                    continue
                applied.append(str(envelope.event_id))

    async def _consume_raw(self, message: KafkaMessage) -> None:
        """Hand over a batch of records as they are; retry until the handler succeeds; never
        dead-letter, never skip.

        A raw handler accepts any bytes, so what fails is its own store (a database outage),
        which waiting cures; dead-lettering would leave a gap in a ledger that must have none
        (and a dead letter's own dead letter would loop). After the bounded retries the error
        propagates: no offset of the batch is committed, and it is redelivered after a pause.
        """
        assert self.raw_handler is not None
        received = message.raw_message
        batch = [
            RawRecord(
                record.key,
                record.value or b"",
                tuple(record.headers or ()),
                int(record.timestamp or 0),
                Origin(
                    record.topic,
                    record.partition,
                    record.offset,
                    hashlib.sha256(record.value or b"").hexdigest(),
                ),
            )
            for record in (received if isinstance(received, tuple) else (received,))
        ]
        started = time.perf_counter()
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                with raw_record_spans(batch, self.group_id):
                    await self.raw_handler(batch)
                await self._commit_read_partitions(message)
                if self.metrics is not None:
                    self.metrics.records.labels(self.group_id, "applied").inc(len(batch))
                    self.metrics.batch_seconds.labels(self.group_id).observe(
                        time.perf_counter() - started
                    )
                return
            except Exception as exc:
                log.warning(
                    "records.handler_failed",
                    topic=batch[0].origin.topic if batch else None,
                    first_offset=batch[0].origin.offset if batch else None,
                    records=len(batch),
                    attempt=attempt,
                    error=error_summary(exc),
                )
                if attempt == self.retry.max_attempts:
                    # The pause keeps an outage from turning redelivery into a busy loop.
                    await asyncio.sleep(self.retry.max_backoff_s)
                    raise
                await asyncio.sleep(self.retry.backoff(attempt))

    async def _run_with_retries(
        self, envelope: Envelope, origin: Origin
    ) -> tuple[BaseException, int] | None:
        """None once the handler succeeded; else the error that parks the record.

        A contract violation parks it at once; an infrastructure failure (Redis, the broker,
        the database, a lock held too long) is waited out, without limit, since the record
        will succeed once it is back; any other failure (a bug) gets a bounded number of
        attempts, then the record is parked, to be re-driven after the fix."""
        assert self.handler is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._timed_handler(envelope, origin)
                return None
            except (PermanentError, ValidationError) as exc:
                return exc, attempt
            except Exception as exc:
                infrastructure = is_infrastructure_error(exc)
                log.warning(
                    "event.handler_failed",
                    event_id=str(envelope.event_id),
                    case_id=str(envelope.case_id),
                    topic=origin.topic,
                    partition=origin.partition,
                    offset=origin.offset,
                    attempt=attempt,
                    infrastructure=infrastructure,
                    error=error_summary(exc),
                )
                if self.metrics is not None:
                    self.metrics.retries.labels(
                        self.group_id, "infrastructure" if infrastructure else "handler"
                    ).inc()
                if not infrastructure and attempt >= self.retry.max_attempts:
                    return exc, attempt
                if infrastructure:
                    self.health.stalled += 1
                try:
                    await asyncio.sleep(self.retry.backoff(attempt))
                finally:
                    if infrastructure:
                        self.health.stalled -= 1

    async def _timed_handler(self, envelope: Envelope, origin: Origin) -> None:
        assert self.handler is not None
        started = time.perf_counter()
        try:
            await self.handler(envelope, origin)
        finally:
            if self.metrics is not None:
                self.metrics.handler_seconds.labels(self.group_id).observe(
                    time.perf_counter() - started
                )

    async def _dead_letter(
        self,
        record: ConsumerRecord,
        origin: Origin,
        exc: BaseException,
        *,
        attempts: int,
        envelope: Envelope | None = None,
    ) -> None:
        headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}
        headers.update(
            {
                "x-ocsea-error": error_summary(exc),
                "x-ocsea-error-type": type(exc).__name__,
                "x-ocsea-origin-topic": origin.topic,
                "x-ocsea-origin-partition": str(origin.partition),
                "x-ocsea-origin-offset": str(origin.offset),
                "x-ocsea-consumer-group": self.group_id,
                "x-ocsea-attempts": str(attempts),
                "x-ocsea-dead-lettered-at": datetime.now(UTC).isoformat(),
            }
        )
        if self.metrics is not None:
            self.metrics.dead_letters.labels(self.group_id).inc()
        # If this publish fails the exception propagates, the offset is not committed and
        # the message is redelivered: dead-lettering is itself at-least-once. The pause keeps
        # a broker outage from turning redelivery into a busy loop.
        try:
            await self.broker.publish(
                record.value, topic=dlq_of(origin.topic), key=record.key, headers=headers
            )
        except Exception as publish_error:
            check_producer_error(publish_error)
            log.exception("event.dead_letter_failed", topic=origin.topic, offset=origin.offset)
            await asyncio.sleep(self.retry.max_backoff_s)
            raise
        log.error(
            "event.dead_lettered",
            event_id=str(envelope.event_id) if envelope else None,
            topic=origin.topic,
            partition=origin.partition,
            offset=origin.offset,
            attempts=attempts,
            error_type=type(exc).__name__,
        )
