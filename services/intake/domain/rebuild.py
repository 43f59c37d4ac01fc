"""Intake's state folded back from Kafka, after Redis lost it (issue #11.2).

Redis holds projections of Kafka only. Intake's are folded from its own `report.received`
events (both lanes) and from what its partners' status follows (triage results, task
assignments):

- each report's status record, and its case's reports, partners and progress;
- the report's duplicate record (its keyed fingerprint) and the links of its identifiers'
  keyed hashes to its case. Neither travels in the clear: both are derived again from the
  sealed personal part, which is the canonical report itself, and checked against the
  report id the fingerprint gave. A case whose key was erased so no longer matches, which is
  what erasure means;
- where that part cannot be opened (an erased case), the event itself, held as it is on Kafka
  (within the held window), so that a retry of the report sends those very bytes again;
- the answer to a single report's Idempotency-Key, derived from the event (its report id, the
  partner's reference for its case) under the keyed digests of key and request it carries.

What is lost with Redis and is on no topic stays lost: the receipts of duplicates (nothing
was published for them) and the answers to batch uploads (their refused rows are nowhere):
a batch sent again is answered row by row, its stored rows as duplicates.

Pure, and independent of the order events are added in (each partition is read in order, the
topics one after another): what depends on order is decided from the times the events carry
when the state is asked for.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import ValidationError

from contracts import topics
from contracts.events import (
    EncryptedBlob,
    Envelope,
    EventType,
    IdempotencyDigests,
    ReportReceivedData,
    ReportTriagedData,
    SourceFormat,
    TaskAssignedData,
)
from contracts.reports import ReportAccepted
from services.intake.domain.facts import report_from_personal, report_id_for
from services.intake.domain.matching import Matcher, partner_case_ref
from services.intake.domain.planning import Held, LinkedReport

RECEIVED_TOPICS = (topics.REPORTS_RECEIVED, topics.REPORTS_RECEIVED_BULK)
PROGRESS_TOPICS = (topics.REPORTS_TRIAGED, topics.REPORTS_TRIAGED_BULK, topics.TASKS_EVENTS)
EVENT_TYPES = frozenset(
    {EventType.REPORT_RECEIVED.value, EventType.REPORT_TRIAGED.value, EventType.TASK_ASSIGNED.value}
)
LANE_OF_TOPIC = {topic: lane.value for lane, topic in topics.RECEIVED_BY_LANE.items()}


@dataclass(frozen=True)
class Recorded:
    """One event as the topic holds it: its bytes, and the broker's time for it."""

    topic: str
    envelope: Envelope
    raw: bytes
    timestamp_ms: int


@dataclass(frozen=True)
class Windows:
    """How long each record lives (intake's settings), counted from the event it comes from."""

    duplicate_s: int
    link_s: int
    held_s: int
    idempotency_s: int
    max_linked_reports: int

    def left(self, window_s: int, since: datetime, now: datetime) -> int:
        """Whole seconds a record written at `since` has left at `now` (0: gone)."""
        return max(0, int((since + timedelta(seconds=window_s) - now).total_seconds()))


@dataclass(frozen=True)
class CaseView:
    """The classification and priority a partner may see for a case."""

    classification: str
    priority: str
    updated_at: datetime
    ttl_s: int


@dataclass(frozen=True)
class RestoredReport:
    report_id: uuid.UUID
    case_id: uuid.UUID
    case_ref: uuid.UUID
    partner_id: str
    received_at: datetime
    source_format: str
    lane: str
    linked: tuple[LinkedReport, ...]
    triaged_at: datetime | None
    routed_at: datetime | None
    ttl_s: int  # of its status record and its duplicate record
    fingerprint: str | None  # None: its sealed part did not open
    held: Held | None  # the event as on Kafka, for a report without a duplicate record
    held_ttl_s: int


@dataclass(frozen=True)
class RestoredCase:
    case_id: uuid.UUID
    reports: tuple[LinkedReport, ...]  # its latest reports, oldest first
    partners: tuple[str, ...]
    opener: str | None
    ttl_s: int
    routed_at: datetime | None
    routed_ttl_s: int
    views: dict[str, CaseView]  # by partner


