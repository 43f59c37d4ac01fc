"""What routing's use cases answer: tasks as officers see them, a case's details, an erasure."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from contracts.events import (
    AgencyType,
    ErasureReason,
    IncidentFacts,
    Priority,
    ReportTriagedData,
    SlaDeadline,
    SurvivorFacts,
    TaskStatus,
)
from contracts.reports import Language, RiskFlag, ViolenceType
from ocsea.runtime.keystore import ErasureNotice
from services.routing.domain.tasks import TaskFacts, TaskState, satisfied


class TaskView(TaskFacts):
    """A task as an officer sees it, with the time left before each open deadline."""

    acknowledge_due_at: AwareDatetime
    first_action_due_at: AwareDatetime
    seconds_to_acknowledge: float | None = Field(
        description="Negative when overdue; null once acknowledged"
    )
    seconds_to_first_action: float | None = Field(
        description="Negative when overdue; null once accepted"
    )
    overdue: bool


def task_view(task: TaskState, now: datetime) -> TaskView:
    left: dict[SlaDeadline, float | None] = {
        kind: None if satisfied(task, kind) else round((state.due_at - now).total_seconds(), 1)
        for kind, state in task.deadlines.items()
    }
    return TaskView(
        **task.model_dump(include=set(TaskFacts.model_fields)),
        acknowledge_due_at=task.deadlines[SlaDeadline.ACKNOWLEDGE].due_at,
        first_action_due_at=task.deadlines[SlaDeadline.FIRST_ACTION].due_at,
        seconds_to_acknowledge=left[SlaDeadline.ACKNOWLEDGE],
        seconds_to_first_action=left[SlaDeadline.FIRST_ACTION],
        overdue=any(v is not None and v < 0 for v in left.values()),
    )


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


class ErasureResult(BaseModel):
    case_id: uuid.UUID
    erased_at: AwareDatetime
    reason: ErasureReason = Field(description="The first erasure's, when erased before")
    reference: str | None
    event_id: uuid.UUID = Field(description="The `case.erased` event on the cases topic")
