"""Conflicts, gaps and the C2SP checkpoint through the running system (`ocsea run`): a forged
access record published on the real access topic ahead of the real one shows in the case's
trail and in `GET /v1/audit/conflicts` (auditors only), the ledger still verifies against a
checkpoint kept before, and `GET /v1/audit/tlog/checkpoint` is a note a verifier written from
the specification accepts, committing to the RFC 6962 root of the ledger's own entries."""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import topics
from testkit.audit import access_event, cli, rfc6962_root, spec_open
from testkit.system import RunningSystem
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration


async def test_a_forged_access_record_is_shown_to_auditors_as_a_conflict(
    system: RunningSystem, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    audit, auditor = system.urls["audit"], system.headers("auditor")
    token = ("--token", system.token("auditor"))
    kept = tmp_path / "kept.json"
    code, output = await asyncio.to_thread(
        cli, "audit", "checkpoint", "--url", audit, *token, "-o", str(kept)
    )
    assert code == 0, output

    case = uuid.uuid4()
    real = access_event("officer-erbil-cpu", case)
    forged = access_event("officer-duhok-cpu", case, real.event_id)
    producer = AIOKafkaProducer(bootstrap_servers=system.bootstrap, acks="all")
    await producer.start()
    try:
        for version in (forged, real):  # the forgery first
            await producer.send_and_wait(
                topics.ACCESS, version.model_dump_json().encode(), key=str(case).encode()
            )
    finally:
        await producer.stop()

    async def listed() -> list[dict[str, Any]] | None:
        found, after = [], None
        while True:
            params = {"limit": 1000} | ({"after": after} if after is not None else {})
            page = await client.get(f"{audit}/v1/audit/conflicts", params=params, headers=auditor)
            assert page.status_code == 200, page.text
            found += page.json()["entries"]
            after = page.json()["next_after"]
            if after is None:
                break
        mine = [e for e in found if e["entry"]["detail"]["contested_key"] == str(real.event_id)]
        return mine or None

    [conflict] = await wait_for(listed, within=60, what="the conflict in the ledger")
    assert conflict["entry"]["actor"]["id"] == "officer-erbil-cpu"  # the real record's claim
    trail = await client.get(f"{audit}/v1/audit/cases/{case}/trail", headers=auditor)
    actions = {e["entry"]["action"]: e["entry"] for e in trail.json()["entries"]}
    assert set(actions) == {"case.viewed", "conflict"}
    assert actions["case.viewed"]["actor"]["id"] == "officer-duhok-cpu"  # first, keeps the id
    assert actions["conflict"]["detail"]["recorded_leaf_index"] == actions["case.viewed"]["seq"]

    gaps = await client.get(f"{audit}/v1/audit/gaps", headers=auditor)
    assert gaps.status_code == 200, gaps.text
    assert all(e["entry"]["action"] == "offset_gap" for e in gaps.json()["entries"])
    for path in ("/v1/audit/conflicts", "/v1/audit/gaps", "/v1/audit/tlog/checkpoint"):
        refused = await client.get(audit + path, headers=system.headers("officer-erbil-cpu"))
        assert refused.status_code == 403, path

    # Still one ledger that verifies entry by entry against the checkpoint kept before.
    code, output = await asyncio.to_thread(
        cli, "audit", "verify", audit, "--checkpoint", str(kept), *token
    )
    assert code == 0, output
    assert "VERIFIED" in output
    assert "conflict(s)" in output


async def test_the_tlog_checkpoint_commits_to_the_ledgers_rfc6962_root(
    system: RunningSystem, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    audit, auditor = system.urls["audit"], system.headers("auditor")
    verifier = await client.get(f"{audit}/v1/audit/tlog/verifier-key", headers=auditor)
    note = await client.get(f"{audit}/v1/audit/tlog/checkpoint", headers=auditor)
    assert note.status_code == verifier.status_code == 200, note.text
    assert note.headers["content-type"].startswith("text/plain")
    origin, size, root = spec_open(note.text, verifier.text.strip())
    assert origin == "ocsea-audit"  # OCSEA_AUDIT_LOG_ORIGIN's default

    # The verifier key is the checkpoints' published Ed25519 key.
    published = (await client.get(f"{audit}/v1/audit/public-key", headers=auditor)).json()
    typed = base64.b64decode(verifier.text.strip().split("+", 2)[2])
    assert typed == b"\x01" + base64.b64decode(published["public_key"])

    # Recomputed from the exact leaves, independently of the service's tree.
    leaves: list[bytes] = []
    while len(leaves) < size:
        page = await client.get(
            f"{audit}/v1/audit/entries",
            params={"from": len(leaves), "to": size},
            headers=auditor,
        )
        assert page.status_code == 200, page.text
        leaves += [item["leaf"].encode() for item in page.json()["entries"]]
    assert rfc6962_root(leaves) == root

    # The auditors' tool keeps it, checked, as a file standard tools read.
    kept = tmp_path / "checkpoint.note"
    code, output = await asyncio.to_thread(
        cli, "audit", "checkpoint", "--tlog", "--url", audit,
        "--token", system.token("auditor"), "-o", str(kept),
    )  # fmt: skip
    assert code == 0, output
    assert "verifier key: ocsea-audit+" in output
    assert spec_open(kept.read_text(), verifier.text.strip())[1] >= size
