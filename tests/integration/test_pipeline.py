"""The thin real path, end to end, on the real Kafka, Redis and ledger (`ocsea run`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from contracts import topics
from testkit.kafka import end_offsets, read_all
from testkit.reports import SAMPLE_REPORT, post_report, tasks_for_case, trail
from testkit.system import RunningSystem
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration


async def test_report_becomes_a_task_and_a_trail(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    response = await post_report(client, system, SAMPLE_REPORT)
    assert response.status_code == 202, response.text
    accepted = response.json()
    case_id, report_id = accepted["case_id"], accepted["report_id"]
    uuid.UUID(case_id), uuid.UUID(report_id)

    async def task() -> list[dict[str, Any]]:
        return await tasks_for_case(client, system, "officer-erbil-cpu", case_id)

    found = await wait_for(task, within=5, what="the task in the Erbil officer's inbox")
    assert len(found) == 1
    assert found[0]["classification"] == "TF-CSEA"
    assert found[0]["priority"] == "P1"  # child + sextortion deadline
    assert found[0]["agency_id"] == "erbil-cpu"
    assert found[0]["seconds_to_acknowledge"] > 0

    async def full_trail() -> list[Any] | None:
        entries = await trail(client, system, case_id)
        return entries if len(entries) >= 6 else None

    # Sextortion of a child: child protection and police each get a task, each also
    # dispatched on its actor type's topic.
    entries = await wait_for(full_trail, within=5, what="six ledger entries")
    actions = [e["entry"]["action"] for e in entries]
    assert actions[:2] == ["report.received", "report.triaged"]
    assert sorted(actions[2:]) == ["dispatched", "dispatched", "task.assigned", "task.assigned"]
    assert len({e["leaf_index"] for e in entries}) == 6
    assert all(e["entry"]["case_id"] == case_id for e in entries)
    assert "Marker" not in json.dumps(entries)

    # Another agency's officer does not see it.
    assert await tasks_for_case(client, system, "officer-duhok-cpu", case_id) == []
    forbidden = await client.get(
        f"{system.urls['routing']}/v1/tasks/{found[0]['task_id']}",
        headers=system.headers("officer-duhok-cpu"),
    )
    assert forbidden.status_code == 404


async def test_personal_data_is_sealed_on_the_wire(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    marker = f"Marker-{uuid.uuid4().hex}"
    body = {**SAMPLE_REPORT, "narrative": marker, "survivors": [{"name": marker, "age": 12}]}
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    response = await post_report(client, system, body, traceparent=traceparent)
    assert response.status_code == 202
    report_id = response.json()["report_id"]

    async def received() -> list[Any] | None:
        records = await read_all(system.bootstrap, topics.REPORTS_RECEIVED)
        return [r for r in records if report_id.encode() in r.value] or None

    [record] = await wait_for(received, what="the received event")
    assert marker.encode() not in record.value
    event = json.loads(record.value)
    assert event["data"]["personal"]["ciphertext"]
    assert event["data"]["survivors"][0]["stated_age"] == 12

    # Once the case is through the pipeline, neither the logs (at DEBUG), nor any span of
    # any service (HTTP, Kafka, Redis, SQL), nor any metric carries the marker, though all
    # of them recorded the case.
    case_id = response.json()["case_id"]
    await trail(client, system, case_id)  # an auditor's read: the ledger's SQL spans

    async def traced() -> dict[str, int] | None:
        path = system.var_dir / "spans.jsonl"
        spans = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        ours = [s for s in spans if s["trace_id"] == trace_id]
        kinds = {
            "http": sum(s["kind"] == "SERVER" for s in ours),
            "redis": sum(s["attributes"].get("db.system.name") == "redis" for s in ours),
            "kafka": sum(s["attributes"].get("messaging.system") == "kafka" for s in ours),
            "audit": sum(s["service"] == "ocsea-audit" for s in ours),
            "sql": sum(
                "db.query.text" in s["attributes"] and s["service"] == "ocsea-audit" for s in spans
            ),
        }
        return kinds if all(kinds.values()) else None

    await wait_for(traced, within=30, what="HTTP, Kafka, Redis and SQL spans of the case")
    metrics = [(await client.get(f"{url}/metrics")).text for url in system.api_urls.values()]
    texts = {
        path.name: path.read_text(encoding="utf-8")
        for path in (system.log_file, system.var_dir / "spans.jsonl")
    }
    texts.update(
        {f"{name} metrics": text for name, text in zip(system.api_urls, metrics, strict=True)}
    )
    for where, text in texts.items():
        assert marker not in text, f"personal data leaked into {where}"
    assert report_id in system.log_file.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ("{not json", 400, "invalid_json", "body"),
        ({"language": "ckb"}, 422, "invalid_request", "channel"),
        (
            {"channel": "hotline", "survivors": [{"age": "fifteen"}]},
            422,
            "invalid_request",
            "survivors.0.age",
        ),
        (
            {"channel": "hotline", "incident": {"governorate": "atlantis"}},
            422,
            "invalid_request",
            "incident.governorate",
        ),
        ({"channel": "hotline", "unexpected_field": 1}, 422, "invalid_request", "unexpected_field"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_published(
    system: RunningSystem,
    client: httpx.AsyncClient,
    body: Any,
    status: int,
    code: str,
    field: str,
) -> None:
    before = await end_offsets(system.bootstrap, topics.REPORTS_RECEIVED)
    response = await client.post(
        f"{system.urls['intake']}/v1/reports",
        content=body if isinstance(body, str) else json.dumps(body),
        headers={**system.headers("partner-hotline"), "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]
    # Intake answers only after the broker acknowledged a publish, so a publish would
    # already show in the end offsets.
    assert await end_offsets(system.bootstrap, topics.REPORTS_RECEIVED) == before


async def test_unauthenticated_and_wrong_role_are_refused(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    no_token = await client.post(f"{system.urls['intake']}/v1/reports", json=SAMPLE_REPORT)
    assert no_token.status_code == 401
    assert no_token.json()["code"] == "unauthenticated"
    officer = await client.post(
        f"{system.urls['intake']}/v1/reports",
        json=SAMPLE_REPORT,
        headers=system.headers("officer-erbil-cpu"),
    )
    assert officer.status_code == 403


async def test_idempotency_key_replays_the_first_answer(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    key = f"idem-{uuid.uuid4()}"
    first = await post_report(client, system, SAMPLE_REPORT, **{"Idempotency-Key": key})
    before = await end_offsets(system.bootstrap, topics.REPORTS_RECEIVED)
    second = await post_report(client, system, SAMPLE_REPORT, **{"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert await end_offsets(system.bootstrap, topics.REPORTS_RECEIVED) == before


async def test_redelivered_event_creates_no_second_task_or_entry(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    response = await post_report(client, system, SAMPLE_REPORT)
    case_id = response.json()["case_id"]

    async def three_entries() -> list[Any] | None:
        entries = await trail(client, system, case_id)
        return entries if len(entries) >= 3 else None

    await wait_for(three_entries, what="the first trail")
    triaged = [
        r
        for r in await read_all(system.bootstrap, topics.REPORTS_TRIAGED)
        if case_id.encode() in r.value
    ]
    assert len(triaged) == 1
    original = triaged[0]
    event_id = json.loads(original.value)["event_id"]

    # Forget the fast-path markers so the redelivery reaches the handlers themselves:
    # their effects must be idempotent on their own.
    redis = Redis.from_url(system.env["OCSEA_REDIS_URL"])
    prefix = system.env["OCSEA_CONSUMER_GROUP_PREFIX"]
    await redis.delete(
        f"ocsea:processed:{prefix}.routing:{event_id}",
        f"ocsea:processed:{prefix}.audit:{event_id}",
    )
    await redis.aclose()

    # Redeliver the same event, then a fresh sentinel with the same key (same partition,
    # later offset): once the sentinel is handled, the redelivery has been handled too.
    sentinel = json.loads(original.value)
    sentinel["event_id"] = str(uuid.uuid4())
    producer = AIOKafkaProducer(bootstrap_servers=system.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.REPORTS_TRIAGED, original.value, key=original.key, headers=list(original.headers)
        )
        await producer.send_and_wait(
            topics.REPORTS_TRIAGED, json.dumps(sentinel).encode(), key=original.key
        )
    finally:
        await producer.stop()

    async def sentinel_recorded() -> list[Any] | None:
        entries = await trail(client, system, case_id)
        ids = {e["entry"]["source_event_id"] for e in entries}
        return entries if sentinel["event_id"] in ids else None

    entries = await wait_for(sentinel_recorded, what="the sentinel in the trail")
    source_ids = [e["entry"]["source_event_id"] for e in entries]
    assert source_ids.count(event_id) == 1

    async def sentinel_routed() -> bool:
        redis = Redis.from_url(system.env["OCSEA_REDIS_URL"])
        try:
            marker = f"ocsea:processed:{prefix}.routing:{sentinel['event_id']}"
            return bool(await redis.exists(marker))
        finally:
            await redis.aclose()

    await wait_for(sentinel_routed, what="routing to handle the sentinel")
    # Tasks are one per case and role: neither the redelivery nor the sentinel (the same
    # triage result again) makes a second one.
    found = await tasks_for_case(client, system, "officer-erbil-cpu", case_id)
    assert len(found) == 1


async def test_every_service_serves_health_readiness_metrics_and_openapi(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    for name, url in system.api_urls.items():
        health = await client.get(f"{url}/healthz")
        assert health.json() == {"status": "ok", "service": name}
        ready = await client.get(f"{url}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["kafka"] == "ok"
        metrics = await client.get(f"{url}/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        openapi = (await client.get(f"{url}/openapi.json")).json()
        assert "/healthz" in openapi["paths"]
    audit_ready = (await client.get(f"{system.urls['audit']}/readyz")).json()
    assert audit_ready["checks"]["database"] == "ok"
    triage_metrics = (await client.get(f"{system.urls['triage']}/metrics")).text
    assert "faststream_received_messages_total" in triage_metrics
