"""Where a task stands for the gauges (its figure), the gauges made of figure counts, and the
figures counted as tasks change: time to acknowledge and accept, breaches, escalations."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry

from contracts.events import AgencyType, Priority, SlaDeadline, TaskStatus
from contracts.tasks import Command
from services.routing.adapters.metrics import PrometheusFigures, gauges
from services.routing.domain.figures import Figure, SlaState, figure_of
from services.routing.domain.tasks import (
    TaskState,
    command_change,
    pending_timers,
    timer_change,
)
from testkit.routing_tasks import T0, event_of, fire_due, new_task, run


def test_a_task_moves_from_ok_to_warned_to_overdue_then_closes_breached() -> None:
    task = new_task(priority=Priority.P1)
    assert figure_of(task) == Figure(
        TaskStatus.ASSIGNED, Priority.P1, AgencyType.CHILD_PROTECTION, SlaState.OK, False
    )
    ack_due = task.deadlines[SlaDeadline.ACKNOWLEDGE].due_at
    warned, _ = fire_due(task, ack_due - timedelta(seconds=1))
    assert figure_of(warned).sla is SlaState.WARNED
    overdue, _ = fire_due(warned, ack_due)
    assert (figure_of(overdue).sla, figure_of(overdue).breached) == (SlaState.OVERDUE, True)
    # Acknowledged late: the missed deadline is met, the next one is owed and not yet warned.
    late = run(overdue, Command.ACKNOWLEDGE, ack_due + timedelta(seconds=5))
    assert (figure_of(late).sla, figure_of(late).breached) == (SlaState.OK, True)
    resolved = run(run(late, Command.ACCEPT), Command.RESOLVE, code="child_safeguarded")
    assert figure_of(resolved) == Figure(
        TaskStatus.RESOLVED, Priority.P1, AgencyType.CHILD_PROTECTION, SlaState.CLOSED, True
    )


def test_a_figure_key_reads_back_and_an_unknown_one_is_ignored() -> None:
    figure = figure_of(new_task(priority=Priority.P2))
    assert Figure.parse(figure.key) == figure
    assert Figure.parse("assigned|P9|police|ok|in_time") is None
    assert Figure.parse("a|b") is None


def test_the_gauges_sum_figures_by_their_own_labels() -> None:
    def fig(status: TaskStatus, sla: SlaState, breached: bool = False) -> Figure:
        return Figure(status, Priority.P1, AgencyType.POLICE, sla, breached)

    counts = {
        fig(TaskStatus.ASSIGNED, SlaState.WARNED): 2,
        fig(TaskStatus.ASSIGNED, SlaState.OVERDUE, breached=True): 3,
        fig(TaskStatus.ACKNOWLEDGED, SlaState.OK, breached=True): 4,
        fig(TaskStatus.RESOLVED, SlaState.CLOSED, breached=True): 5,
        fig(TaskStatus.RESOLVED, SlaState.CLOSED): 6,
    }
    samples = {
        (family.name, tuple(sorted(s.labels.items()))): s.value
        for family in gauges(counts)
        for s in family.samples
    }
    common = (("agency_type", "police"), ("priority", "P1"))

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted((*common, *labels.items()))))]

    assert value("ocsea_routing_tasks", status="assigned") == 5
    assert value("ocsea_routing_tasks", status="resolved") == 11
    assert value("ocsea_routing_open_tasks", status="assigned", sla="warned") == 2
    assert value("ocsea_routing_open_tasks", status="acknowledged", sla="ok") == 4
    assert not any(k[0] == "ocsea_routing_open_tasks" and ("status", "resolved") in k[1]
                   for k in samples)  # fmt: skip
    assert value("ocsea_routing_overdue_tasks") == 3
    assert value("ocsea_routing_breached_tasks", status="resolved") == 5
    assert value("ocsea_routing_breached_tasks", status="acknowledged") == 4


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_task_changes_are_timed_and_counted_by_agency() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusFigures(registry)
    task: TaskState = new_task(priority=Priority.P1, agency_id="erbil-cpu")
    labels = {"priority": "P1", "agency_type": "child_protection"}

    acknowledge = command_change(task, Command.ACKNOWLEDGE)
    metrics.changed(task, event_of(task, acknowledge, T0 + timedelta(seconds=90)))
    assert sample(registry, "ocsea_routing_time_to_acknowledge_seconds_count", **labels) == 1
    assert sample(registry, "ocsea_routing_time_to_acknowledge_seconds_sum", **labels) == 90
    assert sample(registry, "ocsea_routing_time_to_acknowledge_seconds_bucket", le="60.0",
                  **labels) == 0  # fmt: skip

    [breach] = [t for t in pending_timers(task) if t.name == "acknowledge:breach"]
    metrics.changed(task, event_of(task, timer_change(task, breach), breach.at))
    assert (
        sample(
            registry,
            "ocsea_routing_sla_breaches_total",
            agency="erbil-cpu",
            agency_type="child_protection",
            priority="P1",
            deadline="acknowledge",
        )
        == 1
    )

    escalate = command_change(task, Command.ESCALATE)
    metrics.changed(task, event_of(task, escalate, T0))
    assert (
        sample(
            registry,
            "ocsea_routing_escalations_total",
            agency="erbil-cpu",
            agency_type="child_protection",
            target="supervisor",
            cause="manual",
        )
        == 1
    )
