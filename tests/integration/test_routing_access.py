"""Need-to-know on the whole system (`ocsea run`): an officer sees their own agency's tasks
and the cases they have an open task on, with the personal data decrypted for them only;
another agency's officer gets 404 for the task and 403 for the case; every view, and every
refused attempt, is an event on `ocsea.access.v1` and an entry in the audit trail."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from contracts import topics
from testkit.kafka import read_all
from testkit.reports import SAMPLE_REPORT, post_report, trail
from testkit.routing_harness import start_groups_at_the_end
from testkit.system import RunningSystem, start_system
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration


# Seconds when the stack is quiet; the system also handles whatever other sessions publish
# on the shared topics meanwhile, so it may be slower on a busy machine.
WITHIN_S = 50


@pytest.fixture(scope="module")
async def system(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    """A system of this module's own whose consumers start where the topics end now (as a
    deployment that has been running), so it does not first replay the shared stack's history."""
    prefix = f"ocsea-test-access-{uuid.uuid4().hex[:8]}"
    await start_groups_at_the_end(stack_env["OCSEA_KAFKA_BOOTSTRAP"], prefix)
    running = start_system(stack_env, tmp_path_factory.mktemp("access") / "var", prefix)
    yield running
    running.stop()


async def inbox_task(
    client: httpx.AsyncClient, system: RunningSystem, officer: str, case_id: str
) -> dict[str, Any]:
    async def found() -> list[dict[str, Any]] | None:
        response = await client.get(
            f"{system.urls['routing']}/v1/tasks",
            params={"case_id": case_id},
            headers=system.headers(officer),
        )
        assert response.status_code == 200, response.text
        return response.json() or None

    [task] = await wait_for(found, within=WITHIN_S, what=f"the task for {officer}")
    return dict(task)


async def test_only_those_with_a_task_see_the_case_and_every_view_is_recorded(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    marker = f"Marker-{uuid.uuid4().hex}"
    report = {
        **SAMPLE_REPORT,
        "source_reference": f"HL-{uuid.uuid4().hex[:12]}",
        "survivors": [{"name": marker, "age": 14}],
        "narrative": f"{marker} narrative",
    }
    response = await post_report(client, system, report)
    assert response.status_code == 202, response.text
    case_id = response.json()["case_id"]
    child_protection = await inbox_task(client, system, "officer-erbil-cpu", case_id)
    police = await inbox_task(client, system, "officer-krg-cybercrime", case_id)
    routing = system.urls["routing"]

    async def view(who: str) -> httpx.Response:
        return await client.get(f"{routing}/v1/cases/{case_id}", headers=system.headers(who))

    # The child protection officer sees the case, personal data decrypted.
    shown = await view("officer-erbil-cpu")
    assert shown.status_code == 200, shown.text
    case = shown.json()
    [received] = case["reports"]
    assert received["personal_status"] == "shown"
    assert marker in json.dumps(received["personal"])
    assert received["survivors"][0]["stated_age"] == 14
    assert case["triage"]["classification"] == "TF-CSEA"
    assert {t["task_id"] for t in case["tasks"]} == {child_protection["task_id"], police["task_id"]}
    assert (await view("officer-krg-cybercrime")).status_code == 200

    # Another agency's officer: no task, no case. Other roles: not at all.
    refused = await view("officer-duhok-cpu")
    assert (refused.status_code, refused.json()["code"]) == (403, "case_access_denied")
    assert marker not in refused.text
    for path in ("", "/acknowledge"):
        call = client.post if path else client.get
        other = await call(
            f"{routing}/v1/tasks/{child_protection['task_id']}{path}",
            headers=system.headers("officer-duhok-cpu"),
        )
        assert (other.status_code, other.json()["code"]) == (404, "task_not_found")
    assert (await view("auditor")).status_code == 403
    assert (await client.get(f"{routing}/v1/cases/{case_id}")).status_code == 401

    # Each view and the refusal are on the access topic, before the answer was given.
    access = [
        json.loads(r.value)
        for r in await read_all(system.bootstrap, topics.ACCESS)
        if case_id.encode() in r.value
    ]
    assert marker not in json.dumps(access)
    summary = sorted((e["event_type"], e["actor"]["id"]) for e in access)
    assert summary == [
        ("case.access_denied", "officer-duhok-cpu"),
        ("case.viewed", "officer-erbil-cpu"),
        ("case.viewed", "officer-krg-cybercrime"),
    ]
    [by_cpu] = [e for e in access if e["actor"]["id"] == "officer-erbil-cpu"]
    assert by_cpu["data"]["task_ids"] == [child_protection["task_id"]]
    assert by_cpu["data"]["personal_data_shown"] is True
    assert by_cpu["data"]["report_ids"] == [received["report_id"]]
    assert case["access_event_id"] == by_cpu["event_id"]

    # ... and, through the audit service, in the case's trail.
    async def recorded() -> list[Any] | None:
        entries = await trail(client, system, case_id)
        actions = [e["entry"]["action"] for e in entries]
        views = [a for a in actions if a in ("case.viewed", "case.access_denied")]
        return entries if len(views) >= 3 else None

    entries = await wait_for(recorded, within=WITHIN_S, what="the views in the audit trail")
    by_source = {e["entry"]["source_event_id"]: e["entry"]["action"] for e in entries}
    for event in access:
        assert by_source.get(event["event_id"]) == event["event_type"]
    assert marker not in json.dumps(entries)
