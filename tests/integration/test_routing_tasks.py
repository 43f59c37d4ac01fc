"""Routing on the real stack (an isolated routing service): reconciliation of re-triaged
cases, the officers' task API and its state machine, re-routing, escalation by hand, and
supervisors' reassignment. Every transition is an event on the tasks topic."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from contracts.events import (
    CaseReclassifiedData,
    Classification,
    Envelope,
    EventType,
    Priority,
    make_event,
)
from contracts.reports import ViolenceType
from testkit.kafka import read_all
from testkit.routing_harness import (
    TRIAGE,
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


@pytest.fixture(scope="module")
async def routing(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RoutingInstance]:
    """One service for the module; each test works on cases of its own."""
    directory = short_directory(p1_ack=600, p2_ack=600)
    async with claimed_redis_db(stack_env) as db:
        isolation = Isolation.create(tmp_path_factory.mktemp("routing"), directory, db)
        async with routing_instance(stack_env, isolation) as instance:
            yield instance


async def send(stack_env: dict[str, str], routing: RoutingInstance, *events: Envelope) -> None:
    await publish(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.triaged, events)


async def handled(stack_env: dict[str, str], routing: RoutingInstance, event: Envelope) -> None:
    """Wait until routing has processed `event` (its consumer marks it processed)."""
    redis = Redis.from_url(routing.settings.redis_url)
    marker = f"ocsea:processed:{routing.settings.consumer_group_prefix}.routing:{event.event_id}"
    try:

        async def done() -> bool:
            return bool(await redis.exists(marker))

        await wait_for(done, what=f"routing to handle {event.event_type}")
    finally:
        await redis.aclose()


async def inbox(routing: RoutingInstance, who: str, **params: str) -> list[dict[str, Any]]:
    response = await routing.client.get("/v1/tasks", params=params, headers=routing.headers(who))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def case_tasks(
    routing: RoutingInstance, who: str, case_id: uuid.UUID, count: int = 1
) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]] | None:
        tasks = await inbox(routing, who, case_id=str(case_id))
        return tasks if len(tasks) >= count else None

    return await wait_for(found, what=f"{count} task(s) for {who}")


async def events_of(stack_env: dict[str, str], routing: RoutingInstance) -> list[Envelope]:
    return envelopes(await read_all(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.tasks))


async def test_re_triage_adds_missing_tasks_moves_deadlines_and_never_duplicates(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    first = triaged_event(priority=Priority.P3, violence_types=[ViolenceType.CYBERBULLYING])
    await send(stack_env, routing, first)
    [cp] = await case_tasks(routing, "officer-cpu", first.case_id)
    assert (cp["priority"], cp["role"], cp["unit_id"]) == ("P3", "child_protection", "cpu-a")
    assert cp["criteria"][0] == "needed: TF-CSEA: child protection always"
    assert await inbox(routing, "officer-police", case_id=str(first.case_id)) == []

    # The case's combined result changes: now sextortion, P1 (triage says so first).
    reclassified = make_event(
        event_type=EventType.CASE_RECLASSIFIED,
        case_id=first.case_id,
        producer="triage",
        actor=TRIAGE,
        data=_reclassified_data(),
    )
    second = triaged_event(
        first.case_id, priority=Priority.P1, violence_types=[ViolenceType.SEXTORTION]
    )
    unknown = first.model_copy(update={"event_id": uuid.uuid4(), "event_type": "case.merged"})
    await send(stack_env, routing, reclassified, unknown, second)
    [police] = await case_tasks(routing, "officer-police", first.case_id)
    assert police["priority"] == "P1"
    assert "TF-CSEA offence(s): sextortion" in police["reason"]
    await handled(stack_env, routing, second)  # the police task comes first, then the move
    [moved] = await inbox(routing, "officer-cpu", case_id=str(first.case_id))
    assert moved["task_id"] == cp["task_id"]
    assert moved["priority"] == "P1"
    assert moved["seconds_to_acknowledge"] < cp["seconds_to_acknowledge"]

    # The same result again (a redelivery, or triage re-publishing it), and an older result
    # arriving late: nothing new.
    def of_case(events: list[Envelope]) -> list[Envelope]:
        return [e for e in events if e.case_id == first.case_id]

    before = of_case(await events_of(stack_env, routing))
    again = second.model_copy(update={"event_id": uuid.uuid4()})
    stale = triaged_event(
        first.case_id,
        priority=Priority.P4,
        occurred_at=first.occurred_at,
        violence_types=[ViolenceType.CYBERBULLYING],
    )
    await send(stack_env, routing, second, again, stale)
    await handled(stack_env, routing, stale)
    assert of_case(await events_of(stack_env, routing)) == before
    dead = await read_all(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.triaged + ".dlq")
    assert dead == []  # the reclassification and the unknown type were skipped, not failed
    assert [e.event_type for e in before] == [
        EventType.TASK_ASSIGNED,
        EventType.TASK_ASSIGNED,
        EventType.TASK_DEADLINES_CHANGED,
    ]


def _reclassified_data() -> CaseReclassifiedData:
    return CaseReclassifiedData(
        report_id=uuid.uuid4(),
        old_classification=Classification.TF_CSEA,
        new_classification=Classification.TF_CSEA,
        old_priority=Priority.P3,
        new_priority=Priority.P1,
        reason="sextortion reported",
        rules_version="test",
    )


async def test_adult_survivors_consent_brings_police_in_later(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    adult = triaged_event(
        classification=Classification.TFGBV,
        violence_types=[ViolenceType.SEXTORTION],
        police_referral_consent=False,
    )
    await send(stack_env, routing, adult)
    [gbv] = await case_tasks(routing, "officer-gbv", adult.case_id)
    assert gbv["role"] == "gbv_case_management"
    consented = triaged_event(
        adult.case_id,
        classification=Classification.TFGBV,
        violence_types=[ViolenceType.SEXTORTION],
        police_referral_consent=True,
    )
    await send(stack_env, routing, consented)
    [police] = await case_tasks(routing, "officer-police", adult.case_id)
    assert "consented" in police["reason"]
    assert len(await inbox(routing, "officer-gbv", case_id=str(adult.case_id))) == 1


async def test_the_officers_lifecycle_and_refusals(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    case = triaged_event()
    await send(stack_env, routing, case)
    [task] = await case_tasks(routing, "officer-cpu", case.case_id)
    url, officer = f"/v1/tasks/{task['task_id']}", routing.headers("officer-cpu")
    post = routing.client.post

    refused = await post(f"{url}/accept", headers=officer)
    assert refused.status_code == 409
    assert refused.json() == {
        "code": "invalid_transition",
        "message": "cannot accept a task that is assigned: acknowledge it first",
        "field": None,
        "errors": [],
    }
    assert (await post(f"{url}/acknowledge", headers=officer)).json()["status"] == "acknowledged"
    assert (await post(f"{url}/acknowledge", headers=officer)).status_code == 409
    accepted = await post(f"{url}/accept", headers=officer)
    assert accepted.json()["status"] == "accepted"
    assert accepted.json()["seconds_to_first_action"] is None
    missing = await post(f"{url}/resolve", headers=officer, json={})
    assert (missing.status_code, missing.json()["field"]) == (422, "outcome")
    unknown = await post(f"{url}/resolve", headers=officer, json={"outcome": "closed_because"})
    assert (unknown.status_code, unknown.json()["field"]) == (422, "outcome")
    assert "child_safeguarded" in unknown.json()["message"]
    declined = await post(f"{url}/decline", headers=officer, json={"reason": "no_capacity"})
    assert declined.status_code == 409
    assert "ask a supervisor to reassign it" in declined.json()["message"]
    resolved = await post(f"{url}/resolve", headers=officer, json={"outcome": "child_safeguarded"})
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["outcome"]) == (
        "resolved",
        "child_safeguarded",
    )
    closed = await post(f"{url}/escalate", headers=officer)
    assert (closed.status_code, closed.json()["code"]) == (409, "invalid_transition")

    # Only the task's agency, and only officers and supervisors.
    other = await routing.client.get(url, headers=routing.headers("officer-police"))
    assert (other.status_code, other.json()["code"]) == (404, "task_not_found")
    assert (
        await post(f"{url}/acknowledge", headers=routing.headers("officer-police"))
    ).status_code == 404
    assert (await routing.client.get(url)).status_code == 401
    assert (
        await routing.client.get("/v1/tasks", headers=routing.headers("auditor"))
    ).status_code == 403
    assert (
        await routing.client.get("/v1/tasks", params={"status": "sleeping"}, headers=officer)
    ).status_code == 422

    events = [
        e for e in await events_of(stack_env, routing) if e.data.get("task_id") == task["task_id"]
    ]
    assert [(e.event_type, e.data["version"]) for e in events] == [
        (EventType.TASK_ASSIGNED, 1),
        (EventType.TASK_ACKNOWLEDGED, 2),
        (EventType.TASK_ACCEPTED, 3),
        (EventType.TASK_RESOLVED, 4),
    ]
    assert {e.actor.id for e in events[1:]} == {"officer-cpu"}
    assert {e.actor.agency for e in events[1:]} == {"cpu"}
    done = await inbox(routing, "officer-cpu", status="resolved", case_id=str(case.case_id))
    assert [t["task_id"] for t in done] == [task["task_id"]]
    assert await inbox(routing, "officer-cpu", status="assigned", case_id=str(case.case_id)) == []


async def test_declining_re_routes_to_another_unit_then_the_coordinator(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    case = triaged_event()
    await send(stack_env, routing, case)
    [first] = await case_tasks(routing, "officer-cpu", case.case_id)
    declined = await routing.client.post(
        f"/v1/tasks/{first['task_id']}/decline",
        headers=routing.headers("officer-cpu"),
        json={"reason": "no_capacity"},
    )
    assert declined.json()["status"] == "declined"
    tasks = await case_tasks(routing, "officer-cpu", case.case_id, count=2)
    [second] = [t for t in tasks if t["status"] == "assigned"]
    assert second["unit_id"] != first["unit_id"]  # the other team of the same agency
    assert second["previous_task_id"] == first["task_id"]
    assert f"skipped units that gave the task back: {first['unit_id']}" in second["reason"]
    await routing.client.post(
        f"/v1/tasks/{second['task_id']}/decline",
        headers=routing.headers("officer-cpu"),
        json={"reason": "outside_area"},
    )
    [third] = await case_tasks(routing, "officer-coordination", case.case_id)
    assert third["agency_id"] == "coordination"
    assert third["role"] == "child_protection"
    refused = await routing.client.post(
        f"/v1/tasks/{third['task_id']}/decline",
        headers=routing.headers("officer-coordination"),
        json={"reason": "outside_area"},
    )
    assert refused.status_code == 409
    assert "last resort" in refused.json()["message"]

    # The coordinator's supervisor hands it back to the child protection agency.
    reassigned = await routing.client.post(
        f"/v1/tasks/{third['task_id']}/reassign",
        headers=routing.headers("coordinator"),
        json={"agency_id": "cpu", "reason": "better_placed_unit"},
    )
    assert reassigned.status_code == 200, reassigned.text
    body = reassigned.json()
    assert body["reassigned"]["status"] == "reassigned"
    assert body["replacement"]["agency_id"] == "cpu"
    assert body["reassigned"]["replaced_by"] == body["replacement"]["task_id"]
    officers_cannot = await routing.client.post(
        f"/v1/tasks/{body['replacement']['task_id']}/reassign",
        headers=routing.headers("officer-cpu"),
        json={"agency_id": "cpu", "reason": "better_placed_unit"},
    )
    assert officers_cannot.status_code == 403


async def test_escalating_by_hand_reaches_the_supervisor_then_the_coordinator(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    case = triaged_event()
    await send(stack_env, routing, case)
    [task] = await case_tasks(routing, "officer-cpu", case.case_id)
    url = f"/v1/tasks/{task['task_id']}/escalate"
    assert await inbox(routing, "coordinator", case_id=str(case.case_id)) == []
    bad = await routing.client.post(
        url, headers=routing.headers("officer-cpu"), json={"reason": "bored"}
    )
    assert (bad.status_code, bad.json()["field"]) == (422, "reason")
    first = await routing.client.post(
        url, headers=routing.headers("officer-cpu"), json={"reason": "needs_supervisor_decision"}
    )
    assert (first.json()["escalation_level"], first.json()["escalated_to"]) == (1, "supervisor")
    [seen] = await inbox(routing, "supervisor-cpu", escalated="true", case_id=str(case.case_id))
    assert seen["task_id"] == task["task_id"]
    assert await inbox(routing, "supervisor-police", case_id=str(case.case_id)) == []
    second = await routing.client.post(url, headers=routing.headers("supervisor-cpu"))
    assert (second.json()["escalation_level"], second.json()["escalated_to"]) == (2, "coordinator")
    [seen] = await inbox(routing, "coordinator", case_id=str(case.case_id))
    assert seen["task_id"] == task["task_id"]
    top = await routing.client.post(url, headers=routing.headers("coordinator"))
    assert top.status_code == 409
    [escalated] = [
        e
        for e in await events_of(stack_env, routing)
        if e.event_type == EventType.TASK_ESCALATED
        and e.data["level"] == 1
        and e.data["task_id"] == task["task_id"]
    ]
    assert escalated.data["cause"] == "manual"
    assert escalated.data["reason"] == "needs_supervisor_decision"
