"""Tasks: the state machine, the fold of task events into a task's state, and its SLA timers.

Pure: functions of a task's state, an event or a command, and the time. The Kafka task events
are the truth; a task's state is `fold`ed from them, and its pending timers are a function of
that state, so both can be rebuilt from the topic at any time.

Lifecycle:  assigned → acknowledged → accepted → resolved
            assigned | acknowledged → declined (with a reason; routing re-routes the case)
            assigned | acknowledged | accepted → reassigned (by a supervisor)
Escalation is a level beside the status (0 = none; n = the n-th step of the agency's chain),
raised by a missed deadline or by hand, so an escalated task keeps its place in the lifecycle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts.directory import Agency, Directory
from contracts.events import (
    Actor,
    ActorKind,
    AgencyType,
    Classification,
    DeliveryOutcome,
    Envelope,
    EscalationCause,
    EscalationStep,
    EscalationTarget,
    EventData,
    EventType,
    Priority,
    SlaDeadline,
    TaskAcceptedData,
    TaskAcknowledgedData,
    TaskAssignedData,
    TaskDeadlinesChangedData,
    TaskDeclinedData,
    TaskDeliveredData,
    TaskEscalatedData,
    TaskReassignedData,
    TaskResolvedData,
    TaskSlaData,
    TaskStatus,
    derived_event_id,
)
from contracts.tasks import ALLOWED, Command

SYSTEM = Actor(kind=ActorKind.SYSTEM, id="routing")
"""Who changes a task when no person does: assignment, re-routing, timers, deliveries."""
OPEN = frozenset({TaskStatus.ASSIGNED, TaskStatus.ACKNOWLEDGED, TaskStatus.ACCEPTED})
TERMINAL = frozenset({TaskStatus.RESOLVED, TaskStatus.DECLINED, TaskStatus.REASSIGNED})
CLOSED_WITHOUT_OUTCOME = frozenset({TaskStatus.DECLINED, TaskStatus.REASSIGNED})
"""Given back or moved away: the case still needs the role, so it is routed again."""


# What to do instead, when a command does not fit the task's status.
_HINTS: dict[tuple[TaskStatus, Command], str] = {
    (TaskStatus.ASSIGNED, Command.ACCEPT): "acknowledge it first",
    (TaskStatus.ASSIGNED, Command.RESOLVE): "acknowledge and accept it first",
    (TaskStatus.ACKNOWLEDGED, Command.ACKNOWLEDGE): "it is already acknowledged",
    (TaskStatus.ACKNOWLEDGED, Command.RESOLVE): "accept it first",
    (TaskStatus.ACCEPTED, Command.ACKNOWLEDGE): "it is already accepted",
    (TaskStatus.ACCEPTED, Command.ACCEPT): "it is already accepted",
    (TaskStatus.ACCEPTED, Command.DECLINE): (
        "an accepted task cannot be declined; ask a supervisor to reassign it"
    ),
}


class InvalidTransitionError(Exception):
    """A command that the task's current state does not allow (HTTP 409)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VersionGapError(Exception):
    """A task event arrived before one it follows: retry later (never skip it)."""


class DeadlineState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    due_at: AwareDatetime
    warn_at: AwareDatetime | None = None
    warned: bool = False
    breached: bool = False


