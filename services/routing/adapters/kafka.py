"""Routing's ports on Kafka: publishing events, replaying topics for a rebuild, and the
projection consumer's processed markers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from contracts.events import Envelope
from ocsea.runtime.consumer import ProcessedMarkers
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.topic_reader import read_to_end

REPLAY_WITHIN_S = 600.0
"""How long a replay of one topic may take before the rebuild gives up (and is retried)."""


class KafkaPublisher:
    """The `Publisher` port: acks=all, idempotent, as every producer of the project."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def __call__(self, topic: str, event: Envelope) -> None:
        await publish_event(self._broker, topic, event)


class KafkaReplay:
    """The `TopicReplay` port: a topic's envelopes, in partition order, from its beginning to
    the end it had when the replay started (what arrives later is the live consumers' work).
    Records that are not envelopes were dead-lettered by the consumers and are skipped."""

    def __init__(self, bootstrap: str, *, within_s: float = REPLAY_WITHIN_S) -> None:
        self._bootstrap = bootstrap
        self._within_s = within_s

    async def __call__(self, topic: str, handle: Callable[[Envelope], Awaitable[None]]) -> int:
        count = 0
        async for records in read_to_end(self._bootstrap, [topic], within_s=self._within_s):
            for record in records:
                try:
                    envelope = Envelope.model_validate_json(record.value or b"")
                except ValidationError:
                    continue
                await handle(envelope)
                count += 1
        return count


class AppliedMarker:
    """The `AppliedMarks` port: an event the writer applied is marked processed for the
    projection consumer's group, which then skips it."""

    def __init__(self, markers: ProcessedMarkers, group_id: str) -> None:
        self._markers = markers
        self._group_id = group_id

    async def __call__(self, event: Envelope) -> None:
        await self._markers.mark(self._group_id, str(event.event_id))
