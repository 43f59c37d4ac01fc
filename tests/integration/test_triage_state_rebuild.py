"""Triage's case state comes back from Kafka after Redis lost it (issue 11.2), on the real stack.

The whole-system test runs on the session's system (`ocsea run`), which shares Redis database 0
with every other system on the stack, as it shares their topics: triage state is shared with
them, so it deletes only what is its own. Its case's triage keys, its triage consumer groups'
processed markers for the case's reports, and triage's epoch marker: every triage process on
database 0 shares that one, and each notices the loss and rebuilds, overwriting nothing. Never
FLUSHALL or FLUSHDB. After the loss the case is read, the override retried, a report
redelivered and a linked report sent: the state is there as it was, the new result combines
the earlier reports under the override, and no event id is on the topics twice.

The adapter's test restores into a Redis database of its own (claimed, emptied first).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from redis.asyncio import Redis

from contracts import topics
from contracts.events import (
    Envelope,
    EventType,
    IncidentFacts,
    Priority,
    ReportReceivedData,
    ReportTriagedData,
    SurvivorFacts,
    utc_now,
)
from contracts.reports import Channel, Governorate
from contracts.topics import Lane
from ocsea.runtime.projection import ProjectionLostError
from services.triage.adapters.redis import RedisCaseState
from services.triage.domain.lanes import TRIAGED_TOPICS
from services.triage.domain.rebuild import report_cause
from services.triage.handlers import rebuild_state
from testkit.kafka import read_all
from testkit.reports import child_report, cpu_task, post_report
from testkit.routing_harness import claimed_redis_db, redis_url
from testkit.system import RunningSystem
from testkit.triage_events import received
from testkit.waiting import wait_for
from tests.triage.events import publish, received_event
from tests.triage.fakes import World

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

WITHIN_S = 90  # the system also handles what other sessions publish on the shared topics
EPOCH_KEY = "ocsea:projection:triage:epoch"  # ocsea.runtime.projection.ProjectionGuard's


async def triaged_records(system: RunningSystem, case_id: str) -> list[ConsumerRecord[Any, Any]]:
    """The case's records on both triaged topics (live, then bulk), each in offset order."""
    found = []
    for topic in TRIAGED_TOPICS:
        found += [r for r in await read_all(system.bootstrap, topic) if r.key == case_id.encode()]
    return found


def events_of(records: list[ConsumerRecord[Any, Any]]) -> list[dict[str, Any]]:
    first_seen: dict[str, dict[str, Any]] = {}
    for record in records:
        event = json.loads(record.value)
        first_seen.setdefault(event["event_id"], event)
    return list(first_seen.values())


async def received_record(system: RunningSystem, case_id: str) -> Envelope:
    records = await read_all(system.bootstrap, topics.REPORTS_RECEIVED)
    [mine] = [r for r in records if r.key == case_id.encode()]
    return Envelope.model_validate_json(mine.value)


async def lose_triage_state(
    system: RunningSystem, case_id: str, received_event_ids: list[str]
) -> list[str]:
    """Delete the case's triage state, this system's triage markers for its reports and the
    epoch marker, at once (one DEL); the deleted case keys."""
    redis = Redis.from_url(system.env["OCSEA_REDIS_URL"])
    try:
        pattern = f"ocsea:triage:case:{case_id}:*"
        case_keys: list[str] = sorted(
            [key.decode() async for key in redis.scan_iter(match=pattern, count=10000)]
        )
        prefix = system.env["OCSEA_CONSUMER_GROUP_PREFIX"]
        markers = [
            f"ocsea:processed:{prefix}.triage{suffix}:{event_id}"
            for suffix in ("", f".{Lane.BULK}")
            for event_id in received_event_ids
        ]
        await redis.delete(*case_keys, *markers, EPOCH_KEY)
        assert await redis.exists(*case_keys, EPOCH_KEY) == 0
    finally:
        await redis.aclose()
    return case_keys


async def processed_by_triage(system: RunningSystem, event_id: str) -> bool:
    redis = Redis.from_url(system.env["OCSEA_REDIS_URL"])
    try:
        prefix = system.env["OCSEA_CONSUMER_GROUP_PREFIX"]
        return bool(await redis.exists(f"ocsea:processed:{prefix}.triage:{event_id}"))
    finally:
        await redis.aclose()


