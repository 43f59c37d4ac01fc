"""Personal values seeded in reports on every channel appear in no log line (at DEBUG), no
span attribute, and no Kafka message or header in the clear; the sealed part holds them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring
from redis.asyncio import Redis

from contracts import topics
from contracts.events import ErasureReason
from ocsea.runtime.crypto import CaseKeyNotFoundError, CaseKeys
from ocsea.runtime.keystore import KeyStore
from testkit.intake import Intake, envelopes, json_lines, open_personal, start_intake
from testkit.kafka import end_offsets, read_since
from testkit.waiting import wait_for
from tests.intake.conftest import FIXTURES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def intake(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    running = start_intake(stack_env, tmp_path_factory.mktemp("intake-privacy"))
    yield running
    running.stop()


def fixture_markers(document: str) -> list[str]:
    """The personal values of the CyberTipline fixture: every text or attribute with "MK"."""
    values = []
    for node in fromstring(document.encode()).iter():
        values += [v for v in [node.text or "", *node.attrib.values()] if "MK" in v]
    assert len(values) > 50
    return [v.strip() for v in values]


async def test_seeded_personal_values_never_appear_in_the_clear(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    seed = uuid.uuid4().hex[:8]
    marks = {name: f"PD{seed}{name}" for name in (
        "name", "email", "school", "city", "handle", "display", "url", "ip", "hash", "file",
        "narrative", "reported", "relationship", "address", "info", "reason", "raw", "indicator",
        "rowname", "rownarrative", "rowhandle", "refused",
    )}  # fmt: skip
    local = f"750{int(seed, 16) % 10**7:07d}"
    phone_forms = [f"0{local}", f"+964{local}"]
    body: dict[str, Any] = {
        "channel": "hotline",
        "incident": {"location_description": marks["address"]},
        "survivors": [
            {
                "name": marks["name"],
                "age": 14,
                "contact": {
                    "phone": f"0{local[:3]} {local[3:]}",
                    "email": f"{marks['email']}@x.org",
                },
                "school_name": marks["school"],
                "location": {"city": marks["city"]},
                "online_identifiers": [
                    {
                        "platform": "tiktok",
                        "handle": marks["handle"],
                        "display_name": marks["display"],
                    }
                ],
            }
        ],
        "reported_persons": [
            {
                "name": marks["reported"],
                "relationship": marks["relationship"],
                "online_identifiers": [{"platform": "x", "url": f"https://x.com/{marks['url']}"}],
                "ip_captures": [{"ip": marks["ip"]}],
                "additional_info": marks["info"],
            }
        ],
        "narrative": marks["narrative"],
        "files": [
            {"hashes": [{"type": "photodna", "value": marks["hash"]}], "file_name": marks["file"]}
        ],
        "source": {
            "escalation_reason": marks["reason"],
            "raw": [{"path": "/x", "content": marks["raw"]}],
        },
    }  # fmt: skip
    lanes = topics.RECEIVED_BY_LANE.values()
    before = {topic: await end_offsets(intake.bootstrap, topic) for topic in lanes}

    as_json = await client.post(
        f"{intake.url}/v1/reports", json=body, headers=intake.headers("hotline-a")
    )
    assert as_json.status_code == 202, as_json.text
    document = (FIXTURES / "cybertipline_full.xml").read_text(encoding="utf-8")
    document = document.replace("MK-CT-REPORT-0001", f"CT-{seed}")  # the reference is clear
    as_xml = await client.post(
        f"{intake.url}/v1/reports/cybertipline",
        content=document.encode(),
        headers=intake.headers("tipline-c", **{"Content-Type": "application/xml"}),
    )
    assert as_xml.status_code == 202, as_xml.text
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["channel", "survivor_name", "survivor_indicators", "reported_platform",
                     "reported_handle", "narrative", "survivor_age"])  # fmt: skip
    writer.writerow(["ngo", marks["rowname"], "grade 7", "instagram", marks["rowhandle"],
                     marks["rownarrative"], "13"])  # fmt: skip
    writer.writerow(["ngo", marks["refused"], "", "", "", marks["refused"], "not an age"])
    as_csv = await client.post(
        f"{intake.url}/v1/reports/batch",
        content=rows.getvalue().encode(),
        headers=intake.headers("ngo-b", **{"Content-Type": "text/csv"}),
    )
    assert as_csv.status_code == 202, as_csv.text
    refused = await client.post(
        f"{intake.url}/v1/reports",
        json={"channel": "hotline", "survivors": [{"name": marks["refused"] * 30}]},
        headers=intake.headers("hotline-a"),
    )
    assert refused.status_code == 422
    report_ids = [as_json.json()["report_id"], as_xml.json()["report_id"]]
    report_ids += [r["report_id"] for r in as_csv.json()["rows"] if r["report_id"]]
    assert len(report_ids) == 3

    # Kafka: ciphertext only, in values and headers.
    records = [
        r for topic in lanes for r in await read_since(intake.bootstrap, topic, before[topic])
        if any(i.encode() in r.value for i in report_ids)
    ]  # fmt: skip
    assert len(records) == 3
    clear_forms = [*marks.values(), *phone_forms, *fixture_markers(document)]
    for record in records:
        wire = record.value + b"".join(k.encode() + v for k, v in record.headers)
        leaked = [m for m in clear_forms if m.encode() in wire or m.lower().encode() in wire]
        assert leaked == [], f"in the clear on Kafka: {leaked}"
    # ...and the sealed part holds what was sent.
    by_id = {e["report_id"]: e for e in envelopes(records)}
    sealed = json.dumps(await open_personal(intake, by_id[report_ids[0]]))
    assert marks["narrative"] in sealed
    assert f"+964{local}" in sealed

    # Logs (DEBUG) and spans mention the reports by id, never by content.
    async def spans_written() -> bool:
        text = intake.spans_file.read_text(encoding="utf-8") if intake.spans_file.exists() else ""
        return all(case in text for case in (as_json.json()["case_id"], as_xml.json()["case_id"]))

    await wait_for(spans_written, what="the publish spans of the reports")
    log_text = intake.log_file.read_text(encoding="utf-8")
    assert all(i in log_text for i in report_ids)
    spans = json_lines(intake.spans_file)
    span_text = json.dumps([(s["name"], s["attributes"], s["events"]) for s in spans])
    for where, text in (("log", log_text), ("spans", span_text)):
        leaked = [m for m in clear_forms if m in text or m.lower() in text]
        assert leaked == [], f"personal data in the {where}: {leaked}"


async def test_reports_racing_on_a_new_case_seal_under_one_key(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    """The key store's insert-if-absent lets the first key win a race, and everything sealed
    by the racers opens with it; an erased case opens no more."""
    redis = Redis.from_url(stack_env["OCSEA_REDIS_URL"])
    store = KeyStore(f"sqlite+aiosqlite:///{tmp_path / 'case-keys.db'}")
    try:
        keys = CaseKeys(redis, os.urandom(32), store)
        case_id = uuid.uuid4()
        texts = [f"text {i}".encode() for i in range(20)]
        blobs = await asyncio.gather(*(keys.seal(case_id, t) for t in texts))
        assert [await keys.open(case_id, b) for b in blobs] == texts
        await keys.erase(case_id, ErasureReason.OTHER, "test")
        with pytest.raises(CaseKeyNotFoundError):
            await keys.open(case_id, blobs[0])
    finally:
        await redis.aclose()
        await store.close()
