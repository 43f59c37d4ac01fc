"""The status projection's subscription, on the shared reliable consumer: both lanes' triage
results (a batch row's status follows the bulk lane) and routing's task events."""

from __future__ import annotations

from contracts import topics
from contracts.events import Envelope, EventType
from ocsea.runtime.consumer import Origin
from ocsea.runtime.service import ServiceContext
from services.intake.handlers.submissions import Intake


def subscribe(context: ServiceContext, intake: Intake) -> None:
    async def on_progress(envelope: Envelope, _origin: Origin) -> None:
        await intake.on_progress(envelope)

    context.consume(
        topics.REPORTS_TRIAGED,
        topics.REPORTS_TRIAGED_BULK,
        topics.TASKS_EVENTS,
        handler=on_progress,
        group_suffix="status",
        # Most of the tasks topic is other task events: left unparsed.
        event_types=(EventType.REPORT_TRIAGED, EventType.TASK_ASSIGNED),
    )
