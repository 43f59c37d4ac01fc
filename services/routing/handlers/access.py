"""Need-to-know in routing: who may see and act on which task, and who may open a case.

The rule itself is `ocsea.runtime.access` (one rule for every service); this module applies it
to routing's tasks and directory, and adds which commands each role may give:

- an officer: the tasks of their own agency, and the officers' commands on them;
- a supervisor: the tasks of their agency, and also reassign; the coordinator's supervisors
  also see the tasks escalated to the coordinator;
- a case's details (with its personal data): only for someone who sees an open task on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.directory import Directory
from contracts.tasks import OFFICER_COMMANDS, SUPERVISOR_COMMANDS, Command
from ocsea.runtime import access
from ocsea.runtime.auth import Principal, Role
from services.routing.domain.tasks import TaskState


def is_coordinator(principal: Principal, directory: Directory) -> bool:
    return access.is_coordinator(principal, directory.coordinator)


def can_see(principal: Principal, task: TaskState, directory: Directory) -> bool:
    return access.sees_task(principal, task, directory.coordinator)


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
    return access.case_grounds(principal, tasks, directory.coordinator)
