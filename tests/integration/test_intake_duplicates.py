"""Idempotent replays, the same report again on any channel, and reports linked into one case
by keyed hashes of their identifiers, on the real Kafka and Redis."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from contracts import topics
from ocsea.runtime.crypto import load_or_create_master_key
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.matching import Matcher
from services.intake.domain.reference import Gazetteer, Vocabulary
from testkit.intake import Intake, envelopes, start_intake
from testkit.kafka import end_offsets, read_since
from tests.intake.conftest import BAGHDAD, FIXTURES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def intake(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    running = start_intake(stack_env, tmp_path_factory.mktemp("intake-duplicates"))
    yield running
    running.stop()


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def post(
    client: httpx.AsyncClient, intake: Intake, partner: str, body: Any, **headers: str
) -> httpx.Response:
    return await client.post(
        f"{intake.url}/v1/reports", json=body, headers=intake.headers(partner, **headers)
    )


async def status(
    client: httpx.AsyncClient, intake: Intake, partner: str, report_id: str
) -> dict[str, Any]:
    response = await client.get(
        f"{intake.url}/v1/reports/{report_id}", headers=intake.headers(partner)
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


class Published:
    """Received events of this instance's partners since `mark()`, in both lanes."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.before: dict[str, dict[int, int]] = {}

    async def mark(self) -> None:
        for topic in topics.RECEIVED_BY_LANE.values():
            self.before[topic] = await end_offsets(self.intake.bootstrap, topic)

    async def since(self) -> list[dict[str, Any]]:
        found = []
        for topic in topics.RECEIVED_BY_LANE.values():
            records = await read_since(self.intake.bootstrap, topic, self.before[topic])
            found += self.intake.ours(envelopes(records))
        return found


