"""The audit ledger end to end on the real stack (`ocsea run`): a report's whole handling trail,
proofs that verify against the signed checkpoint, an offline bundle, dead letters, a ledger that
verifies against a checkpoint kept before, and redeliveries that add nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts import topics
from services.audit.domain import merkle
from services.audit.domain.checkpoint import Checkpoint, PublicKey, verify_checkpoint
from services.audit.domain.entry import canonical_json
from testkit.audit import cli
from testkit.kafka import read_all
from testkit.reports import SAMPLE_REPORT, post_report, tasks_for_case, trail
from testkit.system import RunningSystem
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

STEPS = ["report.received", "report.triaged", "task.assigned", "task.acknowledged", "case.viewed"]
OFFICER = "officer-erbil-cpu"


async def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): int(meta.offset) for tp, meta in offsets.items()}


async def processed_past(bootstrap: str, group: str, sent: list[Any]) -> None:
    """Wait until the group has committed past every sent record: their effects are durable."""

    async def done() -> bool:
        offsets = await committed(bootstrap, group)
        return all(offsets.get((r.topic, r.partition), -1) > r.offset for r in sent)

    await wait_for(done, within=120, what=f"{group} to commit past the redelivered records")


async def test_a_reports_trail_is_complete_proven_and_not_doubled(
    system: RunningSystem, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    audit, auditor = system.urls["audit"], system.headers("auditor")
    token = ("--token", system.token("auditor"))
    kept = tmp_path / "kept.json"
    code, output = await asyncio.to_thread(
        cli, "audit", "checkpoint", "--url", audit, *token, "-o", str(kept)
    )
    assert code == 0, output

    # A report, triaged and routed; the officer acknowledges the task and opens the case.
    response = await post_report(client, system, SAMPLE_REPORT)
    assert response.status_code == 202, response.text
    case_id = response.json()["case_id"]

    async def task() -> list[dict[str, Any]]:
        return await tasks_for_case(client, system, OFFICER, case_id)

    [found] = await wait_for(task, within=60, what="the task in the Erbil inbox")
    routing, officer = system.urls["routing"], system.headers(OFFICER)
    acknowledged = await client.post(
        f"{routing}/v1/tasks/{found['task_id']}/acknowledge", headers=officer
    )
    assert acknowledged.status_code == 200, acknowledged.text
    viewed = await client.get(f"{routing}/v1/cases/{case_id}", headers=officer)
    assert viewed.status_code == 200, viewed.text

    async def whole_trail() -> list[Any] | None:
        entries = await trail(client, system, case_id)
        actions = [e["entry"]["action"] for e in entries]
        return entries if all(step in actions for step in STEPS) else None

    entries = await wait_for(whole_trail, within=60, what="the whole handling trail")
    actions = [e["entry"]["action"] for e in entries]
    # In the order they happened (a sextortion case is assigned to more than one agency).
    firsts = [actions.index(step) for step in STEPS]
    assert firsts == sorted(firsts), actions
    assert all(actions.count(s) == 1 for s in STEPS if s != "task.assigned"), actions
    by_action = {e["entry"]["action"]: e["entry"] for e in entries}
    assert by_action["task.acknowledged"]["actor"]["id"] == OFFICER
    assert by_action["case.viewed"]["actor"]["agency"] == "erbil-cpu"
    assigned = [e["entry"] for e in entries if e["entry"]["action"] == "task.assigned"]
    assert found["task_id"] in {e["task_id"] for e in assigned}
    assert "erbil-cpu" in {e["agency"] for e in assigned}
    assert "Marker" not in json.dumps(entries)  # SAMPLE_REPORT's personal data

    # Every entry is proven included in the signed checkpoint, with the published key.
    published = await client.get(f"{audit}/v1/audit/public-key", headers=auditor)
    key = PublicKey.model_validate(published.json())
    head = Checkpoint.model_validate(
        (await client.get(f"{audit}/v1/audit/checkpoint", headers=auditor)).json()
    )
    verify_checkpoint(head, base64.b64decode(key.public_key))
    for item in entries:
        proof = await client.get(
            f"{audit}/v1/audit/proofs/inclusion",
            params={"leaf_index": item["leaf_index"], "tree_size": head.tree_size},
            headers=auditor,
        )
        assert proof.status_code == 200, proof.text
        leaf = merkle.leaf_hash(canonical_json(item["entry"]))
        assert proof.json()["leaf_hash"] == leaf.hex() == item["leaf_hash"]
        path = [bytes.fromhex(h) for h in proof.json()["audit_path"]]
        merkle.verify_inclusion(leaf, item["leaf_index"], head.tree_size, path, head.root)

    # The case's bundle verifies offline, against the checkpoint kept before the report.
    bundle = tmp_path / "case.json"
    code, output = await asyncio.to_thread(
        cli, "audit", "export", "--case", case_id, "--url", audit, *token, "-o", str(bundle)
    )
    assert code == 0, output
    code, output = await asyncio.to_thread(
        cli, "audit", "verify", str(bundle), "--checkpoint", str(kept)
    )
    assert code == 0, output
    assert f"VERIFIED: case {case_id}" in output

    # Search finds the officer's steps by actor, agency and action.
    search = await client.get(
        f"{audit}/v1/audit/search",
        params={"actor": OFFICER, "case_id": case_id, "agency": "erbil-cpu"},
        headers=auditor,
    )
    hits = search.json()["entries"]
    assert sorted(e["entry"]["action"] for e in hits) == ["case.viewed", "task.acknowledged"]
    # In leaf order: the order the audit learned of them, which across topics (case access has
    # a topic of its own) need not be the order they happened in; the trail gives that.
    assert [e["leaf_index"] for e in hits] == sorted(e["leaf_index"] for e in hits)

    # A dead letter of this case, published twice (dead-lettering is at-least-once), and every
    # record of the case redelivered: one dead_lettered entry, and nothing else new.
    origin_offset = uuid.uuid4().int % 10**12  # one dead-lettering, unique to this run
    dead_letter_headers = [
        ("event_id", str(uuid.uuid4()).encode()),
        ("x-ocsea-error-type", b"RuntimeError"),
        ("x-ocsea-error", b"RuntimeError: handler bug"),
        ("x-ocsea-origin-topic", topics.REPORTS_TRIAGED.encode()),
        ("x-ocsea-origin-partition", b"0"),
        ("x-ocsea-origin-offset", str(origin_offset).encode()),
        ("x-ocsea-consumer-group", b"ocsea.e2e-check"),
    ]
    redelivered = [
        r
        for topic in (*topics.ALL_EVENT_TOPICS, *topics.DISPATCH_TOPICS)
        for r in await read_all(system.bootstrap, topic)
        if r.key == case_id.encode()
    ]
    assert len(redelivered) >= len(STEPS)
    sent = []
    producer = AIOKafkaProducer(bootstrap_servers=system.bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(2):
            sent.append(
                await producer.send_and_wait(
                    topics.dlq_of(topics.REPORTS_TRIAGED),
                    b"{not an envelope",
                    key=case_id.encode(),
                    headers=dead_letter_headers,
                )
            )
        for record in redelivered:
            sent.append(
                await producer.send_and_wait(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )
            )
    finally:
        await producer.stop()
    group = f"{system.env['OCSEA_CONSUMER_GROUP_PREFIX']}.audit"
    on_event_topics = [r for r in sent if r.topic in topics.ALL_EVENT_TOPICS]
    await processed_past(system.bootstrap, group, on_event_topics)
    on_side_topics = [r for r in sent if r.topic not in topics.ALL_EVENT_TOPICS]
    await processed_past(system.bootstrap, f"{group}.dlq-dispatch", on_side_topics)
    after = await trail(client, system, case_id)
    dead = [e for e in after if e["entry"]["action"] == "dead_lettered"]
    assert len(dead) == 1
    assert dead[0]["entry"]["detail"]["origin_offset"] == origin_offset
    assert dead[0]["entry"]["source_event_id"] is None  # the payload is not taken as fact
    assert "handler bug" not in json.dumps(dead[0])  # the error text only as a digest
    facts = [
        (e["entry"]["action"], e["entry"]["source_event_id"], e["entry"]["topic"])
        for e in after
        if e["entry"]["action"] != "dead_lettered"
    ]
    assert len(facts) == len(set(facts)), "a redelivered record was recorded twice"
    recorded_ids = {source_event_id for _, source_event_id, _ in facts}
    assert {json.loads(r.value)["event_id"] for r in redelivered} <= recorded_ids

    # The whole ledger still extends the checkpoint kept at the start, entry by entry.
    code, output = await asyncio.to_thread(
        cli, "audit", "verify", audit, "--checkpoint", str(kept), *token
    )
    assert code == 0, output
    assert "VERIFIED" in output


async def test_only_auditors_reach_the_ledger(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    audit = system.urls["audit"]
    paths = [
        "/v1/audit/checkpoint",
        "/v1/audit/public-key",
        "/v1/audit/entries?from=0&to=1",
        "/v1/audit/proofs/inclusion?leaf_index=0&tree_size=1",
        "/v1/audit/proofs/consistency?first=1&second=1",
        "/v1/audit/search?action=report.received",
        f"/v1/audit/cases/{uuid.uuid4()}/trail",
        f"/v1/audit/cases/{uuid.uuid4()}/export",
    ]
    for path in paths:
        anonymous = await client.get(audit + path)
        assert anonymous.status_code == 401, path
        officer = await client.get(audit + path, headers=system.headers(OFFICER))
        assert officer.status_code == 403, path
        assert officer.json()["code"] == "forbidden"
    refused = await client.post(f"{audit}/v1/audit/checkpoint", headers=system.headers(OFFICER))
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/audit/proofs/inclusion?leaf_index=5&tree_size=5", "leaf_index"),
        ("/v1/audit/proofs/inclusion?leaf_index=0&tree_size=999999999", "tree_size"),
        ("/v1/audit/proofs/inclusion?leaf_index=-1&tree_size=2", "leaf_index"),
        ("/v1/audit/proofs/consistency?first=0&second=1", "first"),
        ("/v1/audit/proofs/consistency?first=3&second=2", "first"),
        ("/v1/audit/proofs/consistency?first=1&second=999999999", "second"),
        ("/v1/audit/entries?from=10&to=5", "to"),
        ("/v1/audit/entries?from=0&to=20001", "to"),
        ("/v1/audit/search?since=2026-11-20T10:00:00", "since"),
        ("/v1/audit/search?limit=0", "limit"),
    ],
)
async def test_bad_queries_are_refused_naming_the_field(
    system: RunningSystem, client: httpx.AsyncClient, path: str, field: str
) -> None:
    response = await client.get(system.urls["audit"] + path, headers=system.headers("auditor"))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["field"] == field, response.text
