"""SLA timers on the real stack, response times shortened to seconds by the directory:
escalation to the supervisor, then the coordinator, at the right moments; acknowledging
cancels it; a raised priority brings the deadline forward."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from contracts.events import Envelope, EventType, Priority
from testkit.kafka import read_all
from testkit.routing_harness import (
    Isolation,
    RoutingInstance,
    claimed_redis_db,
    envelopes,
    publish,
    routing_instance,
    short_directory,
    triaged_event,
)
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

ACK_S, STEP_S = 2, 3  # P1: acknowledge within 2 s, then one escalation step every 3 s
# How late a timer may fire and still be "at the right moment": typically tens of
# milliseconds, but the test machine is shared and at times heavily loaded.
LATE_S = 1.5


@pytest.fixture(scope="module")
async def routing(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RoutingInstance]:
    """One service for the module; each test works on cases of its own."""
    directory = short_directory(p1_ack=ACK_S, p1_step=STEP_S, fraction=0.5)
    async with claimed_redis_db(stack_env) as db:
        isolation = Isolation.create(tmp_path_factory.mktemp("routing"), directory, db)
        async with routing_instance(stack_env, isolation) as instance:
            yield instance


async def task_events(stack_env: dict[str, str], routing: RoutingInstance) -> list[Envelope]:
    return envelopes(await read_all(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.tasks))


def of_task(events: list[Envelope], task_id: str) -> list[Envelope]:
    return [e for e in events if str(e.data.get("task_id")) == task_id]


def when(event: Envelope) -> datetime:
    return event.occurred_at


async def assigned_task(routing: RoutingInstance, case_id: uuid.UUID) -> dict[str, Any]:
    async def found() -> list[dict[str, Any]] | None:
        response = await routing.client.get(
            "/v1/tasks", params={"case_id": str(case_id)}, headers=routing.headers("officer-cpu")
        )
        assert response.status_code == 200, response.text
        return response.json() or None

    [task] = await wait_for(found, what="the task in the officer's inbox")
    return dict(task)


async def test_unacknowledged_p1_escalates_to_supervisor_then_coordinator_on_time(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    triaged = triaged_event()
    await publish(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.triaged, [triaged])
    task = await assigned_task(routing, triaged.case_id)
    task_id = task["task_id"]
    due = datetime.fromisoformat(task["acknowledge_due_at"])
    assert due == triaged.occurred_at + timedelta(seconds=ACK_S)  # from the moment of triage

    async def coordinator_step() -> list[Envelope] | None:
        events = of_task(await task_events(stack_env, routing), task_id)
        escalations = [e for e in events if e.event_type == EventType.TASK_ESCALATED]
        return events if len(escalations) >= 2 else None

    events = await wait_for(coordinator_step, within=ACK_S + STEP_S + 10, what="two escalations")
    fired = [e for e in events if e.event_type != EventType.TASK_ASSIGNED]
    assert [(e.event_type, e.data.get("level")) for e in fired] == [
        (EventType.TASK_SLA_WARNING, None),
        (EventType.TASK_SLA_BREACHED, None),
        (EventType.TASK_ESCALATED, 1),
        (EventType.TASK_ESCALATED, 2),
    ]
    warning, breach, supervisor, coordinator = fired
    expected = [
        due - timedelta(seconds=ACK_S / 2),
        due,
        due,
        due + timedelta(seconds=STEP_S),
    ]
    for event, at in zip(fired, expected, strict=True):
        assert at <= when(event) <= at + timedelta(seconds=LATE_S), (event.event_type, at)
    assert (supervisor.data["target"], supervisor.data["target_agency_id"]) == (
        "supervisor",
        "cpu",
    )
    assert (coordinator.data["target"], coordinator.data["target_agency_id"]) == (
        "coordinator",
        "coordination",
    )
    assert [e.data["version"] for e in fired] == [2, 3, 4, 5]
    assert breach.data["deadline"] == warning.data["deadline"] == "acknowledge"

    # The agency's supervisor and the coordinator now see it as escalated; no further steps.
    async def seen_escalated() -> bool:
        for who in ("supervisor-cpu", "coordinator"):
            inbox = await routing.client.get(
                "/v1/tasks", params={"escalated": "true"}, headers=routing.headers(who)
            )
            if task_id not in [t["task_id"] for t in inbox.json()]:
                return False
        return True

    await wait_for(seen_escalated, what="the escalated task in both inboxes")
    view = await routing.client.get(f"/v1/tasks/{task_id}", headers=routing.headers("coordinator"))
    assert (view.json()["escalation_level"], view.json()["escalated_to"]) == (2, "coordinator")
    raw: list[Any] = await routing.store.redis.zrange(routing.store.timers.key, 0, -1)
    members = [m.decode() for m in raw]
    assert sorted(m for m in members if m.startswith(task_id)) == [
        f"{task_id}|first_action:breach",
        f"{task_id}|first_action:warning",
    ]


async def test_acknowledging_cancels_the_escalation(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    early, late, never = triaged_event(), triaged_event(), triaged_event()
    await publish(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.triaged, [early, late, never])
    tasks = {
        name: await assigned_task(routing, event.case_id)
        for name, event in (("early", early), ("late", late), ("never", never))
    }
    officer = routing.headers("officer-cpu")
    acknowledged = await routing.client.post(
        f"/v1/tasks/{tasks['early']['task_id']}/acknowledge", headers=officer
    )
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["seconds_to_acknowledge"] is None

    async def supervisor_alerted() -> bool:
        events = of_task(await task_events(stack_env, routing), tasks["late"]["task_id"])
        return any(e.event_type == EventType.TASK_ESCALATED for e in events)

    await wait_for(supervisor_alerted, within=ACK_S + 10, what="the late task's first escalation")
    acknowledged = await routing.client.post(
        f"/v1/tasks/{tasks['late']['task_id']}/acknowledge", headers=officer
    )
    assert acknowledged.status_code == 200, acknowledged.text

    # Once the unacknowledged task reached the coordinator, the others' would have too.
    async def coordinator_alerted() -> list[Envelope] | None:
        events = await task_events(stack_env, routing)
        never_events = of_task(events, tasks["never"]["task_id"])
        levels = [e.data["level"] for e in never_events if e.event_type == EventType.TASK_ESCALATED]
        return events if 2 in levels else None

    events = await wait_for(
        coordinator_alerted, within=ACK_S + STEP_S + 10, what="the coordinator step"
    )
    early_types = [e.event_type for e in of_task(events, tasks["early"]["task_id"])]
    assert early_types == [EventType.TASK_ASSIGNED, EventType.TASK_ACKNOWLEDGED]
    late_events = of_task(events, tasks["late"]["task_id"])
    assert [
        e.data.get("level") for e in late_events if e.event_type == EventType.TASK_ESCALATED
    ] == [1]
    assert late_events[-1].event_type == EventType.TASK_ACKNOWLEDGED


async def test_a_raised_priority_brings_the_deadline_forward(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    first = triaged_event(priority=Priority.P2)  # 60 s to acknowledge
    await publish(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.triaged, [first])
    task = await assigned_task(routing, first.case_id)
    assert task["seconds_to_acknowledge"] > 50
    raised = triaged_event(first.case_id, priority=Priority.P1, report_id=uuid.uuid4())
    await publish(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.triaged, [raised])

    async def breached() -> list[Envelope] | None:
        events = of_task(await task_events(stack_env, routing), task["task_id"])
        return events if any(e.event_type == EventType.TASK_SLA_BREACHED for e in events) else None

    events = await wait_for(breached, within=ACK_S + 10, what="the breach of the moved deadline")
    [moved] = [e for e in events if e.event_type == EventType.TASK_DEADLINES_CHANGED]
    assert (moved.data["old_priority"], moved.data["new_priority"]) == ("P2", "P1")
    assert moved.data["cause_event_id"] == str(raised.event_id)
    new_due = datetime.fromisoformat(moved.data["acknowledge_due_at"])
    assert new_due == raised.occurred_at + timedelta(seconds=ACK_S)
    [breach] = [e for e in events if e.event_type == EventType.TASK_SLA_BREACHED]
    assert new_due <= breach.occurred_at <= new_due + timedelta(seconds=LATE_S)
    inbox = await routing.client.get(
        f"/v1/tasks/{task['task_id']}", headers=routing.headers("officer-cpu")
    )
    assert inbox.json()["priority"] == "P1"
