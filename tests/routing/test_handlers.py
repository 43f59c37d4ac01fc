"""Routing's use cases on in-memory fakes of their ports (`fakes.py`): no broker, no Redis.

Assignment is idempotent, a decline re-routes the case to the next unit, refusals are refused
and noted, a case's view is recorded before its personal data leaves, every change goes to
the topic before the projection (under the task's lock), and an outage of the store answers
503 through the HTTP routes.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts.events import (
    AgencyType,
    Envelope,
    ErasureReason,
    EventType,
    IncidentFacts,
    Priority,
    ReportReceivedData,
    TaskAssignedData,
    TaskStatus,
    make_event,
)
from contracts.reports import Channel, Governorate, ViolenceType
from contracts.tasks import Command
from ocsea.runtime.auth import Principal, PrincipalStore, Role, StoredPrincipal, token_hash
from ocsea.runtime.errors import ApiError, install_error_handlers
from services.routing.domain.tasks import SYSTEM, TaskState
from services.routing.entrypoints.http import router
from testkit.routing_harness import TRIAGE, triaged_event
from tests.routing.fakes import T0, Outage, World

OFFICER = Principal(name="officer-erbil-cpu", role=Role.OFFICER, agency="erbil-cpu")
SUPERVISOR = Principal(name="supervisor-erbil-cpu", role=Role.SUPERVISOR, agency="erbil-cpu")
OTHER_AGENCY = Principal(name="officer-duhok-cpu", role=Role.OFFICER, agency="duhok-cpu")


def sextortion_in_erbil() -> Envelope:
    """A child's P1 sextortion case in Erbil: child protection and police."""
    return triaged_event(
        priority=Priority.P1,
        governorate=Governorate.ERBIL,
        violence_types=[ViolenceType.SEXTORTION],
        occurred_at=T0,
    )


async def assigned_case(world: World) -> tuple[uuid.UUID, TaskState]:
    """A triaged case's tasks assigned; its child protection task."""
    event = sextortion_in_erbil()
    await world.handlers.on_triaged(event)
    tasks = await world.store.for_case(event.case_id)
    [cpu] = [t for t in tasks if t.role is AgencyType.CHILD_PROTECTION]
    return event.case_id, cpu


def assignments(world: World) -> list[TaskAssignedData]:
    return [
        e.payload(TaskAssignedData)
        for e in world.task_events()
        if e.event_type == EventType.TASK_ASSIGNED
    ]


# ----------------------------------------------------------------------------- assignment


async def test_a_redelivered_triage_result_assigns_its_tasks_once() -> None:
    world = World()
    event = sextortion_in_erbil()
    first = await world.handlers.on_triaged(event)
    again = await world.handlers.on_triaged(event)

    assert {t.role for t in first} == {AgencyType.CHILD_PROTECTION, AgencyType.POLICE}
    assert again == []
    assert sorted(a.role or a.agency_type for a in assignments(world)) == sorted(
        t.role for t in first
    )
    assert len(world.dispatch.dispatched) == 2
    assert sum(world.store.load.values()) == 2


async def test_a_redelivery_after_a_failed_publish_assigns_the_unit_chosen_the_first_time() -> None:
    world = World()
    event = sextortion_in_erbil()
    world.publish.outage.down = True
    with pytest.raises(ConnectionError):
        await world.handlers.on_triaged(event)
    # Meanwhile the unit first chosen got busier: a fresh choice would pick the other team.
    world.store.load["erbil-cpu-team-1"] = 10
    world.publish.outage.down = False
    await world.handlers.on_triaged(event)

    [cpu] = [a for a in assignments(world) if a.role is AgencyType.CHILD_PROTECTION]
    assert cpu.unit_id == "erbil-cpu-team-1"


async def test_a_decline_reroutes_the_case_to_the_next_unit() -> None:
    world = World()
    case_id, cpu = await assigned_case(world)
    assert cpu.unit_id == "erbil-cpu-team-1"

    declined = await world.handlers.tasks.command(
        cpu.task_id, OFFICER, Command.DECLINE, "no_capacity"
    )

    assert declined.status is TaskStatus.DECLINED
    [replacement] = [
        t
        for t in await world.store.for_case(case_id)
        if t.role is AgencyType.CHILD_PROTECTION and t.is_open
    ]
    assert replacement.unit_id == "erbil-cpu-team-2"
    assert replacement.previous_task_id == cpu.task_id
    # Declined by both Erbil teams: the coordinator takes it rather than nobody.
    await world.handlers.tasks.command(
        replacement.task_id, OFFICER, Command.DECLINE, "outside_area"
    )
    [last] = [
        t
        for t in await world.store.for_case(case_id)
        if t.role is AgencyType.CHILD_PROTECTION and t.is_open
    ]
    assert last.agency_id == world.directory.coordinator


async def test_a_decline_with_a_code_the_directory_lacks_is_refused_naming_the_field() -> None:
    world = World()
    _, cpu = await assigned_case(world)
    with pytest.raises(ApiError) as refused:
        await world.handlers.tasks.command(cpu.task_id, OFFICER, Command.DECLINE, "bored")
    assert (refused.value.status, refused.value.field) == (422, "reason")
    assert (await world.store.get(cpu.task_id)) == cpu


