"""`ocsea dlq list|show|redrive`: look at the records parked on the `.dlq` twins, and send them
back to their source topic once what parked them is fixed.

ocsea dlq list [--topic T] [--json]          every parked record: where it came from, which
                                             event, why it was parked, whether re-driven
ocsea dlq show DLQ_TOPIC REF [--json]        one record's metadata and headers
ocsea dlq redrive DLQ_TOPIC (--offset REF … | --all) [--dry-run] [--json]
                                             publish parked records back to their source topic

A record is named by `partition:offset` on its `.dlq` topic (`2:17`); a bare offset will do
when only one partition holds it. A source topic's name stands for its `.dlq` twin.

**Applied exactly once.** A re-drive publishes the dead letter's own key, value and event
headers (so the same `event_id`, and the original trace context) to the topic it came from,
where the partitioner puts it on the case's partition again. Every consumer group of that topic
sees it: a group that already applied the event finds its processed marker
(`ocsea:processed:<group>:<event_id>`) and skips it, and the group that parked it applies it
now. However often a record is re-driven, each group applies it once (within the markers'
lifetime, `OCSEA_PROCESSED_MARKER_TTL_S`, 14 days; after that the handlers' own idempotence
keeps a second application from adding anything). Re-drive a case's records in order: `--all`
goes through each partition in offset order, which is the order its cases' records were parked.

**The re-drive log.** Each re-drive is recorded on `<dlq topic>.redriven`, a compacted topic
with one partition, keyed by the dead letter's `partition:offset`, whose value says when it was
re-driven, where the copy went, and the digest of the bytes it re-drove. Why there:

- Kafka records are immutable, so the dead letter itself cannot be marked; a log beside it,
  in the same cluster, is as durable as the dead letters (`acks=all`, replicated) and needs no
  other store to be up, or to be kept in step with it.
- Compaction keeps the latest mark of every dead letter for good, where a time-retained topic
  would forget it, and Redis keys expire (processed markers do, on purpose) or vanish with a
  flushed database: either would make a later `redrive --all` publish everything again.
- One small record per re-drive: reading the log to its end is cheap.

The copy is published before its mark, so a crash between the two means the next run publishes
it again (as do two operators re-driving at once), which the processed markers absorb; the
other order could lose a re-drive. A mark
counts only for the record whose bytes it names, so a `.dlq` topic deleted and created again
(offsets start at 0) does not inherit the old marks. Two dead letters of one source record (two
groups parked it, or a dead-letter publish was repeated) are re-driven with one copy.

**No personal data on the terminal.** A payload may carry sealed personal data, and an error
message may quote its input, so neither is ever shown: a payload appears as its size and
SHA-256, the error as its type, the fields a contract violation names (their paths, never their
values) and a digest that groups records which failed alike (the consumer's
`event.handler_failed` log line, found by `event_id`, has the message). Of the envelope only
ids, type, version, producer and time are shown, and a header only when its value is a plain
token (no spaces: no free text).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from contracts.topics import DLQ_SUFFIX, dlq_of
from ocsea.runtime import topic_reader
from ocsea.runtime.settings import Settings

REDRIVEN_SUFFIX = ".redriven"
REDRIVEN_FROM_HEADER = "x-ocsea-redriven-from"
# What the reliable consumer adds when it parks a record (`ReliableConsumer._dead_letter`):
# dropped from the re-driven copy, which is not a dead letter.
DEAD_LETTER_HEADERS = frozenset(
    {
        "x-ocsea-error",
        "x-ocsea-error-type",
        "x-ocsea-origin-topic",
        "x-ocsea-origin-partition",
        "x-ocsea-origin-offset",
        "x-ocsea-consumer-group",
        "x-ocsea-attempts",
        "x-ocsea-dead-lettered-at",
    }
)
# Envelope fields that are ids, names of types or times: never content.
ENVELOPE_FACTS = (
    "event_id",
    "event_type",
    "schema_version",
    "case_id",
    "report_id",
    "producer",
    "occurred_at",
)

# A value shown as it is: a token, an id, a time, a topic, a MIME type; no spaces, so no prose.
_PLAIN = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,200}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# A field path in the consumer's `ValidationError: a.b: msg; c: msg` summary.
_FIELD_PATH = re.compile(r"^[A-Za-z0-9_.\[\]-]{0,200}$")


class DlqError(Exception):
    """What the operator asked for cannot be done (no such topic, no such record)."""


# --- what a record is, and how it is named ------------------------------------------------


@dataclass(frozen=True)
class StoredRecord:
    """A Kafka record as read back, whatever client read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