@dataclass(frozen=True)
class RestoredLink:
    digest: str
    case_id: uuid.UUID
    ttl_s: int


@dataclass(frozen=True)
class RestoredAnswer:
    """The first answer to a single report's Idempotency-Key, as it was given."""

    partner_id: str
    key_digest: str
    request_digest: str
    status: int
    body: dict[str, object]
    answered_at: datetime
    ttl_s: int


@dataclass(frozen=True)
class RestoredState:
    reports: list[RestoredReport]
    cases: list[RestoredCase]
    links: list[RestoredLink]
    answers: list[RestoredAnswer]


@dataclass
class _Report:
    received: ReportReceivedData
    case_id: uuid.UUID
    lane: str
    timestamp_ms: int
    fingerprint: str | None = None
    link_digests: tuple[str, ...] = ()
    event: Envelope | None = None  # kept to be held: its sealed part did not open

    @property
    def report_id(self) -> uuid.UUID:
        return self.received.report_id

    @property
    def partner_id(self) -> str:
        return self.received.partner_id

    @property
    def received_at(self) -> datetime:
        return self.received.received_at

    @property
    def opened_case(self) -> bool:
        # A report that joined a case says why; the first report of a case has no reason.
        return not self.received.link_reasons


@dataclass(frozen=True)
class _Triaged:
    report_id: uuid.UUID
    at: datetime
    own: tuple[str, str, str] | None  # partner, classification, priority
    case_result: tuple[str, str]


