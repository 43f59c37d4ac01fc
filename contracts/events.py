"""Event envelope and event payloads: everything that crosses a Kafka topic.

Within a major schema version changes are additive only; `tests/test_contracts.py` pins the
exported JSON Schemas so that an accidental breaking change fails the build.
"""

from __future__ import annotations

import json
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


def canonical_json(document: Any) -> bytes:
    """One byte string per JSON document whatever its key order: what digests are taken of."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class ActorKind(StrEnum):
    PARTNER = "partner"
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    OPERATOR = "operator"
    SYSTEM = "system"


class Actor(BaseModel):
    """Who caused an event: an id, never a person's name."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: ActorKind
    id: str = Field(min_length=1, max_length=200)
    agency: str | None = None


class EventType(StrEnum):
    REPORT_RECEIVED = "report.received"
    REPORT_TRIAGED = "report.triaged"
    CASE_RECLASSIFIED = "case.reclassified"
    CASE_TRIAGE_OVERRIDDEN = "case.triage_overridden"
    TASK_ASSIGNED = "task.assigned"
    TASK_ACKNOWLEDGED = "task.acknowledged"
    TASK_ACCEPTED = "task.accepted"
    TASK_DECLINED = "task.declined"
    TASK_RESOLVED = "task.resolved"
    TASK_ESCALATED = "task.escalated"
    TASK_REASSIGNED = "task.reassigned"
    TASK_DEADLINES_CHANGED = "task.deadlines_changed"
    TASK_SLA_WARNING = "task.sla_warning"
    TASK_SLA_BREACHED = "task.sla_breached"
    TASK_DELIVERED = "task.delivered"
    CASE_VIEWED = "case.viewed"
    CASE_ACCESS_DENIED = "case.access_denied"
    CASE_ERASED = "case.erased"


class Envelope(BaseModel):
    """The common envelope of every event; `data` is validated against the type's model."""

    model_config = ConfigDict(extra="ignore")

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
    """Base of every payload.

    Readers tolerate fields they do not know (they ignore them): within a major version
    events change additively only, and an added field must not make a consumer still running
    the previous version park every event during a rolling upgrade (or a replica not yet
    restarted). The audit ledger keeps every event's bytes whole, so nothing is lost."""

    model_config = ConfigDict(extra="ignore", frozen=True)


DataT = TypeVar("DataT", bound=EventData)


