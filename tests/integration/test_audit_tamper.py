"""Tamper drills on SQLite and PostgreSQL: history rewritten behind the service's back, with the
append-only protection switched off by the tables' owner, is caught by `ocsea audit verify`
against a checkpoint kept earlier, which names the first bad index.

Each drill checks both ways an auditor verifies: a ledger export read straight from the
database (the CLI, offline) and the service's API (the service code, over HTTP). A last drill
does it end to end against a real `ocsea run --only audit` process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import topics
from contracts.events import Actor, ActorKind, EventType, make_event
from ocsea.runtime.auth import ensure_demo_principals
from ocsea.runtime.consumer import Origin
from ocsea.runtime.settings import Settings
from services.audit.adapters.ledger import Ledger
from services.audit.adapters.ledger_sources import ServiceSource
from services.audit.adapters.signing_key import load_signing_key
from services.audit.bootstrap import build
from services.audit.domain.checkpoint import Checkpoint
from services.audit.domain.entry import canonical_json, event_entry
from services.audit.handlers import Checkpointer, verify_ledger
from testkit.audit import Tamper, cli, tamper
from testkit.system import REPO, free_port
from testkit.triage_events import received
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

SIZE, KEPT, BAD = 40, 30, 7


@dataclass
class Drill:
    url: str
    var_dir: Path
    kept_file: Path

    @property
    def kept(self) -> Checkpoint:
        return Checkpoint.model_validate_json(self.kept_file.read_text())

    def settings(self, stack_env: dict[str, str]) -> Settings:
        return Settings(
            kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"],
            redis_url=stack_env["OCSEA_REDIS_URL"],
            var_dir=self.var_dir,
            audit_db_url=self.url,
        )


@pytest.fixture(params=["sqlite", "postgresql"])
async def drill(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> Drill:
    """A ledger of SIZE entries whose auditor kept the checkpoint of its first KEPT."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    url = url if request.param == "sqlite" else postgres_url
    var_dir = tmp_path / "var"
    key = load_signing_key(var_dir / "audit-signing.key", create=True)
    ledger = Ledger(url)
    await ledger.create()
    checkpointer = Checkpointer(ledger, key, "ocsea-audit")
    entries = [
        event_entry(
            envelope, Origin(topics.REPORTS_RECEIVED, 0, n, hashlib.sha256(b"").hexdigest())
        )
        for n, envelope in enumerate(
            make_event(
                event_type=EventType.REPORT_RECEIVED,
                case_id=uuid.uuid4(),
                producer="intake",
                actor=Actor(kind=ActorKind.PARTNER, id="partner-hotline"),
                data=received(),
            )
            for _ in range(SIZE)
        )
    ]
    await ledger.append_batch(entries[:KEPT])
    kept = await checkpointer.sign_now()
    await ledger.append_batch(entries[KEPT:])
    await checkpointer.sign_now()  # the service's latest, which a database export carries
    await ledger.close()
    kept_file = tmp_path / "kept.json"
    kept_file.write_text(kept.model_dump_json())
    return Drill(url, var_dir, kept_file)


async def _entry(conn: AsyncConnection, seq: int) -> dict[str, object]:
    stored = await conn.scalar(text("SELECT entry FROM audit_entries WHERE seq = :s"), {"s": seq})
    entry: dict[str, object] = json.loads(stored)
    return entry


async def _set_entry(conn: AsyncConnection, seq: int, entry: dict[str, object]) -> None:
    await conn.execute(
        text("UPDATE audit_entries SET entry = :e WHERE seq = :s"),
        {"e": canonical_json(entry).decode(), "s": seq},
    )


async def modify(conn: AsyncConnection) -> None:
    entry = await _entry(conn, BAD)
    entry["action"] = "report.withdrawn"
    await _set_entry(conn, BAD, entry)


async def delete(conn: AsyncConnection) -> None:
    await conn.execute(text("DELETE FROM audit_entries WHERE seq = :s"), {"s": BAD})


async def insert(conn: AsyncConnection) -> None:
    """A forged step slipped in at BAD, everything after it moved up one place."""
    forged = await _entry(conn, BAD)
    forged["source_event_id"] = str(uuid.uuid4())
    forged["action"] = "task.resolved"
    await conn.execute(
        text("UPDATE audit_entries SET seq = seq + 100000 WHERE seq >= :s"), {"s": BAD}
    )
    await conn.execute(text("UPDATE audit_entries SET seq = seq - 99999 WHERE seq >= 100000"))
    await conn.execute(
        text(
            "INSERT INTO audit_entries (seq, dedup_key, case_id, action, actor_id, occurred_at,"
            " recorded_at, entry, leaf_hash) SELECT :s, 'forged', case_id, 'task.resolved',"
            " actor_id, occurred_at, recorded_at, :e, leaf_hash FROM audit_entries"
            " WHERE seq = :moved"
        ),
        {"s": BAD, "moved": BAD + 1, "e": canonical_json(forged).decode()},
    )


async def reorder(conn: AsyncConnection) -> None:
    first, second = await _entry(conn, BAD), await _entry(conn, BAD + 5)
    await _set_entry(conn, BAD, second)
    await _set_entry(conn, BAD + 5, first)


async def after_the_checkpoint(conn: AsyncConnection) -> None:
    entry = await _entry(conn, KEPT + 3)
    entry["actor"] = {"kind": "officer", "id": "someone-else", "agency": None}
    await _set_entry(conn, KEPT + 3, entry)


