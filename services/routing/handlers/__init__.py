"""Routing's use cases, over the ports of `ports.py`:

- assign a triaged case (`assignment.py`), and re-route it after a decline;
- the officers' inbox and commands on tasks (`tasks.py`);
- timers due → warn, breach, escalate (`timers.py`);
- a case's view, with the access check, the access record and the decryption (`cases.py`);
- erase a case's personal data (`erasure.py`);
- keep the tasks' projection present and fed (`projection.py`).

`RoutingHandlers` wires them to one set of ports; `bootstrap.py` gives it the real adapters,
the fast tests in-memory fakes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from contracts.directory import Directory
from contracts.events import Envelope, ErasureReason, EventType, utc_now
from ocsea.runtime.access import AccessRecord
from ocsea.runtime.logging import get_logger
from services.routing.config import RoutingTopics
from services.routing.domain.tasks import TaskState
from services.routing.handlers.assignment import Assignments
from services.routing.handlers.cases import CaseHandlers
from services.routing.handlers.erasure import erase_case
from services.routing.handlers.projection import Projection, TaskEvents
from services.routing.handlers.tasks import TaskHandlers
from services.routing.handlers.timers import SlaTimers
from services.routing.handlers.views import ErasureResult
from services.routing.handlers.writer import TaskWriter
from services.routing.ports import (
    AppliedMarks,
    CaseKeyring,
    CaseStore,
    Clock,
    Dispatch,
    Notes,
    ProjectionStore,
    Publisher,
    RoutingFigures,
    TaskStore,
    TopicReplay,
)


@dataclass(frozen=True)
class RoutingPorts:
    tasks: TaskStore
    cases: CaseStore
    projection: ProjectionStore
    publish: Publisher
    replay: TopicReplay
    figures: RoutingFigures
    keys: CaseKeyring
    access: AccessRecord
    clock: Clock = utc_now
    dispatch: Dispatch | None = None
    mark_applied: AppliedMarks | None = None
    notes: Notes = field(default_factory=lambda: get_logger("ocsea.routing"))


class RoutingHandlers:
    """Routing's use cases, wired to one set of ports."""

    def __init__(self, ports: RoutingPorts, directory: Directory, topics: RoutingTopics) -> None:
        self.ports = ports
        self.topics = topics
        self.writer = TaskWriter(
            ports.tasks, ports.publish, topics.tasks, ports.figures, ports.mark_applied
        )
        self.projection = Projection(
            store=ports.projection,
            cases=ports.cases,
            replay=ports.replay,
            topics=topics,
            dispatch=ports.dispatch,
        )
        self.assignments = Assignments(
            tasks=ports.tasks,
            cases=ports.cases,
            writer=self.writer,
            directory=directory,
            figures=ports.figures,
            clock=ports.clock,
            dispatch=ports.dispatch,
            mark_applied=ports.mark_applied,
        )
        self.task_events = TaskEvents(
            tasks=ports.tasks,
            assignments=self.assignments,
            projection=self.projection,
            dispatch=ports.dispatch,
        )
        self.tasks = TaskHandlers(
            tasks=ports.tasks,
            writer=self.writer,
            assignments=self.assignments,
            directory=directory,
            ready=self.projection.ensure,
            clock=ports.clock,
            notes=ports.notes,
        )
        self.timers = SlaTimers(
            tasks=ports.tasks, writer=self.writer, figures=ports.figures, clock=ports.clock
        )
        self.cases = CaseHandlers(
            tasks=ports.tasks,
            cases=ports.cases,
            keys=ports.keys,
            access=ports.access,
            directory=directory,
            ready=self.projection.ensure,
        )

    async def on_triaged(self, event: Envelope) -> list[TaskState]:
        """A triage result: the tasks it calls for assigned (other event types ignored: e.g.
        `case.reclassified`, whose triaged result follows and carries it)."""
        if event.event_type != EventType.REPORT_TRIAGED:
            return []
        await self.projection.ensure()
        return await self.assignments.assign_triaged(event)

    async def erase(
        self,
        case_id: uuid.UUID,
        *,
        reason: ErasureReason,
        operator: str,
        reference: str | None = None,
    ) -> ErasureResult:
        async def on_cases_topic(event: Envelope) -> None:
            await self.ports.publish(self.topics.cases, event)

        return await erase_case(
            self.ports.keys,
            on_cases_topic,
            case_id,
            reason=reason,
            operator=operator,
            reference=reference,
        )


__all__ = ["RoutingHandlers", "RoutingPorts"]