class EncryptedBlob(BaseModel):
    """Personal data sealed with AES-GCM under the case's data key (see runtime.crypto)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

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

    model_config = ConfigDict(extra="ignore", frozen=True)

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
    model_config = ConfigDict(extra="ignore", frozen=True)

    occurred_at: AwareDatetime | None = None
    governorate: Governorate | None = None
    district: str | None = None
    platform: str | None = None


class SourceFormat(StrEnum):
    PARTNER_JSON = "partner_json"
    CYBERTIPLINE_XML = "cybertipline_xml"
    BATCH = "batch"


class IdempotencyDigests(BaseModel):
    """A single report's Idempotency-Key and request, as keyed digests (HMAC under intake's
    own secret: neither can be recovered or guessed from them), from which intake restores
    the key's answer after losing its store."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str = Field(description="HMAC of the partner's Idempotency-Key")
    request: str = Field(description="HMAC of the request (its channel and exact body)")


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
    link_reasons: tuple[str, ...] = Field(
        default=(),
        description="Why the report joined an existing case: same_survivor, "
        "same_reported_account, same_file or same_source_reference (never the identifiers)",
    )
    source_file_annotations: tuple[str, ...] = Field(
        default=(),
        description="Tags of the described files, verbatim (e.g. CyberTipline fileAnnotations "
        "infant, viral, liveStreaming, generativeAi)",
    )
    personal: EncryptedBlob | None = Field(
        default=None, description="Names, contacts, identifiers and narrative, encrypted"
    )
    idempotency: IdempotencyDigests | None = Field(
        default=None,
        description="Set for a single report sent with an Idempotency-Key: keyed digests of "
        "the key and the request, for intake alone (never the key itself)",
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
    DATE_OF_BIRTH_AT_REPORT = "date_of_birth_at_report"
    INDICATOR = "indicator"
    CONTENT_DEPICTS_MINOR = "content_depicts_minor"


class AgeConfidence(StrEnum):
    """How firmly the age evidence supports the classification."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        """1 is the most urgent."""
        return int(self.value[1:])


def more_urgent(a: Priority, b: Priority) -> Priority:
    """The more urgent of two priorities (the first when they are equal)."""
    return a if a.rank <= b.rank else b


class UrgencyFactor(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    points: int
    source_field: str = Field(description="The first field the factor came from")
    sources: tuple[str, ...] = Field(
        default=(), description="Every field it came from, e.g. risk_flags, narrative:ckb"
    )
    report_ids: tuple[uuid.UUID, ...] = Field(default=(), description="The reports that carry it")
    detail: str | None = Field(default=None, description="e.g. 'age 11 < 13'; never personal data")


class ViolenceLabel(BaseModel):
    """One type of online violence and every source that said so."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: ViolenceType
    sources: tuple[str, ...] = Field(
        description="e.g. categories, source_incident_types, source_annotations, narrative:kmr"
    )


class SurvivorAgeFinding(BaseModel):
    """The age triage found for one survivor (or a depicted, unidentified child)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    survivor: str = Field(
        description="survivor_ref across the case's reports; 'depicted' (files), 'source' "
        "(the source's incident type or annotation) or 'unknown' (no survivor described)"
    )
    child: bool
    presumed_child: bool = Field(description="Child by presumption: no age was established")
    age: int | None
    basis: AgeBasis
    confidence: AgeConfidence
    contradictory: bool = False
    evidence: tuple[str, ...] = Field(default=(), description="Each piece used, strongest first")


class OverrideReason(StrEnum):
    AGE_ESTABLISHED = "age_established"
    RISK_REASSESSED = "risk_reassessed"
    NEW_INFORMATION = "new_information"
    DATA_ENTRY_ERROR = "data_entry_error"
    OTHER = "other"


class TriageOverrideInfo(BaseModel):
    """A supervisor's override in force on the case, beside what the rules computed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    override_id: uuid.UUID
    by: str = Field(description="The supervisor's principal name (an account id)")
    at: AwareDatetime
    reason_code: OverrideReason
    classification: Classification | None = None
    priority: Priority | None = None
    computed_classification: Classification = Field(
        description="What the rules said when the override was made"
    )
    computed_priority: Priority
    current_classification: Classification | None = Field(
        default=None, description="What the rules say now (the score and factors are theirs)"
    )
    current_priority: Priority | None = None
    superseded: tuple[str, ...] = Field(
        default=(),
        description="Overridden fields that later evidence made more protective than the "
        "override (the rules' value applies again)",
    )


class PartnerAssessment(BaseModel):
    """What the rules make of one partner's own reports on a case, as if no other partner had
    reported: what that partner may be shown. Classification and priority only; nothing
    personal, nothing drawn from another partner's report."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    partner_id: str = Field(description="The partner it is for (an account id)")
    classification: Classification
    priority: Priority


class ReportTriagedData(EventData):
    """The case's current combined triage result (all its reports so far)."""

    report_id: uuid.UUID = Field(
        description="The report whose arrival caused this result (an override: the latest)"
    )
    classification: Classification
    presumed_child: bool
    age_used: int | None
    age_basis: AgeBasis
    priority: Priority
    score: int
    factors: tuple[UrgencyFactor, ...] = ()
    violence_types: tuple[ViolenceType, ...] = ()
    governorate: Governorate | None = None
    district: str | None = Field(
        default=None,
        description="The incident's district, a gazetteer id (never free text): for units that "
        "cover only some districts",
    )
    language: Language | None = None
    police_referral_consent: bool | None = None
    legal_aid_sought: bool | None = Field(
        default=None, description="The survivor or the child's family seeks legal aid"
    )
    rules_version: str
    confidence: AgeConfidence | None = None
    age_note: str | None = Field(default=None, description="Why this classification, in words")
    survivors: tuple[SurvivorAgeFinding, ...] = ()
    child_on_child: bool = False
    child_on_child_basis: tuple[str, ...] = ()
    violence_labels: tuple[ViolenceLabel, ...] = ()
    priority_basis: str | None = Field(default=None, description="Thresholds and floors applied")
    priority_floor: Priority | None = None
    case_report_ids: tuple[uuid.UUID, ...] = Field(
        default=(), description="Every report combined into this result"
    )
    sealed_data_read: bool = Field(
        default=False, description="Whether triage could read the sealed narrative for terms"
    )
    override: TriageOverrideInfo | None = None
    inputs_digest: str | None = Field(
        default=None,
        description="sha256 of the canonical inputs: same inputs and rules, same result",
    )
    rules_digest: str | None = None
    partner_assessment: PartnerAssessment | None = Field(
        default=None,
        description="The rules over the reports of `report_id`'s partner alone (links to other "
        "partners' reports left out; an override only when every report of the case is that "
        "partner's): what intake shows that partner, so its status never reveals that another "
        "partner reported the same person. Absent from results made before it existed",
    )


class ReclassificationTrigger(StrEnum):
    NEW_REPORT = "new_report"
    OVERRIDE = "override"


class CaseReclassifiedData(EventData):
    """Re-triage changed the case's classification or priority; history is kept, not replaced."""

    report_id: uuid.UUID = Field(description="The report whose arrival caused re-triage")
    old_classification: Classification
    new_classification: Classification
    old_priority: Priority
    new_priority: Priority
    reason: str
    rules_version: str
    trigger: ReclassificationTrigger = ReclassificationTrigger.NEW_REPORT
    old_score: int | None = None
    new_score: int | None = None
    inputs_digest: str | None = None


class CaseTriageOverriddenData(EventData):
    """A supervisor overrode the case's classification or priority (the note is sealed)."""

    report_id: uuid.UUID = Field(description="The case's latest report")
    override_id: uuid.UUID
    reason_code: OverrideReason
    note: EncryptedBlob | None = Field(
        default=None, description="The supervisor's reason in words, sealed (may name people)"
    )
    classification: Classification | None = None
    priority: Priority | None = None
    old_classification: Classification
    new_classification: Classification
    old_priority: Priority
    new_priority: Priority
    computed_classification: Classification
    computed_priority: Priority
    rules_version: str


class AgencyType(StrEnum):
    CHILD_PROTECTION = "child_protection"
    POLICE = "police"
    LEGAL = "legal"
    GBV_CASE_MANAGEMENT = "gbv_case_management"
    COORDINATION = "coordination"


class TaskStatus(StrEnum):
    """A task's lifecycle; escalation is a level beside the status, not a status of its own."""

    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    RESOLVED = "resolved"
    DECLINED = "declined"
    REASSIGNED = "reassigned"


class SlaDeadline(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    FIRST_ACTION = "first_action"


class EscalationTarget(StrEnum):
    SUPERVISOR = "supervisor"
    COORDINATOR = "coordinator"


class EscalationCause(StrEnum):
    SLA_BREACH = "sla_breach"
    MANUAL = "manual"


# Reasons and outcomes are codes from the actor directory, never free text: a note typed by an
# officer could carry a survivor's name into Kafka in the clear.
_CODE = r"^[a-z][a-z0-9_]{0,63}$"


class EscalationStep(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    level: int = Field(ge=1)
    target: EscalationTarget
    agency_id: str = Field(description="Whose supervisors (or which coordinator) are alerted")
    after_breach_s: int = Field(ge=0, description="Delay after a missed deadline")


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
    version: int = Field(default=1, ge=1, description="The task's event sequence number")
    role: AgencyType | None = Field(
        default=None, description="The kind of actor the case needs; a coordinator stands in"
    )
    unit_id: str | None = None
    criteria: tuple[str, ...] = Field(default=(), description="Each routing criterion met")
    acknowledge_warn_at: AwareDatetime | None = None
    first_action_warn_at: AwareDatetime | None = None
    escalation_chain: tuple[EscalationStep, ...] = ()
    previous_task_id: uuid.UUID | None = Field(
        default=None, description="The declined or reassigned task this one replaces"
    )


class TaskEventData(EventData):
    """Common to every event that changes a task: `version` orders them (1 = assigned)."""

    task_id: uuid.UUID
    version: int = Field(ge=2)
    agency_id: str


class TaskAcknowledgedData(TaskEventData):
    pass


class TaskAcceptedData(TaskEventData):
    pass


class TaskDeclinedData(TaskEventData):
    reason: str = Field(pattern=_CODE, description="A decline reason code of the directory")


class TaskResolvedData(TaskEventData):
    outcome: str = Field(pattern=_CODE, description="An outcome code of the directory")


class TaskEscalatedData(TaskEventData):
    level: int = Field(ge=1)
    target: EscalationTarget
    target_agency_id: str
    cause: EscalationCause
    deadline: SlaDeadline | None = None
    due_at: AwareDatetime | None = None
    reason: str | None = Field(default=None, pattern=_CODE)


class TaskReassignedData(TaskEventData):
    to_agency_id: str
    new_task_id: uuid.UUID
    reason: str = Field(pattern=_CODE)


class TaskDeadlinesChangedData(TaskEventData):
    """Re-triage changed the case's priority: the task's open deadlines move with it."""

    old_priority: Priority
    new_priority: Priority
    acknowledge_due_at: AwareDatetime
    first_action_due_at: AwareDatetime
    acknowledge_warn_at: AwareDatetime | None = None
    first_action_warn_at: AwareDatetime | None = None
    escalation_chain: tuple[EscalationStep, ...] = Field(
        default=(), description="The chain's new timing; empty: unchanged"
    )
    cause_event_id: uuid.UUID


class TaskSlaData(TaskEventData):
    """A response-time warning or breach (`task.sla_warning`, `task.sla_breached`)."""

    deadline: SlaDeadline
    due_at: AwareDatetime
    priority: Priority


class DeliveryChannel(StrEnum):
    WEBHOOK = "webhook"


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"


class TaskDeliveredData(EventData):
    """The record of delivering a task to an agency's own system; not a task transition."""

    task_id: uuid.UUID
    agency_id: str
    channel: DeliveryChannel
    destination: str = Field(description="Scheme, host and path; never credentials")
    outcome: DeliveryOutcome
    attempts: int = Field(ge=1)
    status_code: int | None = None
    error: str | None = Field(default=None, description="The last error's kind, never content")


class CaseAccessData(EventData):
    """Who looked (or tried to look) at a case's data, and on what grounds."""

    viewer: str = Field(description="The principal's name (an account id, not a person's name)")
    role: str
    agency: str | None = None
    task_ids: tuple[uuid.UUID, ...] = Field(default=(), description="The tasks that justify it")
    report_ids: tuple[uuid.UUID, ...] = ()
    personal_data_shown: bool = False
    reason: str = Field(description="Why access was granted or refused")


class ErasureReason(StrEnum):
    """Why a case's personal data was erased: a code, never words (words could name people,
    and the ledger and the topics cannot forget them)."""

    RETENTION_EXPIRED = "retention_expired"
    DATA_SUBJECT_REQUEST = "data_subject_request"
    LEGAL_ORDER = "legal_order"
    ENTERED_IN_ERROR = "entered_in_error"
    OTHER = "other"


ERASURE_REFERENCE_PATTERN = r"^[A-Za-z0-9._:-]{1,100}$"
"""An operator's record of an erasure request: a ticket-like token, never words."""


class CaseErasedData(EventData):
    """The case's data key was destroyed: its personal data, wherever it travelled (topics,
    projections, exports), can no longer be opened. Ids, clear facts and the ledger stay."""

    reason: ErasureReason
    reference: str | None = Field(
        default=None,
        pattern=ERASURE_REFERENCE_PATTERN,
        description="The operator's own record of the request (a ticket id), never free text",
    )
    erased_at: AwareDatetime = Field(description="When the key was destroyed")


EVENT_DATA_MODELS: dict[EventType, type[EventData]] = {
    EventType.REPORT_RECEIVED: ReportReceivedData,
    EventType.REPORT_TRIAGED: ReportTriagedData,
    EventType.CASE_RECLASSIFIED: CaseReclassifiedData,
    EventType.CASE_TRIAGE_OVERRIDDEN: CaseTriageOverriddenData,
    EventType.TASK_ASSIGNED: TaskAssignedData,
    EventType.TASK_ACKNOWLEDGED: TaskAcknowledgedData,
    EventType.TASK_ACCEPTED: TaskAcceptedData,
    EventType.TASK_DECLINED: TaskDeclinedData,
    EventType.TASK_RESOLVED: TaskResolvedData,
    EventType.TASK_ESCALATED: TaskEscalatedData,
    EventType.TASK_REASSIGNED: TaskReassignedData,
    EventType.TASK_DEADLINES_CHANGED: TaskDeadlinesChangedData,
    EventType.TASK_SLA_WARNING: TaskSlaData,
    EventType.TASK_SLA_BREACHED: TaskSlaData,
    EventType.TASK_DELIVERED: TaskDeliveredData,
    EventType.CASE_VIEWED: CaseAccessData,
    EventType.CASE_ACCESS_DENIED: CaseAccessData,
    EventType.CASE_ERASED: CaseErasedData,
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
