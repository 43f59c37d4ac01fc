"""Routing's subscribers on the shared reliable consumer, one consumer group each, so one never
waits for another:

- `<prefix>.routing` (live lane) and `<prefix>.routing.bulk` (bulk lane): `report.triaged` →
  assign the tasks the case needs (other types are ignored);
- `<prefix>.routing.cases` and `<prefix>.routing.cases.bulk`: `report.received` → keep the
  case's reports (personal data sealed);
- `<prefix>.routing.projection`: task events → the projection and its timers, and each
  `task.assigned` on to the dispatch topics and webhooks.
"""

from __future__ import annotations

from contracts.events import Envelope, EventType
from contracts.topics import Lane
from ocsea.runtime.consumer import Origin
from ocsea.runtime.service import ServiceContext
from services.routing.config import RoutingTopics
from services.routing.handlers import RoutingHandlers

PROJECTION_GROUP = "projection"


def projection_group(context: ServiceContext) -> str:
    """The projection consumer's group id (the writer marks what it applied for it)."""
    return f"{context.group_id}.{PROJECTION_GROUP}"


def subscribe(context: ServiceContext, handlers: RoutingHandlers, topics: RoutingTopics) -> None:
    async def on_triaged(envelope: Envelope, _origin: Origin) -> None:
        await handlers.on_triaged(envelope)

    async def on_received(envelope: Envelope, _origin: Origin) -> None:
        await handlers.cases.keep_report(envelope)

    async def on_task_event(envelope: Envelope, _origin: Origin) -> None:
        await handlers.task_events.on_task_event(envelope)

    # One consumer group per lane: a bulk backlog never delays a live report. Of the triaged
    # topics' events only the results call for tasks (a reclassification's result follows it).
    results = (EventType.REPORT_TRIAGED,)
    context.consume(topics.triaged, handler=on_triaged, lane=Lane.LIVE, event_types=results)
    context.consume(
        topics.triaged_bulk,
        handler=on_triaged,
        group_suffix=Lane.BULK,
        lane=Lane.BULK,
        event_types=results,
    )
    context.consume(topics.received, handler=on_received, group_suffix="cases", lane=Lane.LIVE)
    context.consume(
        topics.received_bulk, handler=on_received, group_suffix=f"cases.{Lane.BULK}", lane=Lane.BULK
    )
    context.consume(topics.tasks, handler=on_task_event, group_suffix=PROJECTION_GROUP)
