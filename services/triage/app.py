"""Triage transport: `ocsea.reports.received.v1` in, `ocsea.reports.triaged.v1` out."""

from __future__ import annotations

from fastapi import FastAPI

from contracts import topics
from contracts.events import (
    Actor,
    ActorKind,
    Envelope,
    EventType,
    ReportReceivedData,
    derived_event_id,
    make_event,
)
from ocsea.runtime.consumer import Origin
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.logging import get_logger
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.triage.domain import triage

log = get_logger("ocsea.triage")
SYSTEM = Actor(kind=ActorKind.SYSTEM, id="triage")


def build(settings: Settings) -> FastAPI:
    context = ServiceContext.create("triage", settings)

    async def on_received(envelope: Envelope, _origin: Origin) -> None:
        if envelope.event_type != EventType.REPORT_RECEIVED:
            return
        result = triage(envelope.payload(ReportReceivedData))
        event = make_event(
            event_type=EventType.REPORT_TRIAGED,
            # Same input, same output id: a redelivered report yields a duplicate that
            # routing and audit recognise, not a second triage.
            event_id=derived_event_id(str(envelope.event_id), EventType.REPORT_TRIAGED),
            case_id=envelope.case_id,
            report_id=envelope.report_id,
            producer="triage",
            actor=SYSTEM,
            data=result,
        )
        await publish_event(context.broker, topics.REPORTS_TRIAGED, event)
        log.info(
            "report.triaged",
            case_id=str(envelope.case_id),
            report_id=str(envelope.report_id),
            classification=result.classification.value,
            priority=result.priority.value,
        )

    context.consume(topics.REPORTS_RECEIVED, handler=on_received)
    return create_http_app(context, title="ocsea triage")
