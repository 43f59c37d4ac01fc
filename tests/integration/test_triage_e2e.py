"""Re-triage and overrides end to end, on the real Kafka, Redis and services (`ocsea run`).

The first report goes through intake's API. The second report of the same case is published
straight to `ocsea.reports.received.v1` with the same `case_id` (as intake does when it links a
report to an existing case): this test is about triage's part, not intake's matching.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from contracts.events import (
    CaseReclassifiedData,
    Classification,
    EventType,
    IncidentFacts,
    Priority,
    ReportReceivedData,
    ReportTriagedData,
    SurvivorFacts,
    utc_now,
)
from contracts.reports import Channel, Governorate, Language
from testkit.reports import case_events, post_report, tasks_for_case, trail
from testkit.system import RunningSystem
from testkit.waiting import wait_for
from tests.triage.events import publish, received_event

pytestmark = pytest.mark.integration

ADULT_REPORT: dict[str, Any] = {
    "channel": "hotline",
    "language": "ckb",
    "incident": {"occurred_at": "2026-11-20T21:30:00+03:00", "governorate": "erbil"},
    "survivors": [{"age": "۲۵ ساڵ"}],
    "categories": ["image_based_sexual_abuse"],
    # Sealed by intake; triage reads it in memory: "she fears for her honour" (Sorani).
    "narrative": "NarrativeMarker ترسی لە ناموس هەیە",
}


def of_type(events: list[dict[str, Any]], event_type: EventType) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == event_type.value]


async def test_a_second_report_with_a_younger_age_reclassifies_and_reroutes(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    response = await post_report(client, system, ADULT_REPORT)
    assert response.status_code == 202, response.text
    case_id = response.json()["case_id"]

    async def first_result() -> list[dict[str, Any]] | None:
        return of_type(await case_events(system, case_id), EventType.REPORT_TRIAGED) or None

    [first] = await wait_for(first_result, within=30, what="the first triage result")
    first_data = ReportTriagedData.model_validate(first["data"])
    assert (first_data.classification, first_data.priority) == (Classification.TFGBV, Priority.P2)
    assert first_data.age_used == 25  # "۲۵ ساڵ", Extended Arabic-Indic digits, via intake
    [honour] = [f for f in first_data.factors if f.name == "honour_based_violence_risk"]
    assert honour.sources == ("narrative:ckb",)
    assert first_data.sealed_data_read

    second = ReportReceivedData(
        report_id=uuid.uuid4(),
        partner_id="partner-hotline",
        channel=Channel.HOTLINE,
        language=Language.CKB,
        received_at=utc_now(),
        incident=IncidentFacts(governorate=Governorate.ERBIL),
        survivors=(SurvivorFacts(survivor_ref="s1", indicators=("پۆلی ١٠",)),),
        linked_report_ids=(first_data.report_id,),
    )
    await publish(system.bootstrap, [received_event(uuid.UUID(case_id), second)])

    async def updated() -> list[dict[str, Any]] | None:
        events = await case_events(system, case_id)
        return events if len(of_type(events, EventType.REPORT_TRIAGED)) >= 2 else None

    events = await wait_for(updated, within=30, what="the re-triage result")
    assert [e["event_type"] for e in events] == [
        "report.triaged",
        "case.reclassified",
        "report.triaged",
    ]
    change = CaseReclassifiedData.model_validate(events[1]["data"])
    assert (change.old_classification, change.new_classification) == (
        Classification.TFGBV,
        Classification.TF_CSEA,
    )
    assert (change.old_priority, change.new_priority) == (Priority.P2, Priority.P1)
    assert "school grade 10" in change.reason
    assert change.report_id == second.report_id
    result = ReportTriagedData.model_validate(events[2]["data"])
    assert result.classification is Classification.TF_CSEA
    assert result.presumed_child  # 25 stated, grade 10 indicated: contradictory, so a child
    assert set(result.case_report_ids) == {first_data.report_id, second.report_id}
    assert {"child_survivor", "repeat_reports"} <= {f.name for f in result.factors}
    assert result.inputs_digest != first_data.inputs_digest
    assert result.rules_version == first_data.rules_version

    # Routing acts on the updated result: the child protection unit now has the case.
    async def child_protection_task() -> list[dict[str, Any]] | None:
        found = await tasks_for_case(client, system, "officer-erbil-cpu", case_id)
        return [t for t in found if t["classification"] == "TF-CSEA"] or None

    [task] = await wait_for(child_protection_task, within=30, what="the child protection task")
    assert task["priority"] == "P1"

    # The supervisor of the agency holding the case sees the current result with its
    # factors, and the history (need-to-know: tests/integration/test_triage_access.py).
    view = await client.get(
        f"{system.urls['triage']}/v1/triage/cases/{case_id}",
        headers=system.headers("supervisor-erbil-cpu"),
    )
    assert view.status_code == 200, view.text
    body = view.json()
    assert body["current"] == events[2]["data"]
    assert [h["event_type"] for h in body["history"]] == [e["event_type"] for e in events]
    assert "NarrativeMarker" not in json.dumps(events)
    assert "NarrativeMarker" not in system.log_file.read_text(encoding="utf-8")
    officer = await client.get(
        f"{system.urls['triage']}/v1/triage/cases/{case_id}",
        headers=system.headers("officer-erbil-cpu"),
    )
    assert officer.status_code == 403


async def test_a_supervisor_override_is_an_audited_event(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    response = await post_report(client, system, {**ADULT_REPORT, "survivors": [{"age": 15}]})
    case_id = response.json()["case_id"]

    async def triaged() -> list[dict[str, Any]] | None:
        return of_type(await case_events(system, case_id), EventType.REPORT_TRIAGED) or None

    await wait_for(triaged, within=30, what="the first triage result")

    # Only a supervisor whose agency holds a task on the case may override it.
    async def child_protection_task() -> list[dict[str, Any]] | None:
        return await tasks_for_case(client, system, "officer-erbil-cpu", case_id) or None

    await wait_for(child_protection_task, within=60, what="the child protection task")
    supervisor = system.headers("supervisor-erbil-cpu")
    url = f"{system.urls['triage']}/v1/triage/cases/{case_id}/override"
    marker = f"Marker-{uuid.uuid4().hex}"
    body = {"priority": "P1", "reason_code": "risk_reassessed", "reason": f"called {marker}"}

    refused = await client.post(url, json=body, headers=system.headers("officer-erbil-cpu"))
    assert refused.status_code == 403
    empty = await client.post(
        url,
        json={"reason_code": "other", "reason": "nothing"},
        headers=supervisor,
    )
    assert (empty.status_code, empty.json()["field"]) == (422, "classification")
    unknown = await client.post(
        f"{system.urls['triage']}/v1/triage/cases/{uuid.uuid4()}/override",
        json=body,
        headers=supervisor,
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "case_not_found")
    assert len(await case_events(system, case_id)) == 1  # refusals changed nothing

    headers = {**supervisor, "Idempotency-Key": f"ovr-{uuid.uuid4()}"}
    accepted = await client.post(url, json=body, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["priority"] == "P1"
    assert accepted.json()["override"]["computed_priority"] == "P2"
    again = await client.post(url, json=body, headers=headers)  # a retry: the same override
    assert again.json()["override"]["override_id"] == accepted.json()["override"]["override_id"]

    events = await case_events(system, case_id)
    types = [e["event_type"] for e in events]
    # The retry changed nothing: one override, its reclassification and the new result.
    assert types == [
        "report.triaged",
        "case.triage_overridden",
        "case.reclassified",
        "report.triaged",
    ]
    overridden = events[1]
    assert (overridden["actor"]["kind"], overridden["actor"]["id"]) == (
        "supervisor",
        "supervisor-erbil-cpu",
    )
    assert overridden["data"]["note"]["ciphertext"]  # the reason in words is sealed
    assert marker not in json.dumps(events)
    assert events[3]["data"]["priority"] == "P1"

    async def audited() -> list[Any] | None:
        entries = await trail(client, system, case_id)
        actions = [e["entry"]["action"] for e in entries]
        return entries if "case.triage_overridden" in actions else None

    await wait_for(audited, within=30, what="the override in the audit trail")
    assert marker not in system.log_file.read_text(encoding="utf-8")
