"""The task state machine, the fold of task events, and SLA timers: examples and properties."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from contracts.events import (
    EscalationCause,
    EscalationTarget,
    EventType,
    Priority,
    SlaDeadline,
    TaskStatus,
)
from contracts.tasks import ALLOWED, Command
from services.routing.domain.tasks import (
    TERMINAL,
    InvalidTransitionError,
    TaskState,
    VersionGapError,
    command_change,
    deadlines_change,
    due_timers,
    fold,
    pending_timers,
    timer_change,
)
from testkit.routing_tasks import DIRECTORY, T0, assigned_event, event_of, fire_due, new_task, run

P1 = DIRECTORY.response_times[Priority.P1]


# ------------------------------------------------------------------ the state machine


def test_the_happy_path_and_its_timestamps() -> None:
    task = new_task()
    task = run(task, Command.ACKNOWLEDGE, T0 + timedelta(minutes=1))
    task = run(task, Command.ACCEPT, T0 + timedelta(minutes=2))
    task = run(task, Command.RESOLVE, T0 + timedelta(minutes=3), code="child_safeguarded")
    assert task.status is TaskStatus.RESOLVED
    assert task.version == 4
    assert task.acknowledged_at == T0 + timedelta(minutes=1)
    assert task.accepted_at == T0 + timedelta(minutes=2)
    assert task.outcome == "child_safeguarded"
    assert pending_timers(task) == []


@pytest.mark.parametrize(
    ("path", "command", "message"),
    [
        ([], Command.ACCEPT, "cannot accept a task that is assigned: acknowledge it first"),
        ([], Command.RESOLVE, "acknowledge and accept it first"),
        ([Command.ACKNOWLEDGE], Command.ACKNOWLEDGE, "it is already acknowledged"),
        ([Command.ACKNOWLEDGE], Command.RESOLVE, "accept it first"),
        (
            [Command.ACKNOWLEDGE, Command.ACCEPT],
            Command.DECLINE,
            "an accepted task cannot be declined; ask a supervisor to reassign it",
        ),
        ([Command.DECLINE], Command.ACKNOWLEDGE, "cannot acknowledge a task that is declined"),
    ],
)
def test_invalid_transitions_are_refused_with_a_clear_message(
    path: list[Command], command: Command, message: str
) -> None:
    task = new_task()
    for step in path:
        task = run(task, step, code="outside_area" if step is Command.DECLINE else None)
    with pytest.raises(InvalidTransitionError) as refused:
        command_change(task, command, code="x")
    assert message in refused.value.message


def test_the_coordinator_cannot_decline() -> None:
    task = new_task(agency_id="kri-coordination")
    with pytest.raises(InvalidTransitionError, match="last resort"):
        command_change(task, Command.DECLINE, code="no_capacity")


def test_escalation_climbs_the_chain_then_stops() -> None:
    task = new_task()
    task = run(task, Command.ESCALATE)
    assert (task.escalation_level, task.escalated_to) == (1, EscalationTarget.SUPERVISOR)
    assert task.escalated_to_agency == "erbil-cpu"
    task = run(task, Command.ESCALATE)
    assert (task.escalation_level, task.escalated_to) == (2, EscalationTarget.COORDINATOR)
    assert task.escalated_to_agency == "kri-coordination"
    assert task.status is TaskStatus.ASSIGNED  # escalation is beside the lifecycle
    with pytest.raises(InvalidTransitionError, match="last step of its chain"):
        command_change(task, Command.ESCALATE)


def test_folding_is_idempotent_and_refuses_gaps() -> None:
    first = assigned_event()
    task = fold(None, first)
    assert task is not None
    assert fold(task, first) == task  # the assignment again
    change = command_change(task, Command.ACKNOWLEDGE)
    acknowledged = event_of(task, change, T0)
    once = fold(task, acknowledged)
    assert once is not None
    assert fold(once, acknowledged) == once  # the same event again
    accepted = event_of(once, command_change(once, Command.ACCEPT), T0)
    with pytest.raises(VersionGapError):
        fold(task, accepted)  # version 3 cannot follow version 1


# ------------------------------------------------------------------ SLA timers


def names(task: TaskState) -> list[str]:
    return [t.name for t in pending_timers(task)]


def test_a_fresh_task_has_warning_and_breach_timers_for_both_deadlines() -> None:
    task = new_task()
    ack, first = P1.acknowledge_s, P1.first_action_s
    fraction = DIRECTORY.sla.warning_fraction
    assert fraction is not None
    assert [(t.name, t.at) for t in pending_timers(task)] == sorted(
        [
            ("acknowledge:warning", T0 + timedelta(seconds=ack * fraction)),
            ("acknowledge:breach", T0 + timedelta(seconds=ack)),
            ("first_action:warning", T0 + timedelta(seconds=first * fraction)),
            ("first_action:breach", T0 + timedelta(seconds=first)),
        ],
        key=lambda pair: pair[1],
    )


def test_a_missed_acknowledgement_escalates_to_the_supervisor_then_the_coordinator() -> None:
    task = new_task()
    due = T0 + timedelta(seconds=P1.acknowledge_s)
    task, fired = fire_due(task, due - timedelta(seconds=1))
    assert [e.event_type for e in fired] == [EventType.TASK_SLA_WARNING]
    task, fired = fire_due(task, due)
    assert [e.event_type for e in fired] == [EventType.TASK_SLA_BREACHED, EventType.TASK_ESCALATED]
    assert fired[1].data["level"] == 1
    assert fired[1].data["target"] == "supervisor"
    assert fired[1].data["cause"] == EscalationCause.SLA_BREACH
    step = timedelta(seconds=P1.step_s)
    task, fired = fire_due(task, due + step - timedelta(seconds=1))
    assert fired == []
    task, fired = fire_due(task, due + step)
    assert [(e.event_type, e.data["level"], e.data["target"]) for e in fired] == [
        (EventType.TASK_ESCALATED, 2, "coordinator")
    ]
    assert not any(n.startswith("escalate") for n in names(task))  # the chain is done


def test_acknowledging_cancels_the_acknowledge_timers_and_their_escalation() -> None:
    task = new_task()
    task, _ = fire_due(task, T0 + timedelta(seconds=P1.acknowledge_s))  # breached, level 1
    assert "escalate:2:acknowledge" in names(task)
    task = run(task, Command.ACKNOWLEDGE, T0 + timedelta(seconds=P1.acknowledge_s + 1))
    assert names(task) == ["first_action:warning", "first_action:breach"]
    task = run(task, Command.ACCEPT)
    assert names(task) == []


def test_a_timer_fired_again_has_the_same_event_id() -> None:
    task = new_task()
    timer = pending_timers(task)[0]
    assert timer_change(task, timer).event_id == timer_change(task, timer).event_id


def test_raised_priority_brings_deadlines_forward_from_now_lowered_pushes_them_back() -> None:
    task = new_task(priority=Priority.P3)
    later = T0 + timedelta(hours=1)
    change = deadlines_change(task, Priority.P1, later, DIRECTORY, uuid.uuid4())
    assert change is not None
    raised = fold(task, event_of(task, change, later))
    assert raised is not None
    assert raised.priority is Priority.P1
    assert raised.deadlines[SlaDeadline.ACKNOWLEDGE].due_at == later + timedelta(
        seconds=P1.acknowledge_s
    )
    assert [t.name for t in pending_timers(raised)][:2] == [
        "acknowledge:warning",
        "acknowledge:breach",
    ]
    change = deadlines_change(raised, Priority.P4, later, DIRECTORY, uuid.uuid4())
    assert change is not None
    lowered = fold(raised, event_of(raised, change, later))
    assert lowered is not None
    p4 = DIRECTORY.response_times[Priority.P4]
    assert lowered.deadlines[SlaDeadline.ACKNOWLEDGE].due_at == T0 + timedelta(
        seconds=p4.acknowledge_s
    )
    assert deadlines_change(lowered, Priority.P4, later, DIRECTORY, uuid.uuid4()) is None


def test_raised_priority_never_postpones_a_deadline() -> None:
    task = new_task(priority=Priority.P2)
    almost = task.deadlines[SlaDeadline.ACKNOWLEDGE].due_at - timedelta(minutes=1)
    change = deadlines_change(task, Priority.P1, almost, DIRECTORY, uuid.uuid4())
    assert change is not None
    assert change.data.acknowledge_due_at == task.deadlines[SlaDeadline.ACKNOWLEDGE].due_at  # type: ignore[attr-defined]


# ------------------------------------------------------------------ properties


class TaskLifecycle(RuleBasedStateMachine):
    """Any sequence of officers' commands and clock ticks keeps a task valid, and the events
    it produced fold back, from nothing, to the very same state (the rebuild)."""

    def __init__(self) -> None:
        super().__init__()
        first = assigned_event(priority=Priority.P1)
        self.events: list[Any] = [first]
        task = fold(None, first)
        assert task is not None
        self.task = task
        self.now = T0
        self.acknowledged_at: datetime | None = None

    def apply(self, event: Any) -> None:
        after = fold(self.task, event)
        assert after is not None
        self.task = after
        self.events.append(event)

    @rule(
        command=st.sampled_from([c for c in Command if c is not Command.REASSIGN]),
        code=st.sampled_from(["outside_area", "child_safeguarded"]),
    )
    def officer(self, command: Command, code: str) -> None:
        before = self.task
        if command not in ALLOWED[before.status]:
            with pytest.raises(InvalidTransitionError):
                command_change(before, command, code=code)
            assert self.task == before
            return
        try:
            change = command_change(before, command, code=code)
        except InvalidTransitionError:
            assert command is Command.ESCALATE  # only escalation has a limit beyond status
            return
        self.apply(event_of(before, change, self.now))
        if command is Command.ACKNOWLEDGE:
            self.acknowledged_at = self.now

    @precondition(lambda self: self.task.status not in TERMINAL)
    @rule()
    def reassign(self) -> None:
        change = command_change(
            self.task,
            Command.REASSIGN,
            code="better_placed_unit",
            new_task_id=uuid.uuid4(),
            to_agency_id="sulaymaniyah-cpu",
        )
        self.apply(event_of(self.task, change, self.now))

    @rule(seconds=st.integers(min_value=1, max_value=4 * 3600))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        while due := due_timers(self.task, self.now):
            timer = due[0]
            assert timer.at <= self.now
            self.apply(event_of(self.task, timer_change(self.task, timer), self.now))

    @rule(priority=st.sampled_from(list(Priority)))
    def retriaged(self, priority: Priority) -> None:
        change = deadlines_change(self.task, priority, self.now, DIRECTORY, uuid.uuid4())
        if change is not None:
            self.apply(event_of(self.task, change, self.now))

    @invariant()
    def consistent(self) -> None:
        task = self.task
        assert task.version == len(self.events)
        assert 0 <= task.escalation_level <= len(task.escalation_chain)
        if task.escalation_level:
            step = task.escalation_chain[task.escalation_level - 1]
            assert (task.escalated_to, task.escalated_to_agency) == (step.target, step.agency_id)
        if task.status in (TaskStatus.ACKNOWLEDGED, TaskStatus.ACCEPTED, TaskStatus.RESOLVED):
            assert task.acknowledged_at is not None
        if task.status in (TaskStatus.ACCEPTED, TaskStatus.RESOLVED):
            assert task.accepted_at is not None
        assert (task.status is TaskStatus.RESOLVED) == (task.outcome is not None)
        assert (task.status is TaskStatus.DECLINED) == (task.decline_reason is not None)
        assert (task.status in TERMINAL) == (task.closed_at is not None)
        if task.status in TERMINAL:
            assert pending_timers(task) == []
            assert ALLOWED[task.status] == frozenset()

    @invariant()
    def no_timer_fired_twice_and_none_after_it_was_met(self) -> None:
        ids = [e.event_id for e in self.events]
        assert len(ids) == len(set(ids))
        sla_types = (EventType.TASK_SLA_WARNING, EventType.TASK_SLA_BREACHED)
        for event in (e for e in self.events if e.event_type in sla_types):
            if event.event_type == EventType.TASK_SLA_BREACHED:
                assert event.occurred_at >= datetime.fromisoformat(event.data["due_at"])
            if self.acknowledged_at is not None and event.data["deadline"] == "acknowledge":
                assert event.occurred_at <= self.acknowledged_at

    @invariant()
    def the_events_rebuild_the_same_state(self) -> None:
        rebuilt: TaskState | None = None
        for event in self.events:
            rebuilt = fold(rebuilt, event)
            rebuilt = fold(rebuilt, event)  # and a redelivery of each changes nothing
        assert rebuilt == self.task


TestTaskLifecycle = TaskLifecycle.TestCase
TestTaskLifecycle.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
