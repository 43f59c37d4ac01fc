"""Assigning a case's tasks: for a triaged case, the tasks its triage calls for; after a decline
or a reassignment, the next unit. Who gets each is `domain/policy.py`'s decision."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from contracts.directory import Directory
from contracts.events import (
    Envelope,
    EventType,
    ReportTriagedData,
    TaskAssignedData,
    derived_event_id,
    make_event,
)
from ocsea.runtime.logging import get_logger
from ocsea.runtime.telemetry import current_traceparent
from services.routing.domain.policy import (
    CaseFacts,
    Placement,
    Requirement,
    place,
    reassignment_placement,
    required_roles,
)
from services.routing.domain.tasks import (
    CLOSED_WITHOUT_OUTCOME,
    SYSTEM,
    TaskState,
    deadlines_change,
    deadlines_for,
    escalation_chain_for,
    task_id_for,
)
from services.routing.handlers.writer import TaskWriter
from services.routing.ports import (
    AppliedMarks,
    CaseStore,
    CaseTriage,
    Clock,
    Dispatch,
    RoutingFigures,
    TaskStore,
)

log = get_logger("ocsea.routing")


class Assignments:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        cases: CaseStore,
        writer: TaskWriter,
        directory: Directory,
        figures: RoutingFigures,
        clock: Clock,
        dispatch: Dispatch | None = None,
        mark_applied: AppliedMarks | None = None,
    ) -> None:
        self.tasks = tasks
        self.cases = cases
        self.writer = writer
        self.directory = directory
        self.figures = figures
        self.clock = clock
        self.dispatch = dispatch
        self.mark_applied = mark_applied

    async def assign_triaged(self, event: Envelope) -> list[TaskState]:
        """Bring the case's tasks in line with its current triage result: create the tasks
        the policy requires that do not exist, and move open tasks' deadlines when the
        priority changed. Tasks are never duplicated: one task per case, role and attempt."""
        triaged = event.payload(ReportTriagedData)
        # An older result arriving late (or an earlier one published again, same id) must not
        # undo a newer one; the latest itself again is harmless (nothing is duplicated).
        latest, seen_before = await self.cases.triage_and_note(event.case_id, event.event_id)
        if (
            latest is not None
            and latest.event_id != event.event_id
            and (seen_before or latest.occurred_at > event.occurred_at)
        ):
            log.info("triage.superseded", case_id=str(event.case_id), event_id=str(event.event_id))
            return []
        await self.cases.set_triage(
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
        for task in await self.tasks.for_case(event.case_id):
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
        async with self.tasks.lock(task_id):
            task = await self.tasks.get(task_id)
            if task is None:
                return
            change = deadlines_change(task, triaged.priority, now, self.directory, cause)
            if change is not None:
                await self.writer.emit(task, change, SYSTEM)
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
        ids = await self.tasks.role_task_ids(case_id, requirement.role)
        tasks = await self.tasks.get_many(ids)
        if any(t.status not in CLOSED_WITHOUT_OUTCOME for t in tasks):
            return None
        attempt = len(ids)
        load = await self.tasks.unit_load()
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
        task_id = task_id_for(case_id, placement.role, placement.agency.id, attempt)
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
        event = await self.tasks.claim_assignment(
            f"{case_id}:{placement.role.value}:{attempt}", event
        )
        task = await self.writer.create(event)
        traceparent = current_traceparent()
        if traceparent is not None:
            await self.tasks.keep_trace_context(str(event.data["task_id"]), traceparent)
        if self.dispatch is not None:
            # Dispatched by the writer at once, in the case's own lane: the agency never waits
            # behind the tasks topic's backlog (the projection consumer dispatches it only
            # if the writer died in between).
            await self.dispatch.on_task_event(event)
        if self.mark_applied is not None:
            # Applied and dispatched: the projection consumer skips it (in bulk, by marker).
            await self.mark_applied(event)
        chosen = event.payload(TaskAssignedData)
        self.figures.assigned(
            placement.role,
            chosen,
            for_triage=previous is None,  # a triage result's own task, not a re-route
            triaged_at=start,
            now=self.clock(),
        )
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
        latest = await self.cases.triage(task.case_id)
        if latest is not None:
            return CaseFacts.from_triaged(latest.data)
        return CaseFacts(classification=task.classification, priority=task.priority)

    async def reroute(self, declined: TaskState) -> TaskState | None:
        """The next unit for a declined task's role (the ones that gave it back skipped)."""
        facts = await self.case_facts(declined)
        requirement = Requirement(declined.role, f"re-routed after {declined.agency_id} declined")
        return await self.ensure_role(
            declined.case_id,
            declined.report_id,
            requirement,
            facts,
            self.clock(),
            previous=declined,
        )

    async def replace_reassigned(self, task: TaskState, to_agency_id: str) -> TaskState | None:
        facts = await self.case_facts(task)
        requirement = Requirement(task.role, f"reassigned from {task.agency_id}")
        return await self.ensure_role(
            task.case_id,
            task.report_id,
            requirement,
            facts,
            self.clock(),
            previous=task,
            reassigned_to=to_agency_id,
        )