# ----------------------------------------------------------------------------- refusals


async def test_a_command_from_an_officer_of_another_agency_is_refused_and_noted() -> None:
    world = World()
    _, cpu = await assigned_case(world)
    published = len(world.publish.sent)

    with pytest.raises(ApiError) as refused:
        await world.handlers.tasks.command(cpu.task_id, OTHER_AGENCY, Command.ACKNOWLEDGE)

    # Answered as a missing task: the other agency learns nothing of it.
    assert (refused.value.status, refused.value.code) == (404, "task_not_found")
    assert len(world.publish.sent) == published
    assert (await world.store.get(cpu.task_id)) == cpu
    [note] = world.notes.events("task.command_refused")
    assert note == {
        "task_id": str(cpu.task_id),
        "actor": "officer-duhok-cpu",
        "role": "officer",
        "agency": "duhok-cpu",
        "command": "acknowledge",
        "why": "not_visible",
    }


async def test_an_officer_may_not_reassign_even_their_own_task() -> None:
    world = World()
    _, cpu = await assigned_case(world)
    with pytest.raises(ApiError) as refused:
        await world.handlers.tasks.reassign(cpu.task_id, OFFICER, "duhok-cpu", "better_placed_unit")
    assert (refused.value.status, refused.value.code) == (403, "forbidden")
    assert [n["why"] for n in world.notes.events("task.command_refused")] == ["role"]

    moved = await world.handlers.tasks.reassign(
        cpu.task_id, SUPERVISOR, "duhok-cpu", world.directory.reassign_reasons[0]
    )
    assert moved.reassigned.status is TaskStatus.REASSIGNED
    assert moved.replacement is not None
    assert moved.replacement.agency_id == "duhok-cpu"


# ----------------------------------------------------------------------------- ordering


async def test_a_command_is_published_then_stored_under_the_tasks_lock() -> None:
    world = World()
    _, cpu = await assigned_case(world)
    world.journal.clear()

    await world.handlers.tasks.command(cpu.task_id, OFFICER, Command.ACKNOWLEDGE)

    assert world.journal == [
        f"lock {cpu.task_id}",
        f"publish {world.topics.tasks} task.acknowledged {cpu.task_id}",
        f"store task.acknowledged {cpu.task_id}",
        f"mark task.acknowledged {cpu.task_id}",
        f"unlock {cpu.task_id}",
    ]


async def test_a_failed_publish_changes_nothing_and_answers_503() -> None:
    world = World()
    _, cpu = await assigned_case(world)
    world.publish.outage.down = True
    with pytest.raises(ApiError) as failed:
        await world.handlers.tasks.command(cpu.task_id, OFFICER, Command.ACKNOWLEDGE)
    assert (failed.value.status, failed.value.code) == (503, "not_recorded")
    assert (await world.store.get(cpu.task_id)) == cpu


async def test_a_busy_task_answers_503_task_busy() -> None:
    world = World()
    _, cpu = await assigned_case(world)
    world.store.lock_wait_s = 0.01
    async with world.store.lock(cpu.task_id):
        with pytest.raises(ApiError) as busy:
            await world.handlers.tasks.command(cpu.task_id, OFFICER, Command.ACKNOWLEDGE)
    assert (busy.value.status, busy.value.code) == (503, "task_busy")


async def test_an_assignment_is_published_stored_dispatched_then_marked() -> None:
    world = World()
    tasks = await world.handlers.on_triaged(sextortion_in_erbil())
    assert len(tasks) == 2
    for task in tasks:
        steps = [line for line in world.journal if line.endswith(str(task.task_id))]
        assert steps == [
            f"publish {world.topics.tasks} task.assigned {task.task_id}",
            f"store task.assigned {task.task_id}",
            f"dispatch task.assigned {task.task_id}",
            f"mark task.assigned {task.task_id}",
        ]


# ----------------------------------------------------------------------------- timers


async def test_timers_due_warn_breach_then_escalate() -> None:
    world = World()
    _, cpu = await assigned_case(world)
    assert await world.handlers.timers.fire(str(cpu.task_id)) == 0  # nothing due yet

    world.clock.advance(24 * 3600)  # long past every deadline and escalation step
    fired = 0
    while (n := await world.handlers.timers.fire(str(cpu.task_id))) > 0:
        fired += n
    kinds = [e.event_type for e in world.task_events() if e.data.get("task_id") == str(cpu.task_id)]

    assert kinds[0] == EventType.TASK_ASSIGNED
    assert EventType.TASK_SLA_BREACHED in kinds
    assert EventType.TASK_ESCALATED in kinds
    assert kinds.index(EventType.TASK_SLA_BREACHED) < kinds.index(EventType.TASK_ESCALATED)
    assert fired == len(kinds) - 1 == len(world.figures.timers)
    assert all(e.actor == SYSTEM for e in world.task_events())
    escalated = await world.store.get(cpu.task_id)
    assert escalated is not None
    assert escalated.escalation_level == len(escalated.escalation_chain)


