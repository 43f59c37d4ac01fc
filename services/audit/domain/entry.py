"""Audit entries: what the ledger records of each Kafka record, canonically encoded.

An entry names ids, the action and a digest of the record's exact bytes; never its personal
content. Its canonical JSON (sorted keys, no spaces, UTF-8) is the Merkle leaf.

Every record on every project topic becomes exactly one entry, whatever its bytes:

- on an event topic, a valid envelope is the event itself (deduplicated on its `event_id`);
  anything else is an ``unreadable_record``, kept by digest so that it cannot pass unnoticed;
- on a ``.dlq`` twin, the arrival is a ``dead_lettered`` entry. The payload failed somewhere, so
  it is not taken as fact: the entry keeps its digest and the headers' claims (origin, consumer
  group, error type), each checked for shape so that no free text reaches the ledger. The error
  message itself is kept only as a digest: it may quote input, and the ledger cannot forget;
- on a dispatch topic (an agency's own feed), the arrival is a ``dispatched`` entry: when the
  routed task was handed to that agency's system is a fact of its own, distinct from the
  assignment, so it is deduplicated apart from the event it carries.

Building an entry never raises: the ledger must not stall or leave a gap because of a record's
shape (a property test feeds arbitrary bytes and headers).

The ledger adds two entries of its own, for what it must not let pass silently:

- a ``conflict``: a record that claims an already recorded fact's key (an event's `event_id`)
  with other bytes. The first one recorded keeps the key; the other is kept as a conflict,
  with both digests and where each came from, never replacing or hiding the first. The same
  key with the same digest is a redelivery and adds nothing;
- an ``offset_gap``: offsets of a partition that the ledger never saw (records deleted before
  it read them, or its consumer group's offset moved past them).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from contracts import topics
from contracts.events import Envelope, EventType, canonical_json
from services.audit.domain.record import KafkaRecord, RecordOrigin

__all__ = ["canonical_json"]

DEAD_LETTERED = "dead_lettered"
DISPATCHED = "dispatched"
UNREADABLE_RECORD = "unreadable_record"
CONFLICT = "conflict"
OFFSET_GAP = "offset_gap"
UNKNOWN_ACTOR = "unknown"
LEDGER_ACTOR = "audit"

_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,150}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class TopicRole(StrEnum):
    EVENTS = "events"
    DEAD_LETTERS = "dead_letters"
    DISPATCH = "dispatch"


def role_of(topic: str) -> TopicRole:
    if topic.endswith(topics.DLQ_SUFFIX):
        return TopicRole.DEAD_LETTERS
    if topic in topics.DISPATCH_TOPICS:
        return TopicRole.DISPATCH
    return TopicRole.EVENTS


@dataclass(frozen=True)
class NewEntry:
    """An entry before the ledger gives it its sequence number and recording time.

    `dedup_key` identifies the fact recorded (an event's `event_id`; a dead letter's origin and
    consumer group; a record's coordinates), so a redelivery adds nothing. The other attributes
    are the entry's own fields, copied out so the ledger can index them for search.
    """

    dedup_key: str
    fields: dict[str, Any]

    @property
    def action(self) -> str:
        return str(self.fields["action"])

    @property
    def case_id(self) -> str | None:
        value = self.fields["case_id"]
        return None if value is None else str(value)

    @property
    def actor_id(self) -> str:
        return str(self.fields["actor"]["id"])

    @property
    def actor_agency(self) -> str | None:
        value = self.fields["actor"].get("agency")
        return None if value is None else str(value)

    @property
    def subject_agency(self) -> str | None:
        value = self.fields["agency"]
        return None if value is None else str(value)

    @property
    def source_event_id(self) -> str | None:
        value = self.fields["source_event_id"]
        return None if value is None else str(value)

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromisoformat(str(self.fields["time"]))


def finalize(entry: NewEntry, *, seq: int, recorded_at: datetime) -> dict[str, Any]:
    """The entry as the leaf encodes it: its fields, its leaf index and when it was recorded."""
    return {**entry.fields, "seq": seq, "recorded_at": recorded_at.astimezone(UTC).isoformat()}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _uuid_or_none(value: object) -> str | None:
    if not isinstance(value, str | bytes):
        return None
    try:
        text = value.decode("ascii") if isinstance(value, bytes) else value
        return str(uuid.UUID(text)) if len(text) <= 64 else None
    except (ValueError, UnicodeDecodeError):
        return None


def _token_or_none(value: object, pattern: re.Pattern[str] = _TOKEN) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def _int_or_none(value: object) -> int | None:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    return int(value)


def _headers(record: KafkaRecord) -> dict[str, str]:
    decoded: dict[str, str] = {}
    for name, value in record.headers:
        if isinstance(name, str) and isinstance(value, bytes) and len(value) <= 4096:
            decoded[name] = value.decode("utf-8", "replace")
    return decoded


def _common(origin: RecordOrigin) -> dict[str, Any]:
    return {
        "event_sha256": origin.body_sha256,
        "topic": origin.topic,
        "partition": origin.partition,
        "offset": origin.offset,
    }


def _record_time(record: KafkaRecord, received_at: datetime) -> datetime:
    if record.timestamp_ms > 0:
        try:
            return datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return received_at


def _coordinates_key(origin: RecordOrigin) -> str:
    return f"record:{origin.topic}:{origin.partition}:{origin.offset}"


def _event_detail(envelope: Envelope) -> dict[str, Any] | None:
    """What an entry says beyond ids and digest: for an erasure, its reason code and the
    operator's reference, each checked for shape (never words), so the trail says why."""
    if envelope.event_type != EventType.CASE_ERASED:
        return None
    return {
        "reason": _token_or_none(envelope.data.get("reason")),
        "reference": _token_or_none(envelope.data.get("reference")),
    }


def event_entry(envelope: Envelope, origin: RecordOrigin) -> NewEntry:
    """An event on an event topic: the handling step it records."""
    data = envelope.data
    return NewEntry(
        dedup_key=str(envelope.event_id),
        fields={
            "time": _iso(envelope.occurred_at),
            "action": envelope.event_type,
            "case_id": str(envelope.case_id),
            "report_id": str(envelope.report_id) if envelope.report_id else None,
            "task_id": _uuid_or_none(data.get("task_id")),
            "agency": _token_or_none(data.get("agency_id")),
            "actor": envelope.actor.model_dump(mode="json"),
            "producer": envelope.producer,
            "source_event_id": str(envelope.event_id),
            "detail": _event_detail(envelope),
            **_common(origin),
        },
    )


def _system_actor(actor_id: str | None) -> dict[str, Any]:
    return {"kind": "system", "id": actor_id or UNKNOWN_ACTOR, "agency": None}


def _unreadable_entry(record: KafkaRecord, origin: RecordOrigin, received_at: datetime) -> NewEntry:
    headers = _headers(record)
    return NewEntry(
        dedup_key=_coordinates_key(origin),
        fields={
            "time": _iso(_record_time(record, received_at)),
            "action": UNREADABLE_RECORD,
            "case_id": _uuid_or_none(record.key),
            "report_id": None,
            "task_id": None,
            "agency": None,
            "actor": _system_actor(_token_or_none(headers.get("producer"))),
            "producer": None,
            "source_event_id": None,
            "detail": {
                "claimed_event_id": _uuid_or_none(headers.get("event_id")),
                "claimed_event_type": _token_or_none(headers.get("event_type")),
            },
            **_common(origin),
        },
    )


def _dead_letter_entry(
    record: KafkaRecord, origin: RecordOrigin, received_at: datetime
) -> NewEntry:
    headers = _headers(record)
    group = _token_or_none(headers.get("x-ocsea-consumer-group"))
    origin_topic = _token_or_none(headers.get("x-ocsea-origin-topic"), _TOPIC)
    origin_partition = _int_or_none(headers.get("x-ocsea-origin-partition"))
    origin_offset = _int_or_none(headers.get("x-ocsea-origin-offset"))
    error = headers.get("x-ocsea-error")
    # One dead-lettering of one message by one group is one fact, however often the DLQ
    # publish was repeated (dead-lettering is itself at-least-once).
    complete = None not in (group, origin_topic, origin_partition, origin_offset)
    dedup_key = (
        f"dead-letter:{group}:{origin_topic}:{origin_partition}:{origin_offset}"
        if complete
        else _coordinates_key(origin)
    )
    return NewEntry(
        dedup_key=dedup_key,
        fields={
            "time": _iso(_record_time(record, received_at)),
            "action": DEAD_LETTERED,
            "case_id": _uuid_or_none(record.key),
            "report_id": None,
            "task_id": None,
            "agency": None,
            "actor": _system_actor(group),
            "producer": None,
            "source_event_id": None,
            "detail": {
                "origin_topic": origin_topic,
                "origin_partition": origin_partition,
                "origin_offset": origin_offset,
                "consumer_group": group,
                "claimed_event_id": _uuid_or_none(headers.get("event_id")),
                "claimed_event_type": _token_or_none(headers.get("event_type")),
                "error_type": _token_or_none(headers.get("x-ocsea-error-type")),
                "error_sha256": _sha256_hex(error) if error is not None else None,
                "attempts": _int_or_none(headers.get("x-ocsea-attempts")),
            },
            **_common(origin),
        },
    )


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def _dispatch_entry(record: KafkaRecord, origin: RecordOrigin, received_at: datetime) -> NewEntry:
    envelope = _envelope_or_none(record.value)
    if envelope is None:
        entry = _unreadable_entry(record, origin, received_at)
        return NewEntry(entry.dedup_key, {**entry.fields, "action": DISPATCHED})
    carried = event_entry(envelope, origin)
    return NewEntry(
        dedup_key=f"dispatch:{origin.topic}:{envelope.event_id}",
        fields={
            **carried.fields,
            "time": _iso(_record_time(record, received_at)),
            "action": DISPATCHED,
            "actor": _system_actor(_token_or_none(envelope.producer)),
            "detail": {"event_type": envelope.event_type},
        },
    )


def _envelope_or_none(value: bytes) -> Envelope | None:
    try:
        return Envelope.model_validate_json(value)
    except (ValidationError, ValueError):
        return None


def record_entry(record: KafkaRecord, *, received_at: datetime) -> NewEntry:
    """The entry for any record on any project topic; never raises (see the module notes)."""
    origin = record.origin
    role = role_of(origin.topic)
    if role is TopicRole.DEAD_LETTERS:
        return _dead_letter_entry(record, origin, received_at)
    if role is TopicRole.DISPATCH:
        return _dispatch_entry(record, origin, received_at)
    envelope = _envelope_or_none(record.value)
    if envelope is None:
        return _unreadable_entry(record, origin, received_at)
    return event_entry(envelope, origin)


# -- the ledger's own entries ------------------------------------------------------------------

# The entry fields two claims of one fact are compared on, to show an auditor how they differ
# (their content differs by digest alone: the ledger never keeps it).
_COMPARED_FIELDS = (
    "time",
    "action",
    "case_id",
    "report_id",
    "task_id",
    "agency",
    "actor",
    "producer",
    "detail",
)


def is_redelivery(new: NewEntry, recorded: Mapping[str, Any]) -> bool:
    """Whether `new`, whose key is recorded already, is that very record again (same bytes)."""
    return bool(new.fields.get("event_sha256") == recorded.get("event_sha256"))


def conflict_key(new: NewEntry) -> str:
    """One conflict per other version of a fact: the same other bytes again add nothing."""
    return f"conflict:{new.dedup_key}:{new.fields.get('event_sha256')}"


def conflict_entry(new: NewEntry, recorded: Mapping[str, Any]) -> NewEntry:
    """A record claiming the key of the recorded entry `recorded` with other bytes.

    It is kept as what it claims (its own ids, actor, time, coordinates and digest), under the
    action ``conflict``, and not taken as fact (no `source_event_id`): which version is true
    is for an auditor to find out. The detail names the contested key, the recorded leaf with
    its digest and coordinates, and which of the ledger's fields differ between the two.
    """
    return NewEntry(
        dedup_key=conflict_key(new),
        fields={
            **new.fields,
            "action": CONFLICT,
            "source_event_id": None,
            "detail": {
                "contested_key": new.dedup_key,
                "claimed_action": new.fields.get("action"),
                "claimed_detail": new.fields.get("detail"),
                "recorded_leaf_index": recorded.get("seq"),
                "recorded_sha256": recorded.get("event_sha256"),
                "recorded_topic": recorded.get("topic"),
                "recorded_partition": recorded.get("partition"),
                "recorded_offset": recorded.get("offset"),
                "differing_fields": sorted(
                    name for name in _COMPARED_FIELDS if new.fields.get(name) != recorded.get(name)
                ),
            },
        },
    )


def offset_gap_entry(
    topic: str, partition: int, first_missing: int, next_seen: int, *, noticed_at: datetime
) -> NewEntry:
    """Offsets [first_missing, next_seen) of a partition, which the ledger never received."""
    return NewEntry(
        dedup_key=f"gap:{topic}:{partition}:{first_missing}:{next_seen}",
        fields={
            "time": _iso(noticed_at),
            "action": OFFSET_GAP,
            "case_id": None,
            "report_id": None,
            "task_id": None,
            "agency": None,
            "actor": _system_actor(LEDGER_ACTOR),
            "producer": None,
            "source_event_id": None,
            "detail": {
                "first_missing_offset": first_missing,
                "next_offset_seen": next_seen,
                "missing_records": next_seen - first_missing,
            },
            "event_sha256": None,
            "topic": topic,
            "partition": partition,
            "offset": None,
        },
    )
