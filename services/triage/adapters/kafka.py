"""Kafka for triage: publishing its events, and reading history (for replays and rebuilds: no
consumer group, nothing committed, no producer)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from contracts.events import Envelope, EventType, ReportReceivedData
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.topic_reader import partitions_of, read_to_end
from services.triage.ports import RecordedReport, Recording


class KafkaPublisher:
    """The `EventPublisher` port: keyed by case, acknowledged by the broker."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish(self, topic: str, event: Envelope) -> None:
        await publish_event(self._broker, topic, event)


class KafkaEventHistory:
    """The `EventHistory` port: the topics' events up to their end as of now."""

    def __init__(self, bootstrap: str, *, within_s: float) -> None:
        self.bootstrap = bootstrap
        self.within_s = within_s

    async def read(self, topics: Sequence[str]) -> AsyncIterator[Envelope]:
        async for batch in read_to_end(self.bootstrap, topics, within_s=self.within_s):
            for record in batch:
                try:
                    yield Envelope.model_validate_json(record.value or b"")
                except ValidationError:
                    continue  # not an event: the consumers park it, the state has no part of it


class KafkaReceivedHistory:
    """The `ReceivedHistory` port: a topic's `report.received` events up to its end as of now."""

    def __init__(self, bootstrap: str, topic: str, *, within_s: float = 120.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.within_s = within_s

    async def read(self, *, until_ms: int | None) -> Recording:
        if not await partitions_of(self.bootstrap, [self.topic]):
            raise LookupError(f"topic {self.topic} does not exist")
        records = [
            record
            async for batch in read_to_end(self.bootstrap, [self.topic], within_s=self.within_s)
            for record in batch
        ]
        reports, skipped = [], 0
        # Kafka keeps one case's reports in order within its partition; across partitions the
        # broker's timestamps order them.
        for record in sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset)):
            if until_ms is not None and record.timestamp >= until_ms:
                continue
            try:
                envelope = Envelope.model_validate_json(record.value or b"")
                if envelope.event_type != EventType.REPORT_RECEIVED:
                    skipped += 1
                    continue
                received = envelope.payload(ReportReceivedData)
            except ValidationError:
                skipped += 1
                continue
            reports.append(RecordedReport(record.timestamp, envelope.case_id, received))
        return Recording(reports, skipped)
