"""Where a task stands, for the gauges of tasks by state: its status, priority and agency type,
how its response times stand, and whether it ever missed one. Pure.

The store keeps every task in the set of its figure, moved in the transaction that changes the
task (`RoutingStore`), so counting tasks by figure costs a set size per figure, however many
tasks there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts.events import AgencyType, Priority, TaskStatus
from services.routing.domain.tasks import TaskState, satisfied


class SlaState(StrEnum):
    """How the response times a task still owes stand."""

    OK = "ok"
    WARNED = "warned"
    """A warning fired (most of the response time is gone); not yet missed."""
    OVERDUE = "overdue"
    """A deadline it still owes was missed (the breach fired)."""
    CLOSED = "closed"
    """Resolved, declined or reassigned: it owes nothing."""


@dataclass(frozen=True)
class Figure:
    status: TaskStatus
    priority: Priority
    agency_type: AgencyType
    sla: SlaState
    breached: bool
    """It missed a deadline at some point, met late or not."""

    @property
    def key(self) -> str:
        breached = "breached" if self.breached else "in_time"
        return "|".join((self.status, self.priority, self.agency_type, self.sla, breached))

    @classmethod
    def parse(cls, key: str) -> Figure | None:
        """The figure a key names; None for one this version does not know."""
        try:
            status, priority, agency_type, sla, breached = key.split("|")
            return cls(
                TaskStatus(status),
                Priority(priority),
                AgencyType(agency_type),
                SlaState(sla),
                breached == "breached",
            )
        except ValueError:
            return None


def figure_of(task: TaskState) -> Figure:
    owed = [state for kind, state in task.deadlines.items() if not satisfied(task, kind)]
    if not task.is_open:
        sla = SlaState.CLOSED
    elif any(state.breached for state in owed):
        sla = SlaState.OVERDUE
    elif any(state.warned for state in owed):
        sla = SlaState.WARNED
    else:
        sla = SlaState.OK
    return Figure(
        status=task.status,
        priority=task.priority,
        agency_type=task.agency_type,
        sla=sla,
        breached=any(state.breached for state in task.deadlines.values()),
    )
