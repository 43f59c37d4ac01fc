"""Routing writes a task's event to the topic, then to its Redis projection. When the second
step fails (Redis down, found by `ocsea drill --only redis-restart`), the event is on the topic
already and the timer or the officer tries again: the retry must send the very same bytes, or
the topic and the ledger hold two versions of one event id (a ledger `conflict`), not one
event delivered twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import cast

import pytest

from contracts.directory import load_directory
from contracts.events import (
    Actor,
    ActorKind,
    AgencyType,
    Classification,
    Envelope,
    EventType,
    Priority,
    TaskAssignedData,
    make_event,
    utc_now,
)
from contracts.tasks import Command
from services.routing.config import RoutingTopics
from services.routing.domain.tasks import TaskState, fold
from services.routing.handlers import RoutingHandlers, RoutingPorts
from services.routing.ports import TaskStore
from tests.routing.fakes import Journal, MemoryStore, RecordedAccess, RecordedFigures, SealedKeys

OFFICER = Actor(kind=ActorKind.OFFICER, id="officer-erbil-cpu", agency="erbil-cpu")
ANOTHER_OFFICER = Actor(kind=ActorKind.OFFICER, id="officer-2", agency="erbil-cpu")


class FlakyProjection:
    """The projection in memory; its writes fail while `down`."""

    prefix = "emit-retry:"

    def __init__(self, task: TaskState) -> None:
        self.tasks = {task.task_id: task}
        self.down = False

    @asynccontextmanager
    async def lock(
        self, task_id: uuid.UUID | str, *, within_s: float = 15.0
    ) -> AsyncIterator[None]:
        yield

    async def get(self, task_id: uuid.UUID | str) -> TaskState | None:
        return self.tasks.get(uuid.UUID(str(task_id)))

    async def apply_locked(self, task: TaskState, event: Envelope) -> TaskState | None:
        if self.down:
            raise ConnectionError("Redis is down")
        updated = fold(task, event)
        assert updated is not None
        self.tasks[updated.task_id] = updated
        return updated


def assigned_task() -> TaskState:
    """A task whose acknowledge warning is due now."""
    now = utc_now()
    task_id = uuid.uuid4()
    event = make_event(
        event_type=EventType.TASK_ASSIGNED,
        case_id=uuid.uuid4(),
        producer="routing",
        actor=Actor(kind=ActorKind.SYSTEM, id="routing"),
        data=TaskAssignedData(
            task_id=task_id,
            report_id=uuid.uuid4(),
            agency_id="erbil-cpu",
            agency_type=AgencyType.CHILD_PROTECTION,
            classification=Classification.TF_CSEA,
            priority=Priority.P1,
            reason="test",
            acknowledge_warn_at=now - timedelta(seconds=1),
            acknowledge_due_at=now + timedelta(hours=1),
            first_action_due_at=now + timedelta(hours=2),
        ),
    )
    task = fold(None, event)
    assert task is not None
    return task


def engine_on(projection: FlakyProjection, published: list[Envelope]) -> RoutingHandlers:
    async def publish(_topic: str, event: Envelope) -> None:
        published.append(event)

    async def no_replay(_topic: str, _handle: object) -> int:
        return 0

    journal, others = Journal(), MemoryStore(Journal())
    return RoutingHandlers(
        RoutingPorts(
            tasks=cast(TaskStore, projection),
            cases=others,
            projection=others,
            publish=publish,
            replay=no_replay,
            figures=RecordedFigures(),
            keys=SealedKeys(journal),
            access=RecordedAccess(journal),
        ),
        load_directory(),
        RoutingTopics.isolated("emit-retry"),
    )


async def test_a_timer_fired_again_after_a_failed_projection_write_sends_the_same_bytes() -> None:
    task = assigned_task()
    projection, published = FlakyProjection(task), list[Envelope]()
    engine = engine_on(projection, published)
    projection.down = True
    with pytest.raises(ConnectionError):
        await engine.timers.fire(str(task.task_id))
    projection.down = False
    assert await engine.timers.fire(str(task.task_id)) == 1

    first, again = published
    assert first.event_type == EventType.TASK_SLA_WARNING
    assert again.model_dump_json() == first.model_dump_json()
    warned = await projection.get(task.task_id)
    assert warned is not None
    assert warned.version == 2


async def test_an_acknowledgement_retried_sends_the_same_bytes_by_the_same_officer_only() -> None:
    task = assigned_task()
    projection, published = FlakyProjection(task), list[Envelope]()
    engine = engine_on(projection, published)
    projection.down = True
    with pytest.raises(ConnectionError):
        await engine.tasks.change(task.task_id, Command.ACKNOWLEDGE, OFFICER)
    projection.down = False
    await engine.tasks.change(task.task_id, Command.ACKNOWLEDGE, OFFICER)
    first, again = published
    assert again.model_dump_json() == first.model_dump_json()

    # Another officer's retry is their own acknowledgement: never recorded in the first's name.
    other = assigned_task()
    projection.tasks[other.task_id] = other
    projection.down = True
    with pytest.raises(ConnectionError):
        await engine.tasks.change(other.task_id, Command.ACKNOWLEDGE, OFFICER)
    projection.down = False
    await engine.tasks.change(other.task_id, Command.ACKNOWLEDGE, ANOTHER_OFFICER)
    mine, theirs = published[2:]
    assert (mine.event_id, mine.actor, theirs.actor) == (theirs.event_id, OFFICER, ANOTHER_OFFICER)
