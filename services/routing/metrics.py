"""Routing's figures on /metrics: how soon tasks are assigned, acknowledged and accepted,
missed response times and escalations by agency, and the tasks by state.

Labels: priority, agency type, agency (a directory id), status, SLA state, deadline, escalation
target and cause: vocabularies of the directory and the contracts, never a case or task id.

The gauges of tasks by state are counted by the store, not scanned: each task sits in the set
of its figure (`figures.py`), so a refresh reads one set size per figure. They are exported by
the live-lane process(es) only, where the timers run; replicas all read the same Redis, so
aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from contracts.events import (
    Envelope,
    EventType,
    TaskAssignedData,
    TaskEscalatedData,
    TaskSlaData,
)
from ocsea.runtime.metrics import LATENCY_BUCKETS
from services.routing.figures import Figure, SlaState
from services.routing.store import RoutingStore
from services.routing.tasks import TaskState

RESPONSE_BUCKETS = (
    30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400, 2 * 86400,
    7 * 86400,
)  # fmt: skip
"""Seconds: the directory's response times run from minutes (P1) to days (P4)."""


class TaskMetrics:
    """Counted as routing changes tasks (by the process that changes them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.assignment_latency = Histogram(
            "ocsea_routing_assignment_latency_seconds",
            "From a case's triage result to the assignment of a task it calls for (re-routed "
            "and reassigned tasks are not counted), by priority and agency type",
            ["priority", "agency_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_acknowledge = Histogram(
            "ocsea_routing_time_to_acknowledge_seconds",
            "From a task's assignment to its acknowledgement, by priority and agency type",
            ["priority", "agency_type"],
            buckets=RESPONSE_BUCKETS,
            registry=registry,
        )
        self.time_to_accept = Histogram(
            "ocsea_routing_time_to_accept_seconds",
            "From a task's assignment to its acceptance, by priority and agency type",
            ["priority", "agency_type"],
            buckets=RESPONSE_BUCKETS,
            registry=registry,
        )
        self.sla_breaches = Counter(
            "ocsea_routing_sla_breaches",
            "Response times missed (task.sla_breached), by agency, agency type, priority and "
            "deadline",
            ["agency", "agency_type", "priority", "deadline"],
            registry=registry,
        )
        self.escalations = Counter(
            "ocsea_routing_escalations",
            "Tasks escalated, by the task's agency and agency type, the target and the cause "
            "(a missed deadline or by hand)",
            ["agency", "agency_type", "target", "cause"],
            registry=registry,
        )

    def assigned(self, task: TaskAssignedData, *, triaged_at: datetime, now: datetime) -> None:
        self.assignment_latency.labels(task.priority, task.agency_type).observe(
            max(0.0, (now - triaged_at).total_seconds())
        )

    def changed(self, task: TaskState, event: Envelope) -> None:
        """Count a change to `task` (its state before `event`)."""
        since_assigned = max(0.0, (event.occurred_at - task.assigned_at).total_seconds())
        if event.event_type == EventType.TASK_ACKNOWLEDGED:
            self.time_to_acknowledge.labels(task.priority, task.agency_type).observe(since_assigned)
        elif event.event_type == EventType.TASK_ACCEPTED:
            self.time_to_accept.labels(task.priority, task.agency_type).observe(since_assigned)
        elif event.event_type == EventType.TASK_SLA_BREACHED:
            breach = event.payload(TaskSlaData)
            self.sla_breaches.labels(
                task.agency_id, task.agency_type, breach.priority, breach.deadline
            ).inc()
        elif event.event_type == EventType.TASK_ESCALATED:
            escalation = event.payload(TaskEscalatedData)
            self.escalations.labels(
                task.agency_id, task.agency_type, escalation.target, escalation.cause
            ).inc()


class TaskGauges:
    """Tasks by state, read from the store's figure sets every refresh."""

    def __init__(self, registry: CollectorRegistry, store: RoutingStore) -> None:
        self._store = store
        self._counts: dict[Figure, int] = {}
        self._backfilled = False
        registry.register(self)

    async def refresh(self) -> None:
        if not self._backfilled:
            self._backfilled = await self._store.backfill_figures()
        counts = await self._store.figure_counts()
        self._counts = {
            figure: size
            for key, size in counts.items()
            if (figure := Figure.parse(key)) is not None
        }

    def collect(self) -> Iterable[Metric]:
        return gauges(self._counts)


def gauges(counts: dict[Figure, int]) -> list[Metric]:
    """The gauges of tasks by state, from the number of tasks at each figure."""
    tasks = _Sums(
        "ocsea_routing_tasks",
        "Tasks by status (open and closed), priority and agency type",
        ["status", "priority", "agency_type"],
    )
    open_tasks = _Sums(
        "ocsea_routing_open_tasks",
        "Open tasks (assigned, acknowledged, accepted) by status, priority, agency type and "
        "how their response times stand: ok, warned (a warning fired) or overdue (a deadline "
        "missed and not met since); as routing's timers know it, within their check interval",
        ["status", "priority", "agency_type", "sla"],
    )
    overdue = _Sums(
        "ocsea_routing_overdue_tasks",
        "Open tasks with a missed deadline not met since, by priority and agency type",
        ["priority", "agency_type"],
    )
    breached = _Sums(
        "ocsea_routing_breached_tasks",
        "Tasks that missed a deadline at some point (met late or not), by status, priority "
        "and agency type",
        ["status", "priority", "agency_type"],
    )
    for figure, size in counts.items():
        tasks.add(size, figure.status, figure.priority, figure.agency_type)
        if figure.sla is not SlaState.CLOSED:
            open_tasks.add(size, figure.status, figure.priority, figure.agency_type, figure.sla)
        if figure.sla is SlaState.OVERDUE:
            overdue.add(size, figure.priority, figure.agency_type)
        if figure.breached:
            breached.add(size, figure.status, figure.priority, figure.agency_type)
    return [sums.family() for sums in (tasks, open_tasks, overdue, breached)]


class _Sums:
    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.values: dict[tuple[str, ...], int] = {}

    def add(self, size: int, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0) + size

    def family(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in sorted(self.values.items()):
            family.add_metric(list(labels), value)
        return family