@dataclass(frozen=True, order=True)
class RecordRef:
    """A record's place on its topic, written `partition:offset`."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> RecordRef:
        partition, _, offset = text.strip().partition(":")
        try:
            return cls(int(partition), int(offset))
        except ValueError:
            raise DlqError(f"{text!r} is not partition:offset (e.g. 0:17)") from None


def dlq_topic_name(name: str) -> str:
    """The `.dlq` topic meant: the name itself, or the twin of a source topic."""
    return name if name.endswith(DLQ_SUFFIX) else dlq_of(name)


def redrive_log_of(dlq_topic: str) -> str:
    return dlq_topic + REDRIVEN_SUFFIX


# --- reading a dead letter without showing its content --------------------------------------


def digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _plain(value: object) -> str | None:
    return value if isinstance(value, str) and _PLAIN.match(value) else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def envelope_facts(value: bytes | None) -> dict[str, str]:
    """The envelope's ids, type, version, producer and time, from whatever bytes were parked
    (unreadable ones give nothing); never its data."""
    try:
        document = json.loads(value or b"")
    except (ValueError, RecursionError):
        return {}
    if not isinstance(document, dict):
        return {}
    facts = {name: _plain(document.get(name)) for name in ENVELOPE_FACTS}
    return {name: fact for name, fact in facts.items() if fact is not None}


def shown_header(value: bytes) -> str:
    """A header's value if it is a plain token, else only its size and digest."""
    text = value.decode("utf-8", "replace")
    if not text:
        return ""
    return _plain(text) or f"<withheld: {len(value)} bytes, sha256 {digest(value)[:12]}>"


def reason_of(error_type: str | None, error_text: str | None) -> str:
    """Why a record was parked, without the error's message (it may quote input): its type,
    and for a contract violation the paths of the fields at fault, which are names, never
    values."""
    kind = _plain(error_type) or "unknown"
    if kind != "ValidationError" or not error_text:
        return kind
    body = error_text.removeprefix("ValidationError: ")
    paths = []
    for part in body.split("; "):
        path, separator, _ = part.partition(": ")
        if separator and _FIELD_PATH.match(path):
            paths.append(path or "(whole record)")
    shown = list(dict.fromkeys(paths))
    return f"ValidationError at {', '.join(shown)}" if shown else kind


@dataclass(frozen=True)
class DeadLetter:
    """A parked record: its place, what its headers and envelope say, and its bytes (kept for
    re-driving, never shown)."""

    dlq_topic: str
    ref: RecordRef
    record: StoredRecord
    origin_topic: str | None
    origin_partition: int | None
    origin_offset: int | None
    consumer_group: str | None
    attempts: int | None
    parked_at: str
    event_id: str | None
    event_type: str | None
    case_id: str | None
    error_type: str | None
    error_digest: str | None
    reason: str
    payload_sha256: str
    redriven_from: str | None
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> tuple[str, int, int] | None:
        if self.origin_topic is None or self.origin_partition is None:
            return None
        if self.origin_offset is None:
            return None
        return self.origin_topic, self.origin_partition, self.origin_offset

    def origin_text(self) -> str:
        origin = self.origin
        return "?" if origin is None else f"{origin[0]}[{origin[1]}]@{origin[2]}"


