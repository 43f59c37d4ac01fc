"""Routing's gauges of tasks by state on the real stack (an isolated routing service with its
own Redis database): each task sits in exactly one figure set, moved as its events change it,
by officers' commands and by the SLA timers; tasks stored before the sets existed are put in
theirs once; /metrics shows the counts, and the response times."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.events import AgencyType, Priority, TaskStatus
from services.routing.domain.figures import Figure, SlaState
from testkit.routing_harness import (
    Isolation,
    RoutingInstance,
    claimed_redis_db,
    publish,
    routing_instance,
    short_directory,
    triaged_event,
)
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

P1_ACK_S = 4  # warned after 2 s (fraction 0.5), overdue after 4 s
CPU = AgencyType.CHILD_PROTECTION


@pytest.fixture(scope="module")
async def routing(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RoutingInstance]:
    directory = short_directory(p1_ack=P1_ACK_S, p1_step=3600, p2_ack=3600, fraction=0.5)
    async with claimed_redis_db(stack_env) as db:
        isolation = Isolation.create(tmp_path_factory.mktemp("figures"), directory, db)
        async with routing_instance(stack_env, isolation) as instance:
            yield instance


async def counts(routing: RoutingInstance) -> dict[Figure, int]:
    found = await routing.store.figure_counts()
    return {f: n for key, n in found.items() if n and (f := Figure.parse(key)) is not None}


async def the_task(routing: RoutingInstance, case_id: uuid.UUID) -> dict[str, Any]:
    async def found() -> list[dict[str, Any]] | None:
        response = await routing.client.get(
            "/v1/tasks", params={"case_id": str(case_id)}, headers=routing.headers("officer-cpu")
        )
        assert response.status_code == 200, response.text
        return response.json() or None

    [task] = await wait_for(found, what="the task")
    return dict(task)


async def stands_at(routing: RoutingInstance, task_id: str, figure: Figure) -> None:
    """Wait until the task is in `figure`'s set, and in no other."""
    key = routing.store.figure_key

    async def there() -> bool:
        sets = [f for f in await counts(routing) if await _member(routing, key(f.key), task_id)]
        return sets == [figure]

    await wait_for(there, within=20, what=f"task at {figure}")


async def _member(routing: RoutingInstance, key: str, task_id: str) -> bool:
    return bool(await routing.store.redis.sismember(key, task_id))


async def act(routing: RoutingInstance, task_id: str, command: str, **body: str) -> None:
    response = await routing.client.post(
        f"/v1/tasks/{task_id}/{command}", headers=routing.headers("officer-cpu"), json=body or None
    )
    assert response.status_code == 200, response.text


async def test_a_task_moves_through_its_figures_with_its_commands(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    case = triaged_event(priority=Priority.P2)
    await publish(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.triaged, [case])
    task_id = (await the_task(routing, case.case_id))["task_id"]

    def at(status: TaskStatus, sla: SlaState) -> Figure:
        return Figure(status, Priority.P2, CPU, sla, breached=False)

    await stands_at(routing, task_id, at(TaskStatus.ASSIGNED, SlaState.OK))
    await act(routing, task_id, "acknowledge")
    await stands_at(routing, task_id, at(TaskStatus.ACKNOWLEDGED, SlaState.OK))
    await act(routing, task_id, "accept")
    await stands_at(routing, task_id, at(TaskStatus.ACCEPTED, SlaState.OK))

    # /metrics shows it once the gauges are read again, with the times it took.
    async def exported() -> bool:
        text = (await routing.client.get("/metrics")).text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

        def value(name: str, **labels: str) -> float | None:
            cpu_p2 = {"agency_type": "child_protection", "priority": "P2", **labels}
            return samples.get((name, tuple(sorted(cpu_p2.items()))))

        return [
            value("ocsea_routing_open_tasks", status="accepted", sla="ok"),
            value("ocsea_routing_time_to_acknowledge_seconds_count"),
            value("ocsea_routing_time_to_accept_seconds_count"),
        ] == [1, 1, 1]

    await wait_for(exported, within=30, interval=0.5, what="the gauges on /metrics")

    await act(routing, task_id, "resolve", outcome="child_safeguarded")
    await stands_at(routing, task_id, at(TaskStatus.RESOLVED, SlaState.CLOSED))


async def test_the_timers_move_a_p1_to_warned_then_overdue_and_it_stays_breached(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    case = triaged_event(priority=Priority.P1)
    await publish(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.triaged, [case])
    task_id = (await the_task(routing, case.case_id))["task_id"]
    assigned = TaskStatus.ASSIGNED
    await stands_at(routing, task_id, Figure(assigned, Priority.P1, CPU, SlaState.WARNED, False))
    await stands_at(routing, task_id, Figure(assigned, Priority.P1, CPU, SlaState.OVERDUE, True))
    await act(routing, task_id, "acknowledge")  # late: met, but missed once
    acknowledged = Figure(TaskStatus.ACKNOWLEDGED, Priority.P1, CPU, SlaState.OK, True)
    await stands_at(routing, task_id, acknowledged)


async def test_tasks_stored_before_the_figures_are_put_in_theirs_once(
    stack_env: dict[str, str], routing: RoutingInstance
) -> None:
    case = triaged_event(priority=Priority.P2)
    await publish(stack_env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.triaged, [case])
    task_id = (await the_task(routing, case.case_id))["task_id"]
    figure = Figure(TaskStatus.ASSIGNED, Priority.P2, CPU, SlaState.OK, False)
    await stands_at(routing, task_id, figure)
    store, redis = routing.store, routing.store.redis
    done = f"{store.prefix}figures-complete"
    assert await redis.exists(done)  # the service's first refresh did it

    # As an older version left it: the task in no set, and no marker.
    await redis.srem(store.figure_key(figure.key), task_id)
    await redis.delete(done)
    await redis.set(f"{done}:lease", "1", ex=60)
    assert await store.backfill_figures() is False  # another process holds the lease
    assert not await _member(routing, store.figure_key(figure.key), task_id)
    await redis.delete(f"{done}:lease")
    assert await store.backfill_figures() is True
    await stands_at(routing, task_id, figure)
    assert await redis.exists(done)
