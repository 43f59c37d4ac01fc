"""Need-to-know: who may see and act on which task, and who may open a case's details.

- An officer: the tasks of their own agency.
- A supervisor: the tasks of their agency; the coordinator's supervisors also see the tasks
  escalated to the coordinator.
- A case's details (with its personal data): only for someone who sees an open task on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ocsea.runtime.auth import Principal, Role
from services.routing.directory import Directory
from services.routing.tasks import Command, TaskState

OFFICER_COMMANDS = frozenset(
    {Command.ACKNOWLEDGE, Command.ACCEPT, Command.DECLINE, Command.RESOLVE, Command.ESCALATE}
)
SUPERVISOR_COMMANDS = OFFICER_COMMANDS | {Command.REASSIGN}


def is_coordinator(principal: Principal, directory: Directory) -> bool:
    return principal.role is Role.SUPERVISOR and principal.agency == directory.coordinator


def can_see(principal: Principal, task: TaskState, directory: Directory) -> bool:
    if principal.agency is None or principal.role not in (Role.OFFICER, Role.SUPERVISOR):
        return False
    if task.agency_id == principal.agency:
        return True
    return is_coordinator(principal, directory) and task.escalated_to_agency == principal.agency


def can_command(
    principal: Principal, task: TaskState, command: Command, directory: Directory
) -> bool:
    if not can_see(principal, task, directory):
        return False
    allowed = SUPERVISOR_COMMANDS if principal.role is Role.SUPERVISOR else OFFICER_COMMANDS
    return command in allowed


def case_grounds(
    principal: Principal, tasks: Iterable[TaskState], directory: Directory
) -> list[TaskState]:
    """The open tasks that entitle the principal to the case's details (none: no access)."""
    return [t for t in tasks if t.is_open and can_see(principal, t, directory)]
