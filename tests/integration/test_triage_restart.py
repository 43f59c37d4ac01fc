"""Re-triage after a restart: the case's earlier evidence is not held in the process.

Triage runs alone (`ocsea triage`) in a subprocess with its own consumer group, which starts
at the current end of `reports.received` (offsets committed beforehand, as a restarted
service would have them), so the test does not wait for it to re-read the broker's history.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from contracts import topics
from contracts.events import IncidentFacts, ReportReceivedData, SurvivorFacts, utc_now
from contracts.reports import Channel
from ocsea.runtime.topic_reader import partitions_of
from testkit.kafka import read_all
from testkit.system import REPO, free_port
from testkit.waiting import wait_for
from tests.triage.events import publish, received_event

pytestmark = pytest.mark.integration


async def commit_end_offsets(bootstrap: str, group: str, topic: str) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await partitions_of(bootstrap, [topic])
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


@contextlib.contextmanager
def triage_service(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "ocsea.cli", "triage"],
        cwd=REPO,
        env={**env, "OCSEA_TRIAGE_PORT": str(port)},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"triage exited early:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"triage not ready in 60 s:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, log.read_text()[-3000:]


def report(**facts: Any) -> ReportReceivedData:
    return ReportReceivedData(
        report_id=uuid.uuid4(),
        partner_id="partner-hotline",
        channel=Channel.NGO,
        received_at=utc_now(),
        incident=IncidentFacts(),
        survivors=(SurvivorFacts(survivor_ref="s1", **facts),),
    )


async def test_a_case_is_re_triaged_on_its_combined_evidence_after_a_restart(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    prefix = f"ocsea-triage-restart-{uuid.uuid4().hex[:8]}"
    bootstrap = stack_env["OCSEA_KAFKA_BOOTSTRAP"]
    await commit_end_offsets(bootstrap, f"{prefix}.triage", topics.REPORTS_RECEIVED)
    env = {
        **os.environ,
        **stack_env,
        "OCSEA_VAR_DIR": str(tmp_path / "var"),
        "OCSEA_CONSUMER_GROUP_PREFIX": prefix,
    }
    case_id = uuid.uuid4()

    async def events() -> list[dict[str, Any]]:
        records = await read_all(bootstrap, topics.REPORTS_TRIAGED)
        mine = sorted(
            (r for r in records if r.key == str(case_id).encode()), key=lambda r: r.offset
        )
        # At least once: a redelivery republishes the same event, recognised by its id.
        first_seen: dict[str, dict[str, Any]] = {}
        for record in mine:
            event = json.loads(record.value)
            first_seen.setdefault(event["event_id"], event)
        return list(first_seen.values())

    earlier = report(stated_age=30)
    with triage_service(env, tmp_path / "first.log"):
        await publish(bootstrap, [received_event(case_id, earlier)])
        [triaged] = await wait_for(events, within=30, what="the first result")
        assert triaged["data"]["classification"] == "TFGBV"

    later = report(age_at_report=16)
    with triage_service(env, tmp_path / "second.log"):
        await publish(bootstrap, [received_event(case_id, later)])

        async def reclassified() -> list[dict[str, Any]] | None:
            found = await events()
            return found if len(found) >= 3 else None

        found = await wait_for(reclassified, within=30, what="the re-triage after the restart")
    assert [e["event_type"] for e in found] == [
        "report.triaged",
        "case.reclassified",
        "report.triaged",
    ]
    assert found[1]["data"]["old_classification"] == "TFGBV"
    assert found[1]["data"]["new_classification"] == "TF-CSEA"
    result = found[2]["data"]
    assert result["case_report_ids"] == [str(earlier.report_id), str(later.report_id)]
    assert result["age_basis"] == "date_of_birth_at_report"
