"""The task protocol routing serves and its clients (the console, agencies) speak: the commands
an officer or supervisor gives, which fit each task status, who may give which, and the orders an
inbox can be read in."""

from __future__ import annotations

from enum import StrEnum

from contracts.events import TaskStatus


class Command(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ACCEPT = "accept"
    DECLINE = "decline"
    RESOLVE = "resolve"
    ESCALATE = "escalate"
    REASSIGN = "reassign"


ALLOWED: dict[TaskStatus, frozenset[Command]] = {
    TaskStatus.ASSIGNED: frozenset(
        {Command.ACKNOWLEDGE, Command.DECLINE, Command.ESCALATE, Command.REASSIGN}
    ),
    TaskStatus.ACKNOWLEDGED: frozenset(
        {Command.ACCEPT, Command.DECLINE, Command.ESCALATE, Command.REASSIGN}
    ),
    TaskStatus.ACCEPTED: frozenset({Command.RESOLVE, Command.ESCALATE, Command.REASSIGN}),
    TaskStatus.RESOLVED: frozenset(),
    TaskStatus.DECLINED: frozenset(),
    TaskStatus.REASSIGNED: frozenset(),
}


OFFICER_COMMANDS = frozenset(
    {Command.ACKNOWLEDGE, Command.ACCEPT, Command.DECLINE, Command.RESOLVE, Command.ESCALATE}
)
SUPERVISOR_COMMANDS = OFFICER_COMMANDS | {Command.REASSIGN}


class InboxSort(StrEnum):
    URGENCY = "urgency"
    """Open tasks first, then by priority, then by the nearest open deadline."""
    DEADLINE = "deadline"
    """Open tasks first, then by the nearest open deadline, whatever the priority."""
    OVERDUE = "overdue"
    """Open tasks first, overdue or breached ones first, then the most escalated, then as
    `urgency`: what a supervisor must look at now."""
    NEWEST = "newest"
    """Most recently assigned first."""