async def test_a_case_s_triage_state_lost_in_redis_comes_back_from_kafka(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    marker = f"Marker-{uuid.uuid4().hex}"
    posted = await post_report(client, system, child_report(marker))
    assert posted.status_code == 202, posted.text
    case_id, first_id = posted.json()["case_id"], uuid.UUID(posted.json()["report_id"])
    task = await cpu_task(client, system, case_id)
    assert task["priority"] == "P1"
    view_url = f"{system.urls['triage']}/v1/triage/cases/{case_id}"
    lower = {"priority": "P3", "reason_code": "risk_reassessed", "reason": f"{marker} is safe"}
    holder = {**system.headers("supervisor-erbil-cpu"), "Idempotency-Key": uuid.uuid4().hex}
    made = await client.post(f"{view_url}/override", json=lower, headers=holder)
    assert made.status_code == 200, made.text
    assert made.json()["priority"] == "P3"
    before = await triaged_records(system, case_id)
    assert [e["event_type"] for e in events_of(before)] == [
        "report.triaged",
        "case.triage_overridden",
        "case.reclassified",
        "report.triaged",
    ]
    first = await received_record(system, case_id)

    deleted = await lose_triage_state(system, case_id, [str(first.event_id)])
    assert {k.rsplit(":", 1)[1] for k in deleted} >= {"reports", "current", "override", "history"}

    # Read after the loss: the read passes the guard, which rebuilds the state from Kafka first
    # (the shared topics' whole history: seconds, more on a busy machine).
    auditor = system.headers("auditor")
    shown = await client.get(view_url, headers=auditor, timeout=WITHIN_S)
    assert shown.status_code == 200, shown.text
    assert shown.json()["current"] == made.json()
    assert [h["event_id"] for h in shown.json()["history"]] == [
        e["event_id"] for e in events_of(before)
    ]

    # The override retried with its key: the same override, found on Kafka, nothing new.
    again = await client.post(f"{view_url}/override", json=lower, headers=holder)
    assert again.status_code == 200, again.text
    assert again.json() == made.json()

    # The first report redelivered: its result is on Kafka already, so nothing is published.
    await publish(system.bootstrap, [first])
    await wait_for(
        lambda: processed_by_triage(system, str(first.event_id)),
        within=WITHIN_S,
        what="triage to take the redelivered report",
    )

    # A linked report of the same case: the result combines both, under the override.
    second = ReportReceivedData(
        report_id=uuid.uuid4(),
        partner_id="partner-hotline",
        channel=Channel.HOTLINE,
        received_at=utc_now(),
        incident=IncidentFacts(governorate=Governorate.ERBIL),
        survivors=(SurvivorFacts(survivor_ref="s1", stated_age=15),),
        linked_report_ids=(first_id,),
    )
    await publish(system.bootstrap, [received_event(uuid.UUID(case_id), second)])

    async def second_result() -> dict[str, Any] | None:
        events = events_of(await triaged_records(system, case_id))
        return next(
            (
                e
                for e in events
                if e["event_type"] == EventType.REPORT_TRIAGED
                and e["report_id"] == str(second.report_id)
            ),
            None,
        )

    latest = await wait_for(
        second_result, within=WITHIN_S, interval=0.5, what="the linked report's result"
    )
    result = ReportTriagedData.model_validate(latest["data"])
    assert set(result.case_report_ids) == {first_id, second.report_id}
    assert result.override is not None
    assert str(result.override.override_id) == made.json()["override"]["override_id"]
    assert result.priority is Priority.P3  # nothing more urgent than the supervisor saw

    # No event id twice on the topics: nothing was published again, least of all other bytes.
    after = await triaged_records(system, case_id)
    values: dict[str, list[bytes]] = defaultdict(list)
    for record in after:
        values[json.loads(record.value)["event_id"]].append(record.value)
    assert {i: len(v) for i, v in values.items() if len(v) > 1} == {}
    assert {r.value for r in before} <= {r.value for r in after}
    shown = await client.get(view_url, headers=auditor)
    assert shown.status_code == 200, shown.text
    assert shown.json()["current"] == latest["data"]
    assert [h["event_id"] for h in shown.json()["history"]] == [
        e["event_id"] for e in events_of(after)
    ]


async def test_the_redis_restore_sets_only_what_is_absent(stack_env: dict[str, str]) -> None:
    # A case's events made by the use cases over fakes, restored into a real Redis.
    world = World()
    case_id = uuid.uuid4()
    first = received_event(case_id, received())
    await world.receive(first)
    await world.receive(received_event(case_id, received(minutes=5)))
    async with claimed_redis_db(stack_env) as db:
        redis = Redis.from_url(redis_url(stack_env, db))
        try:
            state = RedisCaseState(redis, lock_timeout_s=5, epoch_key="ocsea:test:triage:epoch")
            folded = await rebuild_state(world.kafka, state)
            assert folded["cases"] == 1
            # Until the projection says it is present, no report is taken on its state.
            with pytest.raises(ProjectionLostError):
                await state.take_report(case_id, first.payload(ReportReceivedData))
            await redis.set("ocsea:test:triage:epoch", "present")
            assert await state.current(case_id) == await world.state.current(case_id)
            assert await state.history(case_id) == await world.state.history(case_id)
            cause = report_cause(first.payload(ReportReceivedData).report_id)
            assert await state.outcome(case_id, cause) == await world.state.outcome(case_id, cause)
            snapshot = await state.take_report(case_id, first.payload(ReportReceivedData))
            assert snapshot.published
            assert len(snapshot.reports) == 2

            # Newer state written live; a rebuild that read the topics before it changes
            # nothing of it, and restoring again changes nothing at all.
            current = await world.state.current(case_id)
            assert current is not None
            newer = current.model_copy(update={"priority": Priority.P1})
            [event] = (await world.state.history(case_id))[-1:]
            await state.record(case_id, "report:live", [event], newer)
            history = await state.history(case_id)
            await rebuild_state(world.kafka, state)
            await rebuild_state(world.kafka, state)
            assert await state.current(case_id) == newer
            assert await state.history(case_id) == history
            assert [k async for k in redis.scan_iter(match="*:history:rebuilt")] == []
        finally:
            await redis.aclose()
