"""Event envelope and event payloads: everything that crosses a Kafka topic.

Within a major schema version changes are additive only; `tests/test_contracts.py` pins the
exported JSON Schemas so that an accidental breaking change fails the build.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.reports import AgeRange, Channel, Governorate, Language, RiskFlag, ViolenceType

SCHEMA_VERSION = "1.0"

# Deterministic event ids let a redelivered input produce the very same output event, so
# downstream consumers deduplicate it on `event_id` instead of acting twice.
_EVENT_NAMESPACE = uuid.UUID("6f1d7a52-3c8e-4f55-9b0a-0c5a7d2e6b11")


def derived_event_id(*parts: str) -> uuid.UUID:
    """An event id that is a pure function of what caused the event."""
    return uuid.uuid5(_EVENT_NAMESPACE, "/".join(parts))


def utc_now() -> datetime:
    return datetime.now(UTC)


class ActorKind(StrEnum):
    PARTNER = "partner"
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    OPERATOR = "operator"
    SYSTEM = "system"


class Actor(BaseModel):
    """Who caused an event: an id, never a person's name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ActorKind
    id: str = Field(min_length=1, max_length=200)
    agency: str | None = None


class EventType(StrEnum):
    REPORT_RECEIVED = "report.received"
    REPORT_TRIAGED = "report.triaged"
    CASE_RECLASSIFIED = "case.reclassified"
    TASK_ASSIGNED = "task.assigned"


class Envelope(BaseModel):
    """The common envelope of every event; `data` is validated against the type's model."""

    model_config = ConfigDict(extra="forbid")

    event_id: uuid.UUID
    event_type: str = Field(min_length=1, max_length=100)
    schema_version: str = SCHEMA_VERSION
    occurred_at: AwareDatetime
    case_id: uuid.UUID
    report_id: uuid.UUID | None = None
    producer: str = Field(min_length=1, max_length=100)
    actor: Actor
    data: dict[str, Any]

    def payload(self, model: type[DataT]) -> DataT:
        return model.model_validate(self.data)


class EventData(BaseModel):
    """Base of every payload; payloads ignore no field silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


DataT = TypeVar("DataT", bound=EventData)


class EncryptedBlob(BaseModel):
    """Personal data sealed with AES-GCM under the case's data key (see runtime.crypto)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str
    nonce: str = Field(description="base64url, 12 bytes")
    ciphertext: str = Field(description="base64url AES-GCM ciphertext with tag")


class AgeEvidenceKind(StrEnum):
    """Kinds of age evidence, strongest first (DOMAIN.md)."""

    DATE_OF_BIRTH = "date_of_birth"
    STATED_AGE = "stated_age"
    AGE_RANGE = "age_range"
    INDICATOR = "indicator"


