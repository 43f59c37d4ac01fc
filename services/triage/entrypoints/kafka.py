"""Triage's subscribers: received reports, one consumer group per lane, so a bulk backlog never
delays a live report (each on the shared reliable consumer)."""

from __future__ import annotations

from contracts import topics
from contracts.events import Envelope
from contracts.topics import Lane
from ocsea.runtime.consumer import Origin
from ocsea.runtime.service import ServiceContext
from services.triage.domain.lanes import lane_of_topic
from services.triage.handlers import TriageHandlers


def subscribe(context: ServiceContext, handlers: TriageHandlers) -> None:
    async def on_received(envelope: Envelope, origin: Origin) -> None:
        await handlers.report_received(envelope, lane_of_topic(origin.topic))

    context.consume(topics.REPORTS_RECEIVED, handler=on_received, lane=Lane.LIVE)
    context.consume(
        topics.REPORTS_RECEIVED_BULK, handler=on_received, group_suffix=Lane.BULK, lane=Lane.BULK
    )
