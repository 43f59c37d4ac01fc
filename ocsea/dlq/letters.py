"""Dead letters as records to look at and plan re-drives of: pure functions of what was read."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts.topics import DLQ_SUFFIX, dlq_of

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
