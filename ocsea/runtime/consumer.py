"""The reliable consumer every service uses: nothing lost, nothing applied twice.

- The offset is committed only after the handler returned (FastStream `AckPolicy.NACK_ON_ERROR`
  with auto-commit off): a crash mid-handler means redelivery, never loss.
- A failing message is retried in place with exponential backoff, a bounded number of times,
  then published to the topic's `.dlq` twin with the error and its origin in headers, and only
  then committed: a poison message never blocks its partition and never disappears.
- Events are deduplicated on `event_id` (a processed marker in Redis, set after success), and
  handlers are idempotent themselves, so a redelivery after a crash changes nothing.
- Raw mode (`raw_handler`) is for recorders that take every record as it is, envelope or not,
  a batch at a time (the audit ledger, which also records the `.dlq` twins): see
  `ReliableConsumer._consume_raw`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from pydantic import ValidationError
from redis.asyncio import Redis

from contracts.events import Envelope
from contracts.topics import dlq_of
from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings

log = get_logger("ocsea.consumer")


@dataclass(frozen=True)
class Origin:
    """Where a message came from, and a digest of its exact bytes (for the audit ledger)."""

    topic: str
    partition: int
    offset: int
    body_sha256: str


Handler = Callable[[Envelope, Origin], Awaitable[None]]


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

    async def seen(self, group: str, event_id: str) -> bool:
        return bool(await self._redis.exists(self._key(group, event_id)))

    async def mark(self, group: str, event_id: str) -> None:
        await self._redis.set(self._key(group, event_id), "1", ex=self._ttl_s)


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
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1)))


class ReliableConsumer:
    """Wraps a handler of envelopes in retry, dead-lettering, deduplication and safe commits."""

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
    ) -> None:
        if (handler is None) == (raw_handler is None):
            raise ValueError("give exactly one of handler and raw_handler")
        self.broker = broker
        self.topics = tuple(topics)
        self.group_id = group_id
        self.handler = handler
        self.raw_handler = raw_handler
        self.markers = markers
        self.retry = retry
        # One subscriber (one group member) for all of a group's topics: several members of
        # one group joining one by one would each trigger a rebalance of the whole group.
        subscriber = broker.subscriber(
            *self.topics,
            group_id=group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=f"{group_id}:{','.join(self.topics)}",
            # Raw mode takes what has arrived, up to a batch, without waiting for more.
            batch=raw_handler is not None,
            max_records=raw_batch_size if raw_handler is not None else None,
        )
        subscriber(self._consume_raw if raw_handler else self._consume)

    async def _consume(self, message: KafkaMessage) -> None:
        # The raw bytes, not FastStream's decoding: the digest must be of what was sent.
        body = message.body
        record = message.raw_message
        assert not isinstance(record, tuple)  # single-message subscriber
        origin = Origin(
            record.topic, record.partition, record.offset, hashlib.sha256(body).hexdigest()
        )
        try:
            envelope = Envelope.model_validate_json(body)
        except ValidationError as exc:
            await self._dead_letter(message, origin, exc, attempts=1)
            return
        event_id = str(envelope.event_id)
        if await self.markers.seen(self.group_id, event_id):
            log.info("event.duplicate_skipped", event_id=event_id, topic=origin.topic)
            return
        failure = await self._run_with_retries(envelope, origin)
        if failure is not None:
            error, attempts = failure
            await self._dead_letter(message, origin, error, attempts=attempts, envelope=envelope)
            return
        await self.markers.mark(self.group_id, event_id)

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
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                await self.raw_handler(batch)
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
        assert self.handler is not None
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                await self.handler(envelope, origin)
                return None
            except (PermanentError, ValidationError) as exc:
                return exc, attempt
            except Exception as exc:
                log.warning(
                    "event.handler_failed",
                    event_id=str(envelope.event_id),
                    case_id=str(envelope.case_id),
                    topic=origin.topic,
                    partition=origin.partition,
                    offset=origin.offset,
                    attempt=attempt,
                    error=error_summary(exc),
                )
                if attempt == self.retry.max_attempts:
                    return exc, attempt
                await asyncio.sleep(self.retry.backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _dead_letter(
        self,
        message: KafkaMessage,
        origin: Origin,
        exc: BaseException,
        *,
        attempts: int,
        envelope: Envelope | None = None,
    ) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)
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
        # If this publish fails the exception propagates, the offset is not committed and
        # the message is redelivered: dead-lettering is itself at-least-once. The pause keeps
        # a broker outage from turning redelivery into a busy loop.
        try:
            await self.broker.publish(
                record.value, topic=dlq_of(origin.topic), key=record.key, headers=headers
            )
        except Exception:
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
