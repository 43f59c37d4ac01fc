"""Routing loses its whole Redis (its own database, flushed while it runs): the task
projection is rebuilt from Kafka, and the entitled officer's case view still opens the case's
personal data, its key coming back from the key store rather than from Redis.

One isolated routing service (private topics, its own Redis database, its own key store).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from contracts.events import (
    Actor,
    ActorKind,
    EventType,
    IncidentFacts,
    ReportReceivedData,
    SurvivorFacts,
    make_event,
    utc_now,
)
from contracts.reports import Channel
from ocsea.runtime.crypto import CaseKeys, master_key_for
from ocsea.runtime.keystore import KeyStore
from testkit.routing_harness import (
    Isolation,
    RoutingInstance,
    claimed_redis_db,
    flush_redis_db,
    publish,
    routing_instance,
    short_directory,
    triaged_event,
)
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

OFFICER = "officer-cpu"


@pytest.fixture
async def redis_db(stack_env: dict[str, str]) -> AsyncIterator[int]:
    async with claimed_redis_db(stack_env) as db:
        yield db


async def case_view(routing: RoutingInstance, case_id: uuid.UUID) -> dict[str, Any]:
    async def shown() -> dict[str, Any] | None:
        response = await routing.client.get(
            f"/v1/cases/{case_id}", headers=routing.headers(OFFICER)
        )
        if response.status_code == 403:  # no task (yet, or again)
            return None
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view if view["reports"] else None

    return await wait_for(shown, within=60, interval=0.1, what="the officer's case view")


async def test_the_officer_still_opens_the_case_after_routing_lost_its_whole_redis(
    stack_env: dict[str, str], tmp_path: Path, redis_db: int
) -> None:
    bootstrap = stack_env["OCSEA_KAFKA_BOOTSTRAP"]
    isolation = Isolation.create(tmp_path, short_directory(p1_ack=3600, p1_step=3600), redis_db)
    async with routing_instance(stack_env, isolation) as routing:
        # Sealed as intake seals: under the case's key, in the key store routing reads.
        store = KeyStore.from_settings(routing.settings)
        keys = CaseKeys(routing.store.redis, master_key_for(routing.settings), store)
        case_id, marker = uuid.uuid4(), f"DurableMarker{uuid.uuid4().hex}"
        personal = {"survivors": [{"name": marker}], "narrative": f"{marker} narrative"}
        received = ReportReceivedData(
            report_id=uuid.uuid4(),
            partner_id="partner-hotline",
            channel=Channel.HOTLINE,
            received_at=utc_now(),
            incident=IncidentFacts(),
            survivors=(SurvivorFacts(survivor_ref="s1", stated_age=15),),
            personal=await keys.seal(case_id, json.dumps(personal).encode()),
        )
        await store.close()
        event = make_event(
            event_type=EventType.REPORT_RECEIVED,
            case_id=case_id,
            report_id=received.report_id,
            producer="intake",
            actor=Actor(kind=ActorKind.PARTNER, id="partner-hotline"),
            data=received,
        )
        await publish(bootstrap, routing.topics.received, [event])
        await publish(
            bootstrap,
            routing.topics.triaged,
            [triaged_event(case_id, report_id=received.report_id)],
        )
        before = await case_view(routing, case_id)
        assert before["reports"][0]["personal_status"] == "shown"
        assert before["reports"][0]["personal"] == personal

        rebuilds = routing.routing["projection"].rebuilds
        await flush_redis_db(stack_env, redis_db)  # everything routing kept in Redis: gone
        assert await routing.store.redis.dbsize() == 0

        after = await case_view(routing, case_id)
        assert routing.routing["projection"].rebuilds == rebuilds + 1  # noticed, rebuilt
        assert after["reports"][0]["personal_status"] == "shown"
        assert after["reports"][0]["personal"] == personal