class TaskFacts(BaseModel):
    """What a task is and where it stands: shared by the stored state and by every view of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: uuid.UUID
    case_id: uuid.UUID
    report_id: uuid.UUID
    agency_id: str
    agency_type: AgencyType
    unit_id: str | None
    role: AgencyType
    status: TaskStatus
    version: int
    priority: Priority
    classification: Classification
    reason: str
    criteria: tuple[str, ...] = ()
    assigned_at: AwareDatetime
    escalation_level: int = 0
    escalated_to: EscalationTarget | None = None
    escalated_to_agency: str | None = None
    acknowledged_at: AwareDatetime | None = None
    accepted_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    outcome: str | None = None
    decline_reason: str | None = None
    previous_task_id: uuid.UUID | None = None
    replaced_by: uuid.UUID | None = None
    deliveries: dict[str, DeliveryOutcome] = {}


class TaskState(TaskFacts):
    """One task, as folded from its events: its facts, and the clock work behind them."""

    updated_at: AwareDatetime
    deadlines: dict[SlaDeadline, DeadlineState]
    escalation_chain: tuple[EscalationStep, ...] = ()
    closed_at: AwareDatetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


def task_id_for(case_id: uuid.UUID, role: AgencyType, agency_id: str, attempt: int) -> uuid.UUID:
    """A task's id, derived from its slot (the case, the role, the attempt) and its agency,
    so a redelivered triage result or command finds the task it made the first time."""
    return derived_event_id("task", str(case_id), role.value, agency_id, str(attempt))


# ----------------------------------------------------------------------------- commands


def check(task: TaskState, command: Command) -> None:
    """Refuse a command the task's state does not allow, saying why and what to do instead."""
    if command not in ALLOWED[task.status]:
        if task.status in TERMINAL:
            raise InvalidTransitionError(
                f"cannot {command.value} a task that is {task.status.value}; it is closed"
            )
        hint = _HINTS.get((task.status, command), "")
        raise InvalidTransitionError(
            f"cannot {command.value} a task that is {task.status.value}"
            + (f": {hint}" if hint else "")
        )
    if command is Command.DECLINE and task.agency_type is AgencyType.COORDINATION:
        raise InvalidTransitionError(
            "the coordinator is the last resort and cannot decline; reassign the task instead"
        )
    if command is Command.ESCALATE and next_escalation(task) is None:
        raise InvalidTransitionError(
            f"the task is already escalated to the last step of its chain "
            f"(level {task.escalation_level})"
        )


def next_escalation(task: TaskState) -> EscalationStep | None:
    if task.escalation_level < len(task.escalation_chain):
        return task.escalation_chain[task.escalation_level]
    return None


@dataclass(frozen=True)
class Change:
    """An event to publish for a task: its type, payload and (deterministic) id."""

    event_type: EventType
    data: EventData
    event_id: uuid.UUID


def command_change(
    task: TaskState,
    command: Command,
    *,
    code: str | None = None,
    new_task_id: uuid.UUID | None = None,
    to_agency_id: str | None = None,
) -> Change:
    """The event a valid command produces (call `check` first)."""
    check(task, command)
    version = task.version + 1
    common: dict[str, Any] = {
        "task_id": task.task_id,
        "version": version,
        "agency_id": task.agency_id,
    }
    data: EventData
    if command is Command.ACKNOWLEDGE:
        event_type, data = EventType.TASK_ACKNOWLEDGED, TaskAcknowledgedData(**common)
    elif command is Command.ACCEPT:
        event_type, data = EventType.TASK_ACCEPTED, TaskAcceptedData(**common)
    elif command is Command.DECLINE:
        assert code is not None
        event_type, data = EventType.TASK_DECLINED, TaskDeclinedData(**common, reason=code)
    elif command is Command.RESOLVE:
        assert code is not None
        event_type, data = EventType.TASK_RESOLVED, TaskResolvedData(**common, outcome=code)
    elif command is Command.ESCALATE:
        step = next_escalation(task)
        assert step is not None
        event_type = EventType.TASK_ESCALATED
        data = TaskEscalatedData(
            **common,
            level=step.level,
            target=step.target,
            target_agency_id=step.agency_id,
            cause=EscalationCause.MANUAL,
            reason=code,
        )
    else:
        assert code is not None
        assert new_task_id is not None
        assert to_agency_id is not None
        event_type = EventType.TASK_REASSIGNED
        data = TaskReassignedData(
            **common, to_agency_id=to_agency_id, new_task_id=new_task_id, reason=code
        )
    # One id per task version: a retried request that lost its answer cannot act twice.
    return Change(event_type, data, derived_event_id(str(task.task_id), "v", str(version)))


# ----------------------------------------------------------------------------- the fold


