"""What accepting a request's reports decides, before anything is sealed or published: which
are duplicates of earlier reports, which join an existing case (and why), which open one.

The decisions are taken in request order, so a later row of a batch can be a duplicate of, or
join the case of, an earlier row of the same batch. A report whose event was already prepared
by an earlier attempt (`Held`) keeps that attempt's decisions: its event is sent again as it
was, so every copy of one event id carries the same bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from contracts.events import Envelope
from contracts.reports import PartnerReport
from services.intake.domain.facts import new_case_id_for, personal_fields, report_id_for
from services.intake.domain.matching import Matcher, MatchKey, partner_case_ref

# What sealing adds to the personal text: AES-GCM's tag, base64 (4/3), and the event's clear
# part and envelope (a few KB at most).
_SEALING_OVERHEAD = 8 * 1024


def sealed_size(personal_bytes: int) -> int:
    """An upper bound of the event's size once the personal part is sealed."""
    return (personal_bytes + 16) * 4 // 3 + _SEALING_OVERHEAD


class Delivery(Enum):
    PUBLISHED = "published"
    UNAVAILABLE = "unavailable"  # the broker did not acknowledge it: retrying may succeed
    TOO_LARGE = "too_large"  # sealed, it is larger than the broker takes: retrying cannot


@dataclass(frozen=True)
class Outcome:
    """One report's answer. A duplicate has its own receipt id and `duplicate_of`, and was not
    published; `unavailable` means the broker did not acknowledge the report (nothing was
    remembered: the partner retries); `too_large` that it can never be carried as it is.
    `case_ref` is the partner's reference for the case."""

    report_id: uuid.UUID
    case_id: uuid.UUID
    case_ref: uuid.UUID
    duplicate_of: uuid.UUID | None = None
    delivery: Delivery = Delivery.PUBLISHED

    @property
    def published(self) -> bool:
        return self.delivery is Delivery.PUBLISHED and self.duplicate_of is None

    @property
    def unavailable(self) -> bool:
        return self.delivery is Delivery.UNAVAILABLE

    @property
    def too_large(self) -> bool:
        return self.delivery is Delivery.TOO_LARGE

    @property
    def kind(self) -> str:
        """How the report is counted: accepted, duplicate, unavailable or too_large."""
        if self.duplicate_of and self.delivery is Delivery.PUBLISHED:
            return "duplicate"
        return "accepted" if self.published else self.delivery.value


@dataclass(frozen=True)
class Earlier:
    """An identical report remembered earlier: the answer to give again."""

    report_id: uuid.UUID
    case_id: uuid.UUID
    case_ref: uuid.UUID


@dataclass(frozen=True)
class LinkedReport:
    report_id: uuid.UUID
    partner_id: str


@dataclass(frozen=True)
class CaseContext:
    """An existing case as intake knows it: its latest reports and who opened it."""

    reports: list[LinkedReport]
    opener: str | None


@dataclass(frozen=True)
class Held:
    """A report's event as an attempt first prepared it (and perhaps published it), kept until
    the report is remembered, with what that attempt decided: the partner's reference for the
    case, whether the report opened it, and the reports it was linked to. Every later attempt
    sends this very event again: one event id, one set of bytes."""

    event: Envelope
    case_ref: uuid.UUID
    opened_case: bool
    linked: tuple[LinkedReport, ...]

    @property
    def report_id(self) -> uuid.UUID:
        assert self.event.report_id is not None, "a received event names its report"
        return self.event.report_id

    @property
    def case_id(self) -> uuid.UUID:
        return self.event.case_id

    @property
    def received_at(self) -> datetime:
        return datetime.fromisoformat(self.event.data["received_at"])

    def encode(self) -> str:
        return json.dumps(
            {
                # The envelope as the broker is given it: a retry publishes the same bytes.
                "event": self.event.model_dump_json(),
                "case_ref": str(self.case_ref),
                "opened_case": self.opened_case,
                "linked": [[str(r.report_id), r.partner_id] for r in self.linked],
            }
        )

    @classmethod
    def decode(cls, text: str | bytes) -> Held:
        data = json.loads(text)
        return cls(
            event=Envelope.model_validate_json(data["event"]),
            case_ref=uuid.UUID(data["case_ref"]),
            opened_case=bool(data["opened_case"]),
            linked=tuple(LinkedReport(uuid.UUID(r), p) for r, p in data["linked"]),
        )


@dataclass(frozen=True)
class Prepared:
    """A report with what accepting it needs that depends on it alone: its keyed fingerprint
    and identifier keys, and the text to seal. Computed where the report is read (beside the
    event loop, for a large one), since for a large report it is most of the work."""

    report: PartnerReport
    fingerprint: str
    keys: list[MatchKey]
    personal: bytes


def prepare(matcher: Matcher, partner_id: str, report: PartnerReport) -> Prepared:
    return Prepared(
        report,
        matcher.fingerprint(partner_id, report),
        matcher.keys(partner_id, report),
        json.dumps(personal_fields(report)).encode(),
    )


