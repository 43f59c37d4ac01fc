"""Routing's moves: assign tasks for a triaged case, carry out officers' commands, fire due
SLA timers, and rebuild the Redis projection from Kafka. Every change to a task is an event on
the tasks topic first, then applied to the projection (`RoutingStore.apply`).

The rules themselves live in `policy.py` (who) and `tasks.py` (how a task may change).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from contracts import topics as project_topics
from contracts.directory import Directory
from contracts.events import (
    Actor,
    ActorKind,
    AgencyType,
    Envelope,
    EventType,
    ReportReceivedData,
    ReportTriagedData,
    TaskAssignedData,
    TaskReassignedData,
    TaskStatus,
    derived_event_id,
    make_event,
    utc_now,
)
from contracts.tasks import Command
from contracts.topics import dlq_of
from ocsea.runtime.logging import get_logger
from ocsea.runtime.telemetry import current_traceparent, linked_span, tracing, untraced
from services.routing.metrics import TaskMetrics
from services.routing.policy import (
    CaseFacts,
    Placement,
    Requirement,
    place,
    reassignment_placement,
    required_roles,
)
from services.routing.replay import replay
from services.routing.store import CaseTriage, DueQueue, RoutingStore
from services.routing.tasks import (
    TASK_EVENT_TYPES,
    Change,
    TaskState,
    VersionGapError,
    check,
    command_change,
    deadlines_change,
    deadlines_for,
    due_timers,
    escalation_chain_for,
    fold,
    timer_change,
)

log = get_logger("ocsea.routing")
SYSTEM = Actor(kind=ActorKind.SYSTEM, id="routing")
Publish = Callable[[str, Envelope], Awaitable[None]]
CLOSED_WITHOUT_OUTCOME = frozenset({TaskStatus.DECLINED, TaskStatus.REASSIGNED})
# How long an assignment's trace context is kept for the work it sets off later: longer than
# the last escalation step of the slowest priority, well past any trace store's retention.
TRACE_CONTEXT_TTL_S = 30 * 86400
# Events kept for a retry after a failed publish or projection write (see `_emit`): the
# oldest go first; an event retried later than that is at worst recorded as a conflict.
UNSETTLED_KEPT = 10_000


def trace_context_key(store: RoutingStore, task_id: uuid.UUID | str) -> str:
    """Where the W3C trace context of a task's assignment is kept (only while tracing): its
    webhook delivery continues that trace, its SLA timers link to it."""
    return f"{store.prefix}trace:{task_id}"


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


class RoutingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.timer_lateness = Histogram(
            "ocsea_routing_timer_lateness_seconds",
            "Fire time minus due time of SLA timers",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
            registry=registry,
        )
        self.timer_events = Counter(
            "ocsea_routing_timer_events_total",
            "SLA events fired",
            ["event_type"],
            registry=registry,
        )
        self.tasks_assigned = Counter(
            "ocsea_routing_tasks_assigned_total", "Tasks assigned", ["role"], registry=registry
        )
        self.tasks = TaskMetrics(registry)


class RoutingEngine:
    def __init__(
        self,
        store: RoutingStore,
        directory: Directory,
        publish: Publish,
        topics: RoutingTopics,
        metrics: RoutingMetrics,
        mark_applied: Callable[[Envelope], Awaitable[None]] | None = None,
        on_assigned: Callable[[Envelope], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.mark_applied = mark_applied
        self.on_assigned = on_assigned
        self.directory = directory
        self.publish = publish
        self.topics = topics
        self.metrics = metrics
        # The assignments seen by the last rebuild, for deliveries still owed.
        self.rebuilt_assignments: dict[str, Envelope] = {}
        # Events whose publish or projection write failed: perhaps on the topic already.
        self._unsettled: dict[uuid.UUID, Envelope] = {}

    async def _emit(self, task: TaskState, change: Change, actor: Actor) -> TaskState | None:
        """Publish a change to a task, then apply it to the projection (write-through).
        The caller holds the task's lock and has just read `task`.

        A retry after a failure (Redis down after the publish, or a publish that timed out
        yet may still land) sends the very bytes of the first attempt, when it is the same
        change by the same actor: its event id is the same, and another time in it would make
        the topic and the ledger hold two versions of one event (a conflict) rather than one
        event twice (a redelivery)."""
        event = make_event(
            event_type=change.event_type,
            event_id=change.event_id,
            case_id=task.case_id,
            report_id=task.report_id,
            producer="routing",
            actor=actor,
            data=change.data,
        )
        earlier = self._unsettled.pop(change.event_id, None)
        if earlier is not None and (earlier.actor, earlier.data) == (event.actor, event.data):
            event = earlier
        try:
            await self.publish(self.topics.tasks, event)
            updated = await self.store.apply_locked(task, event)
        except BaseException:
            self._unsettled[event.event_id] = event
            while len(self._unsettled) > UNSETTLED_KEPT:
                del self._unsettled[next(iter(self._unsettled))]
            raise
        self.metrics.tasks.changed(task, event)
        if self.mark_applied is not None:
            # Spares the projection consumer re-applying what the writer just applied.
            await self.mark_applied(event)
        return updated

    # ------------------------------------------------------------------ triaged cases

    async def reconcile(self, event: Envelope) -> list[TaskState]:
        """Bring the case's tasks in line with its current triage result: create the tasks
        the policy requires that do not exist, and move open tasks' deadlines when the
        priority changed. Tasks are never duplicated: one task per case, role and attempt."""
        triaged = event.payload(ReportTriagedData)
        # An older result arriving late (or an earlier one published again, same id) must not
        # undo a newer one; the latest itself again is harmless (nothing is duplicated).
        latest, seen_before = await self.store.triage_and_note(event.case_id, event.event_id)
        if (
            latest is not None
            and latest.event_id != event.event_id
            and (seen_before or latest.occurred_at > event.occurred_at)
        ):
            log.info("triage.superseded", case_id=str(event.case_id), event_id=str(event.event_id))
            return []
        await self.store.set_triage(
            event.case_id,
            CaseTriage(event_id=event.event_id, occurred_at=event.occurred_at, data=triaged),
        )
        facts = CaseFacts.from_triaged(triaged)
        requirements = required_roles(facts, self.directory.policy)
        # Roles are independent of each other (each has its own assignment slot).
        results = await asyncio.gather(
            *(
                self.ensure_role(
                    event.case_id, triaged.report_id, requirement, facts, event.occurred_at
                )
                for requirement in requirements.needed
            )
        )
        created = [task for task in results if task is not None]
        if requirements.not_needed:
            log.debug(
                "routing.not_needed",
                case_id=str(event.case_id),
                roles=[n.split(":")[0] for n in requirements.not_needed],
            )
        # The new response time runs from the re-triage, as a new task's runs from triage.
        for task in await self.store.for_case(event.case_id):
            if task.is_open and task.priority is not triaged.priority:
                await self.change_deadlines(
                    task.task_id, triaged, event.event_id, event.occurred_at
                )
        return created

    async def change_deadlines(
        self,
        task_id: uuid.UUID,
        triaged: ReportTriagedData,
        cause: uuid.UUID,
        now: datetime,
    ) -> None:
        async with self.store.lock(task_id):
            task = await self.store.get(task_id)
            if task is None:
                return
            change = deadlines_change(task, triaged.priority, now, self.directory, cause)
            if change is not None:
                await self._emit(task, change, SYSTEM)
                log.info(
                    "task.deadlines_changed",
                    task_id=str(task_id),
                    case_id=str(task.case_id),
                    priority=triaged.priority.value,
                )

    async def ensure_role(
        self,
        case_id: uuid.UUID,
        report_id: uuid.UUID,
        requirement: Requirement,
        facts: CaseFacts,
        start: datetime,
        *,
        previous: TaskState | None = None,
        reassigned_to: str | None = None,
    ) -> TaskState | None:
        """A task for the role unless one is open or done; declined and reassigned tasks do
        not count, so this also re-routes them (skipping the units that gave them back)."""
        ids = await self.store.role_task_ids(case_id, requirement.role)
        tasks = await self.store.get_many(ids)
        if any(t.status not in CLOSED_WITHOUT_OUTCOME for t in tasks):
            return None
        attempt = len(ids)
        load = await self.store.unit_load()
        exclude = {t.unit_id for t in tasks if t.unit_id}
        agency = self.directory.find_agency(reassigned_to) if reassigned_to else None
        placement = (
            reassignment_placement(requirement.role, facts, self.directory, agency, load, exclude)
            if agency is not None
            else place(requirement, facts, self.directory, load, exclude)
        )
        return await self._assign(
            case_id, report_id, placement, facts, start, attempt, previous=previous
        )

    def task_id_for(
        self, case_id: uuid.UUID, role: AgencyType, agency_id: str, attempt: int
    ) -> uuid.UUID:
        return derived_event_id("task", str(case_id), role.value, agency_id, str(attempt))

    async def _assign(
        self,
        case_id: uuid.UUID,
        report_id: uuid.UUID,
        placement: Placement,
        facts: CaseFacts,
        start: datetime,
        attempt: int,
        *,
        previous: TaskState | None,
    ) -> TaskState | None:
        task_id = self.task_id_for(case_id, placement.role, placement.agency.id, attempt)
        due = deadlines_for(facts.priority, start, self.directory)
        data = TaskAssignedData(
            task_id=task_id,
            report_id=report_id,
            agency_id=placement.agency.id,
            agency_type=placement.agency.type,
            classification=facts.classification,
            priority=facts.priority,
            reason=placement.reason,
            acknowledge_due_at=due.acknowledge_due_at,
            first_action_due_at=due.first_action_due_at,
            role=placement.role,
            unit_id=placement.unit.id,
            criteria=placement.criteria,
            acknowledge_warn_at=due.acknowledge_warn_at,
            first_action_warn_at=due.first_action_warn_at,
            escalation_chain=escalation_chain_for(placement.agency, facts.priority, self.directory),
            previous_task_id=previous.task_id if previous else None,
        )
        event = make_event(
            event_type=EventType.TASK_ASSIGNED,
            event_id=derived_event_id(str(task_id), EventType.TASK_ASSIGNED),
            case_id=case_id,
            report_id=report_id,
            producer="routing",
            actor=SYSTEM,
            data=data,
        )
        # A redelivery after a crash finds the assignment chosen the first time.
        event = await self.store.claim_assignment(
            f"{case_id}:{placement.role.value}:{attempt}", event
        )
        await self.publish(self.topics.tasks, event)
        task = await self.store.apply(event)
        traceparent = current_traceparent()
        if traceparent is not None:
            key = trace_context_key(self.store, event.data["task_id"])
            await self.store.redis.set(key, traceparent, ex=TRACE_CONTEXT_TTL_S)
        if self.on_assigned is not None:
            # Dispatched by the writer at once, in the case's own lane: the agency never waits
            # behind the tasks topic's backlog (the projection consumer dispatches it only
            # if the writer died in between).
            await self.on_assigned(event)
        if self.mark_applied is not None:
            # Applied and dispatched: the projection consumer skips it (in bulk, by marker).
            await self.mark_applied(event)
        chosen = event.payload(TaskAssignedData)
        self.metrics.tasks_assigned.labels(placement.role.value).inc()
        if previous is None:  # a triage result's own task, not a re-route
            self.metrics.tasks.assigned(chosen, triaged_at=start, now=utc_now())
        log.info(
            "task.assigned",
            case_id=str(case_id),
            task_id=str(chosen.task_id),
            role=placement.role.value,
            agency=chosen.agency_id,
            unit=chosen.unit_id,
            priority=chosen.priority.value,
            attempt=attempt,
        )
        return task

    async def case_facts(self, task: TaskState) -> CaseFacts:
        latest = await self.store.triage(task.case_id)
        if latest is not None:
            return CaseFacts.from_triaged(latest.data)
        return CaseFacts(classification=task.classification, priority=task.priority)

    # ------------------------------------------------------------------ officers' commands

    async def command(
        self, task_id: uuid.UUID, command: Command, actor: Actor, *, code: str | None = None
    ) -> TaskState:
        async with self.store.lock(task_id):
            task = await self.store.get(task_id)
            assert task is not None
            change = command_change(task, command, code=code)
            updated = await self._emit(task, change, actor)
            assert updated is not None
        log.info(
            f"task.{command.value}",
            task_id=str(task_id),
            case_id=str(task.case_id),
            actor=actor.id,
            version=updated.version,
        )
        if command is Command.DECLINE:
            await self.reroute(updated)
        return updated

    async def reroute(self, declined: TaskState) -> TaskState | None:
        facts = await self.case_facts(declined)
        requirement = Requirement(declined.role, f"re-routed after {declined.agency_id} declined")
        return await self.ensure_role(
            declined.case_id, declined.report_id, requirement, facts, utc_now(), previous=declined
        )

    async def reassign(
        self, task_id: uuid.UUID, to_agency_id: str, reason: str, actor: Actor
    ) -> tuple[TaskState, TaskState | None]:
        async with self.store.lock(task_id):
            task = await self.store.get(task_id)
            assert task is not None
            check(task, Command.REASSIGN)
            attempt = len(await self.store.role_task_ids(task.case_id, task.role))
            new_task_id = self.task_id_for(task.case_id, task.role, to_agency_id, attempt)
            change = command_change(
                task,
                Command.REASSIGN,
                code=reason,
                new_task_id=new_task_id,
                to_agency_id=to_agency_id,
            )
            updated = await self._emit(task, change, actor)
            assert updated is not None
        replacement = await self.replace_reassigned(updated, to_agency_id)
        return updated, replacement

    async def replace_reassigned(self, task: TaskState, to_agency_id: str) -> TaskState | None:
        facts = await self.case_facts(task)
        requirement = Requirement(task.role, f"reassigned from {task.agency_id}")
        return await self.ensure_role(
            task.case_id,
            task.report_id,
            requirement,
            facts,
            utc_now(),
            previous=task,
            reassigned_to=to_agency_id,
        )

    # ------------------------------------------------------------------ the projection

    async def on_task_event(self, event: Envelope) -> None:
        """Apply a task event seen on the topic; finish a re-route whose writer died."""
        if event.event_type not in TASK_EVENT_TYPES:
            return
        task = await self.store.apply(event)
        if task is None:
            return
        if event.event_type == EventType.TASK_DECLINED and task.status is TaskStatus.DECLINED:
            await self.reroute(task)
        elif event.event_type == EventType.TASK_REASSIGNED:
            reassigned = event.payload(TaskReassignedData)
            if await self.store.get(reassigned.new_task_id) is None:
                await self.replace_reassigned(task, reassigned.to_agency_id)

    async def on_received(self, event: Envelope) -> None:
        if event.event_type == EventType.REPORT_RECEIVED:
            await self.store.add_report(event.case_id, event.payload(ReportReceivedData))

    # ------------------------------------------------------------------ SLA timers

    async def fire(self, task_id: str) -> int:
        """Fire the task's due timers, in order; each is checked against the task's state
        under the task's lock, so a timer met or moved in the meantime does nothing.

        Traced on its own, linked to the assignment's trace: the events a timer publishes
        hours later are no part of the request that assigned the task, but lead back to it."""
        key = trace_context_key(self.store, task_id)
        origin = await self.store.redis.get(key) if tracing() else None
        with linked_span("fire sla timers", origin, {"ocsea.task.id": task_id}):
            return await self._fire(task_id)

    async def _fire(self, task_id: str) -> int:
        fired = 0
        async with self.store.lock(task_id):
            task = await self.store.get(task_id)
            while task is not None and fired < 16:
                now = utc_now()
                due = due_timers(task, now)
                if not due:
                    break
                timer = due[0]
                change = timer_change(task, timer)
                task = await self._emit(task, change, SYSTEM)
                self.metrics.timer_lateness.observe(max(0.0, (now - timer.at).total_seconds()))
                self.metrics.timer_events.labels(change.event_type.value).inc()
                fired += 1
        return fired

    # ------------------------------------------------------------------ rebuild

    async def rebuild(self, bootstrap: str) -> dict[str, int]:
        """Re-derive the whole projection from the topics: tasks (with their timers), then the
        received reports and latest triage of the cases that have tasks."""
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

        events = await replay(bootstrap, self.topics.tasks, on_task)
        finals = await _bounded(self.store.put_rebuilt, states.values(), limit=32)
        await self.store.reset_load(finals)
        cases = {s.case_id for s in finals}

        async def on_received(event: Envelope) -> None:
            if event.event_type == EventType.REPORT_RECEIVED and event.case_id in cases:
                await self.store.add_report(event.case_id, event.payload(ReportReceivedData))

        latest: dict[uuid.UUID, Envelope] = {}

        async def on_triaged(event: Envelope) -> None:
            # A case's results may be in both lanes: the latest by time is the current one;
            # one seen before is a re-publish.
            if event.event_type != EventType.REPORT_TRIAGED or event.case_id not in cases:
                return
            if await self.store.note_triage(event.case_id, event.event_id):
                return
            current = latest.get(event.case_id)
            if current is None or current.occurred_at <= event.occurred_at:
                latest[event.case_id] = event

        for topic in (self.topics.received, self.topics.received_bulk):
            await replay(bootstrap, topic, on_received)
        for topic in (self.topics.triaged, self.topics.triaged_bulk):
            await replay(bootstrap, topic, on_triaged)
        for case_id, event in latest.items():
            await self.store.set_triage(
                case_id,
                CaseTriage(
                    event_id=event.event_id,
                    occurred_at=event.occurred_at,
                    data=event.payload(ReportTriagedData),
                ),
            )
        self.rebuilt_assignments = assigned
        figures = {
            "task_events": events,
            "tasks": len(finals),
            "timers": await self.store.timers.size(),
            "cases": len(cases),
            "ms": int((time.monotonic() - started) * 1000),
        }
        log.info("projection.rebuilt", **figures)
        return figures


async def _bounded(
    work: Callable[[TaskState], Awaitable[TaskState]], items: Iterable[TaskState], *, limit: int
) -> list[TaskState]:
    slots = asyncio.Semaphore(limit)

    async def one(item: TaskState) -> TaskState:
        async with slots:
            return await work(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


class Projection:
    """Keeps the Redis projection present: rebuilt from Kafka when its epoch marker is
    missing (first start, or Redis lost its data), before anything reads or writes it."""

    def __init__(
        self,
        engine: RoutingEngine,
        bootstrap: str,
        after_rebuild: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._engine = engine
        self._bootstrap = bootstrap
        self._lock = asyncio.Lock()
        self._after_rebuild = after_rebuild
        self.rebuilds = 0
        self.recheck_s = 1.0
        self._present_until = 0.0

    async def ensure(self) -> None:
        # Checked at most once per `recheck_s` while present: every event and request passes
        # here, and a lost projection is still noticed within that time.
        now = time.monotonic()
        if now < self._present_until:
            return
        if await self._engine.store.epoch() is not None:
            self._present_until = now + self.recheck_s
            return
        async with self._lock:
            if await self._engine.store.epoch() is not None:
                return
            log.warning("projection.missing_rebuilding")
            await self._engine.rebuild(self._bootstrap)
            if self._after_rebuild is not None:
                await self._after_rebuild()
            await self._engine.store.set_epoch(uuid.uuid4().hex)
            self.rebuilds += 1


class DueLoop:
    """Claims due members of a `DueQueue` and works on them concurrently, one worker per key
    (a task), so a slow item (a hanging webhook) never holds up the others."""

    def __init__(
        self,
        name: str,
        queue: DueQueue,
        work: Callable[[str], Awaitable[object]],
        *,
        interval_s: float,
        guard: Callable[[], Awaitable[None]] | None = None,
        batch: int = 500,
        concurrency: int = 64,
    ) -> None:
        self.name = name
        self._queue = queue
        self._work = work
        self._interval_s = interval_s
        self._guard = guard
        self._batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._loop_task = asyncio.create_task(self._run(), name=f"due-loop:{self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self) -> None:
        last_requeue = 0.0
        while not self._stopping.is_set():
            try:
                # Polled every interval: only the work a poll finds is traced.
                with untraced():
                    if self._guard is not None:
                        await self._guard()
                    now = time.time()
                    if now - last_requeue >= 1.0:
                        await self._queue.requeue_expired(now)
                        last_requeue = now
                    members = await self._queue.claim(now, self._batch)
                    head = None if members else await self._queue.next_due()
                if members:
                    await self._dispatch(members)
                    continue
                delay = self._interval_s if head is None else max(0.0, head - time.time())
                await self._pause(min(self._interval_s, delay))
            except Exception as exc:
                log.error("due_loop.failed", loop=self.name, error=f"{type(exc).__name__}: {exc}")
                await self._pause(self._interval_s)

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _dispatch(self, members: list[str]) -> None:
        groups: dict[str, list[str]] = {}
        for member in members:
            groups.setdefault(member.split("|", 1)[0], []).append(member)
        for key, group in groups.items():
            await self._slots.acquire()
            task = asyncio.create_task(self._one(key, group))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _one(self, key: str, members: list[str]) -> None:
        try:
            await self._work(key)
            await self._queue.done(members)
        except Exception as exc:
            # Left claimed: the lease runs out and the member is claimed again.
            log.error("due_loop.item_failed", loop=self.name, key=key, error=type(exc).__name__)
        finally:
            self._slots.release()
