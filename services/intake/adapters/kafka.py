"""Kafka for intake: publishing its events on the service's broker (`acks=all`, idempotent
producer), and reading history to rebuild its state (no consumer group, nothing committed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from contracts.events import Envelope
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.topic_reader import read_to_end
from services.intake.domain.rebuild import Recorded
from services.intake.ports import EventTooLarge


class KafkaPublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish(self, topic: str, event: Envelope) -> None:
        try:
            await publish_event(self._broker, topic, event)
        except MessageSizeTooLargeError as exc:
            raise EventTooLarge from exc


class KafkaEventHistory:
    """The `EventHistory` port: the topics' events of some types up to their end as of now."""

    def __init__(self, bootstrap: str, *, within_s: float) -> None:
        self.bootstrap = bootstrap
        self.within_s = within_s

    async def read(
        self, topics: Sequence[str], event_types: Iterable[str]
    ) -> AsyncIterator[list[Recorded]]:
        wanted = frozenset(event_types)
        async for batch in read_to_end(self.bootstrap, topics, within_s=self.within_s):
            found = []
            for record in batch:
                # The type is in the headers: most of the tasks topic is never parsed.
                headers = dict(record.headers or ())
                stated = headers.get("event_type")
                if stated is not None and stated.decode(errors="replace") not in wanted:
                    continue
                try:
                    envelope = Envelope.model_validate_json(record.value or b"")
                except ValidationError:
                    continue  # not an event: the consumers park it, the state has no part of it
                if envelope.event_type in wanted:
                    found.append(
                        Recorded(record.topic, envelope, record.value or b"", record.timestamp)
                    )
            if found:
                yield found
