"""Routing's HTTP API: the officers' inbox and commands on tasks, a case's view and grounds, and
an operator's erasure. Each route parses, calls its use case (`handlers/`), and answers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import ERASURE_REFERENCE_PATTERN, ErasureReason, Priority, TaskStatus
from contracts.tasks import Command, InboxSort
from ocsea.runtime.access import CaseGrounds
from ocsea.runtime.auth import Principal, Role, require
from ocsea.runtime.errors import error_responses
from services.routing.domain.inbox import MAX_LIMIT, InboxFilter
from services.routing.handlers import RoutingHandlers
from services.routing.handlers.views import CaseView, ErasureResult, ReassignResult, TaskView

StaffPrincipal = Annotated[Principal, Depends(require(Role.OFFICER, Role.SUPERVISOR))]
SupervisorPrincipal = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
OperatorPrincipal = Annotated[Principal, Depends(require(Role.OPERATOR))]


def get_handlers(request: Request) -> RoutingHandlers:
    """Routing's use cases, as `bootstrap.build` put them on the app."""
    handlers = request.app.state.routing["handlers"]
    assert isinstance(handlers, RoutingHandlers)
    return handlers


Handlers = Annotated[RoutingHandlers, Depends(get_handlers)]


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


class ErasureRequest(_Request):
    reason: ErasureReason = Field(description="Why the case's personal data is erased (a code)")
    reference: str | None = Field(
        default=None,
        pattern=ERASURE_REFERENCE_PATTERN,
        description="Your own record of the request, e.g. a ticket id (never free text: it "
        "stays on the topic and in the ledger)",
    )


ERRORS = error_responses(401, 403, 404)
COMMAND_ERRORS = error_responses(
    401,
    403,
    404,
    409,
    422,
    503,
    s409="The task's state does not allow this",
    s503="Not recorded; nothing changed. Retry",
)
PAGE_HEADERS = {
    "X-Total-Count": {"description": "Tasks the filters admit, on all pages"},
    "X-Next-Cursor": {"description": "Pass as `cursor` for the next page"},
    "Link": {"description": 'The next page\'s URL, `rel="next"`'},
}

router = APIRouter()


