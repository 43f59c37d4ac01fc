"""Intake's use cases on in-memory ports: idempotency, the order of hold, publish and
remember, and retries that send the very bytes of the first attempt (issue #11: a publish
that timed out still landed, and a retry made the event afresh, which the audit ledger
recorded as a conflict: one event id, two versions)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from contracts import topics
from contracts.events import Envelope
from contracts.reports import BatchResult, PartnerKind, ReportAccepted
from ocsea.runtime.errors import ApiError
from services.intake.domain.canonical import Normalisers
from services.intake.domain.matching import Matcher
from services.intake.domain.refusals import Refusal
from services.intake.handlers.submissions import Answer, Intake, Submission
from services.intake.ports import StoreUnavailable
from tests.intake.fakes import SECRET, Killed, World, partner

M = TypeVar("M", bound=BaseModel)

REPORT = {
    "channel": "hotline",
    "language": "ckb",
    "incident": {"occurred_at": "2026-11-20T21:30:00+03:00", "governorate": "erbil"},
    "survivors": [{"age": 15, "name": "Shilan", "contact": {"phone": "0750 123 4567"}}],
    "categories": ["sextortion"],
    "narrative": "he threatens to publish the photos tonight",
}


def body(report: dict[str, Any] = REPORT) -> bytes:
    return json.dumps(report).encode()


def submission(key: str | None = "key-1", report: dict[str, Any] = REPORT) -> Submission:
    return Submission(partner(), body(report), key)


def model(answer: Answer, kind: type[M]) -> M:
    """The answer as the partner reads it (a replay is the stored JSON)."""
    assert answer.status == 202
    body = answer.body
    return kind.model_validate(body if isinstance(body, dict) else body.model_dump(mode="json"))


def accepted(answer: Answer) -> ReportAccepted:
    return model(answer, ReportAccepted)


@pytest.fixture
def world(refs: Normalisers) -> World:
    return World(refs)


@pytest.mark.parametrize("key", ["key-1", None])
async def test_a_retry_after_a_publish_timeout_sends_the_first_attempts_bytes(
    world: World, key: str | None
) -> None:
    # The broker takes the event but its acknowledgement never comes in time.
    world.publisher.failures[0] = TimeoutError()
    intake = world.intake()
    with pytest.raises(ApiError) as caught:
        await intake.submit_json(submission(key))
    assert (caught.value.status, caught.value.code) == (503, "broker_unavailable")
    assert caught.value.headers == {"Retry-After": "5"}
    assert world.store.answers == {}  # nothing remembered
    assert world.store.duplicates == {}
    assert world.store.reservations == {}  # the key is free for the retry

    world.clock.advance(90)  # the partner retries later: a new event would say so
    answer = await intake.submit_json(submission(key))

    first, retry = world.publisher.bodies()
    assert retry == first
    event = Envelope.model_validate_json(retry)
    assert str(event.report_id) == accepted(answer).report_id
    assert world.sealer.sealed == 1  # sealed once: the retry did not make the event afresh
    # Remembered now: the duplicate record answers from here, the held event goes.
    assert world.store.let_go == {event.report_id}


async def test_after_a_crash_between_publish_and_remember_a_retry_sends_the_same_bytes(
    world: World,
) -> None:
    world.store.fail_record = Killed()
    with pytest.raises(Killed):
        await world.intake().submit_json(submission())
    assert len(world.publisher.sent) == 1  # in Kafka, never remembered
    world.store.fail_record = None
    world.store.expire_reservations()  # the dead process's reservation runs out
    world.clock.advance(600)

    restarted = world.intake()  # a new process: nothing of the first attempt in memory
    answer = await restarted.submit_json(submission())

    first, retry = world.publisher.bodies()
    assert retry == first
    assert accepted(answer).report_id == str(Envelope.model_validate_json(first).report_id)
    key = Matcher(SECRET, world.refs.vocabulary).idempotency_key("hotline-a", "key-1")
    assert world.store.answers[("hotline-a", key)].status == 202


async def test_the_same_key_with_another_body_is_refused_and_publishes_nothing(
    world: World,
) -> None:
    intake = world.intake()
    first = await intake.submit_json(submission("key-1"))
    other = {**REPORT, "narrative": "another report"}
    with pytest.raises(Refusal) as caught:
        await intake.submit_json(submission("key-1", other))
    refusal = caught.value
    assert (refusal.status, refusal.code, refusal.field) == (
        422,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    # The same request again is the first answer, replayed: nothing new published.
    replay = await intake.submit_json(submission("key-1"))
    assert len(world.publisher.sent) == 1
    assert replay.body == accepted(first).model_dump(mode="json")


async def test_the_answer_comes_only_after_the_broker_acknowledged(world: World) -> None:
    world.publisher.gate = asyncio.Event()
    task = asyncio.create_task(world.intake().submit_json(submission()))
    await asyncio.wait_for(world.publisher.reached.wait(), timeout=5)
    assert not task.done()
    assert world.store.answers == {}
    assert world.store.statuses == {}
    assert len(world.store.held) == 1  # kept before it was published

    world.publisher.gate.set()
    answer = await asyncio.wait_for(task, timeout=5)
    assert answer.status == 202
    assert world.journal == ["hold", "publish", "acknowledged", "record"]
    assert world.figures.reports == [("partner_json", "hotline", "live", "accepted")]


async def test_an_event_that_cannot_be_held_is_never_published(world: World) -> None:
    world.store.fail_hold = ConnectionError("redis down")
    with pytest.raises(ConnectionError):
        await world.intake().submit_json(submission())
    assert world.publisher.sent == []
    assert world.store.reservations == {}


async def test_a_rate_limit_refuses_without_publishing(world: World) -> None:
    world.store.wait_s = 7
    with pytest.raises(Refusal) as caught:
        await world.intake().submit_json(submission())
    assert (caught.value.status, caught.value.code) == (429, "rate_limited")
    assert caught.value.headers == {"Retry-After": "7"}
    assert world.publisher.sent == []
    assert world.store.held == {}
    assert world.sealer.sealed == 0
    assert world.store.reservations == {}  # a refused request reserves nothing


async def test_an_index_outage_after_publishing_still_answers_202(world: World) -> None:
    """The report is in Kafka: failing the request would only invite a retry of it."""
    world.store.fail_record = StoreUnavailable()
    answer = await world.intake().submit_json(submission())
    assert answer.status == 202
    assert len(world.store.held) == 1  # a resubmission sends the same event again
    world.store.fail_record = None
    world.store.expire_reservations()
    await world.intake().submit_json(submission("key-2"))
    first, again = world.publisher.bodies()
    assert again == first


async def test_reports_racing_on_one_event_publish_one_version_of_it(world: World) -> None:
    """Two requests with the same report (no key, or different keys) both find no held
    event; the second to hold takes the first one's event and publishes it."""
    world.sealer.gate = asyncio.Event()
    world.sealer.park(2)
    intake = world.intake()
    racers = [
        asyncio.create_task(intake.submit_json(submission(key))) for key in ("key-a", "key-b")
    ]
    await asyncio.wait_for(world.sealer.parked.wait(), timeout=5)  # both made their events
    world.sealer.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(*racers), timeout=5)
    assert world.sealer.sealed == 2
    first, second = world.publisher.bodies()
    assert second == first
    assert accepted(answers[0]) == accepted(answers[1])


