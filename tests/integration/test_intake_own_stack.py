"""Intake against a Kafka and Redis of its own (its own directories and ports): what must
not touch the shared stack. Schemathesis floods intake with generated requests, many of them
valid reports; the outage test stops and restarts the broker. The shared stack is never
stopped, and its topics are not filled with generated reports.

1. Schemathesis, from intake's own OpenAPI document: valid and invalid requests on every
   operation, and not one server error.
2. The partner's status view following (synthetic) triage and routing events.
3. The broker really down: `503` with `Retry-After` and no partial state; once it is back, the
   same request is taken, and what the broker may have kept from the failed attempt is the
   very same event (same id, same bytes), which consumers deduplicate. This intake's Redis is
   the shared one, so that stopping the broker stops only the broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

import devstack as stack
from contracts import topics
from contracts.events import (
    Actor,
    ActorKind,
    AgeBasis,
    AgencyType,
    Classification,
    EventType,
    Priority,
    ReportTriagedData,
    TaskAssignedData,
    make_event,
)
from devstack import StackSettings, service_env
from ocsea.runtime.crypto import load_or_create_master_key
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.facts import report_id_for
from services.intake.domain.matching import Matcher
from services.intake.domain.reference import Gazetteer, Vocabulary
from testkit.intake import Intake, envelopes, start_intake
from testkit.kafka import read_since
from testkit.stack import own_stack
from testkit.system import REPO
from testkit.waiting import wait_for
from tests.intake.conftest import BAGHDAD

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

EXAMPLES_PER_OPERATION = 20
PUBLISH_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    with own_stack(tmp_path_factory.mktemp("intake-stack") / "stack") as settings:
        yield settings


@pytest.fixture(scope="module")
def private_intake(
    private_stack: StackSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Intake]:
    running = start_intake(
        service_env(private_stack),
        tmp_path_factory.mktemp("private-intake") / "var",
        {
            # A generous rate limit: the point is what the generated requests do.
            "OCSEA_INTAKE_RATE_LIMIT_PER_MINUTE": "1000000",
            "OCSEA_INTAKE_RATE_LIMIT_BURST": "100000",
            # The schema's maxItems follows: boundary cases stay small, and reach the limit.
            "OCSEA_INTAKE_MAX_BATCH_ROWS": "5",
        },
    )
    yield running
    running.stop()


@pytest.fixture
def intake(
    private_stack: StackSettings, stack_env: dict[str, str], tmp_path: Path
) -> Iterator[Intake]:
    env = {**stack_env, "OCSEA_KAFKA_BOOTSTRAP": private_stack.kafka_bootstrap}
    running = start_intake(
        env, tmp_path / "var", {"OCSEA_PUBLISH_TIMEOUT_S": str(PUBLISH_TIMEOUT_S)}
    )
    yield running
    running.stop()


def test_generated_requests_never_meet_a_server_error(
    private_intake: Intake, tmp_path: Path
) -> None:
    intake = private_intake
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{intake.url}/openapi.json",
            "--checks", "not_a_server_error",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            # One worker: hypothesis describes strategies with `ast.parse`, which CPython 3.11
            # can break on when threads race ("AST constructor recursion depth mismatch").
            "--workers", "1",
            "--request-timeout", "20",
            "--generation-database", "none",
            "--no-color",
            "--header", f"Authorization: Bearer {intake.tokens['hotline-a']}",
            "--report-dir", str(tmp_path),
        ],
        cwd=tmp_path,  # schemathesis keeps state in its working directory
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "SCHEMATHESIS_HOOKS": "tests.intake.schemathesis_hooks",
        },
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # Every operation was exercised, with many generated cases, none of them failing.
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert selected, output[-3000:]
    assert tested, output[-3000:]
    assert cases, output[-3000:]
    assert int(tested.group(1)) == int(selected.group(2)) >= 7
    assert int(cases.group(1)) == int(cases.group(2)) >= 500


async def test_the_status_follows_triage_and_routing_events(
    private_intake: Intake, client: httpx.AsyncClient
) -> None:
    # On this stack's own topics the projection has no history of other sessions to replay.
    intake = private_intake
    response = await client.post(
        f"{intake.url}/v1/reports",
        json={"channel": "hotline", "survivors": [{"age": 12}], "narrative": uuid.uuid4().hex},
        headers=intake.headers("hotline-a"),
    )
    accepted = response.json()
    report_id, case_id = uuid.UUID(accepted["report_id"]), uuid.UUID(accepted["case_id"])
    url = f"{intake.url}/v1/reports/{report_id}"

    async def status() -> dict[str, Any]:
        answer = await client.get(url, headers=intake.headers("hotline-a"))
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    received = await status()
    assert (received["status"], received["classification"], received["priority"]) == (
        "received",
        None,
        None,
    )
    system = Actor(kind=ActorKind.SYSTEM, id="test")
    now = datetime.now(UTC)
    triaged = make_event(
        event_type=EventType.REPORT_TRIAGED,
        case_id=case_id,
        report_id=report_id,
        producer="triage",
        actor=system,
        data=ReportTriagedData(
            report_id=report_id,
            classification=Classification.TF_CSEA,
            presumed_child=False,
            age_used=12,
            age_basis=AgeBasis.STATED_AGE,
            priority=Priority.P2,
            score=40,
            rules_version="test",
        ),
    )
    assigned = make_event(
        event_type=EventType.TASK_ASSIGNED,
        case_id=case_id,
        report_id=report_id,
        producer="routing",
        actor=system,
        data=TaskAssignedData(
            task_id=uuid.uuid4(),
            report_id=report_id,
            agency_id="erbil-cpu",
            agency_type=AgencyType.CHILD_PROTECTION,
            classification=Classification.TF_CSEA,
            priority=Priority.P2,
            reason="test",
            acknowledge_due_at=now,
            first_action_due_at=now,
        ),
    )
    producer = AIOKafkaProducer(bootstrap_servers=intake.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.REPORTS_TRIAGED, triaged.model_dump_json().encode(), key=str(case_id).encode()
        )

        async def is_triaged() -> dict[str, Any] | None:
            current = await status()
            return current if current["status"] == "triaged" else None

        current = await wait_for(is_triaged, what="the triaged status")
        assert (current["classification"], current["priority"]) == ("TF-CSEA", "P2")
        await producer.send_and_wait(
            topics.TASKS_EVENTS, assigned.model_dump_json().encode(), key=str(case_id).encode()
        )

        async def is_routed() -> dict[str, Any] | None:
            current = await status()
            return current if current["status"] == "routed" else None

        current = await wait_for(is_routed, what="the routed status")
        assert current["routed_at"] is not None
    finally:
        await producer.stop()


class Events:
    """Synthetic triage and routing events on the private stack's topics."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.actor = Actor(kind=ActorKind.SYSTEM, id="test")

    async def triaged(
        self, case_id: uuid.UUID, report_id: uuid.UUID, priority: Priority,
        case_reports: list[uuid.UUID], lane: topics.Lane = topics.Lane.LIVE,
    ) -> None:  # fmt: skip
        event = make_event(
            event_type=EventType.REPORT_TRIAGED,
            case_id=case_id,
            report_id=report_id,
            producer="triage",
            actor=self.actor,
            data=ReportTriagedData(
                report_id=report_id,
                classification=Classification.TF_CSEA,
                presumed_child=False,
                age_used=12,
                age_basis=AgeBasis.STATED_AGE,
                priority=priority,
                score=40,
                rules_version="test",
                case_report_ids=tuple(case_reports),
            ),
        )
        await self.producer.send_and_wait(
            topics.TRIAGED_BY_LANE[lane], event.model_dump_json().encode(),
            key=str(case_id).encode(),
        )  # fmt: skip

    async def assigned(self, case_id: uuid.UUID, report_id: uuid.UUID) -> None:
        now = datetime.now(UTC)
        event = make_event(
            event_type=EventType.TASK_ASSIGNED,
            case_id=case_id,
            report_id=report_id,
            producer="routing",
            actor=self.actor,
            data=TaskAssignedData(
                task_id=uuid.uuid4(),
                report_id=report_id,
                agency_id="erbil-cpu",
                agency_type=AgencyType.CHILD_PROTECTION,
                classification=Classification.TF_CSEA,
                priority=Priority.P2,
                reason="test",
                acknowledge_due_at=now,
                first_action_due_at=now,
            ),
        )
        await self.producer.send_and_wait(
            topics.TASKS_EVENTS, event.model_dump_json().encode(), key=str(case_id).encode()
        )


