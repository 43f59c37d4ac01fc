"""Routing's configuration beside `Settings` (`OCSEA_*`) and the actor directory: the topics it
reads and writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from contracts import topics as project_topics
from contracts.events import AgencyType
from contracts.topics import dlq_of

DEFAULT_DISPATCH: dict[AgencyType, str] = {
    AgencyType.CHILD_PROTECTION: project_topics.DISPATCH_CHILD_PROTECTION,
    AgencyType.POLICE: project_topics.DISPATCH_POLICE,
    AgencyType.LEGAL: project_topics.DISPATCH_LEGAL,
    AgencyType.GBV_CASE_MANAGEMENT: project_topics.DISPATCH_GBV_CASE_MANAGEMENT,
}


@dataclass(frozen=True)
class RoutingTopics:
    """The topics routing reads and writes; tests and benchmarks give isolated ones."""

    received: str = project_topics.REPORTS_RECEIVED
    triaged: str = project_topics.REPORTS_TRIAGED
    received_bulk: str = project_topics.REPORTS_RECEIVED_BULK
    triaged_bulk: str = project_topics.REPORTS_TRIAGED_BULK
    tasks: str = project_topics.TASKS_EVENTS
    access: str = project_topics.ACCESS
    cases: str = project_topics.CASES
    dispatch: Mapping[AgencyType, str] = field(default_factory=lambda: dict(DEFAULT_DISPATCH))

    @classmethod
    def isolated(cls, namespace: str) -> RoutingTopics:
        return cls(
            received=f"{namespace}.received",
            triaged=f"{namespace}.triaged",
            received_bulk=f"{namespace}.received.bulk",
            triaged_bulk=f"{namespace}.triaged.bulk",
            tasks=f"{namespace}.tasks",
            access=f"{namespace}.access",
            cases=f"{namespace}.cases",
            dispatch={t: f"{namespace}.dispatch.{t.value}" for t in DEFAULT_DISPATCH},
        )

    def all(self) -> list[str]:
        consumed = [
            self.received,
            self.received_bulk,
            self.triaged,
            self.triaged_bulk,
            self.tasks,
        ]
        produced = [self.access, self.cases, *self.dispatch.values()]
        return [*consumed, *map(dlq_of, consumed), *produced]