async def test_a_batch_retry_sends_the_missed_rows_bytes_and_not_the_taken_ones(
    world: World,
) -> None:
    rows = [{"channel": "ngo", "narrative": f"row {n}"} for n in range(3)]
    upload = b"\n".join(json.dumps(r).encode() for r in rows)
    ngo = partner("ngo-b", PartnerKind.NGO)
    world.publisher.failures[1] = TimeoutError()
    intake = world.intake()
    with pytest.raises(ApiError) as caught:
        await intake.submit_batch(Submission(ngo, upload, "batch-1"), "ndjson", None)
    assert caught.value.status == 503
    [missed] = caught.value.errors
    failed_body = world.publisher.sent[1][1]
    missed_report = str(Envelope.model_validate_json(failed_body).report_id)

    world.clock.advance(30)
    answer = await intake.submit_batch(Submission(ngo, upload, "batch-1"), "ndjson", None)
    result = model(answer, BatchResult)
    assert (result.accepted, result.duplicates) == (1, 2)  # the rows taken before recognised
    [republished] = world.publisher.sent[3:]
    assert republished == (topics.REPORTS_RECEIVED_BULK, failed_body)
    row = next(r for r in result.rows if str(r.line) == missed["line"])
    assert row.report_id == missed_report


async def test_a_partner_sees_only_its_own_reports(world: World) -> None:
    intake: Intake = world.intake()
    answer = accepted(await intake.submit_json(submission()))
    report_id = uuid.UUID(answer.report_id)
    own = await intake.report_status(partner(), report_id)
    assert (own.status.value, str(own.case_id)) == ("received", answer.case_id)
    with pytest.raises(Refusal) as caught:
        await intake.report_status(partner("ngo-b", PartnerKind.NGO), report_id)
    assert (caught.value.status, caught.value.code) == (404, "report_not_found")
