"""Partners see only their own (issue #10): on the real stack, a partner's status view of a
report that joined another partner's case is the answer it would get had no one else reported
the same person; inside the mechanism the reports stay one case."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from testkit.system import RunningSystem
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

# Each report's own: its ids and the times of its own steps. Everything else must match.
OWN_FIELDS = ("report_id", "case_id", "received_at", "triaged_at", "routed_at")


def hotline_report(phone: str) -> dict[str, Any]:
    """A 15-year-old with a sextortion deadline: TF-CSEA, P1."""
    return {
        "channel": "hotline",
        "language": "ckb",
        "incident": {"governorate": "erbil", "platform": "instagram"},
        "survivors": [{"age": 15, "contact": {"phone": phone}}],
        "categories": ["sextortion"],
        "risk_flags": ["sextortion_deadline"],
    }


def ngo_report(phone: str, **extra: Any) -> dict[str, Any]:
    """The same person as the NGO knows her: stated to be 19, several victims. Alone: TFGBV,
    P3 (20 points; another report counted as a repeat would make it P2)."""
    return {
        "channel": "ngo",
        "language": "ckb",
        "incident": {"governorate": "erbil", "platform": "instagram"},
        "survivors": [{"age": 19, "contact": {"phone": phone}}],
        "categories": ["sextortion"],
        "risk_flags": ["multiple_victims"],
        **extra,
    }


async def post(
    client: httpx.AsyncClient, system: RunningSystem, partner: str, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(
        f"{system.urls['intake']}/v1/reports", json=body, headers=system.headers(partner)
    )
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    assert accepted["duplicate_of"] is None
    return accepted


async def status(
    client: httpx.AsyncClient, system: RunningSystem, partner: str, report_id: str
) -> dict[str, Any]:
    response = await client.get(
        f"{system.urls['intake']}/v1/reports/{report_id}", headers=system.headers(partner)
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def routed(
    client: httpx.AsyncClient, system: RunningSystem, partner: str, report_id: str
) -> dict[str, Any]:
    """The report's status once routed (every case gets a task, so every report is routed)."""

    async def probe() -> dict[str, Any] | None:
        found = await status(client, system, partner, report_id)
        return found if found["status"] == "routed" else None

    return await wait_for(probe, within=30, what=f"{partner}'s report {report_id} routed")


def without_own_fields(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k not in OWN_FIELDS}


def local_number() -> str:
    return f"750{uuid.uuid4().int % 10**7:07d}"


async def test_a_partner_cannot_learn_that_another_reported_the_same_person(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    local = local_number()
    hotline = await post(client, system, "partner-hotline", hotline_report(f"0{local}"))
    hotline_view = await routed(client, system, "partner-hotline", hotline["report_id"])
    assert (hotline_view["classification"], hotline_view["priority"]) == ("TF-CSEA", "P1")

    # The NGO reports the same survivor, her number written another way, so the mechanism
    # links the report to the hotline's case; and, for comparison, the same content about a
    # person no one else reported.
    ngo = await post(
        client, system, "partner-ngo", ngo_report(f"+964 {local[:3]} {local[3:6]} {local[6:]}")
    )
    lone = await post(client, system, "partner-ngo", ngo_report(f"0{local_number()}"))
    assert ngo["case_id"] not in (hotline["case_id"], hotline["report_id"])

    ngo_view = await routed(client, system, "partner-ngo", ngo["report_id"])
    lone_view = await routed(client, system, "partner-ngo", lone["report_id"])

    # Linking stays inside the mechanism: triage combined both reports into one case, TF-CSEA
    # P1, and assessed the NGO's report apart for what the NGO may be shown.
    triage = await client.get(
        f"{system.urls['triage']}/v1/triage/cases/{hotline['case_id']}",
        headers=system.headers("auditor"),
    )
    assert triage.status_code == 200, triage.text
    current = triage.json()["current"]
    assert current["case_report_ids"] == [hotline["report_id"], ngo["report_id"]]
    assert (current["classification"], current["priority"]) == ("TF-CSEA", "P1")
    assert current["partner_assessment"] == {
        "partner_id": "partner-ngo", "classification": "TFGBV", "priority": "P3"}  # fmt: skip

    # Its own classification and priority (not the case's TF-CSEA P1, nor P2 with the
    # hotline's report counted as a repeat), its own reference, no link.
    assert (ngo_view["classification"], ngo_view["priority"]) == ("TFGBV", "P3")
    assert ngo_view["case_id"] == ngo["case_id"]
    assert ngo_view["case_id"] != hotline_view["case_id"]
    assert ngo_view["linked_to_existing_case"] is False
    assert ngo_view["linked_report_ids"] == []
    # Nothing in the whole answer differs from the answer about a report no one else made,
    # and nothing names the hotline's report or case.
    assert without_own_fields(ngo_view) == without_own_fields(lone_view)
    assert set(ngo_view) == set(lone_view)
    text = json.dumps(ngo_view)
    assert hotline["report_id"] not in text
    assert hotline["case_id"] not in text

    # The hotline's view did not move.
    assert await status(client, system, "partner-hotline", hotline["report_id"]) == hotline_view
    # Neither partner can read the other's report.
    for partner, report_id in (("partner-hotline", ngo["report_id"]),
                               ("partner-ngo", hotline["report_id"])):  # fmt: skip
        other = await client.get(
            f"{system.urls['intake']}/v1/reports/{report_id}", headers=system.headers(partner)
        )
        assert other.status_code == 404, other.text

    # The NGO's own second report on the person: one reference, linked to its own report
    # only, and assessed on its own two reports (a repeat: P2), still not the case's P1.
    again = await post(
        client, system, "partner-ngo", ngo_report(f"00964{local}", categories=["harassment"])
    )
    assert again["case_id"] == ngo["case_id"]

    async def again_triaged() -> dict[str, Any] | None:
        found = await status(client, system, "partner-ngo", again["report_id"])
        return found if found["priority"] == "P2" else None

    again_view = await wait_for(again_triaged, within=30, what="the NGO's second report's own P2")
    assert again_view["case_id"] == ngo["case_id"]
    assert again_view["linked_to_existing_case"] is True
    assert again_view["linked_report_ids"] == [ngo["report_id"]]
    assert again_view["classification"] == "TFGBV"
    first_now = await status(client, system, "partner-ngo", ngo["report_id"])
    assert first_now["case_id"] == ngo["case_id"]
    assert (first_now["classification"], first_now["priority"]) == ("TFGBV", "P2")
    assert first_now["linked_to_existing_case"] is False
    assert await status(client, system, "partner-hotline", hotline["report_id"]) == hotline_view


async def test_a_partners_own_linked_reports_share_one_reference(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    local = local_number()
    first = await post(client, system, "partner-hotline", hotline_report(f"0{local}"))
    first_view = await routed(client, system, "partner-hotline", first["report_id"])
    second = await post(
        client,
        system,
        "partner-hotline",
        {**hotline_report(f"+964{local}"), "categories": ["grooming"]},
    )
    second_view = await routed(client, system, "partner-hotline", second["report_id"])
    assert second["case_id"] == first["case_id"] == second_view["case_id"]
    assert second_view["linked_to_existing_case"] is True
    assert second_view["linked_report_ids"] == [first["report_id"]]
    # Its own two reports, its own result: the child in danger, P1.
    assert (second_view["classification"], second_view["priority"]) == ("TF-CSEA", "P1")
    assert first_view["linked_to_existing_case"] is False
