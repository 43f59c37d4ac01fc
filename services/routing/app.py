"""Routing transport: triaged reports in, tasks out, and the officers' task API."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query

from contracts import topics
from contracts.events import (
    Actor,
    ActorKind,
    Envelope,
    EventType,
    Priority,
    ReportTriagedData,
    TaskAssignedData,
    derived_event_id,
    make_event,
    utc_now,
)
from contracts.reports import ErrorBody
from ocsea.runtime.auth import OfficerPrincipal, PrincipalStore
from ocsea.runtime.consumer import Origin
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.logging import get_logger
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.routing.directory import load_directory
from services.routing.policy import assign
from services.routing.store import TaskStore, TaskView

log = get_logger("ocsea.routing")
SYSTEM = Actor(kind=ActorKind.SYSTEM, id="routing")


def build(settings: Settings) -> FastAPI:
    directory = load_directory(settings.routing_directory_file)
    context = ServiceContext.create("routing", settings)
    tasks = TaskStore(context.redis)

    async def on_triaged(envelope: Envelope, _origin: Origin) -> None:
        if envelope.event_type != EventType.REPORT_TRIAGED:
            return
        triaged = envelope.payload(ReportTriagedData)
        # Deadlines run from the moment of triage, so a redelivery computes the same ones.
        assignment = assign(triaged, directory, envelope.occurred_at)
        task_id = derived_event_id(str(envelope.event_id), "task", assignment.agency.id)
        data = TaskAssignedData(
            task_id=task_id,
            report_id=triaged.report_id,
            agency_id=assignment.agency.id,
            agency_type=assignment.agency.type,
            classification=triaged.classification,
            priority=triaged.priority,
            reason=assignment.reason,
            acknowledge_due_at=assignment.acknowledge_due_at,
            first_action_due_at=assignment.first_action_due_at,
        )
        event = make_event(
            event_type=EventType.TASK_ASSIGNED,
            event_id=derived_event_id(str(task_id), EventType.TASK_ASSIGNED),
            case_id=envelope.case_id,
            report_id=envelope.report_id,
            producer="routing",
            actor=SYSTEM,
            data=data,
        )
        await publish_event(context.broker, topics.TASKS_EVENTS, event)
        log.info(
            "task.assigned",
            case_id=str(envelope.case_id),
            task_id=str(task_id),
            agency=assignment.agency.id,
            priority=triaged.priority.value,
        )

    async def project_task_event(envelope: Envelope, _origin: Origin) -> None:
        if envelope.event_type == EventType.TASK_ASSIGNED:
            await tasks.apply_assigned(
                envelope.case_id, envelope.payload(TaskAssignedData), envelope.occurred_at
            )

    context.consume(topics.REPORTS_TRIAGED, handler=on_triaged)
    context.consume(topics.TASKS_EVENTS, handler=project_task_event, group_suffix="projection")

    app = create_http_app(
        context,
        title="ocsea routing",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    errors: dict[int | str, dict[str, object]] = {
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
    }

    def with_time_left(task: TaskView) -> TaskView:
        left = (task.acknowledge_due_at - utc_now()).total_seconds()
        return task.model_copy(update={"seconds_to_acknowledge": round(left, 1)})

    @app.get("/v1/tasks", response_model=list[TaskView], responses=errors, tags=["tasks"])
    async def list_tasks(
        principal: OfficerPrincipal,
        status: Annotated[str | None, Query(max_length=40)] = None,
        priority: Priority | None = None,
    ) -> list[TaskView]:
        """The caller's inbox: tasks of the caller's own agency, most urgent first."""
        assert principal.agency is not None
        found = [
            t
            for t in await tasks.for_agency(principal.agency)
            if (status is None or t.status == status)
            and (priority is None or t.priority is priority)
        ]
        found.sort(key=lambda t: (t.priority.value, t.acknowledge_due_at))
        return [with_time_left(t) for t in found]

    @app.get("/v1/tasks/{task_id}", response_model=TaskView, responses=errors, tags=["tasks"])
    async def get_task(task_id: uuid.UUID, principal: OfficerPrincipal) -> TaskView:
        task = await tasks.get(task_id)
        # Another agency's task is indistinguishable from a missing one.
        if task is None or task.agency_id != principal.agency:
            raise HTTPException(404, {"code": "task_not_found", "message": "no such task"})
        return with_time_left(task)

    return app