# ----------------------------------------------------------------------------- the case view


async def received(world: World, case_id: uuid.UUID, name: str) -> None:
    report = ReportReceivedData(
        report_id=uuid.uuid4(),
        partner_id="partner-hotline",
        channel=Channel.HOTLINE,
        received_at=T0,
        incident=IncidentFacts(governorate=Governorate.ERBIL),
        personal=world.keys.seal(case_id, {"survivor_name": name}),
    )
    event = make_event(
        event_type=EventType.REPORT_RECEIVED,
        case_id=case_id,
        report_id=report.report_id,
        producer="intake",
        actor=TRIAGE,
        data=report,
    )
    await world.handlers.cases.keep_report(event)


async def test_a_case_view_is_recorded_before_its_personal_data_is_answered() -> None:
    world = World()
    case_id, cpu = await assigned_case(world)
    await received(world, case_id, "Name Withheld")
    world.journal.clear()

    view = await world.handlers.cases.view(case_id, OFFICER)

    assert [r.personal for r in view.reports] == [{"survivor_name": "Name Withheld"}]
    [record] = world.access.events
    assert (record.kind, record.viewer, record.personal_data_shown) == (
        "viewed",
        "officer-erbil-cpu",
        True,
    )
    assert view.access_event_id == record.event_id
    assert world.journal.index_of("open") < world.journal.index("access viewed")
    assert cpu.task_id in {t.task_id for t in view.tasks}


async def test_a_view_that_cannot_be_recorded_is_not_answered() -> None:
    world = World()
    case_id, _ = await assigned_case(world)
    await received(world, case_id, "Name Withheld")
    world.access.outage.down = True
    with pytest.raises(ApiError) as not_recorded:
        await world.handlers.cases.view(case_id, OFFICER)
    assert (not_recorded.value.status, not_recorded.value.code) == (503, "access_not_recorded")
    assert world.access.events == []


async def test_a_refused_view_is_recorded_and_shows_nothing() -> None:
    world = World()
    case_id, _ = await assigned_case(world)
    await received(world, case_id, "Name Withheld")
    with pytest.raises(ApiError) as refused:
        await world.handlers.cases.view(case_id, OTHER_AGENCY)
    assert (refused.value.status, refused.value.code) == (403, "case_access_denied")
    assert [(e.kind, e.viewer) for e in world.access.events] == [("denied", "officer-duhok-cpu")]
    assert not any(line.startswith("open") for line in world.journal)


async def test_an_erased_case_shows_no_personal_data_and_its_erasure_is_published_once() -> None:
    world = World()
    case_id, _ = await assigned_case(world)
    await received(world, case_id, "Name Withheld")
    world.publish.outage.down = True
    with pytest.raises(ApiError) as not_recorded:
        await world.handlers.erase(
            case_id, reason=ErasureReason.DATA_SUBJECT_REQUEST, operator="op"
        )
    assert (not_recorded.value.status, not_recorded.value.code) == (503, "erasure_not_recorded")
    world.publish.outage.down = False
    done = await world.handlers.erase(
        case_id, reason=ErasureReason.DATA_SUBJECT_REQUEST, operator="op"
    )
    again = await world.handlers.erase(case_id, reason=ErasureReason.OTHER, operator="op2")

    first, second = world.publish.on(world.topics.cases)
    assert first.model_dump_json() == second.model_dump_json()
    assert (again.event_id, again.reason) == (done.event_id, ErasureReason.DATA_SUBJECT_REQUEST)
    view = await world.handlers.cases.view(case_id, OFFICER)
    assert [(r.personal, r.personal_status) for r in view.reports] == [(None, "erased")]
    with pytest.raises(ApiError) as unknown:
        await world.handlers.erase(uuid.uuid4(), reason=ErasureReason.OTHER, operator="op")
    assert unknown.value.status == 404


# ----------------------------------------------------------------------------- HTTP


def api(world: World) -> tuple[TestClient, dict[str, str]]:
    """The routes over the world's handlers, with the shared error handlers; one officer."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    token = "officer-token"
    app.state.principals = PrincipalStore(
        [StoredPrincipal(**OFFICER.model_dump(), token_sha256=token_hash(token))]
    )
    app.state.routing = {"handlers": world.handlers}
    return TestClient(app), {"Authorization": f"Bearer {token}"}


def test_a_redis_outage_in_a_route_answers_503_with_retry_after() -> None:
    world = World()
    _, cpu = asyncio.run(assigned_case(world))
    client, auth = api(world)
    with client:
        listed = client.get("/v1/tasks", headers=auth)
        assert listed.status_code == 200
        assert [t["task_id"] for t in listed.json()] == [str(cpu.task_id)]

        world.store.outage = Outage(lambda: RedisConnectionError("Connection refused"))
        world.store.outage.down = True
        for answer in (
            client.get("/v1/tasks", headers=auth),
            client.post(f"/v1/tasks/{cpu.task_id}/acknowledge", headers=auth),
        ):
            assert answer.status_code == 503
            assert answer.json()["code"] == "unavailable"
            assert answer.headers["Retry-After"] == "2"
