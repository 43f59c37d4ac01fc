"""Triage's HTTP API: a case's triage (result, factors, history) and a supervisor's override.
Routes parse, call the handler, answer; the access rule and its record are the handler's."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import (
    Actor,
    Classification,
    OverrideReason,
    Priority,
    ReportTriagedData,
)
from ocsea.runtime.auth import Principal, Role, bearer_token, require
from ocsea.runtime.errors import error_responses
from ocsea.runtime.keystore import ErasureNotice
from services.triage.handlers import OverrideCommand, TriageHandlers

SupervisorPrincipal = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
CaseReaderPrincipal = Annotated[Principal, Depends(require(Role.SUPERVISOR, Role.AUDITOR))]


def get_handlers(request: Request) -> TriageHandlers:
    handlers: TriageHandlers = request.app.state.triage
    return handlers


Handlers = Annotated[TriageHandlers, Depends(get_handlers)]


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    classification: Classification | None = None
    priority: Priority | None = None
    reason_code: OverrideReason
    reason: str = Field(
        min_length=3,
        max_length=2000,
        description="Why, in words. Sealed under the case's key (it may name people); only "
        "reason_code travels in the clear",
    )


class TriageHistoryEntry(BaseModel):
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    actor: Actor
    report_id: uuid.UUID | None
    data: dict[str, object]


class CaseTriageView(BaseModel):
    case_id: uuid.UUID
    current: ReportTriagedData
    history: list[TriageHistoryEntry] = Field(
        description="Every result, reclassification and override, oldest first"
    )
    personal_data_erased: ErasureNotice | None = Field(
        default=None,
        description="Set once the case's personal data was erased (sealed notes then open no "
        "more): when, and why",
    )


ERRORS = error_responses(
    401,
    403,
    404,
    422,
    503,
    s404="No such case, or none the caller has an open task on (alike)",
    s503="The broker did not take the events, or the access rule could not be checked or the "
    "read recorded; nothing was shown or changed",
)

router = APIRouter(tags=["triage"])


@router.get(
    "/v1/triage/cases/{case_id}",
    response_model=CaseTriageView,
    responses=ERRORS,
    summary="The case's current triage result with its factors, and its history",
)
async def case_triage(
    case_id: uuid.UUID, principal: CaseReaderPrincipal, http: Request, handlers: Handlers
) -> CaseTriageView:
    found = await handlers.case_triage(case_id, principal, bearer_token(http))
    return CaseTriageView(
        case_id=found.case_id,
        current=found.current,
        history=[
            TriageHistoryEntry(
                event_id=e.event_id,
                event_type=e.event_type,
                occurred_at=e.occurred_at,
                actor=e.actor,
                report_id=e.report_id,
                data=e.data,
            )
            for e in found.history
        ],
        personal_data_erased=ErasureNotice.of(found.erasure),
    )


@router.post(
    "/v1/triage/cases/{case_id}/override",
    response_model=ReportTriagedData,
    responses=ERRORS,
    summary="Override the case's classification or priority, with a reason (supervisors "
    "with an open task of their agency on the case)",
)
async def override_case(
    case_id: uuid.UUID,
    request: OverrideRequest,
    principal: SupervisorPrincipal,
    http: Request,
    handlers: Handlers,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ReportTriagedData:
    command = OverrideCommand(
        case_id=case_id,
        reason_code=request.reason_code,
        reason=request.reason,
        classification=request.classification,
        priority=request.priority,
        idempotency_key=idempotency_key,
    )
    return await handlers.override(command, principal, bearer_token(http))
