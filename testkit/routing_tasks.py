"""Routing tasks built by folding their events, as the routing service does, for tests of the task
state machine, its timers, and what is derived from tasks (access, figures)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts.directory import load_directory
from contracts.events import (
    AgencyType,
    Classification,
    EventType,
    Priority,
    TaskAssignedData,
    derived_event_id,
    make_event,
)
from contracts.tasks import Command
from services.routing.domain.tasks import (
    SYSTEM,
    Change,
    TaskState,
    command_change,
    deadlines_for,
    due_timers,
    escalation_chain_for,
    fold,
    timer_change,
)

DIRECTORY = load_directory()  # the shipped directory
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def assigned_event(
    priority: Priority = Priority.P1, agency_id: str = "erbil-cpu", at: datetime = T0
) -> Any:
    agency = DIRECTORY.agency(agency_id)
    due = deadlines_for(priority, at, DIRECTORY)
    task_id = uuid.uuid4()
    return make_event(
        event_type=EventType.TASK_ASSIGNED,
        event_id=derived_event_id(str(task_id), EventType.TASK_ASSIGNED),
        case_id=uuid.uuid4(),
        report_id=uuid.uuid4(),
        producer="routing",
        actor=SYSTEM,
        occurred_at=at,
        data=TaskAssignedData(
            task_id=task_id,
            report_id=uuid.uuid4(),
            agency_id=agency.id,
            agency_type=agency.type,
            classification=Classification.TF_CSEA,
            priority=priority,
            reason="test",
            acknowledge_due_at=due.acknowledge_due_at,
            first_action_due_at=due.first_action_due_at,
            acknowledge_warn_at=due.acknowledge_warn_at,
            first_action_warn_at=due.first_action_warn_at,
            role=AgencyType.CHILD_PROTECTION,
            unit_id=agency.units[0].id,
            escalation_chain=escalation_chain_for(agency, priority, DIRECTORY),
        ),
    )


def new_task(**kwargs: Any) -> TaskState:
    """A task just assigned (see `assigned_event` for what may be set)."""
    task = fold(None, assigned_event(**kwargs))
    assert task is not None
    return task


def event_of(task: TaskState, change: Change, at: datetime) -> Any:
    return make_event(
        event_type=change.event_type,
        event_id=change.event_id,
        case_id=task.case_id,
        report_id=task.report_id,
        producer="routing",
        actor=SYSTEM,
        data=change.data,
        occurred_at=at,
    )


def run(task: TaskState, command: Command, at: datetime = T0, **kwargs: Any) -> TaskState:
    """The task after an officer's command (it must be allowed)."""
    after = fold(task, event_of(task, command_change(task, command, **kwargs), at))
    assert after is not None
    return after


def fire_due(task: TaskState, now: datetime) -> tuple[TaskState, list[Any]]:
    """Fire every timer due by `now`, as the service's timer loop would: the task after them,
    and the events they fired, in order."""
    fired = []
    while due := due_timers(task, now):
        event = event_of(task, timer_change(task, due[0]), now)
        fired.append(event)
        after = fold(task, event)
        assert after is not None
        task = after
    return task, fired
