"""Which lane a report travelled, and where its case's results go.

Results stay in their report's lane, except urgent ones: a P1 or P2 found in a bulk upload is
published on the live lane, so routing assigns it ahead of the rest of its batch.
"""

from __future__ import annotations

from contracts import topics
from contracts.events import Envelope, Priority
from contracts.topics import Lane

URGENT = frozenset({Priority.P1, Priority.P2})


def lane_of_topic(topic: str) -> Lane:
    return Lane.BULK if topic == topics.REPORTS_RECEIVED_BULK else Lane.LIVE


def triaged_topic(event: Envelope, lane: Lane) -> str:
    """The topic of a result (`report.triaged`, `case.reclassified`, an override) in `lane`."""
    priority = event.data.get("priority") or event.data.get("new_priority")
    if lane is Lane.BULK and priority not in URGENT:
        return topics.REPORTS_TRIAGED_BULK
    return topics.REPORTS_TRIAGED


# Where triage's case state comes from, both lanes: the reports it reads, and every event it
# publishes (results, reclassifications and overrides all go to the triaged topics).
RECEIVED_TOPICS = tuple(topics.RECEIVED_BY_LANE.values())
TRIAGED_TOPICS = tuple(topics.TRIAGED_BY_LANE.values())
