"""A canonical report split into what travels in the clear and what is sealed.

Triage and routing need ages, categories, area, language and flags; they never need names,
contacts, identifiers, file hashes, URLs or the narrative, which are sealed under the case's
data key. The sealed part is the whole canonical report, so nothing a partner sent is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from pydantic import ValidationError

from contracts.events import (
    IncidentFacts,
    ReportReceivedData,
    SourceFormat,
    SurvivorFacts,
    derived_event_id,
)
from contracts.reports import Governorate, PartnerReport, Survivor
from services.intake.domain.normalise import local_date
from services.intake.domain.reference import Gazetteer, Vocabulary

# Evidence, in a file's description, that it depicts a minor: every industry grade (A1–B2)
# does, and so does CyberTipline's `infant` annotation.
MINOR_FILE_ANNOTATIONS = frozenset({"infant"})


def age_on(date_of_birth: date, on: date) -> int:
    """Completed years of age on a given day."""
    before_birthday = (on.month, on.day) < (date_of_birth.month, date_of_birth.day)
    return on.year - date_of_birth.year - int(before_birthday)


def _plausible(age: int) -> int | None:
    return age if 0 <= age <= 130 else None


def incident_days(moment: datetime, zone: tzinfo) -> tuple[date, ...]:
    """The calendar days an incident time can name: the day at the offset the source stated,
    and the day in the survivor's zone. Near midnight they differ."""
    return tuple(sorted({moment.date(), local_date(moment, zone)}))


def survivor_facts(
    index: int, survivor: Survivor, incident_on: tuple[date, ...], report_day: date
) -> SurvivorFacts:
    """Ages only. With a date of birth, the age on the incident's day (the younger reading when
    the incident falls on a birthday in one zone and not the other: the safer one for a
    child); without an incident date, the age on the day of the report, which can only
    overstate the age at the time of the abuse (an upper bound)."""
    age_at_incident = age_at_report = None
    if survivor.date_of_birth is not None:
        if incident_on:
            born = survivor.date_of_birth
            age_at_incident = _plausible(min(age_on(born, day) for day in incident_on))
        else:
            age_at_report = _plausible(age_on(survivor.date_of_birth, report_day))
    return SurvivorFacts(
        survivor_ref=survivor_ref(index),
        age_at_incident=age_at_incident,
        age_at_report=age_at_report,
        stated_age=survivor.age,
        age_range=survivor.age_range,
        indicators=tuple(survivor.indicators),
    )


def survivor_ref(index: int) -> str:
    return f"s{index + 1}"


def personal_fields(report: PartnerReport) -> dict[str, Any]:
    """The whole canonical report, to be sealed; survivors carry the refs the clear part uses."""
    personal: dict[str, Any] = report.model_dump(
        mode="json", exclude_none=True, exclude_defaults=True
    )
    personal["survivors"] = [
        {"survivor_ref": survivor_ref(i), **s} for i, s in enumerate(personal.get("survivors", []))
    ]
    return personal


def report_from_personal(personal: Any) -> PartnerReport | None:
    """The canonical report back from its sealed part (`personal_fields`), or None if it is
    not one (an event of another version, or not intake's)."""
    if not isinstance(personal, dict):
        return None
    survivors = personal.get("survivors", [])
    if not isinstance(survivors, list) or not all(isinstance(s, dict) for s in survivors):
        return None
    fields = {**personal, "survivors": [_without_ref(s) for s in survivors]}
    try:
        return PartnerReport.model_validate(fields)
    except ValidationError:
        return None


def _without_ref(survivor: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in survivor.items() if k != "survivor_ref"}


def area(report: PartnerReport, gazetteer: Gazetteer) -> tuple[Governorate | None, str | None]:
    """The governorate and (recognised) district that routing needs: the incident's, else the
    first survivor's; a district not in the gazetteer is free text and stays sealed."""
    places = [report.incident] + [s.location for s in report.survivors if s.location]
    governorate = next((p.governorate for p in places if p.governorate), None)
    district = next(
        (p.district for p in places if p.district and p.district in gazetteer.district_ids), None
    )
    return governorate, district


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


