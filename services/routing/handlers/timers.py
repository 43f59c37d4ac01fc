"""Timers due: a task's SLA warnings, breaches and escalations, fired by the clock alone.

What is due is `domain/tasks.py`'s (`due_timers`, `timer_change`); the loop that finds due
tasks and calls `fire` is `entrypoints/timers.py`."""

from __future__ import annotations

from ocsea.runtime.telemetry import linked_span, tracing
from services.routing.domain.tasks import SYSTEM, due_timers, timer_change
from services.routing.handlers.writer import TaskWriter
from services.routing.ports import Clock, RoutingFigures, TaskStore

MOST_AT_ONCE = 16
"""Timers fired per call at most: a task far behind catches up over a few calls."""


class SlaTimers:
    def __init__(
        self, *, tasks: TaskStore, writer: TaskWriter, figures: RoutingFigures, clock: Clock
    ) -> None:
        self.tasks = tasks
        self.writer = writer
        self.figures = figures
        self.clock = clock

    async def fire(self, task_id: str) -> int:
        """Fire the task's due timers, in order; each is checked against the task's state
        under the task's lock, so a timer met or moved in the meantime does nothing.

        Traced on its own, linked to the assignment's trace: the events a timer publishes
        hours later are no part of the request that assigned the task, but lead back to it."""
        origin = await self.tasks.trace_context(task_id) if tracing() else None
        with linked_span("fire sla timers", origin, {"ocsea.task.id": task_id}):
            return await self._fire(task_id)

    async def _fire(self, task_id: str) -> int:
        fired = 0
        async with self.tasks.lock(task_id):
            task = await self.tasks.get(task_id)
            while task is not None and fired < MOST_AT_ONCE:
                now = self.clock()
                due = due_timers(task, now)
                if not due:
                    break
                timer = due[0]
                change = timer_change(task, timer)
                task = await self.writer.emit(task, change, SYSTEM)
                self.figures.timer_fired(
                    change.event_type.value, max(0.0, (now - timer.at).total_seconds())
                )
                fired += 1
        return fired
