"""`ocsea dlq`'s pure parts: reading a dead letter without showing its content, naming records,
the re-drive log, and what a re-drive publishes."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace

import pytest

from ocsea.dlq.letters import (
    DEAD_LETTER_HEADERS,
    REDRIVEN_FROM_HEADER,
    DeadLetter,
    DlqError,
    RecordRef,
    Redrive,
    StoredRecord,
    dead_letter_of,
    details,
    details_text,
    dlq_topic_name,
    envelope_facts,
    mark_of,
    plan_redrive,
    reason_of,
    redrive_headers,
    redrives_of,
    select,
    shown_header,
    summary,
    table,
)

SOURCE = "ocsea.reports.triaged.v1"
DLQ = "ocsea.reports.triaged.v1.dlq"
SECRET = "Shilan Ahmed, +964 750 123 4567"  # what must never reach the terminal


def envelope_bytes(event_id: uuid.UUID, case_id: uuid.UUID) -> bytes:
    return json.dumps(
        {
            "event_id": str(event_id),
            "event_type": "report.triaged",
            "schema_version": "1",
            "occurred_at": "2026-11-20T18:30:00+00:00",
            "case_id": str(case_id),
            "report_id": None,
            "producer": "triage",
            "actor": {"kind": "system", "id": "triage"},
            "data": {"narrative": SECRET, "contact": {"ciphertext": "c2VhbGVk"}},
        }
    ).encode()


def parked(
    partition: int = 0,
    offset: int = 0,
    *,
    origin: tuple[str, int, int] | None = (SOURCE, 1, 40),
    value: bytes | None = None,
    error: str = f"KeyError: '{SECRET}'",
    error_type: str = "KeyError",
    extra: tuple[tuple[str, bytes], ...] = (),
    topic: str = DLQ,
) -> DeadLetter:
    """A dead letter with the headers the reliable consumer gives one."""
    event_id, case_id = uuid.uuid4(), uuid.uuid4()
    headers: list[tuple[str, bytes]] = [
        ("event_id", str(event_id).encode()),
        ("event_type", b"report.triaged"),
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("x-ocsea-error", error.encode()),
        ("x-ocsea-error-type", error_type.encode()),
        ("x-ocsea-consumer-group", b"ocsea.routing"),
        ("x-ocsea-attempts", b"4"),
        ("x-ocsea-dead-lettered-at", b"2026-11-20T18:31:02.120000+00:00"),
        *extra,
    ]
    if origin is not None:
        headers += [
            ("x-ocsea-origin-topic", origin[0].encode()),
            ("x-ocsea-origin-partition", str(origin[1]).encode()),
            ("x-ocsea-origin-offset", str(origin[2]).encode()),
        ]
    record = StoredRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=str(case_id).encode(),
        value=envelope_bytes(event_id, case_id) if value is None else value,
        headers=tuple(headers),
        timestamp_ms=1_795_000_000_000,
    )
    return dead_letter_of(record)


def mark(letter: DeadLetter, *, digest: str | None = None) -> Redrive:
    return Redrive(
        ref=letter.ref,
        payload_sha256=digest or letter.payload_sha256,
        redriven_at="2026-11-21T08:00:00+00:00",
        target_topic=SOURCE,
        target_partition=1,
        target_offset=77,
        event_id=letter.event_id,
    )


def test_a_dead_letter_says_where_it_came_from_and_why_but_not_what_it_carries() -> None:
    letter = parked(2, 5)
    assert letter.ref == RecordRef(2, 5)
    assert letter.origin == (SOURCE, 1, 40)
    assert letter.consumer_group == "ocsea.routing"
    assert letter.attempts == 4
    assert letter.event_type == "report.triaged"
    assert letter.parked_at == "2026-11-20T18:31:02.120000+00:00"
    assert letter.reason == "KeyError"
    assert letter.error_digest == hashlib.sha256(f"KeyError: '{SECRET}'".encode()).hexdigest()[:12]
    assert letter.payload_sha256 == hashlib.sha256(letter.record.value or b"").hexdigest()

    shown = [
        json.dumps(summary(letter, None)),
        details_text(details(letter, None)),
        json.dumps(details(letter, None)),
        table([letter], {}),
    ]
    for text in shown:
        assert "Shilan" not in text
        assert "750 123" not in text
        assert "c2VhbGVk" not in text
        assert letter.event_id is not None
        assert letter.event_id in text


def test_the_envelope_gives_the_event_id_the_consumers_deduplicate_on() -> None:
    event_id, case_id = uuid.uuid4(), uuid.uuid4()
    letter = parked(
        value=envelope_bytes(event_id, case_id),
        extra=(("event_id", str(uuid.uuid4()).encode()),),  # a header claiming otherwise
    )
    assert letter.event_id == str(event_id)
    assert letter.case_id == str(case_id)
    assert letter.facts["producer"] == "triage"
    assert "data" not in letter.facts
    assert "actor" not in letter.facts


@pytest.mark.parametrize(
    "value",
    [b"", b"not json", b"[1, 2]", b'{"event_id": {"nested": 1}}', b"\xff\xfe", b"[" * 5000],
)
def test_unreadable_payloads_give_no_facts_and_never_fail(value: bytes) -> None:
    assert envelope_facts(value) == {}
    letter = parked(value=value)
    assert letter.payload_sha256 == hashlib.sha256(value).hexdigest()


def test_the_event_id_falls_back_to_its_header_only_when_it_is_a_uuid() -> None:
    record = parked(value=b"garbage").record
    others = tuple((name, value) for name, value in record.headers if name != "event_id")

    def claiming(event_id: str) -> DeadLetter:
        return dead_letter_of(replace(record, headers=(*others, ("event_id", event_id.encode()))))

    claimed = str(uuid.uuid4())
    assert claiming(claimed).event_id == claimed
    assert claiming(SECRET).event_id is None


def test_a_contract_violation_is_summarised_by_the_paths_at_fault_never_the_message() -> None:
    text = (
        "ValidationError: data.survivors.0.age: Input should be less than 130; "
        "case_id: Input should be a valid UUID; : Invalid JSON: expected value"
    )
    assert reason_of("ValidationError", text) == (
        "ValidationError at data.survivors.0.age, case_id, (whole record)"
    )
    assert reason_of("RuntimeError", f"RuntimeError: {SECRET}") == "RuntimeError"
    assert reason_of(None, None) == "unknown"
    assert reason_of("Free text type", None) == "unknown"
    # A path with spaces is not a field path: it is left out rather than shown.
    assert reason_of("ValidationError", f"ValidationError: {SECRET}: bad") == "ValidationError"


def test_headers_are_shown_only_when_they_are_plain_tokens() -> None:
    assert shown_header(b"report.triaged") == "report.triaged"
    assert shown_header(b"application/json") == "application/json"
    withheld = shown_header(SECRET.encode())
    assert SECRET not in withheld
    assert withheld.startswith("<withheld: ")
    info = details(parked(), None)
    assert info["headers"]["event_type"] == "report.triaged"
    assert info["headers"]["x-ocsea-error"].startswith("<withheld: ")


def test_a_source_topic_names_its_dlq_twin() -> None:
    assert dlq_topic_name(SOURCE) == DLQ
    assert dlq_topic_name(DLQ) == DLQ


def test_records_are_named_by_partition_and_offset_or_an_unambiguous_offset() -> None:
    letters = [parked(0, 0), parked(0, 1), parked(1, 0), parked(2, 7)]
    assert [str(x.ref) for x in select(letters, ["1:0", "0:1"])] == ["0:1", "1:0"]
    assert [str(x.ref) for x in select(letters, ["7"])] == ["2:7"]
    assert [str(x.ref) for x in select(letters, ["2:7", "7"])] == ["2:7"]
    with pytest.raises(DlqError, match="several partitions: name one of 0:0, 1:0"):
        select(letters, ["0"])
    with pytest.raises(DlqError, match="no parked record 3:0"):
        select(letters, ["3:0"])
    with pytest.raises(DlqError, match="no parked record at offset 9"):
        select(letters, ["9"])
    with pytest.raises(DlqError, match="not partition:offset"):
        select(letters, ["a:b"])
    with pytest.raises(DlqError, match="not partition:offset"):
        select(letters, ["x"])


def test_the_plan_publishes_each_record_not_yet_re_driven_once_in_topic_order() -> None:
    done = parked(0, 0)
    later, earlier = parked(0, 3), parked(0, 2)
    other_partition = parked(1, 0)
    plan = plan_redrive(DLQ, [later, done, other_partition, earlier], {done.ref: mark(done)})
    assert [str(p.letter.ref) for p in plan.publish] == ["0:2", "0:3", "1:0"]
    assert [(letter.ref, m.target_offset) for letter, m in plan.already] == [(done.ref, 77)]
    assert plan.refused == []


def test_two_dead_letters_of_one_source_record_are_re_driven_with_one_copy() -> None:
    first = parked(0, 4)
    # The same record, parked again (the dead-letter publish was repeated).
    again = dead_letter_of(replace(first.record, offset=9))
    plan = plan_redrive(DLQ, [first, again], {})
    [copy] = plan.publish
    assert copy.letter is first
    assert [str(x.ref) for x in copy.settles] == ["0:4", "0:9"]


def test_records_whose_origin_is_unknown_or_foreign_are_not_re_driven() -> None:
    nowhere = parked(0, 0, origin=None)
    foreign = parked(0, 1, origin=("ocsea.tasks.events.v1", 0, 3))
    plan = plan_redrive(DLQ, [nowhere, foreign], {})
    assert plan.publish == []
    assert [(str(x.ref), why) for x, why in plan.refused] == [
        ("0:0", "its headers do not say where it came from"),
        ("0:1", f"its origin ocsea.tasks.events.v1 is not the source of {DLQ}"),
    ]


def test_a_mark_counts_only_for_the_bytes_it_names() -> None:
    letter = parked(0, 0)
    # A mark left by an earlier topic of the same name, whose record 0:0 was another one.
    stale = mark(letter, digest="0" * 64)
    assert mark_of(letter, {letter.ref: stale}) is None
    assert [p.letter for p in plan_redrive(DLQ, [letter], {letter.ref: stale}).publish] == [letter]


def test_the_re_drive_log_keeps_the_latest_mark_of_each_record() -> None:
    letter = parked(1, 4)
    first, second = mark(letter), replace(mark(letter), target_offset=90)

    def log(offset: int, key: bytes | None, value: bytes | None) -> StoredRecord:
        return StoredRecord(DLQ + ".redriven", 0, offset, key, value, (), 0)

    records = [
        log(1, second.key(), second.value()),
        log(0, first.key(), first.value()),
        log(2, b"0:0", first.value()),
        log(3, b"0:0", None),  # a tombstone: that record's mark is gone
        log(4, b"garbage", b"{}"),
        log(5, b"2:2", b"not json"),
        log(6, None, None),
    ]
    marks = redrives_of(records)
    assert list(marks) == [RecordRef(1, 4)]
    assert marks[RecordRef(1, 4)].target_offset == 90
    assert marks[RecordRef(1, 4)] == second


def test_the_copy_keeps_the_event_headers_and_names_its_dead_letter() -> None:
    letter = parked(2, 5, extra=((REDRIVEN_FROM_HEADER, b"ocsea.x.dlq:0:1"),))
    headers = redrive_headers(letter)
    names = [name for name, _ in headers]
    assert not DEAD_LETTER_HEADERS & set(names)
    assert ("event_type", b"report.triaged") in headers
    assert any(name == "traceparent" for name in names)
    assert names.count(REDRIVEN_FROM_HEADER) == 1
    assert (REDRIVEN_FROM_HEADER, f"{DLQ}:2:5".encode()) in headers


def test_the_table_says_which_records_were_re_driven_and_where_to() -> None:
    done, waiting = parked(0, 0), parked(0, 1)
    lines = table([done, waiting], {done.ref: mark(done)}).splitlines()
    assert lines[0].split()[:2] == ["REF", "ORIGIN"]
    assert lines[1].startswith("0:0")
    assert lines[1].endswith(f"-> {SOURCE}[1]@77")
    assert lines[2].startswith("0:1")
    assert lines[2].endswith(" no")
    assert f"{SOURCE}[1]@40" in lines[2]