@router.get(
    "/v1/tasks",
    response_model=list[TaskView],
    responses={**ERRORS, 200: {"headers": PAGE_HEADERS}},
    tags=["tasks"],
)
async def list_tasks(
    principal: StaffPrincipal,
    handlers: Handlers,
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
    page = await handlers.tasks.inbox(
        principal,
        InboxFilter(status, priority, escalated, case_id),
        sort,
        limit=limit,
        cursor=cursor,
    )
    response.headers["X-Total-Count"] = str(page.total)
    if page.next_cursor is not None:
        response.headers["X-Next-Cursor"] = page.next_cursor
        response.headers["Link"] = (
            f'<{request.url.include_query_params(cursor=page.next_cursor)}>; rel="next"'
        )
    return page.tasks


@router.get("/v1/tasks/{task_id}", response_model=TaskView, responses=ERRORS, tags=["tasks"])
async def get_task(task_id: uuid.UUID, principal: StaffPrincipal, handlers: Handlers) -> TaskView:
    return await handlers.tasks.task(task_id, principal)


@router.post(
    "/v1/tasks/{task_id}/acknowledge",
    response_model=TaskView,
    responses=COMMAND_ERRORS,
    tags=["tasks"],
)
async def acknowledge(
    task_id: uuid.UUID, principal: StaffPrincipal, handlers: Handlers
) -> TaskView:
    """Seen: stops the acknowledge deadline (and its escalation)."""
    return await handlers.tasks.command(task_id, principal, Command.ACKNOWLEDGE)


@router.post(
    "/v1/tasks/{task_id}/accept",
    response_model=TaskView,
    responses=COMMAND_ERRORS,
    tags=["tasks"],
)
async def accept(task_id: uuid.UUID, principal: StaffPrincipal, handlers: Handlers) -> TaskView:
    """Taken on: stops the first-action deadline."""
    return await handlers.tasks.command(task_id, principal, Command.ACCEPT)


@router.post(
    "/v1/tasks/{task_id}/decline",
    response_model=TaskView,
    responses=COMMAND_ERRORS,
    tags=["tasks"],
)
async def decline(
    task_id: uuid.UUID, body: DeclineRequest, principal: StaffPrincipal, handlers: Handlers
) -> TaskView:
    """Give the task back with a reason; the case is re-routed to another unit."""
    return await handlers.tasks.command(task_id, principal, Command.DECLINE, body.reason)


@router.post(
    "/v1/tasks/{task_id}/resolve",
    response_model=TaskView,
    responses=COMMAND_ERRORS,
    tags=["tasks"],
)
async def resolve(
    task_id: uuid.UUID, body: ResolveRequest, principal: StaffPrincipal, handlers: Handlers
) -> TaskView:
    """Done, with an outcome code."""
    return await handlers.tasks.command(task_id, principal, Command.RESOLVE, body.outcome)


@router.post(
    "/v1/tasks/{task_id}/escalate",
    response_model=TaskView,
    responses=COMMAND_ERRORS,
    tags=["tasks"],
)
async def escalate(
    task_id: uuid.UUID,
    principal: StaffPrincipal,
    handlers: Handlers,
    body: Annotated[EscalateRequest | None, Body()] = None,
) -> TaskView:
    """Raise the task to the next step of its escalation chain."""
    reason = body.reason if body else None
    return await handlers.tasks.command(task_id, principal, Command.ESCALATE, reason)


@router.post(
    "/v1/tasks/{task_id}/reassign",
    response_model=ReassignResult,
    responses=COMMAND_ERRORS,
    tags=["tasks"],
)
async def reassign(
    task_id: uuid.UUID, body: ReassignRequest, principal: SupervisorPrincipal, handlers: Handlers
) -> ReassignResult:
    """A supervisor moves the task to another agency of the same kind (or the
    coordinator); the old task closes as reassigned, a new one is assigned."""
    return await handlers.tasks.reassign(task_id, principal, body.agency_id, body.reason)


@router.get(
    "/v1/cases/{case_id}/grounds",
    response_model=CaseGrounds,
    responses=ERRORS,
    tags=["cases"],
)
async def case_grounds_of_caller(
    case_id: uuid.UUID, principal: StaffPrincipal, handlers: Handlers
) -> CaseGrounds:
    """The caller's open tasks on the case, which entitle them to it under the access rule
    (`ocsea.runtime.access`); other services ask here with the caller's own token. Shows
    nothing of the case, so it is not itself a recorded read; refused like `GET /v1/cases/{id}`
    (an unknown case alike)."""
    return await handlers.cases.grounds(case_id, principal)


@router.get(
    "/v1/cases/{case_id}",
    response_model=CaseView,
    responses=error_responses(401, 403, 404, 503),
    tags=["cases"],
)
async def get_case(case_id: uuid.UUID, principal: StaffPrincipal, handlers: Handlers) -> CaseView:
    """The case's details, personal data decrypted, for someone with an open task on it.
    Every view, and every refused attempt, is recorded on the access topic first."""
    return await handlers.cases.view(case_id, principal)


@router.post(
    "/v1/cases/{case_id}/erasure",
    response_model=ErasureResult,
    responses=error_responses(
        401,
        403,
        404,
        422,
        503,
        s404="No personal data was ever kept for the case",
        s503="Not completed or not recorded; retry",
    ),
    tags=["cases"],
)
async def erase(
    case_id: uuid.UUID, body: ErasureRequest, principal: OperatorPrincipal, handlers: Handlers
) -> ErasureResult:
    """Erase the case's personal data (operators only): its data key is destroyed, so what
    was sealed under it, in every topic, projection and export, can no longer be opened;
    every view of the case then says when it was erased. `case.erased` is published on the
    cases topic and recorded by the audit ledger, which keeps verifying. Final and
    idempotent: asking again answers the first erasure, and personal data that arrives for
    the case later is erased on arrival. Operators read no case: the answer shows nothing
    of it."""
    return await handlers.erase(
        case_id, reason=body.reason, operator=principal.name, reference=body.reference
    )
