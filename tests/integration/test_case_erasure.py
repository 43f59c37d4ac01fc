"""Case keys and erasure on the real system (`ocsea run`, the shared Kafka and Redis):

- a case's personal data still opens for the officer entitled to it when Redis has lost its
  copy of the case's key (only this case's entries are deleted: the shared Redis is never
  flushed; tests/test_case_keys.py flushes Redis instances of its own);
- an operator erases a case: its personal data is unreadable everywhere (the routing and
  triage views, the console page, every record of it on the topics stays sealed and opens no
  more, a later report about the same survivor too), the trail shows the erasure, and the
  ledger still verifies. Only operators may erase.

An erased case's views answer 200 with `personal_data_erased` (when, why) in place of the
data, rather than 410: the case itself, its tasks and its triage are still there to work on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from contracts import topics
from contracts.events import EncryptedBlob
from ocsea.runtime.crypto import CaseErasedError, CaseKeys, load_or_create_master_key
from ocsea.runtime.keystore import KeyStore
from ocsea.runtime.settings import Settings
from testkit.audit import cli
from testkit.kafka import end_offsets, read_since
from testkit.system import RunningSystem
from testkit.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OFFICER, SUPERVISOR = "officer-erbil-cpu", "supervisor-erbil-cpu"
WITHIN_S = 90  # the system also handles what other sessions publish on the shared topics


def child_report(marker: str) -> dict[str, Any]:
    """A child's case in Erbil whose survivor is named by `marker` (with a date of birth, so a
    later report about the same survivor joins the case)."""
    return {
        "source_reference": f"ERASE-{uuid.uuid4().hex}",
        "channel": "hotline",
        "language": "ckb",
        "incident": {"occurred_at": "2026-11-20T21:30:00+03:00", "governorate": "erbil"},
        "survivors": [{"name": marker, "date_of_birth": "2011-05-01"}],
        "categories": ["sextortion"],
        "risk_flags": ["sextortion_deadline"],
        "narrative": f"{marker} narrative",
    }


async def report(client: httpx.AsyncClient, system: RunningSystem, marker: str) -> str:
    response = await client.post(
        f"{system.urls['intake']}/v1/reports",
        json=child_report(marker),
        headers=system.headers("partner-hotline"),
    )
    assert response.status_code == 202, response.text
    case_id: str = response.json()["case_id"]
    return case_id


async def case_view(
    client: httpx.AsyncClient, system: RunningSystem, case_id: str, reports: int = 1
) -> dict[str, Any]:
    """The Erbil officer's view of the case once routing has its task and `reports` reports."""

    async def ready() -> dict[str, Any] | None:
        response = await client.get(
            f"{system.urls['routing']}/v1/cases/{case_id}", headers=system.headers(OFFICER)
        )
        if response.status_code == 403:  # no task yet
            return None
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view if len(view["reports"]) >= reports else None

    return await wait_for(ready, within=WITHIN_S, interval=0.2, what="the officer's case view")


def cache_entries(system: RunningSystem, case_id: str) -> tuple[str, str]:
    # Redis's copies of the case's key: the key store's cache entry (named after the system's
    # master key), and where an earlier version kept the key itself.
    master = hashlib.sha256((system.var_dir / "master.key").read_bytes()).hexdigest()[:16]
    return f"ocsea:keystore:{master}:case:{case_id}", f"ocsea:case-key:{case_id}"