class SurvivorFacts(BaseModel):
    """What triage needs of one survivor, in the clear: ages, never identity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    survivor_ref: str = Field(description="Opaque per-report reference, e.g. 's1'")
    age_at_incident: int | None = Field(
        default=None, ge=0, le=130, description="Derived from date of birth and incident date"
    )
    age_at_report: int | None = Field(
        default=None,
        ge=0,
        le=130,
        description="From date of birth when the incident date is unknown: an upper bound",
    )
    stated_age: int | None = Field(default=None, ge=0, le=130)
    age_range: AgeRange | None = None
    indicators: tuple[str, ...] = ()


class IncidentFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    occurred_at: AwareDatetime | None = None
    governorate: Governorate | None = None
    district: str | None = None
    platform: str | None = None


class SourceFormat(StrEnum):
    PARTNER_JSON = "partner_json"
    CYBERTIPLINE_XML = "cybertipline_xml"
    BATCH = "batch"


class ReportReceivedData(EventData):
    report_id: uuid.UUID
    partner_id: str
    source_reference: str | None = None
    channel: Channel
    language: Language | None = None
    received_at: AwareDatetime
    incident: IncidentFacts
    survivors: tuple[SurvivorFacts, ...] = ()
    reported_person_count: int = Field(default=0, ge=0)
    categories: tuple[ViolenceType, ...] = ()
    risk_flags: tuple[RiskFlag, ...] = ()
    police_referral_consent: bool | None = None
    source_format: SourceFormat = SourceFormat.PARTNER_JSON
    source_incident_types: tuple[str, ...] = Field(
        default=(), description="The source's own incident types, verbatim (e.g. CyberTipline)"
    )
    source_annotations: tuple[str, ...] = Field(
        default=(),
        description="The source's report annotations, verbatim (e.g. sextortion, "
        "minorToMinorInteraction)",
    )
    source_escalation: bool = Field(
        default=False, description="The source asked for high priority (escalateToHighPriority)"
    )
    content_depicts_minor: bool = Field(
        default=False, description="A described file is annotated as depicting a minor"
    )
    file_count: int = Field(default=0, ge=0, description="Files described by hash, never held")
    reported_person_relationships: tuple[str, ...] = Field(
        default=(), description="e.g. household, family, teacher, online_only"
    )
    linked_report_ids: tuple[uuid.UUID, ...] = Field(
        default=(), description="Earlier reports of the same case (same survivor or account)"
    )
    personal: EncryptedBlob | None = Field(
        default=None, description="Names, contacts, identifiers and narrative, encrypted"
    )


class Classification(StrEnum):
    TF_CSEA = "TF-CSEA"
    TFGBV = "TFGBV"


class AgeBasis(StrEnum):
    """How the classification's age was established; `unknown` means presumed child."""

    DATE_OF_BIRTH = "date_of_birth"
    STATED_AGE = "stated_age"
    AGE_RANGE = "age_range"
    UNKNOWN = "unknown"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class UrgencyFactor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    points: int
    source_field: str


class ReportTriagedData(EventData):
    report_id: uuid.UUID
    classification: Classification
    presumed_child: bool
    age_used: int | None
    age_basis: AgeBasis
    priority: Priority
    score: int
    factors: tuple[UrgencyFactor, ...] = ()
    violence_types: tuple[ViolenceType, ...] = ()
    governorate: Governorate | None = None
    language: Language | None = None
    police_referral_consent: bool | None = None
    rules_version: str


class CaseReclassifiedData(EventData):
    """Re-triage changed the case's classification or priority; history is kept, not replaced."""

    report_id: uuid.UUID = Field(description="The report whose arrival caused re-triage")
    old_classification: Classification
    new_classification: Classification
    old_priority: Priority
    new_priority: Priority
    reason: str
    rules_version: str


class AgencyType(StrEnum):
    CHILD_PROTECTION = "child_protection"
    POLICE = "police"
    LEGAL = "legal"
    GBV_CASE_MANAGEMENT = "gbv_case_management"
    COORDINATION = "coordination"


class TaskStatus(StrEnum):
    ASSIGNED = "assigned"


class TaskAssignedData(EventData):
    task_id: uuid.UUID
    report_id: uuid.UUID
    agency_id: str
    agency_type: AgencyType
    classification: Classification
    priority: Priority
    reason: str = Field(description="Why this agency was chosen, for the audit trail")
    acknowledge_due_at: AwareDatetime
    first_action_due_at: AwareDatetime


EVENT_DATA_MODELS: dict[EventType, type[EventData]] = {
    EventType.REPORT_RECEIVED: ReportReceivedData,
    EventType.REPORT_TRIAGED: ReportTriagedData,
    EventType.CASE_RECLASSIFIED: CaseReclassifiedData,
    EventType.TASK_ASSIGNED: TaskAssignedData,
}


def make_event(
    *,
    event_type: EventType,
    case_id: uuid.UUID,
    producer: str,
    actor: Actor,
    data: EventData,
    report_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    return Envelope(
        event_id=event_id or uuid.uuid4(),
        event_type=event_type.value,
        occurred_at=occurred_at or utc_now(),
        case_id=case_id,
        report_id=report_id,
        producer=producer,
        actor=actor,
        data=data.model_dump(mode="json"),
    )
