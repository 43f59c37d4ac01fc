"""Intake's Redis state is a projection of Kafka (issue #11.2): when it is lost, it is rebuilt
from the topics, on the real Kafka and Redis.

Redis is shared by every test session, so this intake writes to a Redis database leased for
the test (1-15, with the routing tests' lease registry in database 0), never flushed: the loss
is this intake's keys (`ocsea:intake:*`) and its projection's epoch marker deleted, as a
FLUSHALL or a Redis restarted without its data would lose them. After it:

(a) a partner's retry with the same Idempotency-Key gets the same answer, and the received
    topic gets no second version of the report's event;
(b) a new report of the same survivor joins the same case;
(c) the partners' status reads answer as before.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from contracts import topics
from services.intake.adapters.redis import (
    case_key,
    dup_key,
    idempotency_key,
    link_key,
    status_key,
)
from services.intake.adapters.redis_restore import RedisStateRestore
from services.intake.domain.planning import LinkedReport
from services.intake.domain.rebuild import (
    RestoredAnswer,
    RestoredCase,
    RestoredLink,
    RestoredReport,
    RestoredState,
)
from testkit.intake import Intake, envelopes, start_intake
from testkit.kafka import end_offsets, read_since
from testkit.routing_harness import redis_url
from testkit.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

EPOCH = "ocsea:projection:intake:epoch"
# A rebuild reads every report and progress event on the shared topics: generous on 2 cores.
REBUILD_S = 240.0


@asynccontextmanager
async def leased_redis_db(stack_env: Mapping[str, str]) -> AsyncIterator[int]:
    """A Redis database (1-15) no other test run uses meanwhile (a lease in database 0's
    registry, as the routing tests take theirs). It is not emptied: what an earlier holder
    left there is under other keys (other secrets, other ids) than this test's intake uses."""
    registry = Redis.from_url(redis_url(stack_env, 0))
    token = uuid.uuid4().hex
    leased: int | None = None
    try:
        for db in range(1, 16):
            if await registry.set(f"ocsea:test:redis-db:{db}", token, nx=True, ex=1800):
                leased = db
                break
        if leased is None:
            raise RuntimeError("every Redis database 1-15 is leased by another test run")
        yield leased
    finally:
        if leased is not None:
            key = f"ocsea:test:redis-db:{leased}"
            if await registry.get(key) == token.encode():
                await registry.delete(key)
        await registry.aclose()


@pytest.fixture
async def redis_db(stack_env: dict[str, str]) -> AsyncIterator[int]:
    async with leased_redis_db(stack_env) as db:
        yield db


@pytest.fixture
async def redis(stack_env: dict[str, str], redis_db: int) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url(stack_env, redis_db), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def intake(
    stack_env: dict[str, str], redis_db: int, redis: Redis, tmp_path: Path
) -> AsyncIterator[Intake]:
    # A new intake (its own secrets) has nothing to fold back: its projection is present from
    # the start, so that the rebuild this test sees is the one after the loss.
    await redis.set(EPOCH, "present from the start")
    settings = {
        "OCSEA_REDIS_URL": redis_url(stack_env, redis_db),
        "OCSEA_LOG_LEVEL": "INFO",  # debug lines of thousands of key lookups slow the rebuild
    }
    running = await asyncio.to_thread(start_intake, stack_env, tmp_path / "var", settings)
    yield running
    running.stop()
    await lose_intake_state(redis)  # what it wrote is of no use to anyone after it


def report(phone: str, narrative: str) -> dict[str, Any]:
    return {
        "channel": "hotline",
        "language": "ckb",
        "incident": {"occurred_at": "2026-11-20T21:30:00+03:00", "governorate": "erbil"},
        "survivors": [{"age": 15, "contact": {"phone": phone}}],
        "categories": ["sextortion"],
        "narrative": narrative,
    }


async def lose_intake_state(redis: Redis) -> int:
    """Delete this intake's keys and its projection's epoch marker (only them: the database
    is this test's, and nothing else in it is touched)."""
    keys = [key async for key in redis.scan_iter(match="ocsea:intake:*", count=1000)]
    # At once, as a flush: the intake's status subscriber takes the shared topics' events as
    # they come, and would start rebuilding between the deletions.
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(*keys, EPOCH)
        deleted: list[int] = await pipe.execute()
    return deleted[0]


