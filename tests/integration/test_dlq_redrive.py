"""`ocsea dlq` against the real broker and Redis: a record parked because of a bug comes back
once the bug is fixed, is applied exactly once, and a second re-drive publishes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.events import Actor, ActorKind, Envelope, utc_now
from contracts.topics import dlq_of
from ocsea.dlq.kafka import read_parked, redrive
from ocsea.dlq.letters import (
    DEAD_LETTER_HEADERS,
    REDRIVEN_FROM_HEADER,
    details,
    mark_of,
    redrive_log_of,
    select,
)
from ocsea.runtime.consumer import Origin
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.settings import Settings
from testkit.consumers import running_consumer
from testkit.kafka import end_offsets, read_all
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "Shilan Ahmed, +964 750 123 4567"


def event(case_id: uuid.UUID) -> Envelope:
    """An event whose data stands for sealed personal data: it must never be printed."""
    return Envelope(
        event_id=uuid.uuid4(),
        event_type="report.triaged",
        occurred_at=utc_now(),
        case_id=case_id,
        producer="test",
        actor=Actor(kind=ActorKind.SYSTEM, id="test"),
        data={"narrative": SECRET},
    )


async def dlq_cli(env: dict[str, str], *args: str) -> str:
    """`ocsea dlq …` as an operator runs it, in a process of its own (the consumer's log lines
    in this one must not mix with its output); fails the test on a non-zero exit."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ocsea.cli", "dlq", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    result = await asyncio.to_thread(run)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    return result.stdout


async def test_a_record_parked_by_a_bug_is_re_driven_after_the_fix_and_applied_once(
    stack_env: dict[str, str],
) -> None:
    settings = Settings(
        kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"], redis_url=stack_env["OCSEA_REDIS_URL"]
    )
    env = {**os.environ, **stack_env}
    bootstrap = settings.kafka_bootstrap
    topic = f"ocsea.test.dlq-redrive.{uuid.uuid4().hex[:8]}"
    dlq = dlq_of(topic)
    case = uuid.uuid4()
    # A is applied by another route before the re-drive; B only through it.
    a, b, good = event(case), event(case), event(uuid.uuid4())
    bug = {"present": True}
    applied: Counter[str] = Counter()

    async def handler(envelope: Envelope, origin: Origin) -> None:
        if bug["present"] and envelope.event_id in (a.event_id, b.event_id):
            raise RuntimeError(f"handler bug near {SECRET}")
        applied[str(envelope.event_id)] += 1

    def count_of(envelope: Envelope) -> int:
        return applied[str(envelope.event_id)]

    def applied_once(envelope: Envelope) -> Callable[[], Awaitable[bool]]:
        async def probe() -> bool:
            return count_of(envelope) == 1

        return probe

    async with running_consumer(settings, topic, handler) as (broker, _):
        for envelope in (a, b, good):
            await publish_event(broker, topic, envelope)

        async def both_parked() -> list[Any] | None:
            records = await read_all(bootstrap, dlq)
            # Dead-lettering is at-least-once: a record may be parked twice.
            return records if len({r.value for r in records}) == 2 else None

        parked = await wait_for(both_parked, what="both records on the DLQ")
        await wait_for(applied_once(good), what="the good record applied")

        # The operator looks: both records, where they came from, why, no payload.
        listed = json.loads(await dlq_cli(env, "list", "--topic", topic, "--json"))
        assert {row["event_id"] for row in listed} == {str(a.event_id), str(b.event_id)}
        by_event = {row["event_id"]: row for row in listed}
        for row in listed:
            assert row["dlq_topic"] == dlq
            assert row["origin_topic"] == topic
            assert row["reason"] == "RuntimeError"
            assert row["attempts"] == 3
            assert row["redriven"] is False
        ref_a, ref_b = by_event[str(a.event_id)]["ref"], by_event[str(b.event_id)]["ref"]

        # The same through the command's functions (quicker than a process each).
        [seen] = await read_parked(settings, [dlq], within_s=30)
        [letter_b] = select(seen.letters, [ref_b])
        shown = details(letter_b, mark_of(letter_b, seen.marks))
        [b_parked, *_] = [r for r in parked if f"{r.partition}:{r.offset}" == ref_b]
        assert shown["payload_sha256"] == hashlib.sha256(b_parked.value).hexdigest()
        assert shown["payload_bytes"] == len(b_parked.value)
        assert shown["envelope"]["event_id"] == str(b.event_id)
        assert shown["headers"]["x-ocsea-error"].startswith("<withheld: ")
        assert SECRET not in json.dumps(shown)

        # The bug is fixed; meanwhile A reached the consumer again (a producer's retry).
        bug["present"] = False
        await publish_event(broker, topic, a)
        await wait_for(applied_once(a), what="A applied by its retry")

        before = await end_offsets(bootstrap, topic)
        progress: list[str] = []
        dry = await redrive(
            settings, dlq, None, dry_run=True, within_s=30, progress=progress.append
        )
        assert "would publish 2, already re-driven 0" in dry.as_text()
        assert await end_offsets(bootstrap, topic) == before

        done = await redrive(
            settings, dlq, None, dry_run=False, within_s=30, progress=progress.append
        )
        assert sorted(str(planned.letter.event_id) for planned, _ in done.published) == sorted(
            [str(a.event_id), str(b.event_id)]
        )
        assert len([line for line in progress if line.startswith(("[1/2]", "[2/2]"))]) == 2
        await wait_for(applied_once(b), what="B applied after the re-drive")
        # A record after the copies on the case's partition: once it is applied, the copy of
        # A before it has been seen too.
        after = event(case)
        await publish_event(broker, topic, after)
        await wait_for(applied_once(after), what="the record after the copies")
        assert count_of(a) == 1
        assert count_of(b) == 1
        assert count_of(good) == 1

        copies = [
            r
            for r in await read_all(bootstrap, topic)
            if any(name == REDRIVEN_FROM_HEADER for name, _ in r.headers)
        ]
        assert len(copies) == 2
        assert {r.value for r in copies} == {r.value for r in parked}
        assert {r.key for r in copies} == {str(case).encode()}
        for copy in copies:
            names = {name for name, _ in copy.headers}
            assert not names & DEAD_LETTER_HEADERS
            assert "event_id" in names

        # Re-running publishes nothing new, and says so.
        published = await end_offsets(bootstrap, topic)
        again = json.loads(await dlq_cli(env, "redrive", dlq, "--all", "--json"))
        assert again["published"] == []
        assert sorted(item["ref"] for item in again["already_redriven"]) == sorted([ref_a, ref_b])
        one = await redrive(
            settings, dlq, [ref_b], dry_run=False, within_s=30, progress=progress.append
        )
        assert "published 0, already re-driven 1" in one.as_text()
        assert await end_offsets(bootstrap, topic) == published

        relisted = await dlq_cli(env, "list", "--topic", dlq)
        for copy in copies:
            came_from = dict(copy.headers)[REDRIVEN_FROM_HEADER].decode()
            ref = came_from.removeprefix(f"{dlq}:")
            [line] = [line for line in relisted.splitlines() if line.startswith(f"{ref} ")]
            assert line.endswith(f"-> {topic}[{copy.partition}]@{copy.offset}")

    assert await _cleanup_policy(bootstrap, redrive_log_of(dlq)) == "compact"


async def _cleanup_policy(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})]
        )
    finally:
        await admin.close()
    [resource] = response.to_object()["resources"]
    [entry] = resource["config_entries"]
    return str(entry["config_value"])