@dataclass
class StateFold:
    matcher: Matcher
    windows: Windows
    now: datetime
    reports: dict[uuid.UUID, _Report] = field(default_factory=dict)
    triaged: dict[uuid.UUID, list[_Triaged]] = field(default_factory=dict)  # by case
    assigned: dict[uuid.UUID, list[tuple[datetime, uuid.UUID]]] = field(default_factory=dict)
    skipped: int = 0
    foreign: int = 0  # reports of cases this deployment never held a key for

    def sealed(self, recorded: Recorded) -> tuple[uuid.UUID, EncryptedBlob] | None:
        """The sealed part worth opening for this event: that of a report received within
        the windows its records live."""
        envelope = recorded.envelope
        if envelope.event_type != EventType.REPORT_RECEIVED or envelope.producer != "intake":
            return None
        try:
            received = envelope.payload(ReportReceivedData)
        except ValidationError:
            return None
        recent = self.now - timedelta(seconds=max(self.windows.duplicate_s, self.windows.link_s))
        if received.personal is None or received.received_at < recent:
            return None
        return envelope.case_id, received.personal

    def add(self, recorded: Recorded, personal: bytes | None = None) -> None:
        """Fold one event in; `personal` is its sealed part opened (None: it did not open)."""
        envelope = recorded.envelope
        try:
            if envelope.event_type == EventType.REPORT_RECEIVED and envelope.producer == "intake":
                self._received(recorded, envelope.payload(ReportReceivedData), personal)
            elif envelope.event_type == EventType.REPORT_TRIAGED:
                self._triaged(envelope, envelope.payload(ReportTriagedData))
            elif envelope.event_type == EventType.TASK_ASSIGNED:
                task = envelope.payload(TaskAssignedData)
                self.assigned.setdefault(envelope.case_id, []).append(
                    (envelope.occurred_at, task.report_id)
                )
        except ValidationError:
            self.skipped += 1

    def _received(
        self, recorded: Recorded, received: ReportReceivedData, personal: bytes | None
    ) -> None:
        if received.personal is None:
            # Intake seals every report it takes (its canonical report is never empty): one
            # without a sealed part was not made by this deployment's intake.
            self.foreign += 1
            return
        lane = LANE_OF_TOPIC.get(recorded.topic)
        earlier = self.reports.get(received.report_id)
        if lane is None or (earlier and earlier.timestamp_ms <= recorded.timestamp_ms):
            return  # the same event again (a retry sends it again): the first copy stands
        # Without its sealed part: a rebuild keeps every report of the topics in memory.
        clear = received.model_copy(update={"personal": None})
        report = _Report(clear, recorded.envelope.case_id, lane, recorded.timestamp_ms)
        derived = self._derive(received, personal) if personal is not None else None
        if derived is not None:
            report.fingerprint, report.link_digests = derived
        elif (
            received.received_at >= self.now - timedelta(seconds=self.windows.held_s)
            and recorded.envelope.model_dump_json().encode() == recorded.raw
        ):
            report.event = recorded.envelope
        self.reports[received.report_id] = report

    def _derive(
        self, received: ReportReceivedData, personal: bytes
    ) -> tuple[str, tuple[str, ...]] | None:
        """The keyed fingerprint and identifier hashes, from the sealed canonical report; None
        unless it is the very report the event's id was derived from."""
        try:
            report = report_from_personal(json.loads(personal))
        except ValueError:
            return None
        if report is None:
            return None
        fingerprint = self.matcher.fingerprint(received.partner_id, report)
        if report_id_for(received.partner_id, fingerprint) != received.report_id:
            return None
        keys = self.matcher.keys(received.partner_id, report)
        return fingerprint, tuple(k.digest for k in keys)

    def _triaged(self, envelope: Envelope, triaged: ReportTriagedData) -> None:
        own = triaged.partner_assessment
        self.triaged.setdefault(envelope.case_id, []).append(
            _Triaged(
                triaged.report_id,
                envelope.occurred_at,
                (own.partner_id, own.classification.value, own.priority.value) if own else None,
                (triaged.classification.value, triaged.priority.value),
            )
        )

    # --- the state ----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        reports = self.reports.values()
        return {
            "reports": len(self.reports),
            "matched_again": sum(r.fingerprint is not None for r in reports),
            "held": sum(r.event is not None for r in reports),
            "triage_results": sum(len(t) for t in self.triaged.values()),
            "assignments": sum(len(a) for a in self.assigned.values()),
            "skipped": self.skipped,
            "foreign": self.foreign,
        }

    def state(self) -> RestoredState:
        by_case: dict[uuid.UUID, list[_Report]] = {}
        for report in sorted(self.reports.values(), key=_received_order):
            by_case.setdefault(report.case_id, []).append(report)
        partners = {r.report_id: r.partner_id for r in self.reports.values()}
        openers = {
            case_id: next((r.partner_id for r in reports if r.opened_case), None)
            for case_id, reports in by_case.items()
        }
        restored, answers = [], []
        for case_id, reports in by_case.items():
            for report in reports:
                case_ref = partner_case_ref(
                    self.matcher, report.partner_id, case_id, openers[case_id]
                )
                restored.append(self._report(report, case_ref, partners))
                if (answer := self._answer(report, case_ref)) is not None:
                    answers.append(answer)
        cases = [self._case(c, reports, openers[c]) for c, reports in by_case.items()]
        # What would have expired by now is not written again.
        return RestoredState(
            reports=[r for r in restored if r.ttl_s],
            cases=[c for c in cases if c.ttl_s],
            links=self._links(),
            answers=_first_per_key(a for a in sorted(answers, key=_answered) if a.ttl_s),
        )

    def _report(
        self, report: _Report, case_ref: uuid.UUID, partners: dict[uuid.UUID, str]
    ) -> RestoredReport:
        received, windows = report.received, self.windows
        results = self.triaged.get(report.case_id, ())
        triaged = sorted(t.at for t in results if t.report_id == report.report_id)
        linked = tuple(
            LinkedReport(r, partners[r]) for r in received.linked_report_ids if r in partners
        )
        held_ttl = windows.left(windows.held_s, report.received_at, self.now)
        return RestoredReport(
            report_id=report.report_id,
            case_id=report.case_id,
            case_ref=case_ref,
            partner_id=report.partner_id,
            received_at=report.received_at,
            source_format=received.source_format.value,
            lane=report.lane,
            linked=linked,
            triaged_at=triaged[-1] if triaged else None,
            routed_at=_routed_at(report.report_id, triaged, self.assigned.get(report.case_id, [])),
            ttl_s=windows.left(windows.duplicate_s, max([report.received_at, *triaged]), self.now),
            fingerprint=report.fingerprint,
            held=(
                Held(report.event, case_ref, report.opened_case, linked)
                if report.event is not None and held_ttl
                else None
            ),
            held_ttl_s=held_ttl,
        )

    def _answer(self, report: _Report, case_ref: uuid.UUID) -> RestoredAnswer | None:
        received = report.received
        digests: IdempotencyDigests | None = received.idempotency
        # A single report's answer is all in its event; a batch's answer is not (its refused
        # rows are nowhere).
        if digests is None or received.source_format is SourceFormat.BATCH:
            return None
        body = ReportAccepted(report_id=str(report.report_id), case_id=str(case_ref))
        return RestoredAnswer(
            partner_id=report.partner_id,
            key_digest=digests.key,
            request_digest=digests.request,
            status=202,
            body=body.model_dump(mode="json"),
            answered_at=report.received_at,
            ttl_s=self.windows.left(self.windows.idempotency_s, report.received_at, self.now),
        )

    def _case(self, case_id: uuid.UUID, reports: list[_Report], opener: str | None) -> RestoredCase:
        windows = self.windows
        latest = reports[-windows.max_linked_reports :]
        assigned = sorted(at for at, _ in self.assigned.get(case_id, []))
        routed_at = assigned[0] if assigned else None
        return RestoredCase(
            case_id=case_id,
            reports=tuple(LinkedReport(r.report_id, r.partner_id) for r in latest),
            partners=tuple(dict.fromkeys(r.partner_id for r in reports)),
            opener=opener,
            ttl_s=windows.left(windows.link_s, reports[-1].received_at, self.now),
            routed_at=routed_at,
            routed_ttl_s=(
                windows.left(windows.duplicate_s, routed_at, self.now) if routed_at else 0
            ),
            views=self._views(case_id, reports),
        )

    def _views(self, case_id: uuid.UUID, reports: list[_Report]) -> dict[str, CaseView]:
        """What each partner may see of the case's classification: the latest result drawn
        from its own reports alone (`own`), or, from before triage made that assessment, the
        case's result while every report of the case was the partner's."""
        owners = {r.report_id: r.partner_id for r in reports}
        views: dict[str, CaseView] = {}
        for result in sorted(self.triaged.get(case_id, []), key=lambda t: t.at):
            owner = owners.get(result.report_id)
            if owner is None:
                continue  # not a report this intake took
            shown: tuple[str, str] | None = None
            if result.own is not None:
                if result.own[0] == owner:
                    shown = result.own[1:]
            elif {r.partner_id for r in reports if r.received_at <= result.at} <= {owner}:
                shown = result.case_result
            if shown is not None:
                ttl = self.windows.left(self.windows.duplicate_s, result.at, self.now)
                if ttl:
                    views[owner] = CaseView(shown[0], shown[1], result.at, ttl)
        return views

    def _links(self) -> list[RestoredLink]:
        """Each identifier's hash links to the case it was first seen in (while that link
        lives)."""
        links: dict[str, RestoredLink] = {}
        for report in sorted(self.reports.values(), key=_received_order):
            ttl = self.windows.left(self.windows.link_s, report.received_at, self.now)
            for digest in report.link_digests:
                if ttl and digest not in links:
                    links[digest] = RestoredLink(digest, report.case_id, ttl)
        return list(links.values())


def _received_order(report: _Report) -> tuple[datetime, int]:
    return report.received_at, report.timestamp_ms


def _answered(answer: RestoredAnswer) -> datetime:
    return answer.answered_at


def _routed_at(
    report_id: uuid.UUID, triaged: list[datetime], assigned: list[tuple[datetime, uuid.UUID]]
) -> datetime | None:
    """When the report counts as routed, as the live subscriber marks it: at an assignment on
    its case that it caused or that came after it was triaged, or, on a case already routed,
    when it is triaged."""
    if not assigned:
        return None
    first_assigned = min(at for at, _ in assigned)
    candidates = [
        at for at, cause in assigned if cause == report_id or (triaged and triaged[0] <= at)
    ]
    candidates += [at for at in triaged if at >= first_assigned]
    return min(candidates) if candidates else None


def _first_per_key(answers: Iterable[RestoredAnswer]) -> list[RestoredAnswer]:
    first: dict[tuple[str, str], RestoredAnswer] = {}
    for answer in answers:
        first.setdefault((answer.partner_id, answer.key_digest), answer)
    return list(first.values())