PROGRESS = ["received", "triaged", "routed"]


def same_report(now: dict[str, Any], earlier: dict[str, Any]) -> bool:
    """The same status, or a later one: the systems of other sessions on the shared topics
    triage and route every report, so its progress may move on meanwhile (and the rebuild
    folds it from their events)."""
    moved = PROGRESS.index(now["status"]) >= PROGRESS.index(earlier["status"])
    progressing = ("status", "triaged_at", "routed_at", "classification", "priority")
    steady = {k: v for k, v in now.items() if k not in progressing}
    followed = now["status"] == "received" or now["triaged_at"] is not None
    return (
        moved and followed and steady == {k: v for k, v in earlier.items() if k not in progressing}
    )


async def test_a_lost_state_is_rebuilt_from_kafka(intake: Intake, redis: Redis) -> None:
    url = f"{intake.url}/v1/reports"
    marker = uuid.uuid4().hex
    phone = f"0750{uuid.uuid4().int % 10**7:07d}"
    received = topics.RECEIVED_BY_LANE.values()
    before = {topic: await end_offsets(intake.bootstrap, topic) for topic in received}
    async with httpx.AsyncClient(timeout=REBUILD_S) as client:
        key = {"Idempotency-Key": f"rebuild-{marker}"}
        first = await client.post(
            url, json=report(phone, marker), headers=intake.headers("hotline-a", **key)
        )
        assert first.status_code == 202, first.text
        answer = first.json()
        other = await client.post(
            url,
            json=report(f"0751{uuid.uuid4().int % 10**7:07d}", f"other {marker}"),
            headers=intake.headers("ngo-b"),
        )
        assert other.status_code == 202, other.text

        async def status(partner: str, report_id: str) -> httpx.Response:
            return await client.get(f"{url}/{report_id}", headers=intake.headers(partner))

        statuses = {
            ("hotline-a", answer["report_id"]): (await status("hotline-a", answer["report_id"])),
            ("ngo-b", other.json()["report_id"]): (
                await status("ngo-b", other.json()["report_id"])
            ),
        }
        assert all(s.status_code == 200 for s in statuses.values())

        assert await lose_intake_state(redis) > 0

        # (c) The next read (within the guard's second) finds the epoch gone and rebuilds.
        async def rebuilt() -> bool:
            found = await status("hotline-a", answer["report_id"])
            return found.status_code == 200 and await redis.exists(EPOCH) == 1

        await wait_for(rebuilt, within=REBUILD_S, interval=0.2, what="the state rebuilt")
        for (partner, report_id), earlier in statuses.items():
            now = await status(partner, report_id)
            assert now.status_code == 200, now.text
            assert same_report(now.json(), earlier.json())

        # (a) The retry with the same key: the first answer, no other version of the event.
        retry = await client.post(
            url, json=report(phone, marker), headers=intake.headers("hotline-a", **key)
        )
        assert retry.status_code == 202, retry.text
        assert retry.json() == answer
        # Without the key: recognised as the same report (a receipt of its own).
        again = await client.post(
            url, json=report(phone, marker), headers=intake.headers("hotline-a")
        )
        assert again.status_code == 202, again.text
        assert (again.json()["duplicate_of"], again.json()["case_id"]) == (
            answer["report_id"],
            answer["case_id"],
        )

        # (b) A new report of the same survivor joins the case.
        later = await client.post(
            url,
            json=report(f"+964 {phone[1:]}", f"later {marker}"),
            headers=intake.headers("hotline-a"),
        )
        assert later.status_code == 202, later.text
        assert later.json()["case_id"] == answer["case_id"]
        assert later.json()["duplicate_of"] is None

    records = [
        record
        for topic in received
        for record in await read_since(intake.bootstrap, topic, before[topic])
    ]
    ours = intake.ours(envelopes(records))
    by_report: dict[str, set[bytes]] = {}
    for record, event in zip(records, envelopes(records), strict=True):
        if event in ours:
            by_report.setdefault(event["report_id"], set()).add(record.value)
    assert len(by_report[answer["report_id"]]) == 1  # one version of its event, ever
    first_event = json.loads(next(iter(by_report[answer["report_id"]])))
    assert first_event["data"]["idempotency"]["key"] != key["Idempotency-Key"]
    [later_event] = [e for e in ours if e["report_id"] == later.json()["report_id"]]
    assert later_event["case_id"] == first_event["case_id"]
    assert later_event["data"]["link_reasons"] == ["same_survivor"]
    assert later_event["data"]["linked_report_ids"] == [answer["report_id"]]
    assert set(by_report) == {
        answer["report_id"],
        other.json()["report_id"],
        later.json()["report_id"],
    }