def fold(task: TaskState | None, event: Envelope) -> TaskState | None:
    """The task's state after one more of its events; duplicates change nothing."""
    kind = event.event_type
    at = event.occurred_at
    if kind == EventType.TASK_ASSIGNED:
        return task or _assigned(event.case_id, event.payload(TaskAssignedData), at)
    if task is None:
        return None
    if kind == EventType.TASK_DELIVERED:
        delivered = event.payload(TaskDeliveredData)
        deliveries = {**task.deliveries, delivered.channel.value: delivered.outcome}
        return task.model_copy(update={"deliveries": deliveries})
    model = _VERSIONED.get(kind)
    if model is None:
        return task
    version = int(event.data.get("version", 0))
    if version <= task.version:
        return task
    if version != task.version + 1:
        raise VersionGapError(
            f"task {task.task_id}: event version {version} follows {task.version}"
        )
    data = event.payload(model)
    update: dict[str, Any] = {"version": version, "updated_at": at}
    if isinstance(data, TaskAcknowledgedData):
        update |= {"status": TaskStatus.ACKNOWLEDGED, "acknowledged_at": at}
    elif isinstance(data, TaskAcceptedData):
        update |= {"status": TaskStatus.ACCEPTED, "accepted_at": at}
    elif isinstance(data, TaskDeclinedData):
        update |= {"status": TaskStatus.DECLINED, "decline_reason": data.reason, "closed_at": at}
    elif isinstance(data, TaskResolvedData):
        update |= {
            "status": TaskStatus.RESOLVED,
            "outcome": data.outcome,
            "resolved_at": at,
            "closed_at": at,
        }
    elif isinstance(data, TaskReassignedData):
        update |= {
            "status": TaskStatus.REASSIGNED,
            "replaced_by": data.new_task_id,
            "closed_at": at,
        }
    elif isinstance(data, TaskEscalatedData):
        if data.level > task.escalation_level:
            update |= {
                "escalation_level": data.level,
                "escalated_to": data.target,
                "escalated_to_agency": data.target_agency_id,
            }
    elif isinstance(data, TaskSlaData):
        current = task.deadlines[data.deadline]
        flag = "warned" if kind == EventType.TASK_SLA_WARNING else "breached"
        update["deadlines"] = {
            **task.deadlines,
            data.deadline: current.model_copy(update={flag: True}),
        }
    elif isinstance(data, TaskDeadlinesChangedData):
        update |= _moved(task, data)
    return task.model_copy(update=update)


_VERSIONED: dict[str, type[EventData]] = {
    EventType.TASK_ACKNOWLEDGED: TaskAcknowledgedData,
    EventType.TASK_ACCEPTED: TaskAcceptedData,
    EventType.TASK_DECLINED: TaskDeclinedData,
    EventType.TASK_RESOLVED: TaskResolvedData,
    EventType.TASK_REASSIGNED: TaskReassignedData,
    EventType.TASK_ESCALATED: TaskEscalatedData,
    EventType.TASK_SLA_WARNING: TaskSlaData,
    EventType.TASK_SLA_BREACHED: TaskSlaData,
    EventType.TASK_DEADLINES_CHANGED: TaskDeadlinesChangedData,
}

TASK_EVENT_TYPES = frozenset({EventType.TASK_ASSIGNED, EventType.TASK_DELIVERED, *_VERSIONED})


def _assigned(case_id: uuid.UUID, data: TaskAssignedData, at: datetime) -> TaskState:
    return TaskState(
        task_id=data.task_id,
        case_id=case_id,
        report_id=data.report_id,
        agency_id=data.agency_id,
        agency_type=data.agency_type,
        unit_id=data.unit_id,
        role=data.role or data.agency_type,
        status=TaskStatus.ASSIGNED,
        version=data.version,
        priority=data.priority,
        classification=data.classification,
        reason=data.reason,
        criteria=data.criteria,
        assigned_at=at,
        updated_at=at,
        deadlines={
            SlaDeadline.ACKNOWLEDGE: DeadlineState(
                due_at=data.acknowledge_due_at, warn_at=data.acknowledge_warn_at
            ),
            SlaDeadline.FIRST_ACTION: DeadlineState(
                due_at=data.first_action_due_at, warn_at=data.first_action_warn_at
            ),
        },
        escalation_chain=data.escalation_chain,
        previous_task_id=data.previous_task_id,
    )


