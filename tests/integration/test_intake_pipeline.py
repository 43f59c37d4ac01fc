"""Intake within the whole system (`ocsea run`): a partner follows its reports from received to
routed, and a CyberTipline report's personal values stay sealed through every service."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from defusedxml.ElementTree import fromstring

from testkit.system import RunningSystem
from testkit.waiting import wait_for
from tests.intake.conftest import FIXTURES

# The session's system starts (a process per service) and catches up with the shared topics'
# history inside the first test's time.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def follow(
    client: httpx.AsyncClient, system: RunningSystem, partner: str, report_id: str
) -> dict[str, Any]:
    url = f"{system.urls['intake']}/v1/reports/{report_id}"

    async def routed() -> dict[str, Any] | None:
        response = await client.get(url, headers=system.headers(partner))
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        return status if status["status"] == "routed" else None

    return await wait_for(routed, within=60, what=f"report {report_id} to be routed")


async def test_a_partner_follows_its_report_to_routed(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        f"{system.urls['intake']}/v1/reports",
        json={
            "source_reference": f"HL-{uuid.uuid4().hex[:8]}",
            "channel": "hotline",
            "language": "ckb",
            "incident": {"governorate": "هەولێر"},
            "survivors": [{"age": "١٤ ساڵ"}],
            "categories": ["sextortion"],
            "risk_flags": ["self_harm"],
        },
        headers=system.headers("partner-hotline"),
    )
    assert response.status_code == 202, response.text
    status = await follow(client, system, "partner-hotline", response.json()["report_id"])
    assert status["classification"] == "TF-CSEA"
    assert status["priority"] == "P1"
    assert status["triaged_at"] is not None
    assert status["routed_at"] is not None
    other = await client.get(
        f"{system.urls['intake']}/v1/reports/{response.json()['report_id']}",
        headers=system.headers("partner-ngo"),
    )
    assert other.status_code == 404


async def test_a_cybertipline_report_is_routed_and_its_personal_data_stays_sealed(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    document = (FIXTURES / "cybertipline_full.xml").read_text(encoding="utf-8")
    document = document.replace("MK-CT-REPORT-0001", f"CT-{uuid.uuid4().hex[:8]}")
    response = await client.post(
        f"{system.urls['intake']}/v1/reports/cybertipline",
        content=document.encode(),
        headers={**system.headers("partner-tipline"), "Content-Type": "application/xml"},
    )
    assert response.status_code == 202, response.text
    status = await follow(client, system, "partner-tipline", response.json()["report_id"])
    assert status["classification"] == "TF-CSEA"

    markers = [
        value.strip()
        for node in fromstring(document.encode()).iter()
        for value in [node.text or "", *node.attrib.values()]
        if "MK" in value
    ]
    case_id = response.json()["case_id"]
    assert case_id in system.log_file.read_text(encoding="utf-8")
    spans = [json.loads(line) for line in (system.var_dir / "spans.jsonl").read_text().splitlines()]
    span_text = json.dumps([(s["name"], s["attributes"], s["events"]) for s in spans])
    log_text = system.log_file.read_text(encoding="utf-8")
    for where, text in (("log", log_text), ("spans", span_text)):
        leaked = [m for m in markers if m in text or m.lower() in text]
        assert leaked == [], f"personal data in the system's {where}: {leaked}"