async def test_restoring_writes_only_what_is_absent_and_twice_changes_nothing(
    redis: Redis,
) -> None:
    """The Redis adapter's side of the fold's promise: replicas restoring at once, and a live
    request that wrote meanwhile, lose nothing."""
    now = datetime.now(UTC)
    case_id, earlier_report, live_report = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    fingerprint, digest, taken = (uuid.uuid4().hex for _ in range(3))
    restored = RestoredState(
        reports=[
            RestoredReport(
                report_id=earlier_report,
                case_id=case_id,
                case_ref=case_id,
                partner_id="partner-a",
                received_at=now - timedelta(hours=1),
                source_format="partner_json",
                lane="live",
                linked=(),
                triaged_at=now - timedelta(minutes=50),
                routed_at=None,
                ttl_s=3600,
                fingerprint=fingerprint,
                held=None,
                held_ttl_s=0,
            )
        ],
        cases=[
            RestoredCase(
                case_id=case_id,
                reports=(LinkedReport(earlier_report, "partner-a"),),
                partners=("partner-a",),
                opener="partner-a",
                ttl_s=3600,
                routed_at=None,
                routed_ttl_s=0,
                views={},
            )
        ],
        links=[RestoredLink(digest, case_id, 3600), RestoredLink(taken, case_id, 3600)],
        answers=[
            RestoredAnswer("partner-a", digest, "request", 202, {"report_id": "r"}, now, 3600)
        ],
    )
    # What live requests wrote after the loss, before the restore: newer, and kept.
    elsewhere = str(uuid.uuid4())
    await redis.set(link_key(taken), elsewhere, ex=60)
    await redis.rpush(f"{case_key(case_id)}:reports", f"{live_report} partner-a")
    await redis.hset(status_key(earlier_report), "triaged_at", "newer")
    # A key an earlier version wrote as another type: kept, and no reason to fail the rebuild.
    await redis.sadd(f"{case_key(case_id)}:partners", "partner-a")

    restore = RedisStateRestore(redis, max_linked_reports=100)
    await restore.restore(restored)
    after_once = await snapshot(redis, restored)
    await restore.restore(restored)

    assert await snapshot(redis, restored) == after_once
    assert after_once["links"] == [str(case_id), elsewhere]
    assert after_once["reports"] == [f"{earlier_report} partner-a", f"{live_report} partner-a"]
    assert after_once["status"]["triaged_at"] == "newer"
    assert after_once["partners"] == {"partner-a"}
    assert after_once["status"]["case_id"] == str(case_id)
    assert json.loads(after_once["dup"])["report_id"] == str(earlier_report)
    assert json.loads(after_once["answer"]) == {
        "request": "request",
        "status": 202,
        "body": {"report_id": "r"},
    }
    assert 0 < await redis.ttl(dup_key(fingerprint)) <= 3600
    assert await redis.ttl(link_key(taken)) <= 60  # its own time, not the restored one
    await redis.delete(
        *(link_key(d) for d in (digest, taken)),
        f"{case_key(case_id)}:reports",
        f"{case_key(case_id)}:partners",
        status_key(earlier_report),
        dup_key(fingerprint),
        idempotency_key("partner-a", digest),
    )


async def snapshot(redis: Redis, state: RestoredState) -> dict[str, Any]:
    [report] = state.reports
    return {
        "links": [await redis.get(link_key(link.digest)) for link in state.links],
        "reports": await redis.lrange(f"{case_key(report.case_id)}:reports", 0, -1),
        "partners": await redis.smembers(f"{case_key(report.case_id)}:partners"),
        "status": await redis.hgetall(status_key(report.report_id)),
        "dup": await redis.get(dup_key(report.fingerprint or "")),
        "answer": await redis.get(idempotency_key("partner-a", state.answers[0].key_digest)),
    }