async def test_partners_see_only_their_own_part_of_a_shared_case(
    private_intake: Intake, client: httpx.AsyncClient
) -> None:
    """A hotline and an NGO report the same survivor (her number written two ways). Inside
    the mechanism it is one case; each partner holds its own reference for it, and neither
    learns from any answer that the other reported her."""
    intake = private_intake
    local = f"750{uuid.uuid4().int % 10**7:07d}"

    async def post(partner: str, phone: str, channel: str) -> dict[str, Any]:
        body = {"channel": channel, "survivors": [{"age": 12, "contact": {"phone": phone}}],
                "narrative": uuid.uuid4().hex}  # fmt: skip
        response = await client.post(
            f"{intake.url}/v1/reports", json=body, headers=intake.headers(partner)
        )
        assert response.status_code == 202, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def status(partner: str, report_id: str) -> dict[str, Any]:
        answer = await client.get(
            f"{intake.url}/v1/reports/{report_id}", headers=intake.headers(partner)
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    hotline = await post("hotline-a", f"0{local}", "hotline")
    first = uuid.UUID(hotline["report_id"])
    case_id = uuid.UUID(hotline["case_id"])  # the case's opener holds the case id itself
    producer = AIOKafkaProducer(bootstrap_servers=intake.bootstrap, acks="all")
    await producer.start()
    try:
        events = Events(producer)
        await events.triaged(case_id, first, Priority.P3, [first])

        async def hotline_triaged() -> dict[str, Any] | None:
            current = await status("hotline-a", str(first))
            return current if current["status"] == "triaged" else None

        own = await wait_for(hotline_triaged, what="the hotline's own triage result")
        assert (own["classification"], own["priority"]) == ("TF-CSEA", "P3")

        ngo = await post("ngo-b", f"+964 {local[:3]} {local[3:]}", "ngo")
        second = uuid.UUID(ngo["report_id"])
        assert ngo["case_id"] != hotline["case_id"]
        [received] = [
            e
            for e in envelopes(await read_since(intake.bootstrap, topics.REPORTS_RECEIVED, {}))
            if e["report_id"] == str(second)
        ]
        assert received["case_id"] == str(case_id)  # one case inside the mechanism
        assert received["data"]["linked_report_ids"] == [str(first)]

        # Triage combines both reports into a more urgent result.
        await events.triaged(case_id, second, Priority.P1, [first, second])

        async def ngo_triaged() -> dict[str, Any] | None:
            current = await status("ngo-b", str(second))
            return current if current["status"] == "triaged" else None

        theirs = await wait_for(ngo_triaged, what="the NGO's report to be triaged")
        assert theirs["case_id"] == ngo["case_id"]
        assert theirs["linked_to_existing_case"] is False
        assert theirs["linked_report_ids"] == []
        # Nothing drawn from the hotline's report: not the combined P1.
        assert (theirs["classification"], theirs["priority"]) == (None, None)
        assert (await status("hotline-a", str(first)))["priority"] == "P3"

        # The hotline's own second report shows its own reference and its own link only.
        again = await post("hotline-a", f"+964{local}", "hotline")
        assert again["case_id"] == hotline["case_id"]
        mine = await status("hotline-a", again["report_id"])
        assert mine["linked_to_existing_case"] is True
        assert mine["linked_report_ids"] == [str(first)]
        assert mine["case_id"] == hotline["case_id"]

        # One task for the case: every triaged report of it is routed, not only the one the
        # task names (no partner waits for a task of its own that never comes).
        await events.assigned(case_id, first)

        async def ngo_routed() -> dict[str, Any] | None:
            current = await status("ngo-b", str(second))
            return current if current["status"] == "routed" else None

        await wait_for(ngo_routed, what="the NGO's report to show routed")
        assert (await status("hotline-a", str(first)))["status"] == "routed"
        # Another partner's report is as absent as one that never existed.
        other = await client.get(
            f"{intake.url}/v1/reports/{second}", headers=intake.headers("hotline-a")
        )
        assert other.status_code == 404
    finally:
        await producer.stop()


async def test_a_batch_rows_status_follows_the_bulk_lane(
    private_intake: Intake, client: httpx.AsyncClient
) -> None:
    intake = private_intake
    row = {"channel": "ngo", "survivors": [{"age": 9}], "narrative": uuid.uuid4().hex}
    response = await client.post(
        f"{intake.url}/v1/reports/batch",
        content=json.dumps(row).encode(),
        headers=intake.headers("ngo-b", **{"Content-Type": "application/x-ndjson"}),
    )
    assert response.status_code == 202, response.text
    [accepted] = response.json()["rows"]
    report_id, case_id = uuid.UUID(accepted["report_id"]), uuid.UUID(accepted["case_id"])
    [received] = [
        e
        for e in envelopes(await read_since(intake.bootstrap, topics.REPORTS_RECEIVED_BULK, {}))
        if e["report_id"] == str(report_id)
    ]
    assert received["case_id"] == str(case_id)
    producer = AIOKafkaProducer(bootstrap_servers=intake.bootstrap, acks="all")
    await producer.start()
    try:
        await Events(producer).triaged(
            case_id, report_id, Priority.P4, [report_id], topics.Lane.BULK
        )

        async def triaged() -> dict[str, Any] | None:
            current = await client.get(
                f"{intake.url}/v1/reports/{report_id}", headers=intake.headers("ngo-b")
            )
            body: dict[str, Any] = current.json()
            return body if body["status"] == "triaged" else None

        current = await wait_for(triaged, what="the bulk lane's triage result")
        assert current["priority"] == "P4"
    finally:
        await producer.stop()


def derived(intake: Intake, partner: str, body: dict[str, Any]) -> tuple[uuid.UUID, list[str]]:
    """The report id intake derives for this report, and every Redis key it would hold for
    it once published (duplicate record, status record, link records)."""
    secret = load_or_create_master_key(intake.var_dir / "matching.key")
    refs = Normalisers(Gazetteer.load(), Vocabulary.load(), BAGHDAD, max_base64_run=1024)
    report = canonical_report(body, refs)
    matcher = Matcher(secret, refs.vocabulary)
    partner_id = intake.partner_id(partner)
    fingerprint = matcher.fingerprint(partner_id, report)
    report_id = report_id_for(partner_id, fingerprint)
    keys = [
        f"ocsea:intake:dup:{fingerprint}",
        f"ocsea:intake:status:{report_id}",
        *(f"ocsea:intake:link:{k.digest}" for k in matcher.keys(partner_id, report)),
    ]
    return report_id, keys


async def remembered(redis: Redis, intake: Intake, partner: str, body: dict[str, Any]) -> list[str]:
    return [key for key in derived(intake, partner, body)[1] if await redis.exists(key)]


async def test_a_broker_outage_answers_503_and_leaves_nothing_behind(
    intake: Intake, private_stack: StackSettings, client: httpx.AsyncClient
) -> None:
    redis = Redis.from_url(intake.env["OCSEA_REDIS_URL"])
    url = f"{intake.url}/v1/reports"
    marker = uuid.uuid4().hex
    body = {
        "channel": "hotline",
        "survivors": [{"age": 13, "contact": {"phone": f"0750{int(marker[:7], 16) % 10**7:07d}"}}],
        "narrative": marker,
    }
    key = f"outage-{marker}"
    headers = intake.headers("hotline-a", **{"Idempotency-Key": key})
    secret = load_or_create_master_key(intake.var_dir / "matching.key")
    partner_id = intake.partner_id("hotline-a")
    digest = Matcher(secret, Vocabulary.load()).idempotency_key(partner_id, key)
    idempotency_record = f"ocsea:intake:idem:{partner_id}:{digest}"
    try:
        warm = await client.post(url, json={"channel": "hotline", "narrative": marker[:8]},
                                 headers=intake.headers("hotline-a"))  # fmt: skip
        assert warm.status_code == 202, warm.text

        await asyncio.to_thread(stack.down, private_stack, echo=lambda _: None)

        started = time.monotonic()
        response = await client.post(url, json=body, headers=headers)
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < PUBLISH_TIMEOUT_S + 3
        assert response.json()["code"] == "broker_unavailable"
        assert int(response.headers["Retry-After"]) > 0
        # No partial state: no idempotent answer, no duplicate or link record, no status.
        assert not await redis.exists(idempotency_record)
        assert await remembered(redis, intake, "hotline-a", body) == []

        batch = await client.post(
            f"{intake.url}/v1/reports/batch",
            content=b'{"channel": "ngo", "narrative": "b1"}\n{"channel": "ngo", "narrative": 7}\n',
            headers=intake.headers("ngo-b", **{"Content-Type": "application/x-ndjson"}),
        )
        assert batch.status_code == 503, batch.text
        assert [(e["line"], e["code"]) for e in batch.json()["errors"]] == [
            ("1", "broker_unavailable")
        ]
        assert await remembered(redis, intake, "ngo-b", {"channel": "ngo", "narrative": "b1"}) == []

        await asyncio.to_thread(stack.up, private_stack, with_postgres=False, echo=lambda _: None)

        async def taken() -> httpx.Response | None:
            retry = await client.post(url, json=body, headers=headers)
            return retry if retry.status_code == 202 else None

        accepted = (
            await wait_for(taken, within=90, interval=0.5, what="intake to publish again")
        ).json()
        expected_id, _ = derived(intake, "hotline-a", body)
        assert accepted["report_id"] == str(expected_id)
        assert await redis.exists(idempotency_record)
        assert len(await remembered(redis, intake, "hotline-a", body)) == 3  # dup, status, link

        # What the broker holds of this report is one event, whatever the failed attempt left:
        # the same id and the same bytes (the retry sends the event the first attempt held).
        records = await read_since(intake.bootstrap, topics.REPORTS_RECEIVED, {})
        events = [e for e in envelopes(records) if e["report_id"] == accepted["report_id"]]
        assert len(events) >= 1
        assert len({e["event_id"] for e in events}) == 1
        assert len({r.value for r in records if accepted["report_id"].encode() in r.value}) == 1
        replay = await client.post(url, json=body, headers=headers)
        assert replay.json() == accepted
    finally:
        await redis.aclose()
