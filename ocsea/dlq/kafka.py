"""Reading dead letters and their re-drive log from Kafka, and re-driving them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts.topics import DLQ_SUFFIX
from ocsea.dlq.letters import (
    DeadLetter,
    DlqError,
    PlannedRedrive,
    RecordRef,
    Redrive,
    RedrivePlan,
    StoredRecord,
    dead_letter_of,
    plan_redrive,
    redrive_headers,
    redrive_log_of,
    redrives_of,
    select,
)
from ocsea.runtime import topic_reader
from ocsea.runtime.settings import Settings

# --- Kafka ------------------------------------------------------------------------------------


async def existing_topics(bootstrap: str) -> set[str]:
    """The cluster's topics. (Asking about one by name would create it on a broker that
    auto-creates topics, which a look must never do.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def dlq_topics(bootstrap: str) -> list[str]:
    return sorted(t for t in await existing_topics(bootstrap) if t.endswith(DLQ_SUFFIX))


async def read_to_end(
    bootstrap: str, topics: Sequence[str], *, within_s: float
) -> dict[str, list[StoredRecord]]:
    """Every record of existing topics up to their end as of now, in topic order, read by one
    consumer in no group (it commits nothing and moves no one's offsets)."""
    found: dict[str, list[StoredRecord]] = {topic: [] for topic in topics}
    try:
        async for records in topic_reader.read_to_end(bootstrap, topics, within_s=within_s):
            found[records[0].topic] += [
                StoredRecord(
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    tuple(r.headers or ()),
                    int(r.timestamp or 0),
                )
                for r in records
            ]
    except topic_reader.TopicReadTimeoutError as exc:
        raise DlqError(str(exc)) from exc
    return {
        topic: sorted(records, key=lambda r: (r.partition, r.offset))
        for topic, records in found.items()
    }


@dataclass
class Parked:
    """A `.dlq` topic's records and its re-drive log, as read now."""

    topic: str
    letters: list[DeadLetter]
    marks: dict[RecordRef, Redrive]


async def read_parked(
    settings: Settings, dlq_topics: Sequence[str], *, within_s: float
) -> list[Parked]:
    """The named `.dlq` topics' records and re-drive logs, read together."""
    existing = await existing_topics(settings.kafka_bootstrap)
    missing = [name for name in dlq_topics if name not in existing]
    if missing:
        raise DlqError(f"no topic {', '.join(missing)}")
    logs = [redrive_log_of(name) for name in dlq_topics if redrive_log_of(name) in existing]
    records = await read_to_end(settings.kafka_bootstrap, [*dlq_topics, *logs], within_s=within_s)
    return [
        Parked(
            name,
            [dead_letter_of(r) for r in records[name]],
            redrives_of(records.get(redrive_log_of(name), [])),
        )
        for name in dlq_topics
    ]


async def ensure_redrive_log(settings: Settings, dlq_topic: str) -> None:
    """Create the compacted re-drive log if it does not exist yet (before anything is written
    to it: a broker that auto-creates topics would make it a time-retained one)."""
    name = redrive_log_of(dlq_topic)
    if name in await existing_topics(settings.kafka_bootstrap):
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        topic = NewTopic(
            name,
            1,
            settings.topic_replication_factor,
            topic_configs={"cleanup.policy": "compact"},
        )
        response = await admin.create_topics([topic])
        for created, code, *message in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise DlqError(f"cannot create {created}: error {code} {message}")
    finally:
        await admin.close()


@dataclass
class RedriveOutcome:
    dlq_topic: str
    dry_run: bool
    plan: RedrivePlan
    published: list[tuple[PlannedRedrive, Redrive]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dlq_topic": self.dlq_topic,
            "dry_run": self.dry_run,
            "published": [
                {
                    "refs": [str(letter.ref) for letter in planned.settles],
                    "event_id": planned.letter.event_id,
                    "to": mark.target_text(),
                }
                for planned, mark in self.published
            ],
            "would_publish": [
                {
                    "refs": [str(letter.ref) for letter in planned.settles],
                    "event_id": planned.letter.event_id,
                    "to": planned.letter.origin_topic,
                }
                for planned in (self.plan.publish if self.dry_run else [])
            ],
            "already_redriven": [
                {"ref": str(letter.ref), "at": mark.redriven_at, "to": mark.target_text()}
                for letter, mark in self.plan.already
            ],
            "not_redrivable": [
                {"ref": str(letter.ref), "why": why} for letter, why in self.plan.refused
            ],
        }

    def as_text(self) -> str:
        verb = "would publish" if self.dry_run else "published"
        count = len(self.plan.publish) if self.dry_run else len(self.published)
        return (
            f"{self.dlq_topic}: {verb} {count}, already re-driven {len(self.plan.already)}, "
            f"not re-drivable {len(self.plan.refused)}"
        )


async def redrive(
    settings: Settings,
    dlq_topic: str,
    refs: Sequence[str] | None,
    *,
    dry_run: bool,
    within_s: float,
    progress: Callable[[str], None],
) -> RedriveOutcome:
    """Publish the chosen parked records (all when `refs` is None) back to their source topic,
    each once: see the module's docstring."""
    [parked] = await read_parked(settings, [dlq_topic], within_s=within_s)
    chosen = parked.letters if refs is None else select(parked.letters, refs)
    plan = plan_redrive(dlq_topic, chosen, parked.marks)
    outcome = RedriveOutcome(dlq_topic, dry_run, plan)
    for letter, mark in plan.already:
        progress(f"{letter.ref}: already re-driven at {mark.redriven_at} to {mark.target_text()}")
    for letter, why in plan.refused:
        progress(f"{letter.ref}: not re-drivable: {why}")
    if dry_run:
        for planned in plan.publish:
            progress(
                f"{_refs(planned)}: would publish event {planned.letter.event_id} to "
                f"{planned.letter.origin_topic}"
            )
        return outcome
    if not plan.publish:
        return outcome
    await ensure_redrive_log(settings, dlq_topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="ocsea-dlq",
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=int(settings.publish_timeout_s * 1000),
    )
    await producer.start()
    try:
        for number, planned in enumerate(plan.publish, start=1):
            letter = planned.letter
            assert letter.origin_topic is not None  # the plan only publishes known origins
            sent = await producer.send_and_wait(
                letter.origin_topic,
                value=letter.record.value,
                key=letter.record.key,
                headers=redrive_headers(letter),
            )
            at = datetime.now(UTC).isoformat(timespec="seconds")
            mark = Redrive(
                ref=letter.ref,
                payload_sha256=letter.payload_sha256,
                redriven_at=at,
                target_topic=letter.origin_topic,
                target_partition=int(sent.partition),
                target_offset=int(sent.offset),
                event_id=letter.event_id,
            )
            for settled in planned.settles:
                await producer.send_and_wait(
                    redrive_log_of(dlq_topic),
                    value=mark.value(),
                    key=str(settled.ref).encode(),
                )
            outcome.published.append((planned, mark))
            progress(
                f"[{number}/{len(plan.publish)}] {_refs(planned)}: event {letter.event_id} "
                f"-> {mark.target_text()}"
            )
    finally:
        await producer.stop()
    return outcome


def _refs(planned: PlannedRedrive) -> str:
    return ",".join(str(letter.ref) for letter in planned.settles)
