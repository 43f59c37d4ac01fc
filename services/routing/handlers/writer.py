"""How every change to a task is made: published on the tasks topic first, then applied to the
projection (write-through), by the holder of the task's lock."""

from __future__ import annotations

import uuid

from contracts.events import Actor, Envelope, make_event
from services.routing.domain.tasks import Change, TaskState
from services.routing.ports import AppliedMarks, Publisher, RoutingFigures, TaskStore

UNSETTLED_KEPT = 10_000
"""Events kept for a retry after a failed publish or projection write (see `emit`): the
oldest go first; an event retried later than that is at worst recorded as a conflict."""


class TaskWriter:
    def __init__(
        self,
        tasks: TaskStore,
        publish: Publisher,
        topic: str,
        figures: RoutingFigures,
        mark_applied: AppliedMarks | None = None,
    ) -> None:
        self.tasks = tasks
        self.publish = publish
        self.topic = topic
        self.figures = figures
        self.mark_applied = mark_applied
        # Events whose publish or projection write failed: perhaps on the topic already.
        self._unsettled: dict[uuid.UUID, Envelope] = {}

    async def emit(self, task: TaskState, change: Change, actor: Actor) -> TaskState | None:
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
            await self.publish(self.topic, event)
            updated = await self.tasks.apply_locked(task, event)
        except BaseException:
            self._unsettled[event.event_id] = event
            while len(self._unsettled) > UNSETTLED_KEPT:
                del self._unsettled[next(iter(self._unsettled))]
            raise
        self.figures.changed(task, event)
        if self.mark_applied is not None:
            # Spares the projection consumer re-applying what the writer just applied.
            await self.mark_applied(event)
        return updated

    async def create(self, assigned: Envelope) -> TaskState | None:
        """Publish a `task.assigned`, then apply it. No lock: the task does not exist yet,
        and its slot was claimed (`TaskStore.claim_assignment`), so every writer of it
        writes this very event."""
        await self.publish(self.topic, assigned)
        return await self.tasks.apply(assigned)