def _moved(task: TaskState, data: TaskDeadlinesChangedData) -> dict[str, Any]:
    new = {
        SlaDeadline.ACKNOWLEDGE: (data.acknowledge_due_at, data.acknowledge_warn_at),
        SlaDeadline.FIRST_ACTION: (data.first_action_due_at, data.first_action_warn_at),
    }
    deadlines = {
        kind: state
        if state.breached
        else state.model_copy(update={"due_at": new[kind][0], "warn_at": new[kind][1]})
        for kind, state in task.deadlines.items()
    }
    update: dict[str, Any] = {"priority": data.new_priority, "deadlines": deadlines}
    if data.escalation_chain:
        update["escalation_chain"] = data.escalation_chain
    return update


# ----------------------------------------------------------------------------- SLA


def satisfied(task: TaskState, deadline: SlaDeadline) -> bool:
    """Whether the deadline no longer applies: met, or the task is closed."""
    if task.status in TERMINAL:
        return True
    if deadline is SlaDeadline.ACKNOWLEDGE:
        return task.status is not TaskStatus.ASSIGNED
    return task.status is TaskStatus.ACCEPTED


@dataclass(frozen=True, order=True)
class Timer:
    at: datetime
    rank: int  # among equal times: warning, then breach, then escalation
    name: str

    def member(self, task_id: uuid.UUID) -> str:
        return f"{task_id}|{self.name}"


def pending_timers(task: TaskState) -> list[Timer]:
    """Everything that will happen to the task by the clock alone, unless it acts first."""
    if task.status in TERMINAL:
        return []
    timers: list[Timer] = []
    breached: list[tuple[datetime, SlaDeadline]] = []
    for kind, state in task.deadlines.items():
        if satisfied(task, kind):
            continue
        if state.breached:
            breached.append((state.due_at, kind))
            continue
        if state.warn_at is not None and not state.warned and state.warn_at < state.due_at:
            timers.append(Timer(state.warn_at, 0, f"{kind.value}:warning"))
        timers.append(Timer(state.due_at, 1, f"{kind.value}:breach"))
    step = next_escalation(task)
    if step is not None and breached:
        due, kind = min(breached)
        at = due + timedelta(seconds=step.after_breach_s)
        timers.append(Timer(at, 2, f"escalate:{step.level}:{kind.value}"))
    return sorted(timers)


def due_timers(task: TaskState, now: datetime) -> list[Timer]:
    return [t for t in pending_timers(task) if t.at <= now]


def timer_change(task: TaskState, timer: Timer) -> Change:
    """The event a due timer fires; its id depends only on the task, the timer and the
    deadline, so firing it again (after a restart or a rebuild) is recognised as a duplicate."""
    version = task.version + 1
    parts = timer.name.split(":")
    if parts[0] == "escalate":
        level, kind = int(parts[1]), SlaDeadline(parts[2])
        due = task.deadlines[kind].due_at
        step = task.escalation_chain[level - 1]
        escalated = TaskEscalatedData(
            task_id=task.task_id,
            version=version,
            agency_id=task.agency_id,
            level=level,
            target=step.target,
            target_agency_id=step.agency_id,
            cause=EscalationCause.SLA_BREACH,
            deadline=kind,
            due_at=due,
        )
        event_id = derived_event_id(
            str(task.task_id), "escalated", str(level), kind.value, due.isoformat()
        )
        return Change(EventType.TASK_ESCALATED, escalated, event_id)
    kind, action = SlaDeadline(parts[0]), parts[1]
    due = task.deadlines[kind].due_at
    event_type = EventType.TASK_SLA_WARNING if action == "warning" else EventType.TASK_SLA_BREACHED
    sla = TaskSlaData(
        task_id=task.task_id,
        version=version,
        agency_id=task.agency_id,
        deadline=kind,
        due_at=due,
        priority=task.priority,
    )
    event_id = derived_event_id(str(task.task_id), event_type.value, kind.value, due.isoformat())
    return Change(event_type, sla, event_id)