@dataclass(frozen=True)
class Normalised:
    clear: ReportReceivedData
    personal: dict[str, Any]


@dataclass(frozen=True)
class Linking:
    """What matching found: the case's earlier reports and why the report joined it."""

    linked_report_ids: tuple[uuid.UUID, ...] = ()
    reasons: tuple[str, ...] = ()


def normalise(
    report: PartnerReport,
    *,
    partner_id: str,
    report_id: uuid.UUID,
    received_at: datetime,
    source_format: SourceFormat,
    zone: tzinfo,
    gazetteer: Gazetteer,
    vocabulary: Vocabulary,
    linking: Linking = Linking(),
) -> Normalised:
    clear = clear_facts(
        report,
        partner_id=partner_id,
        report_id=report_id,
        received_at=received_at,
        source_format=source_format,
        zone=zone,
        gazetteer=gazetteer,
        vocabulary=vocabulary,
        linking=linking,
    )
    return Normalised(clear=clear, personal=personal_fields(report))


def clear_facts(
    report: PartnerReport,
    *,
    partner_id: str,
    report_id: uuid.UUID,
    received_at: datetime,
    source_format: SourceFormat,
    zone: tzinfo,
    gazetteer: Gazetteer,
    vocabulary: Vocabulary,
    linking: Linking = Linking(),
) -> ReportReceivedData:
    """What travels in the clear (the personal part is `personal_fields`)."""
    incident = report.incident
    incident_on = incident_days(incident.occurred_at, zone) if incident.occurred_at else ()
    governorate, district = area(report, gazetteer)
    source = report.source
    file_annotations = [a for f in report.files for a in f.annotations]
    clear = ReportReceivedData(
        report_id=report_id,
        partner_id=partner_id,
        source_reference=report.source_reference,
        channel=report.channel,
        language=report.language,
        received_at=received_at,
        incident=IncidentFacts(
            occurred_at=incident.occurred_at.astimezone(UTC) if incident.occurred_at else None,
            governorate=governorate,
            district=district,
            platform=incident.platform,  # already a platform id (canonical.prepare)
        ),
        survivors=tuple(
            survivor_facts(i, s, incident_on, local_date(received_at, zone))
            for i, s in enumerate(report.survivors)
        ),
        reported_person_count=len(report.reported_persons),
        categories=tuple(dict.fromkeys(report.categories)),
        risk_flags=tuple(dict.fromkeys(report.risk_flags)),
        police_referral_consent=report.consent.police_referral,
        source_format=source_format,
        source_incident_types=_unique(source.incident_types) if source else (),
        source_annotations=_unique(source.annotations) if source else (),
        source_escalation=bool(source and source.escalate_to_high_priority),
        content_depicts_minor=any(
            f.depicts_minor
            or f.industry_classification is not None
            or any(a.casefold() in MINOR_FILE_ANNOTATIONS for a in f.annotations)
            for f in report.files
        ),
        file_count=len(report.files),
        reported_person_relationships=_unique(
            vocabulary.relationship(p.relationship)
            for p in report.reported_persons
            if p.relationship
        ),
        linked_report_ids=linking.linked_report_ids,
        link_reasons=linking.reasons,
        source_file_annotations=_unique(file_annotations),
    )
    return clear


# Ids are functions of the report's keyed fingerprint: a retry of a report whose first
# publish was acknowledged but never answered (a timeout, a crash) yields an event with the
# same id, which every consumer deduplicates on `event_id`; the event held for the report
# (`Held` in planning.py) makes it the same bytes too.
def report_id_for(partner_id: str, fingerprint: str) -> uuid.UUID:
    return derived_event_id("intake", "report", partner_id, fingerprint)


def new_case_id_for(partner_id: str, fingerprint: str) -> uuid.UUID:
    # From the keyed fingerprint, never from the report id: a partner knows its report id,
    # and must not be able to work out whether its report opened a case or joined one.
    return derived_event_id("intake", "case", partner_id, fingerprint)


def received_event_id_for(report_id: uuid.UUID) -> uuid.UUID:
    return derived_event_id("intake", "report.received", str(report_id))
