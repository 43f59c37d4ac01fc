"""Need-to-know in triage, on the whole system (`ocsea run`): issue 10's probe, a legal-aid
supervisor with no task on an Erbil child's case reading its triage and lowering it to P4, is
refused like a case that does not exist; the supervisor whose agency holds the case reads it
and overrides it (with a reason, recorded under their name); the coordinator reads it once the
task is escalated to the coordinator; access ends when the task closes. Every read and every
refusal is on `ocsea.access.v1` before the answer."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from contracts import topics
from testkit.kafka import read_all
from testkit.reports import case_events, child_report, cpu_task, post_report
from testkit.system import RunningSystem

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def access_records(system: RunningSystem, case_id: str) -> list[dict[str, Any]]:
    return [
        json.loads(r.value)
        for r in await read_all(system.bootstrap, topics.ACCESS)
        if r.key == case_id.encode()
    ]


async def test_a_supervisor_without_a_task_neither_reads_nor_lowers_a_childs_case(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    marker = f"Marker-{uuid.uuid4().hex}"
    response = await post_report(client, system, child_report(marker))
    assert response.status_code == 202, response.text
    case_id = response.json()["case_id"]
    task = await cpu_task(client, system, case_id)
    assert task["priority"] == "P1"
    triage = system.urls["triage"]
    view_url = f"{triage}/v1/triage/cases/{case_id}"
    override_url = f"{view_url}/override"
    lower = {"priority": "P4", "reason_code": "risk_reassessed", "reason": f"{marker} is fine"}

    # The probe: legal aid holds no task on this case. Refused exactly as an unknown case is.
    outsider = system.headers("supervisor-kri-legal-aid")
    unknown = f"{triage}/v1/triage/cases/{uuid.uuid4()}"
    read = await client.get(view_url, headers=outsider)
    read_unknown = await client.get(unknown, headers=outsider)
    assert (read.status_code, read.json()) == (read_unknown.status_code, read_unknown.json())
    assert (read.status_code, read.json()["code"]) == (404, "case_not_found")
    lowered = await client.post(override_url, json=lower, headers=outsider)
    lowered_unknown = await client.post(f"{unknown}/override", json=lower, headers=outsider)
    assert (lowered.status_code, lowered.json()) == (404, lowered_unknown.json())
    assert [e["event_type"] for e in await case_events(system, case_id)] == ["report.triaged"]
    # The mechanism's coordinator holds nothing on it either (nothing escalated to it).
    assert (await client.get(view_url, headers=system.headers("coordinator"))).status_code == 404

    # The supervisor whose agency holds the case reads it ...
    holder = system.headers("supervisor-erbil-cpu")
    shown = await client.get(view_url, headers=holder)
    assert shown.status_code == 200, shown.text
    assert shown.json()["current"]["priority"] == "P1"
    # ... and the read was recorded before it was answered.
    records = await access_records(system, case_id)
    [viewed] = [e for e in records if e["event_type"] == "case.viewed"]
    assert (viewed["actor"]["id"], viewed["producer"]) == ("supervisor-erbil-cpu", "triage")
    assert viewed["data"]["task_ids"] == [task["task_id"]]
    assert viewed["data"]["report_ids"] == [response.json()["report_id"]]

    # Lowering needs a reason, and is made under the supervisor's name.
    no_reason = await client.post(
        override_url, json={"priority": "P4", "reason_code": "risk_reassessed"}, headers=holder
    )
    assert (no_reason.status_code, no_reason.json()["field"]) == (422, "reason")
    made = await client.post(override_url, json=lower, headers=holder)
    assert made.status_code == 200, made.text
    assert made.json()["priority"] == "P4"
    assert made.json()["override"]["by"] == "supervisor-erbil-cpu"
    events = await case_events(system, case_id)
    [overridden] = [e for e in events if e["event_type"] == "case.triage_overridden"]
    assert overridden["actor"] == {
        "kind": "supervisor",
        "id": "supervisor-erbil-cpu",
        "agency": "erbil-cpu",
    }
    assert (overridden["data"]["old_priority"], overridden["data"]["new_priority"]) == ("P1", "P4")
    assert marker not in json.dumps(events)  # the reason in words is sealed

    # Auditors read it, read-only; officers and partners do not.
    audited = await client.get(view_url, headers=system.headers("auditor"))
    assert audited.status_code == 200, audited.text
    assert audited.json()["current"]["priority"] == "P4"
    refused = await client.post(override_url, json=lower, headers=system.headers("auditor"))
    assert refused.status_code == 403
    for who in ("officer-erbil-cpu", "partner-hotline", "operator"):
        assert (await client.get(view_url, headers=system.headers(who))).status_code == 403
    assert (await client.get(view_url)).status_code == 401

    access = await access_records(system, case_id)
    assert marker not in json.dumps(access)
    assert sorted((e["event_type"], e["actor"]["id"]) for e in access) == [
        ("case.access_denied", "coordinator"),
        ("case.access_denied", "supervisor-kri-legal-aid"),
        ("case.access_denied", "supervisor-kri-legal-aid"),
        ("case.viewed", "auditor"),
        ("case.viewed", "supervisor-erbil-cpu"),
    ]
    [by_auditor] = [e for e in access if e["actor"]["id"] == "auditor"]
    assert by_auditor["data"]["reason"] == "auditor, read-only"
    assert by_auditor["data"]["task_ids"] == []


async def test_the_coordinator_reads_through_an_escalation_and_access_ends_with_the_task(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    # Cyberbullying of a child: child protection only, no police task.
    marker = f"Marker-{uuid.uuid4().hex}"
    report = child_report(marker, categories=["cyberbullying"], risk_flags=[])
    response = await post_report(client, system, report)
    assert response.status_code == 202, response.text
    case_id = response.json()["case_id"]
    task = await cpu_task(client, system, case_id)
    routing, triage = system.urls["routing"], system.urls["triage"]
    officer = system.headers("officer-erbil-cpu")
    view_url = f"{triage}/v1/triage/cases/{case_id}"

    async def status_for(who: str) -> int:
        return (await client.get(view_url, headers=system.headers(who))).status_code

    assert await status_for("coordinator") == 404
    for _ in ("to the unit's supervisor", "to the coordinator"):
        escalated = await client.post(
            f"{routing}/v1/tasks/{task['task_id']}/escalate", headers=officer
        )
        assert escalated.status_code == 200, escalated.text
    assert escalated.json()["escalated_to_agency"] == "kri-coordination"
    # The directory's coordinator sees what is escalated to it.
    assert await status_for("coordinator") == 200
    assert await status_for("supervisor-erbil-cpu") == 200
    assert await status_for("supervisor-kri-legal-aid") == 404

    for command, body in (
        ("acknowledge", None),
        ("accept", None),
        ("resolve", {"outcome": "child_safeguarded"}),
    ):
        done = await client.post(
            f"{routing}/v1/tasks/{task['task_id']}/{command}", json=body, headers=officer
        )
        assert done.status_code == 200, done.text
    # A closed task is no grounds: neither the agency's supervisor nor the coordinator reads
    # the case any longer, nor may they change it.
    assert await status_for("supervisor-erbil-cpu") == 404
    assert await status_for("coordinator") == 404
    late = await client.post(
        f"{view_url}/override",
        json={"priority": "P4", "reason_code": "risk_reassessed", "reason": "after the close"},
        headers=system.headers("supervisor-erbil-cpu"),
    )
    assert (late.status_code, late.json()["code"]) == (404, "case_not_found")
    denied = [
        e["actor"]["id"]
        for e in await access_records(system, case_id)
        if e["event_type"] == "case.access_denied"
    ]
    assert sorted(denied) == [
        "coordinator",
        "coordinator",
        "supervisor-erbil-cpu",
        "supervisor-erbil-cpu",
        "supervisor-kri-legal-aid",
    ]