@dataclass(frozen=True)
class Deadlines:
    acknowledge_due_at: datetime
    first_action_due_at: datetime
    acknowledge_warn_at: datetime | None
    first_action_warn_at: datetime | None


def _warn_at(due: datetime, response_s: int, fraction: float | None) -> datetime | None:
    """Warn once `fraction` of the response time has passed (counted back from the due)."""
    if fraction is None:
        return None
    return due - timedelta(seconds=response_s * (1 - fraction))


def deadlines_for(priority: Priority, start: datetime, directory: Directory) -> Deadlines:
    times = directory.response_times[priority]
    fraction = directory.sla.warning_fraction
    ack = start + timedelta(seconds=times.acknowledge_s)
    first = start + timedelta(seconds=times.first_action_s)
    return Deadlines(
        ack,
        first,
        _warn_at(ack, times.acknowledge_s, fraction),
        _warn_at(first, times.first_action_s, fraction),
    )


def escalation_chain_for(
    agency: Agency, priority: Priority, directory: Directory
) -> tuple[EscalationStep, ...]:
    """The agency's chain with its timing: step n follows a missed deadline by (n-1) steps."""
    step_s = directory.response_times[priority].step_s
    return tuple(
        EscalationStep(
            level=index + 1,
            target=target,
            agency_id=agency.id if target is EscalationTarget.SUPERVISOR else directory.coordinator,
            after_breach_s=index * step_s,
        )
        for index, target in enumerate(directory.chain_of(agency))
    )


def deadlines_change(
    task: TaskState,
    new_priority: Priority,
    now: datetime,
    directory: Directory,
    cause_event_id: uuid.UUID,
) -> Change | None:
    """Re-triage changed the priority: move the task's open deadlines.

    Raised urgency: the new response time runs from now, never later than the old deadline.
    Lowered urgency: the new response time runs from the assignment, never earlier than before.
    """
    if task.status in TERMINAL or new_priority is task.priority:
        return None
    times = directory.response_times[new_priority]
    fraction = directory.sla.warning_fraction
    raised = new_priority.rank < task.priority.rank
    moved: dict[SlaDeadline, tuple[datetime, datetime | None]] = {}
    for kind, seconds in (
        (SlaDeadline.ACKNOWLEDGE, times.acknowledge_s),
        (SlaDeadline.FIRST_ACTION, times.first_action_s),
    ):
        old = task.deadlines[kind]
        if old.breached or satisfied(task, kind):
            moved[kind] = (old.due_at, old.warn_at)
            continue
        if raised:
            due = min(old.due_at, now + timedelta(seconds=seconds))
        else:
            due = max(old.due_at, task.assigned_at + timedelta(seconds=seconds))
        moved[kind] = (due, _warn_at(due, seconds, fraction))
    agency = directory.find_agency(task.agency_id)
    chain = escalation_chain_for(agency, new_priority, directory) if agency else ()
    data = TaskDeadlinesChangedData(
        task_id=task.task_id,
        version=task.version + 1,
        agency_id=task.agency_id,
        old_priority=task.priority,
        new_priority=new_priority,
        acknowledge_due_at=moved[SlaDeadline.ACKNOWLEDGE][0],
        acknowledge_warn_at=moved[SlaDeadline.ACKNOWLEDGE][1],
        first_action_due_at=moved[SlaDeadline.FIRST_ACTION][0],
        first_action_warn_at=moved[SlaDeadline.FIRST_ACTION][1],
        escalation_chain=chain,
        cause_event_id=cause_event_id,
    )
    event_id = derived_event_id(str(task.task_id), "deadlines", str(cause_event_id))
    return Change(EventType.TASK_DEADLINES_CHANGED, data, event_id)