async def test_an_idempotency_key_replays_the_first_answer(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    published = Published(intake)
    await published.mark()
    key = f"idem-{tag()}"
    body = {"channel": "hotline", "narrative": tag()}
    first = await post(client, intake, "hotline-a", body, **{"Idempotency-Key": key})
    second = await post(client, intake, "hotline-a", body, **{"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert first.json()["duplicate_of"] is None
    # Another partner's identical key is its own.
    other = await post(client, intake, "ngo-b", body, **{"Idempotency-Key": key})
    assert other.status_code == 202
    assert other.json()["report_id"] != first.json()["report_id"]

    reused = await post(
        client, intake, "hotline-a", {**body, "narrative": tag()}, **{"Idempotency-Key": key}
    )
    assert reused.status_code == 422
    assert (reused.json()["code"], reused.json()["field"]) == (
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    events = await published.since()
    assert sorted(e["report_id"] for e in events) == sorted(
        [first.json()["report_id"], other.json()["report_id"]]
    )


async def test_the_same_report_on_every_channel_is_one_report(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    published = Published(intake)
    await published.mark()
    reference, narrative = f"NGO-{tag()}", f"narrative {tag()}"
    body = {
        "source_reference": reference,
        "channel": "ngo",
        "incident": {"governorate": "duhok"},
        "survivors": [{"age": 14}],
        "categories": ["sextortion"],
        "narrative": narrative,
    }
    first = await post(client, intake, "ngo-b", body)
    assert first.status_code == 202
    original = first.json()

    again = await post(client, intake, "ngo-b", body)
    ndjson_row = json.dumps({**body, "survivors": [{"age": "١٤ ساڵ"}]}, ensure_ascii=False)
    as_csv = io.StringIO()
    writer = csv.writer(as_csv)
    writer.writerow(["source_reference", "channel", "governorate", "survivor_age", "categories",
                     "narrative"])  # fmt: skip
    writer.writerow([reference, "NGO", "دهۆک", "۱۴", "Sextortion", narrative])
    batches = [
        (ndjson_row + "\n", "application/x-ndjson"),
        (as_csv.getvalue(), "text/csv"),
    ]
    answers = [again.json()]
    for content, content_type in batches:
        response = await client.post(
            f"{intake.url}/v1/reports/batch",
            content=content.encode(),
            headers=intake.headers("ngo-b", **{"Content-Type": content_type}),
        )
        assert response.status_code == 202, response.text
        [row] = response.json()["rows"]
        assert row["status"] == "duplicate"
        answers.append(row)
    for answer in answers:
        assert answer["duplicate_of"] == original["report_id"]
        assert answer["case_id"] == original["case_id"]
        assert answer["report_id"] != original["report_id"]  # each submission's own receipt

    # One event for four submissions: duplicates add nothing, so nothing is counted twice.
    assert [e["report_id"] for e in await published.since()] == [original["report_id"]]
    receipt = await status(client, intake, "ngo-b", answers[0]["report_id"])
    assert receipt["duplicate_of"] == original["report_id"]
    assert (await status(client, intake, "ngo-b", original["report_id"]))[
        "duplicates_received"
    ] == 3

    # The same content from another partner is that partner's own report.
    theirs = await post(client, intake, "hotline-a", body)
    assert theirs.json()["duplicate_of"] is None


async def test_the_same_cybertipline_document_twice_is_one_report(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    published = Published(intake)
    await published.mark()
    template = (FIXTURES / "cybertipline_full.xml").read_text(encoding="utf-8")
    document = template.replace("MK-CT-REPORT-0001", f"CT-{tag()}").encode()
    headers = intake.headers("tipline-c", **{"Content-Type": "application/xml"})
    url = f"{intake.url}/v1/reports/cybertipline"
    first = (await client.post(url, content=document, headers=headers)).json()
    second = (await client.post(url, content=document, headers=headers)).json()
    assert second["duplicate_of"] == first["report_id"]
    assert [e["report_id"] for e in await published.since()] == [first["report_id"]]


async def test_reports_about_the_same_survivor_or_account_share_a_case(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    published = Published(intake)
    await published.mark()
    local = f"750{uuid.uuid4().int % 10**7:07d}"
    handle = f"Acct_{tag()}"
    md5 = uuid.uuid4().hex
    first = await post(
        client,
        intake,
        "hotline-a",
        {
            "channel": "hotline",
            "survivors": [{"age": 15, "contact": {"phone": f"0{local[:3]} {local[3:]}"}}],
            "reported_persons": [
                {"online_identifiers": [{"platform": "Instagram", "handle": f"@{handle}"}]}
            ],
            "narrative": tag(),
        },
    )
    case_id, first_id = first.json()["case_id"], first.json()["report_id"]

    # The same survivor, her number written another way, in another report.
    same_survivor = await post(
        client,
        intake,
        "hotline-a",
        {
            "channel": "hotline",
            "survivors": [{"contact": {"phone": f"+964 {local}"}}],
            "narrative": tag(),
        },
    )
    # The same account, given by its profile URL, from another partner.
    same_account = await post(
        client,
        intake,
        "ngo-b",
        {
            "channel": "ngo",
            "reported_persons": [
                {"online_identifiers": [
                    {"platform": "IG", "url": f"https://www.instagram.com/{handle.lower()}/"}]}
            ],
        },
    )  # fmt: skip
    # A file already described in a report of this case.
    with_file = await post(
        client,
        intake,
        "hotline-a",
        {
            "channel": "hotline",
            "survivors": [{"contact": {"phone": f"0{local}"}}],
            "files": [{"hashes": [{"type": "md5", "value": md5}]}],
            "narrative": tag(),
        },
    )
    same_file = await post(
        client,
        intake,
        "tipline-c",
        {"channel": "tipline", "files": [{"hashes": [{"type": "MD5", "value": md5.upper()}]}]},
    )
    unrelated = await post(client, intake, "hotline-a", {"channel": "hotline", "narrative": tag()})
    for response in (same_survivor, same_account, with_file, same_file):
        assert response.status_code == 202, response.text
        assert response.json()["duplicate_of"] is None
    # Each partner holds its own reference for the case: the opener's own reports show the
    # case id, the other partners' references differ from it and from each other.
    assert same_survivor.json()["case_id"] == with_file.json()["case_id"] == case_id
    references = {case_id, same_account.json()["case_id"], same_file.json()["case_id"]}
    assert len(references) == 3
    assert unrelated.json()["case_id"] not in references

    received = await published.since()
    # Inside the mechanism the reports are one case.
    by_report = {e["report_id"]: e for e in received}
    for response in (first, same_survivor, same_account, with_file, same_file):
        assert by_report[response.json()["report_id"]]["case_id"] == case_id
    events = {e["report_id"]: e["data"] for e in received}
    assert events[first_id]["linked_report_ids"] == []
    survivor_event = events[same_survivor.json()["report_id"]]
    assert survivor_event["linked_report_ids"] == [first_id]
    assert survivor_event["link_reasons"] == ["same_survivor"]
    assert events[same_account.json()["report_id"]]["link_reasons"] == ["same_reported_account"]
    assert events[same_file.json()["report_id"]]["link_reasons"] == ["same_file"]
    assert len(events[same_file.json()["report_id"]]["linked_report_ids"]) == 4

    # Partners see their own links, never that another partner reported the same person.
    own = await status(client, intake, "hotline-a", same_survivor.json()["report_id"])
    assert own["linked_to_existing_case"] is True
    assert own["linked_report_ids"] == [first_id]
    assert own["case_id"] == case_id
    other = await status(client, intake, "ngo-b", same_account.json()["report_id"])
    assert other["linked_to_existing_case"] is False
    assert other["linked_report_ids"] == []
    assert other["case_id"] == same_account.json()["case_id"]

    # The index holds keyed hashes, never the identifiers themselves.
    redis = Redis.from_url(intake.env["OCSEA_REDIS_URL"])
    try:
        secret = load_or_create_master_key(intake.var_dir / "matching.key")
        refs = Normalisers(Gazetteer.load(), Vocabulary.load(), BAGHDAD, max_base64_run=1024)
        matcher = Matcher(secret, refs.vocabulary)
        report = canonical_report(
            {"channel": "ngo", "survivors": [{"contact": {"phone": f"0{local}"}}]}, refs
        )
        [key] = matcher.keys("any", report)
        assert await redis.get(f"ocsea:intake:link:{key.digest}") == case_id.encode()
        for clear in (local, handle.lower(), md5):
            assert [k async for k in redis.scan_iter(match=f"*{clear}*", count=1000)] == []
    finally:
        await redis.aclose()


async def test_rows_of_one_batch_link_and_deduplicate_among_themselves(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    email = f"{tag()}@example.org"
    rows = [
        {"channel": "ngo", "survivors": [{"contact": {"email": email}}], "narrative": "one"},
        {"channel": "ngo", "survivors": [{"contact": {"email": email.upper()}}], "narrative": "2"},
        {"channel": "ngo", "survivors": [{"contact": {"email": email}}], "narrative": "one"},
    ]
    response = await client.post(
        f"{intake.url}/v1/reports/batch",
        content="\n".join(json.dumps(r) for r in rows).encode(),
        headers=intake.headers("ngo-b", **{"Content-Type": "application/x-ndjson"}),
    )
    assert response.status_code == 202, response.text
    first, second, third = response.json()["rows"]
    assert (first["status"], second["status"], third["status"]) == (
        "accepted",
        "accepted",
        "duplicate",
    )
    assert first["case_id"] == second["case_id"] == third["case_id"]
    assert third["duplicate_of"] == first["report_id"]
    second_status = await status(client, intake, "ngo-b", second["report_id"])
    assert second_status["linked_report_ids"] == [first["report_id"]]


async def test_simultaneous_requests_with_one_key_are_taken_once(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    """The key is reserved before any work is done: of requests racing with one key, one is
    taken; the others are told it is in progress (or, once it is answered, get its answer),
    and a different body with the key is refused. Exactly one event reaches the broker."""
    published = Published(intake)
    await published.mark()
    key = f"race-{tag()}"
    body = {"channel": "hotline", "narrative": f"race {tag()}"}
    others = [{"channel": "hotline", "narrative": f"other {tag()}"} for _ in range(3)]
    answers = await asyncio.gather(
        *(post(client, intake, "hotline-a", body, **{"Idempotency-Key": key}) for _ in range(6)),
        *(post(client, intake, "hotline-a", b, **{"Idempotency-Key": key}) for b in others),
    )
    same, different = answers[:6], answers[6:]
    taken = [a for a in same if a.status_code == 202]
    assert taken, [a.text for a in same]
    assert all(a.json() == taken[0].json() for a in taken)
    for answer in same:
        if answer.status_code != 202:
            assert answer.status_code == 409, answer.text
            assert answer.json()["code"] == "request_in_progress"
            assert answer.headers["Retry-After"] == "1"
    assert [a.status_code for a in different] == [422] * 3
    assert {a.json()["code"] for a in different} == {"idempotency_key_reused"}

    report_id = taken[0].json()["report_id"]
    assert [e["report_id"] for e in await published.since()] == [report_id]
    # Once answered, the key replays the answer.
    again = await post(client, intake, "hotline-a", body, **{"Idempotency-Key": key})
    assert (again.status_code, again.json()) == (202, taken[0].json())


async def test_a_refused_request_leaves_its_key_free(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    key = f"refused-{tag()}"
    refused = await post(
        client, intake, "hotline-a", {"channel": "hotline", "colour": "red"},
        **{"Idempotency-Key": key},
    )  # fmt: skip
    assert refused.status_code == 422
    corrected = await post(
        client, intake, "hotline-a", {"channel": "hotline", "narrative": tag()},
        **{"Idempotency-Key": key},
    )  # fmt: skip
    assert corrected.status_code == 202, corrected.text
