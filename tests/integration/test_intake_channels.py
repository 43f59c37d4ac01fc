"""Every intake channel on the real Kafka and Redis: what partners send, what is published.

A dedicated intake instance (its own principals file, as a deployment configures it) keeps
these tests independent of the other services.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import topics
from testkit.intake import Intake, envelopes, open_personal, start_intake
from testkit.kafka import end_offsets, read_since
from tests.intake.conftest import FIXTURES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def intake(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    running = start_intake(stack_env, tmp_path_factory.mktemp("intake-channels"))
    yield running
    running.stop()


@pytest.fixture
async def published(intake: Intake) -> Any:
    """Call it after a request: the received events published since the test began, in
    both lanes, each with the lane it travelled in (`_lane`)."""
    before = {
        lane: await end_offsets(intake.bootstrap, topic)
        for lane, topic in topics.RECEIVED_BY_LANE.items()
    }

    async def since() -> list[dict[str, Any]]:
        found = []
        for lane, topic in topics.RECEIVED_BY_LANE.items():
            records = await read_since(intake.bootstrap, topic, before[lane])
            found += [{**e, "_lane": lane} for e in intake.ours(envelopes(records))]
        return found

    return since


def unique() -> str:
    return uuid.uuid4().hex[:12]


async def test_canonical_json_is_normalised_and_sealed(
    intake: Intake, client: httpx.AsyncClient, published: Any
) -> None:
    reference = f"HL-{unique()}"
    body = {
        "source_reference": reference,
        "channel": "hotline",
        "language": "Sorani",
        "incident": {
            "occurred_at": "٢٠٢٦-١١-٢٠ ٢١:٣٠",
            "governorate": "هەولێر",
            "district": "Soran",
            "platform": "Insta",
        },
        "survivors": [
            {"age": "١٥ ساڵ", "name": "Zhyan", "contact": {"phone": "0750 123 4567"}},
            {"date_of_birth": "١٢/٥/٢٠١٢"},
        ],
        "reported_persons": [
            {"relationship": "Uncle", "online_identifiers": [{"platform": "IG", "handle": "@x"}]}
        ],
        "categories": ["Sextortion"],
        "risk_flags": ["sextortion_deadline"],
        "narrative": f"narrative {unique()}",
    }
    response = await client.post(
        f"{intake.url}/v1/reports", json=body, headers=intake.headers("hotline-a")
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["duplicate_of"] is None

    [event] = await published()
    assert event["event_type"] == "report.received"
    assert event["_lane"] == topics.Lane.LIVE  # a single report is live
    # The report opened its case: the partner's reference is the case id itself.
    assert (event["report_id"], event["case_id"]) == (accepted["report_id"], accepted["case_id"])
    data = event["data"]
    assert data["partner_id"] == intake.partner_id("hotline-a")
    assert data["source_format"] == "partner_json"
    assert data["language"] == "ckb"
    assert data["incident"] == {
        "occurred_at": "2026-11-20T18:30:00Z",
        "governorate": "erbil",
        "district": "erbil.soran",
        "platform": "instagram",
    }
    assert data["survivors"][0]["stated_age"] == 15
    assert data["survivors"][1]["age_at_incident"] == 14
    assert data["reported_person_relationships"] == ["family"]
    assert "Zhyan" not in json.dumps(event)
    personal = await open_personal(intake, event)
    assert personal["survivors"][0]["name"] == "Zhyan"
    assert personal["survivors"][0]["contact"]["phone"] == "+9647501234567"
    assert personal["narrative"] == body["narrative"]


async def test_a_cybertipline_document_is_published_whole(
    intake: Intake, client: httpx.AsyncClient, published: Any
) -> None:
    document = (FIXTURES / "cybertipline_full.xml").read_text(encoding="utf-8")
    document = document.replace("MK-CT-REPORT-0001", f"CT-{unique()}")
    response = await client.post(
        f"{intake.url}/v1/reports/cybertipline",
        content=document.encode(),
        headers=intake.headers("tipline-c", **{"Content-Type": "application/xml"}),
    )
    assert response.status_code == 202, response.text
    [event] = await published()
    assert event["_lane"] == topics.Lane.LIVE
    data = event["data"]
    assert data["source_format"] == "cybertipline_xml"
    assert data["channel"] == "tipline"
    assert data["source_incident_types"] == ["Online Enticement of Children for Sexual Acts"]
    assert data["source_annotations"] == [
        "sextortion",
        "minorToMinorInteraction",
        "sadisticOnlineExploitation",
    ]
    assert data["source_escalation"] is True
    assert data["content_depicts_minor"] is True
    assert data["file_count"] == 2
    assert data["source_file_annotations"] == ["viral", "generativeAi"]
    assert [s["stated_age"] for s in data["survivors"]] == [14, None]
    assert data["survivors"][1]["age_at_incident"] == 14  # born 2011-03-02, abused 2026-03-01
    assert data["incident"]["governorate"] == "erbil"
    # Every marker the fixture carries (e.g. "MK-chat-content") must stay out of the event; a
    # bare "MK-" could appear by chance inside the base64 of the sealed personal data.
    markers = set(re.findall(r"MK-[A-Za-z0-9.@-]{4,}", document))
    assert len(markers) > 40
    published_text = json.dumps(data)
    assert [m for m in markers if m in published_text] == []
    personal = await open_personal(intake, event)
    assert {r["path"] for r in personal["source"]["raw"]} == {
        "/report/@vendorVersion",
        "/report/vendorExtension",
    }
    assert personal["files"][0]["hashes"][0]["value"] == "0cc175b9c0f1b6a831c399e269772661"


async def test_a_csv_batch_answers_every_row(
    intake: Intake, client: httpx.AsyncClient, published: Any
) -> None:
    tag = unique()
    csv_text = (
        "source_reference,channel,governorate,survivor_age,narrative,categories\n"
        f"NGO-{tag}-1,ngo,دهۆک,١٤,first {tag},sextortion\n"
        f"NGO-{tag}-2,ngo,Atlantis,15,second {tag},grooming\n"
        f'NGO-{tag}-3,ngo,Zaxo,fifteen,"third\nover two lines",\n'
        f"NGO-{tag}-4,ngo,Slemani,۱۶ ساڵ,fourth {tag},cyberbullying;harassment\n"
    )
    response = await client.post(
        f"{intake.url}/v1/reports/batch",
        content=csv_text.encode(),
        headers=intake.headers("ngo-b", **{"Content-Type": "text/csv; charset=utf-8"}),
    )
    assert response.status_code == 202, response.text
    result = response.json()
    assert (result["accepted"], result["duplicates"], result["refused"]) == (2, 0, 2)
    rows = {row["line"]: row for row in result["rows"]}
    assert [rows[line]["status"] for line in (2, 3, 4, 6)] == [
        "accepted",
        "refused",
        "refused",
        "accepted",
    ]
    assert (rows[3]["code"], rows[3]["field"]) == ("invalid_request", "governorate")
    assert (rows[4]["code"], rows[4]["field"]) == ("invalid_request", "survivor_age")
    events = await published()
    assert sorted(e["report_id"] for e in events) == sorted(
        rows[line]["report_id"] for line in (2, 6)
    )
    assert {e["data"]["source_format"] for e in events} == {"batch"}
    assert {e["data"]["incident"]["governorate"] for e in events} == {"duhok", "sulaymaniyah"}
    # An upload is bulk: it never shares a queue with live single reports.
    assert {e["_lane"] for e in events} == {topics.Lane.BULK}


async def test_csv_rows_without_a_channel_come_through_the_partners_own(
    intake: Intake, client: httpx.AsyncClient, published: Any
) -> None:
    response = await client.post(
        f"{intake.url}/v1/reports/batch",
        content=f"survivor_age,narrative\n13,{unique()}\n".encode(),
        headers=intake.headers("tipline-c", **{"Content-Type": "text/csv"}),
    )
    assert response.status_code == 202, response.text
    [event] = await published()
    assert event["data"]["channel"] == "tipline"


async def test_an_ndjson_batch_with_no_good_row_is_refused_whole(
    intake: Intake, client: httpx.AsyncClient, published: Any
) -> None:
    ndjson = '{"channel": "ngo", "survivors": [{"age": "old"}]}\n{broken\n'
    response = await client.post(
        f"{intake.url}/v1/reports/batch",
        content=ndjson.encode(),
        headers=intake.headers("ngo-b", **{"Content-Type": "application/x-ndjson"}),
    )
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "no_valid_rows"
    assert [(e["field"], e["code"]) for e in error["errors"]] == [
        ("survivors.0.age", "invalid_request"),
        ("body", "invalid_json"),
    ]
    assert error["errors"][1]["message"].startswith("line 2:")
    assert await published() == []


async def test_partners_authenticate_and_see_only_their_own_reports(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    body = {"channel": "hotline", "narrative": unique()}
    anonymous = await client.post(f"{intake.url}/v1/reports", json=body)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
    wrong_token = await client.post(
        f"{intake.url}/v1/reports", json=body, headers={"Authorization": "Bearer nope"}
    )
    assert wrong_token.status_code == 401
    officer = await client.post(
        f"{intake.url}/v1/reports", json=body, headers=intake.headers("officer-x")
    )
    assert (officer.status_code, officer.json()["code"]) == (403, "forbidden")

    accepted = await client.post(
        f"{intake.url}/v1/reports", json=body, headers=intake.headers("hotline-a")
    )
    report_id = accepted.json()["report_id"]
    own = await client.get(
        f"{intake.url}/v1/reports/{report_id}", headers=intake.headers("hotline-a")
    )
    assert own.status_code == 200
    assert own.json()["status"] == "received"
    for other in ("ngo-b", "tipline-c"):
        theirs = await client.get(
            f"{intake.url}/v1/reports/{report_id}", headers=intake.headers(other)
        )
        assert (theirs.status_code, theirs.json()["code"]) == (404, "report_not_found")
    never = await client.get(
        f"{intake.url}/v1/reports/{uuid.uuid4()}", headers=intake.headers("hotline-a")
    )
    assert never.status_code == 404


async def test_the_rate_limit_answers_429_with_retry_after(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    # throttled-d: 60 per minute with a burst of 3 (its principal entry says so). Sent
    # together, so that a slow machine does not let a second pass (and a token come back).
    responses = await asyncio.gather(
        *(
            client.post(
                f"{intake.url}/v1/reports",
                json={"channel": "hotline", "narrative": unique()},
                headers=intake.headers("throttled-d"),
            )
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in responses) == [202, 202, 202, 429, 429]
    response = next(r for r in responses if r.status_code == 429)
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 2
    # Other partners are not held back by one partner's limit.
    other = await client.post(
        f"{intake.url}/v1/reports",
        json={"channel": "hotline", "narrative": unique()},
        headers=intake.headers("hotline-a"),
    )
    assert other.status_code == 202


async def test_openapi_documents_every_channel(intake: Intake, client: httpx.AsyncClient) -> None:
    spec = (await client.get(f"{intake.url}/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths) >= {
        "/v1/reports",
        "/v1/reports/cybertipline",
        "/v1/reports/batch",
        "/v1/reports/{report_id}",
    }
    json_body = paths["/v1/reports"]["post"]["requestBody"]["content"]["application/json"]
    assert json_body["schema"] == {"$ref": "#/components/schemas/PartnerReport"}
    assert "PartnerReport" in spec["components"]["schemas"]
    assert "Survivor" in spec["components"]["schemas"]
    assert set(paths["/v1/reports/batch"]["post"]["requestBody"]["content"]) == {
        "application/x-ndjson",
        "text/csv",
    }
    assert "413" in paths["/v1/reports"]["post"]["responses"]


def test_the_fixture_document_is_where_the_tests_expect_it() -> None:
    assert Path(FIXTURES / "cybertipline_full.xml").is_file()
