"""The one access rule (`ocsea.runtime.access`) on routing's tasks: who sees a task, whose
open tasks are grounds to a case, who may change its triage, and on what a triage read rests."""

from __future__ import annotations

import uuid

import pytest

from contracts.events import AgencyType
from contracts.tasks import Command
from ocsea.runtime.access import (
    Basis,
    case_grounds,
    may_change_triage,
    sees_task,
    triage_read_basis,
)
from ocsea.runtime.auth import Principal, Role
from services.routing.domain.tasks import TaskState
from services.routing.handlers import access as routing_access
from testkit.routing_tasks import DIRECTORY, new_task, run

COORDINATOR = DIRECTORY.coordinator


def person(role: Role, agency: str | None = None, name: str | None = None) -> Principal:
    return Principal(
        name=name or f"{role.value}-{agency or 'none'}",
        role=role,
        agency=agency,
        agency_type=DIRECTORY.agency(agency).type if agency else None,
    )


OFFICER = person(Role.OFFICER, "erbil-cpu")
SUPERVISOR = person(Role.SUPERVISOR, "erbil-cpu")
OTHER_OFFICER = person(Role.OFFICER, "kri-legal-aid")
OTHER_SUPERVISOR = person(Role.SUPERVISOR, "kri-legal-aid")
COORDINATOR_SUPERVISOR = person(Role.SUPERVISOR, COORDINATOR)
COORDINATION_OFFICER = person(Role.OFFICER, COORDINATOR)
NOT_STAFF = [
    person(Role.PARTNER, name="partner-hotline"),
    person(Role.AUDITOR, name="auditor"),
    person(Role.OPERATOR, name="operator"),
    person(Role.SUPERVISOR, name="supervisor-of-nothing"),  # no agency: no tasks
]


def test_staff_see_their_own_agencys_tasks_and_no_others() -> None:
    task = new_task(agency_id="erbil-cpu")
    assert sees_task(OFFICER, task, COORDINATOR)
    assert sees_task(SUPERVISOR, task, COORDINATOR)
    for outsider in (OTHER_OFFICER, OTHER_SUPERVISOR, COORDINATOR_SUPERVISOR, *NOT_STAFF):
        assert not sees_task(outsider, task, COORDINATOR), outsider.name


def test_the_coordinators_supervisors_see_a_task_once_it_is_escalated_to_the_coordinator() -> None:
    task = run(new_task(agency_id="erbil-cpu"), Command.ESCALATE)  # to the unit's supervisor
    assert not sees_task(COORDINATOR_SUPERVISOR, task, COORDINATOR)
    task = run(task, Command.ESCALATE)  # to the coordinator
    assert task.escalated_to_agency == COORDINATOR
    assert sees_task(COORDINATOR_SUPERVISOR, task, COORDINATOR)
    # The grant is the directory's coordinator's, to its supervisors only.
    assert not sees_task(COORDINATION_OFFICER, task, COORDINATOR)
    assert not sees_task(OTHER_SUPERVISOR, task, COORDINATOR)
    assert not sees_task(OTHER_SUPERVISOR, task, "kri-legal-aid")  # not a coordinator's supervisor
    # The coordinator's own tasks are its agency's like any other.
    assert sees_task(COORDINATION_OFFICER, new_task(agency_id=COORDINATOR), COORDINATOR)


@pytest.mark.parametrize(
    "close",
    [
        [Command.DECLINE],
        [Command.ACKNOWLEDGE, Command.ACCEPT, Command.RESOLVE],
        [Command.REASSIGN],
    ],
)
def test_only_open_tasks_are_grounds_to_the_case(close: list[Command]) -> None:
    task = new_task(agency_id="erbil-cpu")
    other = new_task(agency_id="kri-legal-aid")
    assert case_grounds(OFFICER, [task, other], COORDINATOR) == [task]
    assert case_grounds(OTHER_OFFICER, [task, other], COORDINATOR) == [other]
    closed = task
    for command in close:
        if command is Command.DECLINE:
            closed = run(closed, command, code="no_capacity")
        elif command is Command.RESOLVE:
            closed = run(closed, command, code="child_safeguarded")
        elif command is Command.REASSIGN:
            closed = run(
                closed,
                command,
                code="capacity",
                to_agency_id="sulaymaniyah-cpu",
                new_task_id=uuid.uuid4(),
            )
        else:
            closed = run(closed, command)
    assert not closed.is_open
    assert sees_task(OFFICER, closed, COORDINATOR)  # still in their history ...
    assert case_grounds(OFFICER, [closed, other], COORDINATOR) == []  # ... but no grounds
    assert case_grounds(SUPERVISOR, [closed], COORDINATOR) == []


def test_only_a_supervisor_with_grounds_may_change_the_triage() -> None:
    grounds = [new_task(agency_id="erbil-cpu")]
    assert may_change_triage(SUPERVISOR, grounds)
    assert not may_change_triage(SUPERVISOR, [])
    assert not may_change_triage(OFFICER, grounds)
    assert not may_change_triage(person(Role.AUDITOR, name="auditor"), grounds)


def test_what_a_triage_read_rests_on() -> None:
    assert triage_read_basis(person(Role.AUDITOR, name="auditor")) is Basis.AUDITOR
    assert triage_read_basis(SUPERVISOR) is Basis.OPEN_TASK
    assert triage_read_basis(OFFICER) is Basis.OPEN_TASK
    for nobody in (
        person(Role.PARTNER, name="p"),
        person(Role.OPERATOR, name="o"),
        person(Role.SUPERVISOR, name="s"),
    ):
        assert triage_read_basis(nobody) is None


def test_routing_applies_the_shared_rule_to_its_tasks() -> None:
    tasks: list[TaskState] = [
        new_task(agency_id="erbil-cpu"),
        run(run(new_task(agency_id="duhok-cpu"), Command.ESCALATE), Command.ESCALATE),
        run(new_task(agency_id="kri-legal-aid"), Command.DECLINE, code="no_capacity"),
    ]
    everyone = [OFFICER, SUPERVISOR, OTHER_OFFICER, OTHER_SUPERVISOR, COORDINATOR_SUPERVISOR]
    for principal in [*everyone, *NOT_STAFF]:
        for task in tasks:
            assert routing_access.can_see(principal, task, DIRECTORY) == sees_task(
                principal, task, COORDINATOR
            )
        assert routing_access.case_grounds(principal, tasks, DIRECTORY) == case_grounds(
            principal, tasks, COORDINATOR
        )
    assert routing_access.is_coordinator(COORDINATOR_SUPERVISOR, DIRECTORY)
    assert DIRECTORY.agency(COORDINATOR).type is AgencyType.COORDINATION
