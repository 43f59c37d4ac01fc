"""Publishing intake's events on the service's broker (`acks=all`, idempotent producer)."""

from __future__ import annotations

from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker

from contracts.events import Envelope
from ocsea.runtime.kafka import publish_event
from services.intake.ports import EventTooLarge


class KafkaPublisher:
    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish(self, topic: str, event: Envelope) -> None:
        try:
            await publish_event(self._broker, topic, event)
        except MessageSizeTooLargeError as exc:
            raise EventTooLarge from exc