async def test_personal_data_opens_after_redis_lost_the_cases_key(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    marker = f"KeyMarker{uuid.uuid4().hex}"
    case_id = await report(client, system, marker)
    before = await case_view(client, system, case_id)
    assert before["reports"][0]["personal_status"] == "shown"
    assert marker in json.dumps(before["reports"][0]["personal"])

    redis = Redis.from_url(system.env["OCSEA_REDIS_URL"])
    try:
        # This case's entries only: the Redis is shared.
        assert await redis.delete(*cache_entries(system, case_id)) == 1
        after = await case_view(client, system, case_id)
        # Read back from the store.
        assert await redis.exists(cache_entries(system, case_id)[0]) == 1
    finally:
        await redis.aclose()
    assert after["reports"][0]["personal_status"] == "shown"
    assert after["reports"][0]["personal"] == before["reports"][0]["personal"]
    assert after["personal_data_erased"] is None


async def signed_in_console(system: RunningSystem, who: str) -> httpx.AsyncClient:
    console = httpx.AsyncClient(base_url=system.urls["console"], timeout=20)
    form = await console.get("/signin")
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found, form.text[:500]
    signed = await console.post(
        "/signin", data={"credential": system.token(who), "csrf": found.group(1)}
    )
    assert signed.status_code == 303, signed.text[:500]
    return console


async def test_an_operator_erases_a_cases_personal_data_everywhere(
    system: RunningSystem, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    audit, routing = system.urls["audit"], system.urls["routing"]
    auditor_token = ("--token", system.token("auditor"))
    kept = tmp_path / "kept.json"
    code, output = await asyncio.to_thread(
        cli, "audit", "checkpoint", "--url", audit, *auditor_token, "-o", str(kept)
    )
    assert code == 0, output
    watched = [topics.REPORTS_RECEIVED, topics.REPORTS_TRIAGED, topics.TASKS_EVENTS]
    watched += [topics.ACCESS, topics.CASES, *topics.DISPATCH_TOPICS]
    offsets = {topic: await end_offsets(system.bootstrap, topic) for topic in watched}

    marker = f"EraseMarker{uuid.uuid4().hex}"
    case_id = await report(client, system, marker)
    shown = await case_view(client, system, case_id)
    assert marker in json.dumps(shown["reports"][0]["personal"])
    erasure_url = f"{routing}/v1/cases/{case_id}/erasure"
    body = {"reason": "data_subject_request", "reference": "DSR-2026-0042"}

    # Only operators erase; the refusals erase nothing and say nothing of the case.
    for who in ("partner-hotline", OFFICER, SUPERVISOR, "auditor", "coordinator"):
        refused = await client.post(erasure_url, json=body, headers=system.headers(who))
        assert refused.status_code == 403, (who, refused.text)
        assert case_id not in refused.text
    assert (await client.post(erasure_url, json=body)).status_code == 401
    operator = system.headers("operator")
    wrong = await client.post(erasure_url, json={"reason": "because"}, headers=operator)
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["field"] == "reason"
    words = await client.post(
        erasure_url, json={**body, "reference": "asked by Layla on the phone"}, headers=operator
    )
    assert words.status_code == 422, words.text
    assert words.json()["field"] == "reference"
    unknown = await client.post(
        f"{routing}/v1/cases/{uuid.uuid4()}/erasure", json=body, headers=operator
    )
    assert unknown.status_code == 404, unknown.text
    still = await case_view(client, system, case_id)
    assert still["reports"][0]["personal_status"] == "shown"

    erased = await client.post(erasure_url, json=body, headers=operator)
    assert erased.status_code == 200, erased.text
    erasure = erased.json()
    assert erasure["case_id"] == case_id
    assert erasure["reason"] == "data_subject_request"
    assert marker not in erased.text
    # Again, by the command line: the same erasure, nothing new.
    code, output = await asyncio.to_thread(
        cli, "case", "erase", case_id, "--reason", "other", "--url", routing,
        "--token", system.token("operator"),
    )  # fmt: skip
    assert code == 0, output
    assert f"erased: case {case_id}" in output
    assert "(data_subject_request)" in output
    assert erasure["event_id"] in output

    # A later report about the same survivor joins the case, and is erased on arrival.
    assert await report(client, system, marker) == case_id

    # Routing's case view: the case and its tasks, no personal data, and when it was erased.
    view = await case_view(client, system, case_id, reports=2)
    assert view["personal_data_erased"] == {
        "erased_at": erasure["erased_at"],
        "reason": "data_subject_request",
    }
    assert [r["personal_status"] for r in view["reports"]] == ["erased", "erased"]
    assert all(r["personal"] is None for r in view["reports"])
    assert view["tasks"]
    assert marker not in json.dumps(view)

    # Triage's view, for the supervisor holding the case.
    triaged = await client.get(
        f"{system.urls['triage']}/v1/triage/cases/{case_id}", headers=system.headers(SUPERVISOR)
    )
    assert triaged.status_code == 200, triaged.text
    assert triaged.json()["personal_data_erased"]["reason"] == "data_subject_request"
    assert marker not in triaged.text

    # The console's case page.
    console = await signed_in_console(system, OFFICER)
    try:
        page = await console.get(f"/cases/{case_id}?lang=en")
    finally:
        await console.aclose()
    assert page.status_code == 200, page.text[:500]
    assert 'id="personal-data-erased"' in page.text
    assert "was erased on" in page.text
    assert "request of the person concerned" in page.text
    assert marker not in page.text

    # Every record of the case on the topics: the marker nowhere, the sealed parts unopenable.
    keys_settings = Settings(var_dir=system.var_dir)
    redis = Redis.from_url(system.env["OCSEA_REDIS_URL"])
    store = KeyStore.from_settings(keys_settings)
    keys = CaseKeys(redis, load_or_create_master_key(keys_settings.resolved_master_key_file), store)
    sealed: list[EncryptedBlob] = []
    try:
        for topic in watched:
            for record in await read_since(system.bootstrap, topic, offsets[topic]):
                assert marker.encode() not in record.value, topic
                event = json.loads(record.value)
                if event.get("case_id") == case_id and event["data"].get("personal"):
                    sealed.append(EncryptedBlob.model_validate(event["data"]["personal"]))
        assert len(sealed) == 2  # both reports' personal data travelled, sealed
        for blob in sealed:
            with pytest.raises(CaseErasedError):
                await keys.open(uuid.UUID(case_id), blob)
    finally:
        await redis.aclose()
        await store.close()

    # The trail records the erasure, by whom and why; the ledger still verifies.
    async def erasure_entry() -> dict[str, Any] | None:
        response = await client.get(
            f"{audit}/v1/audit/cases/{case_id}/trail", headers=system.headers("auditor")
        )
        assert response.status_code == 200, response.text
        found = [e["entry"] for e in response.json()["entries"]]
        return next((e for e in found if e["action"] == "case.erased"), None)

    entry = await wait_for(erasure_entry, within=WITHIN_S, interval=0.2, what="the erasure")
    assert entry["actor"] == {"kind": "operator", "id": "operator", "agency": None}
    assert entry["detail"] == {"reason": "data_subject_request", "reference": "DSR-2026-0042"}
    assert entry["source_event_id"] == erasure["event_id"]
    assert entry["topic"] == topics.CASES
    code, output = await asyncio.to_thread(
        cli, "audit", "verify", audit, "--checkpoint", str(kept), *auditor_token
    )
    assert code == 0, output
    assert "VERIFIED" in output
