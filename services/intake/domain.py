"""Intake's pure rules: split a partner report into what travels in the clear and what is sealed.

Triage and routing need ages, categories, area, language and flags; they never need names,
contacts, identifiers or the narrative, which are sealed under the case's data key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from contracts.events import IncidentFacts, ReportReceivedData, SurvivorFacts
from contracts.reports import PartnerReport, Survivor


def age_on(date_of_birth: date, on: date) -> int:
    """Completed years of age on a given day."""
    before_birthday = (on.month, on.day) < (date_of_birth.month, date_of_birth.day)
    return on.year - date_of_birth.year - int(before_birthday)


def survivor_facts(index: int, survivor: Survivor, incident_at: datetime | None) -> SurvivorFacts:
    age_at_incident = None
    if survivor.date_of_birth is not None and incident_at is not None:
        age = age_on(survivor.date_of_birth, incident_at.date())
        age_at_incident = age if 0 <= age <= 130 else None
    return SurvivorFacts(
        survivor_ref=f"s{index + 1}",
        age_at_incident=age_at_incident,
        stated_age=survivor.age,
        age_range=survivor.age_range,
        indicators=tuple(survivor.indicators),
    )


def personal_fields(report: PartnerReport) -> dict[str, Any] | None:
    """Everything that could identify a person, to be sealed; None when there is nothing."""
    personal: dict[str, Any] = {
        "survivors": [
            {
                "survivor_ref": f"s{i + 1}",
                "name": s.name,
                "date_of_birth": s.date_of_birth.isoformat() if s.date_of_birth else None,
                "gender": s.gender,
                "contact": s.contact.model_dump() if s.contact else None,
            }
            for i, s in enumerate(report.survivors)
        ],
        "reported_persons": [p.model_dump(mode="json") for p in report.reported_persons],
        "narrative": report.narrative,
    }
    has_content = (
        report.narrative
        or report.reported_persons
        or any(s.name or s.date_of_birth or s.gender or s.contact for s in report.survivors)
    )
    return personal if has_content else None


@dataclass(frozen=True)
class Normalised:
    clear: ReportReceivedData
    personal: dict[str, Any] | None


def normalise(
    report: PartnerReport,
    *,
    partner_id: str,
    report_id: uuid.UUID,
    received_at: datetime,
) -> Normalised:
    incident = report.incident
    clear = ReportReceivedData(
        report_id=report_id,
        partner_id=partner_id,
        source_reference=report.source_reference,
        channel=report.channel,
        language=report.language,
        received_at=received_at,
        incident=IncidentFacts(
            occurred_at=incident.occurred_at,
            governorate=incident.governorate,
            district=incident.district,
            platform=incident.platform,
        ),
        survivors=tuple(
            survivor_facts(i, s, incident.occurred_at) for i, s in enumerate(report.survivors)
        ),
        reported_person_count=len(report.reported_persons),
        categories=tuple(dict.fromkeys(report.categories)),
        risk_flags=tuple(dict.fromkeys(report.risk_flags)),
        police_referral_consent=report.consent.police_referral,
    )
    return Normalised(clear=clear, personal=personal_fields(report))
