"""Who gets a case: the routing policy, in one place.

Foundation scope: one lead task per triaged report. A child's case (TF-CSEA) goes to the child
protection unit covering the survivor's area; an adult survivor's case (TFGBV) to GBV case
management. Among eligible units, one speaking the report's language is preferred. When no unit
matches, the mechanism's coordinator gets the case rather than nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts.events import AgencyType, Classification, ReportTriagedData
from services.routing.directory import Agency, Directory

LEAD_AGENCY_TYPE = {
    Classification.TF_CSEA: AgencyType.CHILD_PROTECTION,
    Classification.TFGBV: AgencyType.GBV_CASE_MANAGEMENT,
}


@dataclass(frozen=True)
class Assignment:
    agency: Agency
    reason: str
    acknowledge_due_at: datetime
    first_action_due_at: datetime


def choose_lead(triaged: ReportTriagedData, directory: Directory) -> tuple[Agency, str]:
    wanted = LEAD_AGENCY_TYPE[triaged.classification]
    if triaged.governorate is None:
        return (
            directory.agency(directory.coordinator),
            f"{triaged.classification.value}: area unknown; the coordinator assigns a "
            f"{wanted.value} unit",
        )
    eligible = [
        a for a in directory.agencies if a.type is wanted and triaged.governorate in a.governorates
    ]
    if not eligible:
        return (
            directory.agency(directory.coordinator),
            f"{triaged.classification.value}: no {wanted.value} unit covers "
            f"{triaged.governorate.value}; routed to the coordinator",
        )
    speaking = [a for a in eligible if triaged.language in a.languages]
    chosen = (speaking or eligible)[0]
    language_note = (
        f", speaks {triaged.language.value}"
        if triaged.language and speaking
        else (", no unit speaks the report's language" if triaged.language else "")
    )
    return (
        chosen,
        f"{triaged.classification.value} lead: {wanted.value} unit covering "
        f"{triaged.governorate.value}{language_note}",
    )


def assign(triaged: ReportTriagedData, directory: Directory, now: datetime) -> Assignment:
    agency, reason = choose_lead(triaged, directory)
    times = directory.response_times[triaged.priority]
    return Assignment(
        agency=agency,
        reason=reason,
        acknowledge_due_at=now + timedelta(seconds=times.acknowledge_s),
        first_action_due_at=now + timedelta(seconds=times.first_action_s),
    )