def dead_letter_of(record: StoredRecord) -> DeadLetter:
    """What a parked record says about itself; never fails, whatever its bytes and headers."""
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers}
    facts = envelope_facts(record.value)
    # The envelope's own event_id is what the consumers deduplicate on; the header is a claim.
    event_id = facts.get("event_id") or _plain(headers.get("event_id"))
    case_id = facts.get("case_id") or _plain((record.key or b"").decode("utf-8", "replace"))
    error = headers.get("x-ocsea-error")
    parked_at = _plain(headers.get("x-ocsea-dead-lettered-at")) or datetime.fromtimestamp(
        record.timestamp_ms / 1000, UTC
    ).isoformat(timespec="seconds")
    return DeadLetter(
        dlq_topic=record.topic,
        ref=RecordRef(record.partition, record.offset),
        record=record,
        origin_topic=_plain(headers.get("x-ocsea-origin-topic")),
        origin_partition=_int(headers.get("x-ocsea-origin-partition")),
        origin_offset=_int(headers.get("x-ocsea-origin-offset")),
        consumer_group=_plain(headers.get("x-ocsea-consumer-group")),
        attempts=_int(headers.get("x-ocsea-attempts")),
        parked_at=parked_at,
        event_id=event_id if event_id and _UUID.match(event_id) else None,
        event_type=facts.get("event_type") or _plain(headers.get("event_type")),
        case_id=case_id if case_id and _UUID.match(case_id) else None,
        error_type=_plain(headers.get("x-ocsea-error-type")),
        error_digest=digest(error)[:12] if error is not None else None,
        reason=reason_of(headers.get("x-ocsea-error-type"), error),
        payload_sha256=digest(record.value or b""),
        redriven_from=_plain(headers.get(REDRIVEN_FROM_HEADER)),
        facts=facts,
    )


# --- the re-drive log ----------------------------------------------------------------------


@dataclass(frozen=True)
class Redrive:
    """The mark of one re-drive: which dead letter (by place and bytes), when, and where its
    copy went."""

    ref: RecordRef
    payload_sha256: str
    redriven_at: str
    target_topic: str
    target_partition: int
    target_offset: int
    event_id: str | None

    def key(self) -> bytes:
        return str(self.ref).encode()

    def value(self) -> bytes:
        return json.dumps(
            {
                "payload_sha256": self.payload_sha256,
                "redriven_at": self.redriven_at,
                "target_topic": self.target_topic,
                "target_partition": self.target_partition,
                "target_offset": self.target_offset,
                "event_id": self.event_id,
            },
            sort_keys=True,
        ).encode()

    def target_text(self) -> str:
        return f"{self.target_topic}[{self.target_partition}]@{self.target_offset}"

    def covers(self, letter: DeadLetter) -> bool:
        """Whether this mark is about that very record (not one at the same place of an
        earlier incarnation of the topic)."""
        return self.ref == letter.ref and self.payload_sha256 == letter.payload_sha256


def redrives_of(records: Iterable[StoredRecord]) -> dict[RecordRef, Redrive]:
    """The log's latest mark per dead letter (a later record for a key replaces an earlier
    one, as compaction will; a tombstone removes it); unreadable records are ignored."""
    marks: dict[RecordRef, Redrive] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        try:
            ref = RecordRef.parse((record.key or b"").decode())
        except (DlqError, UnicodeDecodeError):
            continue
        if record.value is None:
            marks.pop(ref, None)
            continue
        try:
            body = json.loads(record.value)
            marks[ref] = Redrive(
                ref=ref,
                payload_sha256=str(body["payload_sha256"]),
                redriven_at=str(body["redriven_at"]),
                target_topic=str(body["target_topic"]),
                target_partition=int(body["target_partition"]),
                target_offset=int(body["target_offset"]),
                event_id=None if body.get("event_id") is None else str(body["event_id"]),
            )
        except (ValueError, TypeError, KeyError):
            continue
    return marks


def mark_of(letter: DeadLetter, marks: dict[RecordRef, Redrive]) -> Redrive | None:
    mark = marks.get(letter.ref)
    return mark if mark is not None and mark.covers(letter) else None


# --- choosing and planning -------------------------------------------------------------------


def select(letters: Sequence[DeadLetter], refs: Sequence[str]) -> list[DeadLetter]:
    """The records named by `partition:offset`, or by a bare offset that only one partition
    has; in the order they are on the topic."""
    by_ref = {letter.ref: letter for letter in letters}
    chosen: dict[RecordRef, DeadLetter] = {}
    for text in refs:
        if ":" in text:
            ref = RecordRef.parse(text)
            if ref not in by_ref:
                raise DlqError(f"no parked record {ref} on {_topic_of(letters)}")
            chosen[ref] = by_ref[ref]
            continue
        offset = _int(text.strip())
        if offset is None:
            raise DlqError(f"{text!r} is not partition:offset (e.g. 0:17) or an offset")
        matches = [letter for letter in letters if letter.ref.offset == offset]
        if not matches:
            raise DlqError(f"no parked record at offset {offset} on {_topic_of(letters)}")
        if len(matches) > 1:
            places = ", ".join(str(letter.ref) for letter in matches)
            raise DlqError(f"offset {offset} is on several partitions: name one of {places}")
        chosen[matches[0].ref] = matches[0]
    return sorted(chosen.values(), key=lambda letter: letter.ref)


