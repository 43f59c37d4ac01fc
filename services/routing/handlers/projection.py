"""The tasks' projection: kept present (rebuilt from Kafka when lost), and fed by the tasks
topic, where it finishes the work of a writer that died half-way."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable

from contracts.events import (
    Envelope,
    EventType,
    ReportReceivedData,
    ReportTriagedData,
    TaskReassignedData,
    TaskStatus,
)
from ocsea.runtime.logging import get_logger
from ocsea.runtime.projection import ProjectionGuard
from services.routing.config import RoutingTopics
from services.routing.domain.tasks import TASK_EVENT_TYPES, TaskState, VersionGapError, fold
from services.routing.handlers.assignment import Assignments
from services.routing.ports import (
    CaseStore,
    CaseTriage,
    Dispatch,
    ProjectionStore,
    TaskStore,
    TopicReplay,
)

log = get_logger("ocsea.routing")

REBUILD_CONCURRENCY = 32
"""Tasks written at once by a rebuild."""


class Projection:
    """Keeps the projection present: rebuilt from Kafka when its epoch marker is missing
    (first start, or Redis lost its data), before anything reads or writes it."""

    def __init__(
        self,
        *,
        store: ProjectionStore,
        cases: CaseStore,
        replay: TopicReplay,
        topics: RoutingTopics,
        dispatch: Dispatch | None = None,
    ) -> None:
        self.store = store
        self.cases = cases
        self.replay = replay
        self.topics = topics
        self.dispatch = dispatch
        self.guard = ProjectionGuard(None, "routing", self._rebuild_and_requeue, marker=store)

    @property
    def rebuilds(self) -> int:
        return self.guard.rebuilds

    async def ensure(self) -> None:
        await self.guard.ensure()

    async def _rebuild_and_requeue(self) -> int:
        assigned = await self.rebuild()
        if self.dispatch is not None:
            await self.dispatch.requeue_after_rebuild(assigned)
        return len(assigned)

    async def ready(self) -> None:
        """Readiness: the projection is there (not being rebuilt)."""
        if await self.store.epoch() is None:
            raise RuntimeError("task projection is being rebuilt")

    async def rebuild(self) -> dict[str, Envelope]:
        """Re-derive the whole projection from the topics: tasks (with their timers), then the
        received reports and latest triage of the cases that have tasks. Returns each task's
        assignment, for the deliveries still owed."""
        started = time.monotonic()
        states: dict[str, TaskState] = {}
        assigned: dict[str, Envelope] = {}

        async def on_task(event: Envelope) -> None:
            if event.event_type not in TASK_EVENT_TYPES:
                return
            task_id = str(event.data.get("task_id"))
            try:
                state = fold(states.get(task_id), event)
            except VersionGapError as exc:
                log.error("rebuild.version_gap", task_id=task_id, error=str(exc))
                return
            if state is not None:
                states[task_id] = state
                if event.event_type == EventType.TASK_ASSIGNED and task_id not in assigned:
                    assigned[task_id] = event

        events = await self.replay(self.topics.tasks, on_task)
        finals = await _bounded(self.store.put_rebuilt, states.values(), REBUILD_CONCURRENCY)
        await self.store.reset_load(finals)
        cases = {s.case_id for s in finals}

        async def on_received(event: Envelope) -> None:
            if event.event_type == EventType.REPORT_RECEIVED and event.case_id in cases:
                await self.cases.add_report(event.case_id, event.payload(ReportReceivedData))

        latest: dict[uuid.UUID, Envelope] = {}

        async def on_triaged(event: Envelope) -> None:
            # A case's results may be in both lanes: the latest by time is the current one;
            # one seen before is a re-publish.
            if event.event_type != EventType.REPORT_TRIAGED or event.case_id not in cases:
                return
            if await self.cases.note_triage(event.case_id, event.event_id):
                return
            current = latest.get(event.case_id)
            if current is None or current.occurred_at <= event.occurred_at:
                latest[event.case_id] = event

        for topic in (self.topics.received, self.topics.received_bulk):
            await self.replay(topic, on_received)
        for topic in (self.topics.triaged, self.topics.triaged_bulk):
            await self.replay(topic, on_triaged)
        for case_id, event in latest.items():
            await self.cases.set_triage(
                case_id,
                CaseTriage(
                    event_id=event.event_id,
                    occurred_at=event.occurred_at,
                    data=event.payload(ReportTriagedData),
                ),
            )
        log.info(
            "projection.rebuilt",
            task_events=events,
            tasks=len(finals),
            timers=await self.store.timer_count(),
            cases=len(cases),
            ms=int((time.monotonic() - started) * 1000),
        )
        return assigned


async def _bounded(
    work: Callable[[TaskState], Awaitable[TaskState]], items: Iterable[TaskState], limit: int
) -> list[TaskState]:
    slots = asyncio.Semaphore(limit)

    async def one(item: TaskState) -> TaskState:
        async with slots:
            return await work(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


class TaskEvents:
    """The tasks topic's consumer: applies what it sees (most of it applied by the writer
    already) and finishes what a writer that died left undone: a re-route after a decline,
    the replacement of a reassigned task, the dispatch of an assignment."""

    def __init__(
        self,
        *,
        tasks: TaskStore,
        assignments: Assignments,
        projection: Projection,
        dispatch: Dispatch | None = None,
    ) -> None:
        self.tasks = tasks
        self.assignments = assignments
        self.projection = projection
        self.dispatch = dispatch

    async def on_task_event(self, event: Envelope) -> None:
        await self.projection.ensure()
        await self._apply(event)
        if self.dispatch is not None:
            # Both idempotent, so a retry after a failed dispatch re-applies nothing.
            await self.dispatch.on_task_event(event)

    async def _apply(self, event: Envelope) -> None:
        if event.event_type not in TASK_EVENT_TYPES:
            return
        task = await self.tasks.apply(event)
        if task is None:
            return
        if event.event_type == EventType.TASK_DECLINED and task.status is TaskStatus.DECLINED:
            await self.assignments.reroute(task)
        elif event.event_type == EventType.TASK_REASSIGNED:
            reassigned = event.payload(TaskReassignedData)
            if await self.tasks.get(reassigned.new_task_id) is None:
                await self.assignments.replace_reassigned(task, reassigned.to_agency_id)
