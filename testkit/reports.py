"""Reports sent to the running system (`testkit.system`) as a partner sends them, and what
officers and auditors then see of them: tasks, the case's triaged events, the ledger's trail."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from contracts import topics
from testkit.kafka import read_all
from testkit.system import RunningSystem
from testkit.waiting import wait_for

# How long to wait for what the system derives from a report: it also handles what other
# sessions publish on the shared topics.
WITHIN_S = 90

SAMPLE_REPORT: dict[str, Any] = {
    "source_reference": "HL-2026-0001",
    "channel": "hotline",
    "language": "ckb",
    "incident": {
        "occurred_at": "2026-11-20T21:30:00+03:00",
        "governorate": "erbil",
        "platform": "instagram",
    },
    "survivors": [{"name": "Test Survivor Marker", "age": 15}],
    "categories": ["sextortion"],
    "risk_flags": ["sextortion_deadline"],
    "narrative": "Narrative marker text",
}


async def post_report(
    client: httpx.AsyncClient, system: RunningSystem, body: Any, **headers: str
) -> httpx.Response:
    """Each call is a new report (its own source reference), unless it replays an
    Idempotency-Key: intake answers the same report sent again with `duplicate_of`."""
    if isinstance(body, dict):
        unique = headers.get("Idempotency-Key") or uuid.uuid4().hex
        body = {**body, "source_reference": f"{body.get('source_reference') or 'T'}-{unique}"}
    return await client.post(
        f"{system.urls['intake']}/v1/reports",
        json=body,
        headers={**system.headers("partner-hotline"), **headers},
    )


async def tasks_for_case(
    client: httpx.AsyncClient, system: RunningSystem, officer: str, case_id: str
) -> list[dict[str, Any]]:
    """The case's tasks in an officer's inbox."""
    response = await client.get(
        f"{system.urls['routing']}/v1/tasks", headers=system.headers(officer)
    )
    assert response.status_code == 200, response.text
    return [t for t in response.json() if t["case_id"] == case_id]


async def trail(client: httpx.AsyncClient, system: RunningSystem, case_id: str) -> list[Any]:
    """The case's ledger entries, as the auditor reads them."""
    response = await client.get(
        f"{system.urls['audit']}/v1/audit/cases/{case_id}/trail",
        headers=system.headers("auditor"),
    )
    assert response.status_code == 200, response.text
    entries: list[Any] = response.json()["entries"]
    return entries


def child_report(marker: str, **changes: Any) -> dict[str, Any]:
    """A child's sextortion report from Erbil whose survivor and narrative carry `marker`, to
    find it again, or to show it appears nowhere in the clear."""
    return {
        "channel": "hotline",
        "language": "ckb",
        "incident": {"occurred_at": "2026-11-20T21:30:00+03:00", "governorate": "erbil"},
        "survivors": [{"name": marker, "age": 15}],
        "categories": ["sextortion"],
        "risk_flags": ["sextortion_deadline"],
        "narrative": f"{marker} narrative",
        **changes,
    }


async def cpu_task(client: httpx.AsyncClient, system: RunningSystem, case_id: str) -> Any:
    """The case's task for Erbil's child protection, once routing has assigned it."""

    async def found() -> list[Any] | None:
        response = await client.get(
            f"{system.urls['routing']}/v1/tasks",
            params={"case_id": case_id},
            headers=system.headers("officer-erbil-cpu"),
        )
        assert response.status_code == 200, response.text
        return response.json() or None

    [task] = await wait_for(found, within=WITHIN_S, what="the child protection task")
    return task


async def case_events(system: RunningSystem, case_id: str) -> list[dict[str, Any]]:
    """The case's events on the triaged topic, in order (one partition per case)."""
    records = await read_all(system.bootstrap, topics.REPORTS_TRIAGED)
    mine = [r for r in records if r.key == case_id.encode()]
    # At least once: a redelivery republishes the same event, recognised by its id.
    first_seen: dict[str, dict[str, Any]] = {}
    for record in sorted(mine, key=lambda r: r.offset):
        event = json.loads(record.value)
        first_seen.setdefault(event["event_id"], event)
    return list(first_seen.values())
