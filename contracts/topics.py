"""Topic names (fixed by DESIGN.md). Every topic is keyed by `case_id`."""

from __future__ import annotations

REPORTS_RECEIVED = "ocsea.reports.received.v1"
REPORTS_TRIAGED = "ocsea.reports.triaged.v1"
TASKS_EVENTS = "ocsea.tasks.events.v1"
ACCESS = "ocsea.access.v1"

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

ALL_EVENT_TOPICS = (REPORTS_RECEIVED, REPORTS_TRIAGED, TASKS_EVENTS, ACCESS)


def dlq_of(topic: str) -> str:
    """The dead-letter twin of a consumed topic."""
    return topic + DLQ_SUFFIX