async def verify_export(drill: Drill, tmp_path: Path) -> tuple[int, str]:
    export = tmp_path / "ledger.export"
    code, output = await asyncio.to_thread(
        cli, "audit", "export", "--ledger", "--db-url", drill.url, "-o", str(export)
    )
    assert code == 0, output
    return await asyncio.to_thread(
        cli, "audit", "verify", str(export), "--checkpoint", str(drill.kept_file)
    )


def verify_through_the_api(drill: Drill, stack_env: dict[str, str]) -> tuple[bool, int | None]:
    settings = drill.settings(stack_env)
    ensure_demo_principals(
        settings.resolved_principals_file, drill.var_dir / "demo-credentials.json", []
    )
    token = json.loads((drill.var_dir / "demo-credentials.json").read_text())["auditor"]["token"]
    with TestClient(
        build(settings, ingest=False), headers={"Authorization": f"Bearer {token}"}
    ) as client:
        source = ServiceSource(client, "the audit API")
        try:
            verdict = verify_ledger(source, drill.kept, page=16)
        finally:
            source.close()
    return verdict.ok, verdict.first_bad_index


async def test_an_untouched_ledger_verifies(
    drill: Drill, tmp_path: Path, stack_env: dict[str, str]
) -> None:
    code, output = await verify_export(drill, tmp_path)
    assert code == 0, output
    assert f"VERIFIED: the ledger's {SIZE} entries" in output
    assert await asyncio.to_thread(verify_through_the_api, drill, stack_env) == (True, None)


@pytest.mark.parametrize(
    ("change", "first_bad"),
    [
        (modify, BAD),
        (delete, BAD),
        (insert, BAD),
        (reorder, BAD),
        (after_the_checkpoint, KEPT + 3),
    ],
    ids=["modify", "delete", "insert", "reorder", "after-checkpoint"],
)
async def test_changed_history_is_caught_at_its_first_bad_index(
    drill: Drill, tmp_path: Path, stack_env: dict[str, str], change: Tamper, first_bad: int
) -> None:
    await tamper(drill.url, change)

    code, output = await verify_export(drill, tmp_path)
    assert code == 1, output
    assert f"FAILED: the ledger's {SIZE} entries" in output
    assert f"first bad index: {first_bad}" in output

    ok, located = await asyncio.to_thread(verify_through_the_api, drill, stack_env)
    assert (ok, located) == (False, first_bad)


async def test_drill_against_a_running_service(
    stack_env: dict[str, str], tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """The whole path: a real audit process ingesting from Kafka, an auditor keeping a
    checkpoint with the CLI, an edit behind its back, `ocsea audit verify URL` failing."""
    var_dir, port = tmp_path / "var", free_port()
    env = {
        **os.environ,
        **stack_env,
        "OCSEA_VAR_DIR": str(var_dir),
        "OCSEA_CONSUMER_GROUP_PREFIX": f"ocsea-drill-{uuid.uuid4().hex[:8]}",
        "OCSEA_AUDIT_PORT": str(port),
        "OCSEA_AUDIT_INGEST_SHARE": "1",  # alone in its process: catch up at full speed
    }
    log = (tmp_path / "audit.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "ocsea.cli", "run", "--only", "audit"),
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        async def ready() -> bool:
            try:
                return (await client.get(f"{url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return process.returncode is not None

        await wait_for(ready, within=60, what="the audit service")
        assert process.returncode is None, (tmp_path / "audit.log").read_text()[-3000:]

        # Dead letters only audits read, so the drill disturbs no other consumer.
        cases = [uuid.uuid4() for _ in range(12)]
        producer = AIOKafkaProducer(bootstrap_servers=stack_env["OCSEA_KAFKA_BOOTSTRAP"])
        await producer.start()
        try:
            for case in cases:
                await producer.send_and_wait(
                    topics.dlq_of(topics.ACCESS), b"drill", key=str(case).encode()
                )
        finally:
            await producer.stop()
        token = json.loads((var_dir / "demo-credentials.json").read_text())["auditor"]["token"]
        headers = {"Authorization": f"Bearer {token}"}

        async def all_recorded() -> bool:
            for case in cases:
                trail = await client.get(f"{url}/v1/audit/cases/{case}/trail", headers=headers)
                if not trail.json()["entries"]:
                    return False
            return True

        await wait_for(all_recorded, within=120, what="the drill's records in the ledger")
        kept = tmp_path / "kept.json"
        tool = ("--token", token)
        code, output = await asyncio.to_thread(
            cli, "audit", "checkpoint", "--url", url, *tool, "-o", str(kept)
        )
        assert code == 0, output
        code, output = await asyncio.to_thread(
            cli, "audit", "verify", url, "--checkpoint", str(kept), *tool
        )
        assert code == 0, output
        assert "VERIFIED" in output

        trail = await client.get(f"{url}/v1/audit/cases/{cases[5]}/trail", headers=headers)
        victim = trail.json()["entries"][0]["leaf_index"]

        async def rewrite(conn: AsyncConnection) -> None:
            entry = await _entry(conn, victim)
            entry["case_id"] = str(uuid.uuid4())
            await _set_entry(conn, victim, entry)

        await tamper(f"sqlite+aiosqlite:///{var_dir / 'audit-ledger.db'}", rewrite)
        code, output = await asyncio.to_thread(
            cli, "audit", "verify", url, "--checkpoint", str(kept), *tool
        )
        assert code == 1, output
        assert f"first bad index: {victim}" in output
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)
        log.close()
