"""The acceptance drill of a ledger that cannot be fooled, on the real Kafka with SQLite and the
real PostgreSQL: a forged event is published under a real event's id ahead of it, and the
ledger records the conflict; records skipped by moving the consumer group's offset are recorded
as a gap when the ingest comes back; the ledger still verifies, and its checkpoint, as a C2SP
`tlog-checkpoint` note, is checked by a verifier written from the specification against the
RFC 6962 root of the ledger's entries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from contracts.events import Envelope
from ocsea.runtime.consumer import ProcessedMarkers, ReliableConsumer, RetryPolicy
from ocsea.runtime.kafka import make_broker
from ocsea.runtime.settings import Settings
from services.audit.adapters.ledger import Ledger
from services.audit.adapters.signing_key import load_signing_key
from services.audit.domain.entry import CONFLICT, OFFSET_GAP
from services.audit.entrypoints.kafka import Recorder
from services.audit.handlers import Checkpointer
from services.audit.ports import SearchFilter
from testkit.audit import access_event, cli, rfc6962_root, spec_open
from testkit.kafka import create_topic
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration


@dataclass
class Drill:
    settings: Settings
    db_url: str
    topic: str
    group: str
    tmp_path: Path


@pytest.fixture(params=["sqlite", "postgresql"])
async def drill(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_url: str,
    stack_env: dict[str, str],
) -> AsyncIterator[Drill]:
    """A topic of its own (one partition, so offsets are easy to name), a consumer group of
    its own, and an empty ledger."""
    settings = Settings(
        kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"], redis_url=stack_env["OCSEA_REDIS_URL"]
    )
    topic = f"ocsea.test.forgery.{uuid.uuid4().hex[:8]}"
    await create_topic(settings.kafka_bootstrap, topic, partitions=1)
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    yield Drill(
        settings,
        url if request.param == "sqlite" else postgres_url,
        topic,
        f"ocsea-test-forgery-{uuid.uuid4().hex[:8]}",
        tmp_path,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def ingest(drill: Drill, ledger: Ledger, until: Callable[[], Awaitable[bool]]) -> Recorder:
    """The audit's ingest (its recorder behind the reliable consumer's raw mode), run until
    `until` holds; a fresh recorder each time, as after a restart."""
    recorder = Recorder(ledger, CollectorRegistry())
    redis = Redis.from_url(drill.settings.redis_url)
    broker = make_broker(drill.settings, service="test", registry=CollectorRegistry())
    ReliableConsumer(
        broker,
        topics=[drill.topic],
        group_id=drill.group,
        raw_handler=recorder,
        markers=ProcessedMarkers(redis, 600),
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05),
    )
    await broker.start()
    try:
        await wait_for(until, within=60, what="the ledger to record the drill's records")
    finally:
        await broker.stop()
        await redis.aclose()
    return recorder


async def entries(ledger: Ledger, action: str) -> list[dict[str, Any]]:
    return [e.entry for e in await ledger.search(SearchFilter(action=action))]


async def test_a_forged_event_ahead_of_the_real_one_and_skipped_offsets_are_recorded(
    drill: Drill,
) -> None:
    ledger = Ledger(drill.db_url)
    await ledger.create()
    checkpointer = Checkpointer(
        ledger, load_signing_key(drill.tmp_path / "key.pem", create=True), "ocsea.test/audit"
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=drill.settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()

    async def publish(envelope: Envelope | bytes) -> Any:
        body = envelope if isinstance(envelope, bytes) else envelope.model_dump_json().encode()
        return await producer.send_and_wait(drill.topic, body, key=b"case")

    try:
        # Someone who learned a real access record's event id publishes a forgery under it
        # (someone else looked), ahead of the real record; then another forgery afterwards,
        # and the real record once more (a redelivery).
        case = uuid.uuid4()
        real = access_event("officer-erbil-cpu", case)
        forged = access_event("officer-duhok-cpu", case, real.event_id)
        later = access_event("officer-sulaymaniyah-cpu", case, real.event_id)
        before = await publish(access_event("officer-erbil-cpu", uuid.uuid4()))
        forged_at = await publish(forged)
        real_at = await publish(real)

        async def both_recorded() -> bool:
            return len(await entries(ledger, CONFLICT)) == 1

        recorder = await ingest(drill, ledger, both_recorded)
        later_at = await publish(later)
        await publish(real)
        last = await publish(access_event("officer-erbil-cpu", uuid.uuid4()))

        async def all_recorded() -> bool:
            recorded = await ledger.search(SearchFilter(after=-1, limit=100))
            return any(e.entry["offset"] == last.offset for e in recorded)

        await ingest(drill, ledger, all_recorded)
        trail = [e.entry for e in await ledger.case_trail(str(case))]
        [recorded] = [e for e in trail if e["action"] == "case.viewed"]
        conflicts = [e for e in trail if e["action"] == CONFLICT]
        # The forgery came first and keeps the id; the real record is kept, as a conflict.
        assert recorded["source_event_id"] == str(real.event_id)
        assert recorded["actor"]["id"] == "officer-duhok-cpu"
        assert recorded["offset"] == forged_at.offset
        assert [(c["offset"], c["actor"]["id"]) for c in conflicts] == [
            (real_at.offset, "officer-erbil-cpu"),
            (later_at.offset, "officer-sulaymaniyah-cpu"),
        ]
        for conflict, version in zip(conflicts, (real, later), strict=True):
            body = version.model_dump_json().encode()
            assert conflict["event_sha256"] == hashlib.sha256(body).hexdigest()
            assert conflict["detail"]["contested_key"] == str(real.event_id)
            assert conflict["detail"]["recorded_leaf_index"] == recorded["seq"]
            assert conflict["detail"]["recorded_offset"] == forged_at.offset
            assert conflict["detail"]["recorded_sha256"] == recorded["event_sha256"]
            # Who looked differs (and when each was made); the case, the action do not.
            assert {"actor"} <= set(conflict["detail"]["differing_fields"]) <= {"actor", "time"}
        assert recorder.conflicts.labels(topic=drill.topic)._value.get() == 1
        assert await entries(ledger, OFFSET_GAP) == []  # contiguous so far
        assert await ledger.size() == 5  # the redelivered real record added nothing
        kept = await checkpointer.sign_now()

        # While the ingest is down, three records arrive and someone moves the audit's
        # consumer group past them; the ingest comes back (a new process) to one more.
        skipped = [await publish(b"skipped") for _ in range(3)]
        mover = AIOKafkaConsumer(
            bootstrap_servers=drill.settings.kafka_bootstrap,
            group_id=drill.group,
            enable_auto_commit=False,
        )
        await mover.start()
        try:
            partition = TopicPartition(drill.topic, 0)
            mover.assign([partition])
            await mover.commit({partition: skipped[-1].offset + 1})
        finally:
            await mover.stop()
        after = await publish(b"after the gap")

        async def gap_recorded() -> bool:
            return bool(await entries(ledger, OFFSET_GAP))

        restarted = await ingest(drill, ledger, gap_recorded)
        [gap] = await entries(ledger, OFFSET_GAP)
        assert (gap["topic"], gap["partition"]) == (drill.topic, 0)
        assert gap["detail"] == {
            "first_missing_offset": skipped[0].offset,
            "next_offset_seen": after.offset,
            "missing_records": 3,
        }
        assert restarted.offset_gaps.labels(topic=drill.topic)._value.get() == 1
        assert restarted.missing_records.labels(topic=drill.topic)._value.get() == 3
        # The gap is recorded just before the record that revealed it.
        leaves = await ledger.leaves(gap["seq"], gap["seq"] + 2)
        assert [json.loads(leaf.text or "{}")["offset"] for leaf in leaves] == [None, after.offset]
        assert before.offset < forged_at.offset < real_at.offset

        # The whole ledger verifies against the checkpoint kept before the gap.
        head = await checkpointer.sign_now()
        kept_file = drill.tmp_path / "kept.json"
        kept_file.write_text(kept.model_dump_json())
        export = drill.tmp_path / "ledger.export"
        code, output = await asyncio.to_thread(
            cli, "audit", "export", "--ledger", "--db-url", drill.db_url, "-o", str(export)
        )
        assert code == 0, output
        code, output = await asyncio.to_thread(
            cli, "audit", "verify", str(export), "--checkpoint", str(kept_file)
        )
        assert code == 0, output
        assert f"VERIFIED: the ledger's {head.tree_size} entries" in output
        assert "2 conflict(s)" in output
        assert "1 offset gap(s)" in output

        # The same head as a C2SP tlog-checkpoint, checked from the specification, commits to
        # the RFC 6962 root of exactly the ledger's entries.
        note = await checkpointer.tlog_checkpoint()
        origin, size, root = spec_open(note, checkpointer.verifier_key)
        texts = [leaf.text for leaf in await ledger.leaves(0, size)]
        assert None not in texts
        assert (origin, size) == ("ocsea.test/audit", head.tree_size)
        assert root == rfc6962_root([t.encode() for t in texts if t is not None]) == head.root
        assert base64.b64encode(root).decode() in note
    finally:
        await producer.stop()
        await ledger.close()
