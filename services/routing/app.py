"""Routing transport: triaged cases in, tasks out, SLA timers, delivery, and the officers' API.

Consumer groups (each its own, so one never waits for another):
- `<prefix>.routing` (live lane) and `<prefix>.routing.bulk` (bulk lane): `report.triaged` →
  reconcile the case's tasks (other types are ignored);
- `<prefix>.routing.cases` and `<prefix>.routing.cases.bulk`: `report.received` → keep the
  case's reports (personal data sealed);
- `<prefix>.routing.projection`: task events → the Redis projection and its timers, and each
  `task.assigned` on to the dispatch topics and webhooks.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidTag
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.directory import Directory, load_directory
from contracts.events import (
    ERASURE_REFERENCE_PATTERN,
    Actor,
    ActorKind,
    AgencyType,
    Classification,
    DeliveryOutcome,
    Envelope,
    ErasureReason,
    EscalationTarget,
    EventType,
    IncidentFacts,
    Priority,
    ReportTriagedData,
    SlaDeadline,
    SurvivorFacts,
    TaskStatus,
    utc_now,
)
from contracts.reports import ErrorBody, Language, RiskFlag, ViolenceType
from contracts.tasks import Command, InboxSort
from contracts.topics import Lane
from ocsea.runtime.access import AccessLog, Basis, CaseGrounds
from ocsea.runtime.auth import Principal, PrincipalStore, Role, require
from ocsea.runtime.consumer import Origin
from ocsea.runtime.crypto import CaseErasedError, CaseKeyNotFoundError, CaseKeys
from ocsea.runtime.kafka import ensure_topics, publish_event
from ocsea.runtime.keystore import ErasureNotice
from ocsea.runtime.logging import get_logger
from ocsea.runtime.metrics import refresh_periodically
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.routing.access import can_command, can_see, case_grounds, is_coordinator
from services.routing.delivery import Dispatcher
from services.routing.engine import (
    DueLoop,
    Projection,
    RoutingEngine,
    RoutingMetrics,
    RoutingTopics,
)
from services.routing.erasure import ErasureIncompleteError, ErasureNotRecordedError, erase_case
from services.routing.inbox import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Cursor,
    CursorError,
    InboxFilter,
    inbox_page,
)
from services.routing.metrics import TaskGauges
from services.routing.store import LockTimeoutError, RoutingStore
from services.routing.tasks import InvalidTransitionError, TaskState, satisfied

log = get_logger("ocsea.routing")

PROJECTION_GROUP = "projection"
StaffPrincipal = Annotated[Principal, Depends(require(Role.OFFICER, Role.SUPERVISOR))]
SupervisorPrincipal = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
OperatorPrincipal = Annotated[Principal, Depends(require(Role.OPERATOR))]


class TaskView(BaseModel):
    """A task as an officer sees it, with the time left before each open deadline."""

    task_id: uuid.UUID
    case_id: uuid.UUID
    report_id: uuid.UUID
    agency_id: str
    agency_type: AgencyType
    unit_id: str | None
    role: AgencyType
    status: TaskStatus
    version: int
    priority: Priority
    classification: Classification
    reason: str
    criteria: tuple[str, ...]
    assigned_at: AwareDatetime
    acknowledge_due_at: AwareDatetime
    first_action_due_at: AwareDatetime
    seconds_to_acknowledge: float | None = Field(
        description="Negative when overdue; null once acknowledged"
    )
    seconds_to_first_action: float | None = Field(
        description="Negative when overdue; null once accepted"
    )
    overdue: bool
    escalation_level: int
    escalated_to: EscalationTarget | None
    escalated_to_agency: str | None
    acknowledged_at: AwareDatetime | None
    accepted_at: AwareDatetime | None
    resolved_at: AwareDatetime | None
    outcome: str | None
    decline_reason: str | None
    previous_task_id: uuid.UUID | None
    replaced_by: uuid.UUID | None
    deliveries: dict[str, DeliveryOutcome]


def task_view(task: TaskState, now: datetime) -> TaskView:
    left: dict[SlaDeadline, float | None] = {
        kind: None if satisfied(task, kind) else round((state.due_at - now).total_seconds(), 1)
        for kind, state in task.deadlines.items()
    }
    return TaskView(
        **task.model_dump(
            include={
                "task_id",
                "case_id",
                "report_id",
                "agency_id",
                "agency_type",
                "unit_id",
                "role",
                "status",
                "version",
                "priority",
                "classification",
                "reason",
                "criteria",
                "assigned_at",
                "escalation_level",
                "escalated_to",
                "escalated_to_agency",
                "acknowledged_at",
                "accepted_at",
                "resolved_at",
                "outcome",
                "decline_reason",
                "previous_task_id",
                "replaced_by",
                "deliveries",
            }
        ),
        acknowledge_due_at=task.deadlines[SlaDeadline.ACKNOWLEDGE].due_at,
        first_action_due_at=task.deadlines[SlaDeadline.FIRST_ACTION].due_at,
        seconds_to_acknowledge=left[SlaDeadline.ACKNOWLEDGE],
        seconds_to_first_action=left[SlaDeadline.FIRST_ACTION],
        overdue=any(v is not None and v < 0 for v in left.values()),
    )


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeclineRequest(_Request):
    reason: str = Field(description="A decline reason code of the actor directory")


class ResolveRequest(_Request):
    outcome: str = Field(description="An outcome code of the actor directory")


class EscalateRequest(_Request):
    reason: str | None = Field(default=None, description="An escalation reason code")


class ReassignRequest(_Request):
    agency_id: str = Field(description="The agency that takes the task over")
    reason: str = Field(description="A reassign reason code of the actor directory")


class ReassignResult(BaseModel):
    reassigned: TaskView
    replacement: TaskView | None


class ReportDetails(BaseModel):
    report_id: uuid.UUID
    partner_id: str
    channel: str
    language: Language | None
    received_at: AwareDatetime
    incident: IncidentFacts
    survivors: tuple[SurvivorFacts, ...]
    categories: tuple[ViolenceType, ...]
    risk_flags: tuple[RiskFlag, ...]
    police_referral_consent: bool | None
    personal: dict[str, Any] | None = Field(description="Decrypted for this viewer only")
    personal_status: Literal["shown", "none", "erased", "unreadable"]


class CaseTask(BaseModel):
    task_id: uuid.UUID
    agency_id: str
    role: AgencyType
    status: TaskStatus
    priority: Priority


class CaseView(BaseModel):
    case_id: uuid.UUID
    triage: ReportTriagedData | None
    reports: list[ReportDetails]
    tasks: list[CaseTask]
    access_event_id: uuid.UUID = Field(description="The access record of this view")
    personal_data_erased: ErasureNotice | None = Field(
        default=None,
        description="Set once the case's personal data was erased: when, and why; every "
        "report then says `erased`",
    )


class ErasureRequest(_Request):
    reason: ErasureReason = Field(description="Why the case's personal data is erased (a code)")
    reference: str | None = Field(
        default=None,
        pattern=ERASURE_REFERENCE_PATTERN,
        description="Your own record of the request, e.g. a ticket id (never free text: it "
        "stays on the topic and in the ledger)",
    )


class ErasureResult(BaseModel):
    case_id: uuid.UUID
    erased_at: AwareDatetime
    reason: ErasureReason = Field(description="The first erasure's, when erased before")
    reference: str | None
    event_id: uuid.UUID = Field(description="The `case.erased` event on the cases topic")


def _not_found() -> HTTPException:
    # Another agency's task is indistinguishable from a missing one.
    return HTTPException(404, {"code": "task_not_found", "message": "no such task"})


def _case_access_denied() -> HTTPException:
    # An unknown case answers alike: no one learns whether a case exists.
    return HTTPException(
        403,
        {
            "code": "case_access_denied",
            "message": "only someone with an open task on the case may see it",
        },
    )


def _unknown_code(field: str, allowed: tuple[str, ...]) -> HTTPException:
    return HTTPException(
        422,
        {
            "code": "invalid_request",
            "message": f"{field}: not a code of the actor directory; one of {', '.join(allowed)}",
            "field": field,
        },
    )


def _keys_unavailable() -> HTTPException:
    return HTTPException(
        503,
        {
            "code": "keys_unavailable",
            "message": "the case keys could not be read; nothing is shown",
        },
        headers={"Retry-After": "5"},
    )


def actor_of(principal: Principal) -> Actor:
    kind = ActorKind.SUPERVISOR if principal.role is Role.SUPERVISOR else ActorKind.OFFICER
    return Actor(kind=kind, id=principal.name, agency=principal.agency)


def build(
    settings: Settings,
    *,
    topics: RoutingTopics | None = None,
    directory: Directory | None = None,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    environ = os.environ if environ is None else environ
    directory = directory or load_directory(settings.routing_directory_file, environ=environ)
    topics = topics or RoutingTopics()
    context = ServiceContext.create("routing", settings)
    store = RoutingStore(context.redis)
    keys = CaseKeys.for_service(context)

    async def publish(topic: str, envelope: Envelope) -> None:
        await publish_event(context.broker, topic, envelope)

    projection_group = f"{context.group_id}.{PROJECTION_GROUP}"

    async def mark_applied(event: Envelope) -> None:
        await context.markers.mark(projection_group, str(event.event_id))

    dispatcher = Dispatcher(store, directory, publish, topics, environ)
    engine = RoutingEngine(
        store,
        directory,
        publish,
        topics,
        RoutingMetrics(context.registry),
        mark_applied,
        on_assigned=dispatcher.on_task_event,
    )

    async def after_rebuild() -> None:
        await dispatcher.requeue_after_rebuild(engine.rebuilt_assignments)

    projection = Projection(engine, settings.kafka_bootstrap, after_rebuild)
    timers = DueLoop(
        "timers",
        store.timers,
        engine.fire,
        interval_s=directory.sla.check_interval_s,
        guard=projection.ensure,
    )
    deliveries = DueLoop(
        "deliveries",
        store.deliveries,
        dispatcher.attempt,
        interval_s=directory.delivery_retry.check_interval_s,
        guard=projection.ensure,
    )

    async def create_topics() -> None:
        await ensure_topics(settings, [*topics.all(), *directory.agency_topics()])

    async def projection_ready() -> None:
        if await store.epoch() is None:
            raise RuntimeError("task projection is being rebuilt")

    context.on_startup += [create_topics, projection.ensure]
    context.after_start.append(dispatcher.open)
    context.before_stop.append(dispatcher.close)
    if context.serves(None):  # not a bulk-lane process: the clocks run with the live lane
        context.after_start += [timers.start, deliveries.start]
        context.before_stop += [timers.stop, deliveries.stop]
        # Tasks by state: exported where the timers that move them run.
        refresh_periodically(context, "tasks", TaskGauges(context.registry, store).refresh)
    context.readiness["projection"] = projection_ready
    app_state: dict[str, Any] = {
        "engine": engine,
        "projection": projection,
        "timers": timers,
        "dispatcher": dispatcher,
    }

    async def on_triaged(envelope: Envelope, _origin: Origin) -> None:
        if envelope.event_type != EventType.REPORT_TRIAGED:
            return  # e.g. case.reclassified: the triaged result that follows carries it
        await projection.ensure()
        await engine.reconcile(envelope)

    async def on_received(envelope: Envelope, _origin: Origin) -> None:
        await projection.ensure()
        await engine.on_received(envelope)

    async def on_task_event(envelope: Envelope, _origin: Origin) -> None:
        await projection.ensure()
        await engine.on_task_event(envelope)
        # Both idempotent, so a retry after a failed dispatch re-applies nothing.
        await dispatcher.on_task_event(envelope)

    # One consumer group per lane: a bulk backlog never delays a live report.
    context.consume(topics.triaged, handler=on_triaged, lane=Lane.LIVE)
    context.consume(topics.triaged_bulk, handler=on_triaged, group_suffix=Lane.BULK, lane=Lane.BULK)
    context.consume(topics.received, handler=on_received, group_suffix="cases", lane=Lane.LIVE)
    context.consume(
        topics.received_bulk, handler=on_received, group_suffix=f"cases.{Lane.BULK}", lane=Lane.BULK
    )
    context.consume(topics.tasks, handler=on_task_event, group_suffix=PROJECTION_GROUP)

    app = create_http_app(
        context,
        title="ocsea routing",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    app.state.routing = app_state
    errors: dict[int | str, dict[str, object]] = {
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
    }
    command_errors: dict[int | str, dict[str, object]] = {
        **errors,
        409: {"model": ErrorBody, "description": "The task's state does not allow this"},
        422: {"model": ErrorBody, "description": "A field is invalid; `field` names it"},
        503: {"model": ErrorBody, "description": "Not recorded; nothing changed. Retry"},
    }

    async def visible_task(task_id: uuid.UUID, principal: Principal) -> TaskState:
        await projection.ensure()
        task = await store.get(task_id)
        if task is None or not can_see(principal, task, directory):
            raise _not_found()
        return task

    async def act(
        task_id: uuid.UUID, principal: Principal, command: Command, code: str | None = None
    ) -> TaskView:
        task = await visible_task(task_id, principal)
        if not can_command(principal, task, command, directory):
            raise HTTPException(
                403,
                {
                    "code": "forbidden",
                    "message": f"a {principal.role.value} may not {command.value} this task",
                },
            )
        try:
            updated = await engine.command(task_id, command, actor_of(principal), code=code)
        except InvalidTransitionError as exc:
            raise HTTPException(
                409, {"code": "invalid_transition", "message": exc.message}
            ) from exc
        except LockTimeoutError as exc:
            raise HTTPException(
                503, {"code": "task_busy", "message": "the task is being changed; retry"}
            ) from exc
        except Exception as exc:
            log.error("task.command_failed", task_id=str(task_id), error=type(exc).__name__)
            raise HTTPException(
                503,
                {
                    "code": "not_recorded",
                    "message": "the change could not be recorded; nothing changed. Retry",
                },
            ) from exc
        return task_view(updated, utc_now())

    @app.get(
        "/v1/tasks",
        response_model=list[TaskView],
        responses={
            **errors,
            200: {
                "headers": {
                    "X-Total-Count": {"description": "Tasks the filters admit, on all pages"},
                    "X-Next-Cursor": {"description": "Pass as `cursor` for the next page"},
                    "Link": {"description": 'The next page\'s URL, `rel="next"`'},
                }
            },
        },
        tags=["tasks"],
    )
    async def list_tasks(
        principal: StaffPrincipal,
        request: Request,
        response: Response,
        status: TaskStatus | None = None,
        priority: Priority | None = None,
        escalated: bool | None = None,
        case_id: uuid.UUID | None = None,
        sort: InboxSort = InboxSort.URGENCY,
        limit: Annotated[
            int | None,
            Query(ge=1, le=MAX_LIMIT, description="Page size; without it (and a cursor), all"),
        ] = None,
        cursor: Annotated[
            str | None, Query(max_length=1000, description="From the previous page's headers")
        ] = None,
    ) -> list[TaskView]:
        """The caller's inbox: their agency's tasks (and, for the coordinator, tasks escalated
        to it), open ones first, each with the time left; in pages when `limit` is given."""
        await projection.ensure()
        if principal.agency is None:
            raise HTTPException(
                403, {"code": "no_agency", "message": "the caller belongs to no agency"}
            )
        try:
            after = Cursor.decode(cursor, sort) if cursor is not None else None
        except CursorError as exc:
            raise HTTPException(
                422, {"code": "invalid_cursor", "message": f"cursor: {exc}", "field": "cursor"}
            ) from exc
        found = {t.task_id: t for t in await store.for_agency(principal.agency)}
        if is_coordinator(principal, directory):
            found |= {t.task_id: t for t in await store.escalated_to(principal.agency)}
        now = utc_now()
        page = inbox_page(
            (t for t in found.values() if can_see(principal, t, directory)),
            where=InboxFilter(status, priority, escalated, case_id),
            sort=sort,
            now=now,
            limit=limit if limit is not None or after is None else DEFAULT_LIMIT,
            cursor=after,
        )
        response.headers["X-Total-Count"] = str(page.total)
        if page.next_cursor is not None:
            token = page.next_cursor.encode()
            response.headers["X-Next-Cursor"] = token
            response.headers["Link"] = (
                f'<{request.url.include_query_params(cursor=token)}>; rel="next"'
            )
        return [task_view(t, now) for t in page.tasks]

    @app.get("/v1/tasks/{task_id}", response_model=TaskView, responses=errors, tags=["tasks"])
    async def get_task(task_id: uuid.UUID, principal: StaffPrincipal) -> TaskView:
        return task_view(await visible_task(task_id, principal), utc_now())

    @app.post(
        "/v1/tasks/{task_id}/acknowledge",
        response_model=TaskView,
        responses=command_errors,
        tags=["tasks"],
    )
    async def acknowledge(task_id: uuid.UUID, principal: StaffPrincipal) -> TaskView:
        """Seen: stops the acknowledge deadline (and its escalation)."""
        return await act(task_id, principal, Command.ACKNOWLEDGE)

    @app.post(
        "/v1/tasks/{task_id}/accept",
        response_model=TaskView,
        responses=command_errors,
        tags=["tasks"],
    )
    async def accept(task_id: uuid.UUID, principal: StaffPrincipal) -> TaskView:
        """Taken on: stops the first-action deadline."""
        return await act(task_id, principal, Command.ACCEPT)

    @app.post(
        "/v1/tasks/{task_id}/decline",
        response_model=TaskView,
        responses=command_errors,
        tags=["tasks"],
    )
    async def decline(
        task_id: uuid.UUID, body: DeclineRequest, principal: StaffPrincipal
    ) -> TaskView:
        """Give the task back with a reason; the case is re-routed to another unit."""
        if body.reason not in directory.decline_reasons:
            raise _unknown_code("reason", directory.decline_reasons)
        return await act(task_id, principal, Command.DECLINE, body.reason)

    @app.post(
        "/v1/tasks/{task_id}/resolve",
        response_model=TaskView,
        responses=command_errors,
        tags=["tasks"],
    )
    async def resolve(
        task_id: uuid.UUID, body: ResolveRequest, principal: StaffPrincipal
    ) -> TaskView:
        """Done, with an outcome code."""
        if body.outcome not in directory.outcome_codes:
            raise _unknown_code("outcome", directory.outcome_codes)
        return await act(task_id, principal, Command.RESOLVE, body.outcome)

    @app.post(
        "/v1/tasks/{task_id}/escalate",
        response_model=TaskView,
        responses=command_errors,
        tags=["tasks"],
    )
    async def escalate(
        task_id: uuid.UUID,
        principal: StaffPrincipal,
        body: Annotated[EscalateRequest | None, Body()] = None,
    ) -> TaskView:
        """Raise the task to the next step of its escalation chain."""
        reason = body.reason if body else None
        if reason is not None and reason not in directory.escalation_reasons:
            raise _unknown_code("reason", directory.escalation_reasons)
        return await act(task_id, principal, Command.ESCALATE, reason)

    @app.post(
        "/v1/tasks/{task_id}/reassign",
        response_model=ReassignResult,
        responses=command_errors,
        tags=["tasks"],
    )
    async def reassign(
        task_id: uuid.UUID, body: ReassignRequest, principal: SupervisorPrincipal
    ) -> ReassignResult:
        """A supervisor moves the task to another agency of the same kind (or the
        coordinator); the old task closes as reassigned, a new one is assigned."""
        task = await visible_task(task_id, principal)
        if body.reason not in directory.reassign_reasons:
            raise _unknown_code("reason", directory.reassign_reasons)
        target = directory.find_agency(body.agency_id)
        if target is None or target.type not in (task.role, AgencyType.COORDINATION):
            raise HTTPException(
                422,
                {
                    "code": "invalid_request",
                    "message": f"agency_id: no {task.role.value} agency (or the coordinator) "
                    f"with id {body.agency_id!r}",
                    "field": "agency_id",
                },
            )
        if not can_command(principal, task, Command.REASSIGN, directory):
            raise HTTPException(403, {"code": "forbidden", "message": "not your task"})
        try:
            old, new = await engine.reassign(task_id, target.id, body.reason, actor_of(principal))
        except InvalidTransitionError as exc:
            raise HTTPException(
                409, {"code": "invalid_transition", "message": exc.message}
            ) from exc
        now = utc_now()
        return ReassignResult(
            reassigned=task_view(old, now), replacement=task_view(new, now) if new else None
        )

    access_log = AccessLog(context.broker, "routing", topics.access)

    @app.get(
        "/v1/cases/{case_id}/grounds",
        response_model=CaseGrounds,
        responses=errors,
        tags=["cases"],
    )
    async def case_grounds_of_caller(case_id: uuid.UUID, principal: StaffPrincipal) -> CaseGrounds:
        """The caller's open tasks on the case, which entitle them to it under the access rule
        (`ocsea.runtime.access`); other services ask here with the caller's own token. Shows
        nothing of the case, so it is not itself a recorded read; refused like `GET /v1/cases/{id}`
        (an unknown case alike)."""
        await projection.ensure()
        grounds = case_grounds(principal, await store.for_case(case_id), directory)
        if not grounds:
            raise _case_access_denied()
        return CaseGrounds(case_id=case_id, task_ids=tuple(t.task_id for t in grounds))

    @app.get(
        "/v1/cases/{case_id}",
        response_model=CaseView,
        responses={**errors, 503: {"model": ErrorBody}},
        tags=["cases"],
    )
    async def get_case(case_id: uuid.UUID, principal: StaffPrincipal) -> CaseView:
        """The case's details, personal data decrypted, for someone with an open task on it.
        Every view, and every refused attempt, is recorded on the access topic first."""
        await projection.ensure()
        tasks = await store.for_case(case_id)
        grounds = case_grounds(principal, tasks, directory)
        if not grounds:
            await access_log.denied(
                case_id, principal, reason="no open task of the caller's on this case"
            )
            raise _case_access_denied()
        reports = await store.reports(case_id)
        details: list[ReportDetails] = []
        try:
            erasure = await keys.erasure(case_id)
        except Exception as exc:  # the key store or its cache: nothing is shown
            log.error("case.keys_unavailable", case_id=str(case_id), error=type(exc).__name__)
            raise _keys_unavailable() from exc
        for report in reports:
            personal: dict[str, Any] | None = None
            status: Literal["shown", "none", "erased", "unreadable"] = "none"
            if report.personal is not None and erasure is not None:
                status = "erased"
            elif report.personal is not None:
                try:
                    personal = json.loads(await keys.open(case_id, report.personal))
                    status = "shown"
                except CaseErasedError as erased:  # erased while this view was being made
                    status, erasure = "erased", erased.erasure
                except CaseKeyNotFoundError:
                    status = "unreadable"  # sealed under a key the key store never had
                except (InvalidTag, ValueError):
                    status = "unreadable"
                except Exception as exc:
                    log.error(
                        "case.keys_unavailable", case_id=str(case_id), error=type(exc).__name__
                    )
                    raise _keys_unavailable() from exc
            details.append(
                ReportDetails(
                    **report.model_dump(
                        include={
                            "report_id",
                            "partner_id",
                            "channel",
                            "language",
                            "received_at",
                            "incident",
                            "survivors",
                            "categories",
                            "risk_flags",
                            "police_referral_consent",
                        }
                    ),
                    personal=personal,
                    personal_status=status,
                )
            )
        access_id = await access_log.viewed(
            case_id,
            principal,
            reason=Basis.OPEN_TASK.value,
            task_ids=(t.task_id for t in grounds),
            report_ids=(r.report_id for r in reports),
            personal_data_shown=any(d.personal_status == "shown" for d in details),
        )
        latest = await store.triage(case_id)
        return CaseView(
            case_id=case_id,
            triage=latest.data if latest else None,
            reports=details,
            tasks=[
                CaseTask(
                    task_id=t.task_id,
                    agency_id=t.agency_id,
                    role=t.role,
                    status=t.status,
                    priority=t.priority,
                )
                for t in tasks
            ],
            access_event_id=access_id,
            personal_data_erased=ErasureNotice.of(erasure),
        )

    @app.post(
        "/v1/cases/{case_id}/erasure",
        response_model=ErasureResult,
        responses={
            401: {"model": ErrorBody},
            403: {"model": ErrorBody},
            404: {"model": ErrorBody, "description": "No personal data was ever kept for the case"},
            422: {"model": ErrorBody, "description": "A field is invalid; `field` names it"},
            503: {"model": ErrorBody, "description": "Not completed or not recorded; retry"},
        },
        tags=["cases"],
    )
    async def erase(
        case_id: uuid.UUID, body: ErasureRequest, principal: OperatorPrincipal
    ) -> ErasureResult:
        """Erase the case's personal data (operators only): its data key is destroyed, so what
        was sealed under it, in every topic, projection and export, can no longer be opened;
        every view of the case then says when it was erased. `case.erased` is published on the
        cases topic and recorded by the audit ledger, which keeps verifying. Final and
        idempotent: asking again answers the first erasure, and personal data that arrives for
        the case later is erased on arrival. Operators read no case: the answer shows nothing
        of it."""

        async def publish(event: Envelope) -> None:
            await publish_event(context.broker, topics.cases, event)

        try:
            done = await erase_case(
                keys,
                publish,
                case_id,
                reason=body.reason,
                operator=principal.name,
                reference=body.reference,
            )
        except ErasureIncompleteError as exc:
            raise HTTPException(
                503,
                {
                    "code": "erasure_incomplete",
                    "message": "the erasure could not be completed; retry",
                },
                headers={"Retry-After": "5"},
            ) from exc
        except ErasureNotRecordedError as exc:
            raise HTTPException(
                503,
                {
                    "code": "erasure_not_recorded",
                    "message": "the personal data is erased but the erasure is not yet recorded; "
                    "retry (it is recorded once)",
                },
                headers={"Retry-After": "5"},
            ) from exc
        if done is None:
            raise HTTPException(
                404, {"code": "case_not_found", "message": "no personal data is kept for this case"}
            )
        erasure, event = done
        return ErasureResult(
            case_id=case_id,
            erased_at=erasure.erased_at,
            reason=erasure.reason,
            reference=erasure.reference,
            event_id=event.event_id,
        )

    return app
