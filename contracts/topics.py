"""Topic names (fixed by DESIGN.md). Every topic is keyed by `case_id`.

Reports travel in two lanes that never share a topic, so a consumer of one never waits behind
the other: the live lane (`ocsea.reports.*.v1`, a partner's single report as it happens) and
the bulk lane (`ocsea.reports.*.bulk.v1`: batch uploads, tipline backlogs, replays and
re-triage of old cases). Triage promotes a bulk report it finds urgent (P1/P2) to the live
triaged topic, so routing assigns it ahead of the rest of its batch.
"""

from __future__ import annotations

from enum import StrEnum


class Lane(StrEnum):
    LIVE = "live"
    BULK = "bulk"


REPORTS_RECEIVED = "ocsea.reports.received.v1"
REPORTS_TRIAGED = "ocsea.reports.triaged.v1"
REPORTS_RECEIVED_BULK = "ocsea.reports.received.bulk.v1"
REPORTS_TRIAGED_BULK = "ocsea.reports.triaged.bulk.v1"

RECEIVED_BY_LANE = {Lane.LIVE: REPORTS_RECEIVED, Lane.BULK: REPORTS_RECEIVED_BULK}
TRIAGED_BY_LANE = {Lane.LIVE: REPORTS_TRIAGED, Lane.BULK: REPORTS_TRIAGED_BULK}
TASKS_EVENTS = "ocsea.tasks.events.v1"
ACCESS = "ocsea.access.v1"
CASES = "ocsea.cases.v1"
"""What happens to a case as a whole rather than to a report or a task: `case.erased`."""

DISPATCH_CHILD_PROTECTION = "ocsea.dispatch.child-protection.v1"
DISPATCH_POLICE = "ocsea.dispatch.police.v1"
DISPATCH_LEGAL = "ocsea.dispatch.legal.v1"
DISPATCH_GBV_CASE_MANAGEMENT = "ocsea.dispatch.gbv-case-management.v1"

DISPATCH_TOPICS = (
    DISPATCH_CHILD_PROTECTION,
    DISPATCH_POLICE,
    DISPATCH_LEGAL,
    DISPATCH_GBV_CASE_MANAGEMENT,
)

DLQ_SUFFIX = ".dlq"

ALL_EVENT_TOPICS = (
    REPORTS_RECEIVED,
    REPORTS_RECEIVED_BULK,
    REPORTS_TRIAGED,
    REPORTS_TRIAGED_BULK,
    TASKS_EVENTS,
    ACCESS,
    CASES,
)


def dlq_of(topic: str) -> str:
    """The dead-letter twin of a consumed topic."""
    return topic + DLQ_SUFFIX
