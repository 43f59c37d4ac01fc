"""No SLA timer is lost or fired twice: not across a restart of the routing service with over
1,000 timers pending, and not when Redis loses routing's state (its database is flushed) with
over 1,000 timers pending, when the timers are rebuilt from the Kafka task events.

One isolated routing service (private topics, its own Redis database) goes through both:
batch 1 is routed, then the service restarts; batch 2 is routed, then its Redis database is
flushed while it runs. Every timer of both batches must then fire exactly once, never early.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.events import Envelope, EventType
from testkit.kafka import read_all
from testkit.routing_harness import (
    Isolation,
    RoutingInstance,
    claimed_redis_db,
    envelopes,
    flush_redis_db,
    publish,
    routing_instance,
    short_directory,
    triaged_event,
)
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

BATCH = 300  # cases, one task each, four pending timers each: 1,200 timers per batch
# Long enough for a batch to be routed on a busy machine before its first timer is due.
ACK_S, STEP_S, WARN_AT = 20, 2, 0.9
# What every task fires, exactly once each, and when (seconds after its acknowledge deadline).
EXPECTED = {
    (EventType.TASK_SLA_WARNING, None): -ACK_S * (1 - WARN_AT),
    (EventType.TASK_SLA_BREACHED, None): 0,
    (EventType.TASK_ESCALATED, 1): 0,
    (EventType.TASK_ESCALATED, 2): STEP_S,
}


async def task_events(bootstrap: str, routing: RoutingInstance) -> list[Envelope]:
    return envelopes(await read_all(bootstrap, routing.topics.tasks))


async def route_batch(bootstrap: str, routing: RoutingInstance, already: int) -> int:
    """Route a batch of P1 cases; returns the timers pending once at least 1,000 are and most
    of the batch is assigned (the rest is routed after the disruption)."""
    await publish(bootstrap, routing.topics.triaged, [triaged_event() for _ in range(BATCH)])

    async def ready() -> int | None:
        routed = sum((await routing.store.unit_load()).values()) - already
        pending = await routing.store.timers.size()
        return pending if pending >= 1000 and routed >= BATCH * 0.8 else None

    return await wait_for(ready, within=60, interval=0.1, what="1,000 timers pending")


@pytest.fixture
async def redis_db(stack_env: dict[str, str]) -> AsyncIterator[int]:
    async with claimed_redis_db(stack_env) as db:
        yield db


async def test_no_timer_is_lost_or_fired_twice_across_a_restart_and_a_redis_flush(
    stack_env: dict[str, str], tmp_path: Path, redis_db: int
) -> None:
    bootstrap = stack_env["OCSEA_KAFKA_BOOTSTRAP"]
    isolation = Isolation.create(
        tmp_path, short_directory(p1_ack=ACK_S, p1_step=STEP_S, fraction=WARN_AT), redis_db
    )
    async with routing_instance(stack_env, isolation) as first:
        pending_at_restart = await route_batch(bootstrap, first, already=0)
    assert pending_at_restart >= 1000  # and some triaged events are still to be routed

    async with routing_instance(stack_env, isolation) as routing:
        assert routing.routing["projection"].rebuilds == 0  # Redis kept its state
        pending_at_flush = await route_batch(bootstrap, routing, already=BATCH)
        assert pending_at_flush >= 1000
        await flush_redis_db(stack_env, redis_db)  # while the service runs

        async def everything_fired() -> list[Envelope] | None:
            events = await task_events(bootstrap, routing)
            fired = [e for e in events if e.event_type != EventType.TASK_ASSIGNED]
            return events if len(fired) >= 2 * BATCH * len(EXPECTED) else None

        await wait_for(everything_fired, within=90, interval=0.5, what="every timer to fire")
        # A timer fired twice would show within the scheduler's next few rounds.
        await asyncio.sleep(0.5)
        events = await task_events(bootstrap, routing)
        assert routing.routing["projection"].rebuilds == 1  # the flush was noticed
        inbox = await routing.client.get("/v1/tasks", headers=routing.headers("officer-cpu"))
        assert len(inbox.json()) == 2 * BATCH  # the task projection is back too
        assert (await routing.client.get("/readyz")).status_code == 200
        # What is left pending is exactly what the tasks' state calls for: their first-action
        # deadlines, an hour ahead.
        raw: list[Any] = await routing.store.redis.zrange(routing.store.timers.key, 0, -1)
        left = Counter(m.decode().split("|")[1] for m in raw)
        assert left == {"first_action:warning": 2 * BATCH, "first_action:breach": 2 * BATCH}

    assigned = {
        str(e.data["task_id"]): e for e in events if e.event_type == EventType.TASK_ASSIGNED
    }
    fired = [e for e in events if e.event_type != EventType.TASK_ASSIGNED]
    assert len(assigned) == 2 * BATCH
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), "an event was published twice"
    per_task: dict[str, Counter[tuple[EventType, int | None]]] = {}
    for event in fired:
        key = (EventType(event.event_type), event.data.get("level"))
        per_task.setdefault(str(event.data["task_id"]), Counter())[key] += 1
        task = assigned[str(event.data["task_id"])]
        due = datetime.fromisoformat(task.data["acknowledge_due_at"])
        assert event.occurred_at >= due + timedelta(seconds=EXPECTED[key]), "fired early"
    assert set(per_task) == set(assigned), "some tasks' timers were lost"
    once_each = Counter(dict.fromkeys(EXPECTED, 1))
    wrong = {t: dict(c) for t, c in per_task.items() if c != once_each}
    assert not wrong, f"{len(wrong)} tasks fired wrongly, e.g. {next(iter(wrong.items()))}"
