"""Routing's figures on /metrics (the `RoutingFigures` port, on Prometheus): how soon tasks are
assigned, acknowledged and accepted, missed response times and escalations by agency, SLA
timers, and the tasks by state.

Labels: priority, agency type, agency (a directory id), status, SLA state, deadline, escalation
target and cause: vocabularies of the directory and the contracts, never a case or task id.

The gauges of tasks by state are counted by the store, not scanned: each task sits in the set
of its figure (`domain/figures.py`), so a refresh reads one set size per figure. They are
exported by the live-lane process(es) only, where the timers run; replicas all read the same
Redis, so aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from contracts.events import (
    AgencyType,
    Envelope,
    EventType,
    TaskAssignedData,
    TaskEscalatedData,
    TaskSlaData,
)
from ocsea.runtime.metrics import LATENCY_BUCKETS
from services.routing.adapters.redis import RoutingStore
from services.routing.domain.figures import Figure, SlaState
from services.routing.domain.tasks import TaskState

RESPONSE_BUCKETS = (
    30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400, 2 * 86400,
    7 * 86400,
)  # fmt: skip
"""Seconds: the directory's response times run from minutes (P1) to days (P4)."""
TIMER_LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)


class PrometheusFigures:
    """Counted as routing changes tasks (by the process that changes them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def by_priority_and_type(
            name: str, documentation: str, buckets: Iterable[float]
        ) -> Histogram:
            return Histogram(
                name,
                documentation,
                ["priority", "agency_type"],
                buckets=tuple(buckets),
                registry=registry,
            )

        self.assignment_latency = by_priority_and_type(
            "ocsea_routing_assignment_latency_seconds",
            "From a case's triage result to the assignment of a task it calls for (re-routed "
            "and reassigned tasks are not counted), by priority and agency type",
            LATENCY_BUCKETS,
        )
        self.time_to_acknowledge = by_priority_and_type(
            "ocsea_routing_time_to_acknowledge_seconds",
            "From a task's assignment to its acknowledgement, by priority and agency type",
            RESPONSE_BUCKETS,
        )
        self.time_to_accept = by_priority_and_type(
            "ocsea_routing_time_to_accept_seconds",
            "From a task's assignment to its acceptance, by priority and agency type",
            RESPONSE_BUCKETS,
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
        self.tasks_assigned = Counter(
            "ocsea_routing_tasks_assigned_total", "Tasks assigned", ["role"], registry=registry
        )
        self.timer_lateness = Histogram(
            "ocsea_routing_timer_lateness_seconds",
            "Fire time minus due time of SLA timers",
            buckets=TIMER_LATENESS_BUCKETS,
            registry=registry,
        )
        self.timer_events = Counter(
            "ocsea_routing_timer_events_total",
            "SLA events fired",
            ["event_type"],
            registry=registry,
        )

    def assigned(
        self,
        role: AgencyType,
        task: TaskAssignedData,
        *,
        for_triage: bool,
        triaged_at: datetime,
        now: datetime,
    ) -> None:
        self.tasks_assigned.labels(role.value).inc()
        if for_triage:
            self.assignment_latency.labels(task.priority, task.agency_type).observe(
                max(0.0, (now - triaged_at).total_seconds())
            )

    def changed(self, task: TaskState, event: Envelope) -> None:
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

    def timer_fired(self, event_type: str, lateness_s: float) -> None:
        self.timer_lateness.observe(lateness_s)
        self.timer_events.labels(event_type).inc()


# ----------------------------------------------------------------------------- tasks by state


@dataclass(frozen=True)
class FigureGauge:
    """A gauge of tasks by state: the tasks of the figures it `counts`, summed by `labels`
    (each a `Figure` attribute of the same name)."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    counts: Callable[[Figure], bool] = lambda _figure: True

    def family(self, counts: dict[Figure, int]) -> GaugeMetricFamily:
        sums: dict[tuple[str, ...], int] = {}
        for figure, size in counts.items():
            if self.counts(figure):
                key = tuple(str(getattr(figure, label)) for label in self.labels)
                sums[key] = sums.get(key, 0) + size
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for labels, value in sorted(sums.items()):
            family.add_metric(list(labels), value)
        return family


FIGURE_GAUGES = (
    FigureGauge(
        "ocsea_routing_tasks",
        "Tasks by status (open and closed), priority and agency type",
        ("status", "priority", "agency_type"),
    ),
    FigureGauge(
        "ocsea_routing_open_tasks",
        "Open tasks (assigned, acknowledged, accepted) by status, priority, agency type and "
        "how their response times stand: ok, warned (a warning fired) or overdue (a deadline "
        "missed and not met since); as routing's timers know it, within their check interval",
        ("status", "priority", "agency_type", "sla"),
        lambda figure: figure.sla is not SlaState.CLOSED,
    ),
    FigureGauge(
        "ocsea_routing_overdue_tasks",
        "Open tasks with a missed deadline not met since, by priority and agency type",
        ("priority", "agency_type"),
        lambda figure: figure.sla is SlaState.OVERDUE,
    ),
    FigureGauge(
        "ocsea_routing_breached_tasks",
        "Tasks that missed a deadline at some point (met late or not), by status, priority "
        "and agency type",
        ("status", "priority", "agency_type"),
        lambda figure: figure.breached,
    ),
)


def gauges(counts: dict[Figure, int]) -> list[Metric]:
    """The gauges of tasks by state, from the number of tasks at each figure."""
    return [gauge.family(counts) for gauge in FIGURE_GAUGES]


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
