"""Audit entries: one per record, whatever its bytes, with ids and digests, never content."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import topics
from contracts.events import Actor, ActorKind, Envelope, EventType
from ocsea.runtime.consumer import Origin, RawRecord
from services.audit.domain.entry import (
    DEAD_LETTERED,
    DISPATCHED,
    UNREADABLE_RECORD,
    TopicRole,
    canonical_json,
    event_entry,
    finalize,
    record_entry,
    role_of,
)

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
MARKER = "Survivor Name Marker"


def envelope(**data: object) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        event_type=EventType.TASK_ASSIGNED.value,
        occurred_at=datetime(2026, 11, 20, 21, 30, tzinfo=UTC),
        case_id=uuid.uuid4(),
        report_id=uuid.uuid4(),
        producer="routing",
        actor=Actor(kind=ActorKind.SYSTEM, id="routing"),
        data=dict(data),
    )


def origin_of(body: bytes, topic: str = topics.TASKS_EVENTS, offset: int = 7) -> Origin:
    return Origin(topic, 1, offset, hashlib.sha256(body).hexdigest())


def raw(
    body: bytes,
    *,
    topic: str = topics.TASKS_EVENTS,
    offset: int = 7,
    key: bytes | None = None,
    headers: dict[str, str] | None = None,
    timestamp_ms: int = 1_790_000_000_000,
) -> RawRecord:
    encoded = tuple((k, v.encode()) for k, v in (headers or {}).items())
    return RawRecord(key, body, encoded, timestamp_ms, origin_of(body, topic, offset))


def test_topic_roles() -> None:
    assert role_of(topics.REPORTS_RECEIVED) is TopicRole.EVENTS
    assert role_of(topics.dlq_of(topics.TASKS_EVENTS)) is TopicRole.DEAD_LETTERS
    assert all(role_of(t) is TopicRole.DISPATCH for t in topics.DISPATCH_TOPICS)


def test_event_entry_names_ids_and_digest_never_content() -> None:
    task_id = uuid.uuid4()
    event = envelope(task_id=str(task_id), agency_id="erbil-cpu", narrative=MARKER, age=15)
    body = event.model_dump_json().encode()
    entry = record_entry(raw(body), received_at=NOW)

    assert entry.dedup_key == str(event.event_id)
    fields = entry.fields
    assert fields["action"] == "task.assigned"
    assert fields["case_id"] == str(event.case_id)
    assert fields["report_id"] == str(event.report_id)
    assert fields["task_id"] == str(task_id)
    assert fields["agency"] == "erbil-cpu"
    assert fields["actor"] == {"kind": "system", "id": "routing", "agency": None}
    assert fields["source_event_id"] == str(event.event_id)
    assert fields["event_sha256"] == hashlib.sha256(body).hexdigest()
    assert (fields["topic"], fields["partition"], fields["offset"]) == (topics.TASKS_EVENTS, 1, 7)
    assert fields["time"] == event.occurred_at.astimezone(UTC).isoformat()
    encoded = canonical_json(finalize(entry, seq=3, recorded_at=NOW)).decode()
    assert MARKER not in encoded
    assert '"age"' not in encoded
    assert json.loads(encoded)["seq"] == 3


def test_a_redelivered_event_has_the_same_dedup_key_wherever_it_lands() -> None:
    event = envelope()
    body = event.model_dump_json().encode()
    first = record_entry(raw(body, offset=1), received_at=NOW)
    again = record_entry(raw(body, offset=99), received_at=NOW)
    assert first.dedup_key == again.dedup_key == str(event.event_id)


def test_unreadable_record_on_an_event_topic_is_kept_by_digest() -> None:
    case_id = uuid.uuid4()
    body = f'{{"narrative": "{MARKER}"}}'.encode()
    entry = record_entry(
        raw(
            body,
            topic=topics.REPORTS_RECEIVED,
            key=str(case_id).encode(),
            headers={"event_type": "report.received"},
        ),
        received_at=NOW,
    )
    assert entry.action == UNREADABLE_RECORD
    assert entry.case_id == str(case_id)
    assert entry.dedup_key == f"record:{topics.REPORTS_RECEIVED}:1:7"
    assert entry.fields["detail"]["claimed_event_type"] == "report.received"
    assert MARKER not in canonical_json(entry.fields).decode()


def dead_letter_headers(**changes: str) -> dict[str, str]:
    headers = {
        "event_id": str(uuid.uuid4()),
        "event_type": "report.triaged",
        "x-ocsea-error": f"RuntimeError: could not handle {MARKER}",
        "x-ocsea-error-type": "RuntimeError",
        "x-ocsea-origin-topic": topics.REPORTS_TRIAGED,
        "x-ocsea-origin-partition": "2",
        "x-ocsea-origin-offset": "41",
        "x-ocsea-consumer-group": "ocsea.routing",
        "x-ocsea-attempts": "4",
    }
    headers.update(changes)
    return headers


def test_dead_letter_is_an_arrival_with_checked_claims_and_no_error_text() -> None:
    case_id = uuid.uuid4()
    headers = dead_letter_headers()
    body = b"not even json"
    dlq = topics.dlq_of(topics.REPORTS_TRIAGED)
    entry = record_entry(
        raw(body, topic=dlq, offset=5, key=str(case_id).encode(), headers=headers),
        received_at=NOW,
    )
    assert entry.action == DEAD_LETTERED
    assert entry.case_id == str(case_id)
    assert entry.source_event_id is None  # the payload is not taken as fact
    assert entry.actor_id == "ocsea.routing"
    assert entry.fields["time"] == datetime.fromtimestamp(1_790_000_000, UTC).isoformat()
    assert entry.fields["detail"] == {
        "origin_topic": topics.REPORTS_TRIAGED,
        "origin_partition": 2,
        "origin_offset": 41,
        "consumer_group": "ocsea.routing",
        "claimed_event_id": headers["event_id"],
        "claimed_event_type": "report.triaged",
        "error_type": "RuntimeError",
        "error_sha256": hashlib.sha256(headers["x-ocsea-error"].encode()).hexdigest(),
        "attempts": 4,
    }
    assert MARKER not in canonical_json(entry.fields).decode()
    # The same dead-lettering published twice (at-least-once) is one fact.
    twice = record_entry(
        raw(body, topic=dlq, offset=6, key=str(case_id).encode(), headers=headers),
        received_at=NOW,
    )
    assert twice.dedup_key == entry.dedup_key
    # Another group dead-lettering the same message is another fact.
    another_group = dead_letter_headers(**{"x-ocsea-consumer-group": "ocsea.audit"})
    other = record_entry(raw(body, topic=dlq, headers=another_group), received_at=NOW)
    assert other.dedup_key != entry.dedup_key


def test_dead_letter_headers_of_the_wrong_shape_are_dropped_not_copied() -> None:
    headers = dead_letter_headers(
        **{
            "x-ocsea-consumer-group": MARKER,
            "x-ocsea-origin-offset": "-1",
            "event_id": MARKER,
        }
    )
    body = b"{}"
    dlq = topics.dlq_of(topics.TASKS_EVENTS)
    entry = record_entry(
        raw(body, key=MARKER.encode(), headers=headers, topic=dlq), received_at=NOW
    )
    assert entry.case_id is None
    assert entry.actor_id == "unknown"
    assert entry.fields["detail"]["origin_offset"] is None
    assert entry.fields["detail"]["claimed_event_id"] is None
    assert entry.dedup_key == f"record:{dlq}:1:7"  # no full origin: the record's own place
    assert MARKER not in canonical_json(entry.fields).decode()


def test_dispatch_is_its_own_fact_beside_the_event_it_carries() -> None:
    event = envelope(task_id=str(uuid.uuid4()), agency_id="duhok-police")
    body = event.model_dump_json().encode()
    topic = topics.DISPATCH_POLICE
    entry = record_entry(raw(body, topic=topic), received_at=NOW)
    assigned = event_entry(event, origin_of(body))
    assert entry.action == DISPATCHED
    assert entry.dedup_key == f"dispatch:{topic}:{event.event_id}" != assigned.dedup_key
    assert entry.source_event_id == str(event.event_id)
    assert entry.subject_agency == "duhok-police"
    assert entry.fields["detail"] == {"event_type": "task.assigned"}
    unreadable = record_entry(raw(b"\xff", topic=topic), received_at=NOW)
    assert unreadable.action == DISPATCHED
    assert unreadable.dedup_key == f"record:{topic}:1:7"


ALL_TOPICS = [
    topics.REPORTS_RECEIVED,
    topics.dlq_of(topics.REPORTS_RECEIVED),
    topics.DISPATCH_LEGAL,
]
HEADER_NAMES = [
    "event_id",
    "event_type",
    "producer",
    "x-ocsea-error",
    "x-ocsea-error-type",
    "x-ocsea-origin-topic",
    "x-ocsea-origin-partition",
    "x-ocsea-origin-offset",
    "x-ocsea-consumer-group",
    "x-ocsea-attempts",
]


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(ALL_TOPICS),
    key=st.none() | st.binary(max_size=60),
    body=st.binary(max_size=200) | st.just(envelope().model_dump_json().encode()),
    headers=st.lists(
        st.tuples(
            st.sampled_from(HEADER_NAMES) | st.text(max_size=10),
            st.binary(max_size=80) | st.text(max_size=80).map(str.encode),
        ),
        max_size=12,
    ),
    timestamp_ms=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_any_record_becomes_an_entry_without_its_free_text(
    topic: str,
    key: bytes | None,
    body: bytes,
    headers: list[tuple[str, bytes]],
    timestamp_ms: int,
) -> None:
    marked = [(name, value + MARKER.encode()) for name, value in headers]
    record = RawRecord(key, body, tuple(marked), timestamp_ms, origin_of(body, topic))
    entry = record_entry(record, received_at=NOW)
    encoded = canonical_json(finalize(entry, seq=0, recorded_at=NOW)).decode()
    assert MARKER not in encoded
    assert entry.occurred_at.tzinfo is not None
    assert len(entry.dedup_key) <= 512
    assert entry.fields["event_sha256"] == hashlib.sha256(body).hexdigest()