def _topic_of(letters: Sequence[DeadLetter]) -> str:
    return letters[0].dlq_topic if letters else "the topic"


@dataclass(frozen=True)
class PlannedRedrive:
    """One copy to publish, and every dead letter of the same source record it settles."""

    letter: DeadLetter
    settles: tuple[DeadLetter, ...]


@dataclass
class RedrivePlan:
    publish: list[PlannedRedrive] = field(default_factory=list)
    already: list[tuple[DeadLetter, Redrive]] = field(default_factory=list)
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)


def plan_redrive(
    dlq_topic: str, chosen: Sequence[DeadLetter], marks: dict[RecordRef, Redrive]
) -> RedrivePlan:
    """What a re-drive of `chosen` publishes: each record not re-driven yet whose origin is
    known and belongs to this `.dlq` topic, one copy per source record, in topic order."""
    plan = RedrivePlan()
    copies: dict[tuple[tuple[str, int, int], str], list[DeadLetter]] = {}
    for letter in sorted(chosen, key=lambda item: item.ref):
        mark = mark_of(letter, marks)
        origin = letter.origin
        if mark is not None:
            plan.already.append((letter, mark))
        elif origin is None:
            plan.refused.append((letter, "its headers do not say where it came from"))
        elif dlq_of(origin[0]) != dlq_topic:
            plan.refused.append(
                (letter, f"its origin {origin[0]} is not the source of {dlq_topic}")
            )
        else:
            copies.setdefault((origin, letter.payload_sha256), []).append(letter)
    plan.publish = [PlannedRedrive(group[0], tuple(group)) for group in copies.values()]
    return plan