@dataclass
class Plan:
    """One report of a request, as it is decided."""

    report: PartnerReport
    fingerprint: str
    keys: list[MatchKey]
    personal: bytes
    report_id: uuid.UUID
    case_id: uuid.UUID
    received_at: datetime
    case_ref: uuid.UUID | None = None
    duplicate_of: uuid.UUID | None = None
    new_case: bool = True
    reasons: tuple[str, ...] = ()
    matched_cases: list[uuid.UUID] = field(default_factory=list)
    in_batch_links: list[LinkedReport] = field(default_factory=list)
    held: Held | None = None

    @classmethod
    def of(cls, partner_id: str, prepared: Prepared, received_at: datetime) -> Plan:
        return cls(
            report=prepared.report,
            fingerprint=prepared.fingerprint,
            keys=prepared.keys,
            personal=prepared.personal,
            report_id=report_id_for(partner_id, prepared.fingerprint),
            case_id=new_case_id_for(partner_id, prepared.fingerprint),
            received_at=received_at,
        )

    @property
    def reference(self) -> uuid.UUID:
        assert self.case_ref is not None, "references are set before publishing"
        return self.case_ref

    def adopt(self, held: Held) -> None:
        """Take an earlier attempt's decisions, so its event is the one sent again."""
        self.held = held
        self.case_id, self.case_ref = held.case_id, held.case_ref
        self.new_case = held.opened_case
        self.received_at = held.received_at


def decide(
    partner_id: str,
    plans: Sequence[Plan],
    earlier: Sequence[Earlier | None],
    links: Mapping[str, uuid.UUID],
    held: Sequence[Held | None],
) -> dict[uuid.UUID, str]:
    """Duplicates and cases, in request order. Returns the cases opened by this request (by
    this partner)."""
    seen: dict[str, Plan] = {}
    batch_links: dict[str, uuid.UUID] = {}
    batch_reports: dict[uuid.UUID, list[LinkedReport]] = {}
    opened: dict[uuid.UUID, str] = {}
    for plan, before, prepared_before in zip(plans, earlier, held, strict=True):
        if before is not None:
            plan.report_id, plan.case_id = before.report_id, before.case_id
            plan.case_ref = before.case_ref
            plan.duplicate_of = plan.report_id
            continue
        if plan.fingerprint in seen:
            first = seen[plan.fingerprint]
            plan.report_id, plan.case_id = first.report_id, first.case_id
            plan.case_ref = first.case_ref
            plan.duplicate_of = first.report_id
            continue
        seen[plan.fingerprint] = plan
        if prepared_before is not None:
            plan.adopt(prepared_before)
            if plan.new_case:
                opened[plan.case_id] = partner_id
        else:
            _join_or_open(partner_id, plan, links, batch_links, batch_reports, opened)
        for key in plan.keys:
            batch_links.setdefault(key.digest, plan.case_id)
        batch_reports.setdefault(plan.case_id, []).append(LinkedReport(plan.report_id, partner_id))
    return opened


def _join_or_open(
    partner_id: str,
    plan: Plan,
    links: Mapping[str, uuid.UUID],
    batch_links: Mapping[str, uuid.UUID],
    batch_reports: Mapping[uuid.UUID, list[LinkedReport]],
    opened: dict[uuid.UUID, str],
) -> None:
    matches = [
        (key, case)
        for key in plan.keys
        if (case := batch_links.get(key.digest) or links.get(key.digest)) is not None
    ]
    if matches:
        plan.case_id = matches[0][1]  # keys are ordered strongest evidence first
        plan.new_case = False
        plan.reasons = tuple(dict.fromkeys(k.reason.value for k, c in matches if c == plan.case_id))
        plan.matched_cases = list(dict.fromkeys(c for _, c in matches))
        plan.in_batch_links = [r for c in plan.matched_cases for r in batch_reports.get(c, [])]
    else:
        plan.case_ref = plan.case_id  # the opener's reference is the case id
        opened[plan.case_id] = partner_id


def assign_references(
    matcher: Matcher,
    partner_id: str,
    plans: Sequence[Plan],
    opened: Mapping[uuid.UUID, str],
    cases: Mapping[uuid.UUID, CaseContext],
) -> None:
    """The partner's own reference for each report's case (see `partner_case_ref`)."""
    for plan in plans:
        if plan.case_ref is None:
            opener = opened.get(plan.case_id) or cases[plan.case_id].opener
            plan.case_ref = partner_case_ref(matcher, partner_id, plan.case_id, opener)


def linked(plan: Plan, cases: Mapping[uuid.UUID, CaseContext]) -> list[LinkedReport]:
    """The reports a report is linked to: those of the cases it matched, and the rows of its
    own request on them (what an earlier attempt found, for a held report)."""
    if plan.held is not None:
        return list(plan.held.linked)
    found = [r for c in plan.matched_cases for r in cases[c].reports]
    found += plan.in_batch_links
    unique = {r.report_id: r for r in found if r.report_id != plan.report_id}
    return list(unique.values())