def redrive_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The copy's headers: the producer's own (event id and type, trace context), without the
    dead-letter ones, and naming the dead letter it came from."""
    kept = [
        (name, value)
        for name, value in letter.record.headers
        if name not in DEAD_LETTER_HEADERS and name != REDRIVEN_FROM_HEADER
    ]
    return [*kept, (REDRIVEN_FROM_HEADER, f"{letter.dlq_topic}:{letter.ref}".encode())]


# --- presenting --------------------------------------------------------------------------------


def summary(letter: DeadLetter, mark: Redrive | None) -> dict[str, Any]:
    """A parked record as `list --json` gives it: no payload, no error message."""
    return {
        "dlq_topic": letter.dlq_topic,
        "ref": str(letter.ref),
        "partition": letter.ref.partition,
        "offset": letter.ref.offset,
        "origin_topic": letter.origin_topic,
        "origin_partition": letter.origin_partition,
        "origin_offset": letter.origin_offset,
        "consumer_group": letter.consumer_group,
        "event_id": letter.event_id,
        "event_type": letter.event_type,
        "case_id": letter.case_id,
        "parked_at": letter.parked_at,
        "attempts": letter.attempts,
        "error_type": letter.error_type,
        "error_sha256": letter.error_digest,
        "reason": letter.reason,
        "redriven_from": letter.redriven_from,
        "redriven": mark is not None,
        "redriven_at": mark.redriven_at if mark else None,
        "redriven_to": mark.target_text() if mark else None,
    }


def details(letter: DeadLetter, mark: Redrive | None) -> dict[str, Any]:
    """One parked record as `show` gives it: the summary, the envelope's facts, the payload's
    size and digest, and the headers (free text withheld)."""
    return {
        **summary(letter, mark),
        "key": letter.case_id or shown_header(letter.record.key or b""),
        "timestamp": datetime.fromtimestamp(letter.record.timestamp_ms / 1000, UTC).isoformat(),
        "payload_bytes": len(letter.record.value or b""),
        "payload_sha256": letter.payload_sha256,
        "envelope": letter.facts,
        "headers": {name: shown_header(value) for name, value in letter.record.headers},
    }


TABLE_COLUMNS = ("REF", "ORIGIN", "GROUP", "EVENT ID", "EVENT TYPE", "PARKED AT", "REASON")


def table(letters: Sequence[DeadLetter], marks: dict[RecordRef, Redrive]) -> str:
    """A plain table of parked records, one a line."""
    rows = [
        (
            str(letter.ref),
            letter.origin_text(),
            letter.consumer_group or "?",
            letter.event_id or "?",
            letter.event_type or "?",
            letter.parked_at,
            letter.reason,
            _redriven_text(mark_of(letter, marks)),
        )
        for letter in letters
    ]
    header = (*TABLE_COLUMNS, "REDRIVEN")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _redriven_text(mark: Redrive | None) -> str:
    return f"{mark.redriven_at} -> {mark.target_text()}" if mark else "no"


def details_text(info: dict[str, Any]) -> str:
    lines = [f"{name}: {_shown(value)}" for name, value in info.items() if name != "headers"]
    lines.append("headers:")
    lines += [f"  {name}: {value}" for name, value in info["headers"].items()]
    return "\n".join(lines)


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


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


# --- the commands --------------------------------------------------------------------------

app = typer.Typer(
    help="Records parked on the .dlq topics: list, show, re-drive", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]
WithinOption = Annotated[
    float,
    typer.Option("--read-timeout", min=1, help="Seconds to read a topic to its end"),
]


def _settings() -> Settings:
    return Settings()


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"dlq: {exc}", err=True)
    return typer.Exit(1)


@app.command("list")
def list_command(
    topic: Annotated[
        str | None,
        typer.Option(help="One .dlq topic (or its source topic); default: every .dlq topic"),
    ] = None,
    json_output: JsonOption = False,
    within_s: WithinOption = 60.0,
) -> None:
    """Every parked record: its origin, event, why it was parked, whether it was re-driven."""
    settings = _settings()

    async def gather() -> list[Parked]:
        names = [dlq_topic_name(topic)] if topic else await dlq_topics(settings.kafka_bootstrap)
        return await read_parked(settings, names, within_s=within_s)

    try:
        everything = asyncio.run(gather())
    except (DlqError, KafkaError, TimeoutError) as exc:
        raise _fail(exc) from exc
    if json_output:
        rows = [
            summary(letter, mark_of(letter, parked.marks))
            for parked in everything
            for letter in parked.letters
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    for parked in everything:
        redriven = sum(mark_of(letter, parked.marks) is not None for letter in parked.letters)
        typer.echo(f"{parked.topic}: {len(parked.letters)} parked, {redriven} re-driven")
        if parked.letters:
            typer.echo(table(parked.letters, parked.marks))
    if not everything:
        typer.echo("no .dlq topics")


@app.command()
def show(
    dlq_topic: Annotated[str, typer.Argument(help="The .dlq topic (or its source topic)")],
    ref: Annotated[str, typer.Argument(help="partition:offset (or an offset)")],
    json_output: JsonOption = False,
    within_s: WithinOption = 60.0,
) -> None:
    """One parked record's metadata and headers (the payload only as size and digest)."""
    settings = _settings()
    name = dlq_topic_name(dlq_topic)
    try:
        [parked] = asyncio.run(read_parked(settings, [name], within_s=within_s))
        [letter] = select(parked.letters, [ref])
    except (DlqError, KafkaError, TimeoutError) as exc:
        raise _fail(exc) from exc
    info = details(letter, mark_of(letter, parked.marks))
    typer.echo(json.dumps(info, indent=2) if json_output else details_text(info))


@app.command("redrive")
def redrive_command(
    dlq_topic: Annotated[str, typer.Argument(help="The .dlq topic (or its source topic)")],
    offset: Annotated[
        list[str] | None,
        typer.Option("--offset", help="partition:offset (or an offset) of a record; repeatable"),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every record not re-driven yet")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be published; publish nothing")
    ] = False,
    json_output: JsonOption = False,
    within_s: WithinOption = 60.0,
) -> None:
    """Publish parked records back to their source topic, once each, after their cause is fixed.

    The copy keeps the record's key, value and event id: a consumer group that applied the
    event already skips it, so it is applied once."""
    if bool(offset) == all_:
        raise typer.BadParameter("give --offset (one or more) or --all", param_hint="--offset")
    settings = _settings()

    def say(line: str) -> None:
        typer.echo(line, err=True)

    try:
        outcome = asyncio.run(
            redrive(
                settings,
                dlq_topic_name(dlq_topic),
                None if all_ else offset,
                dry_run=dry_run,
                within_s=within_s,
                progress=say,
            )
        )
    except (DlqError, KafkaError, TimeoutError) as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(outcome.as_dict(), indent=2) if json_output else outcome.as_text())
