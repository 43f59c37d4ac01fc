"""The audit's use cases over in-memory fakes of its ports: no broker, no database.

Recording: a redelivery adds nothing, another version of a recorded event is kept as a
conflict, offsets never received are recorded as a gap (once, even when the batch is retried),
and a stale copy of the expected offsets never invents one. Reading: every read of entries is
recorded before it is answered, and not answered when it cannot be; refusals name the field.
Checkpoints: signed once per tree head, by the clock given.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import topics
from contracts.events import Actor, ActorKind, CaseAccessData, Envelope, EventType, make_event
from ocsea.runtime.access import LEDGER_SUBJECT
from ocsea.runtime.auth import Principal, Role
from ocsea.runtime.consumer import Origin, RawRecord
from ocsea.runtime.errors import ApiError
from services.audit.domain import merkle, signed_note
from services.audit.domain.checkpoint import Checkpoint, raw_public_key
from services.audit.domain.entry import CONFLICT, OFFSET_GAP, UNREADABLE_RECORD
from services.audit.handlers import Checkpointer, LedgerReads, RecordBatch, verify_bundle
from services.audit.handlers.reads import MAX_PAGE
from services.audit.ports import SearchFilter
from tests.audit.fakes import (
    NOW,
    AccessLogFake,
    AccessNotRecordedError,
    FiguresFake,
    FixedClock,
    LedgerDownError,
    MemoryLedger,
)

TOPIC = topics.ACCESS
AUDITOR = Principal(name="auditor-kri", role=Role.AUDITOR)


def viewed(
    viewer: str,
    *,
    case_id: uuid.UUID,
    event_id: uuid.UUID | None = None,
    minutes_ago: int = 5,
) -> Envelope:
    return make_event(
        event_type=EventType.CASE_VIEWED,
        event_id=event_id,
        case_id=case_id,
        producer="routing",
        actor=Actor(kind=ActorKind.OFFICER, id=viewer, agency="erbil-cpu"),
        data=CaseAccessData(viewer=viewer, role="officer", agency="erbil-cpu", reason="open task"),
        occurred_at=NOW - timedelta(minutes=minutes_ago),
    )


def record(body: bytes | Envelope, offset: int, *, partition: int = 0) -> RawRecord:
    value = body if isinstance(body, bytes) else body.model_dump_json().encode()
    origin = Origin(TOPIC, partition, offset, hashlib.sha256(value).hexdigest())
    return RawRecord(None, value, (), 0, origin)


def ingest(ledger: MemoryLedger | None = None) -> tuple[RecordBatch, MemoryLedger, FiguresFake]:
    ledger = ledger or MemoryLedger()
    figures = FiguresFake()
    return RecordBatch(ledger, figures, FixedClock()), ledger, figures


def actions(ledger: MemoryLedger) -> list[str]:
    return [e.entry["action"] for e in ledger.entries]


# -- recording ------------------------------------------------------------------------------


async def test_the_same_event_twice_adds_one_entry() -> None:
    record_batch, ledger, figures = ingest()
    event = viewed("officer-erbil-cpu", case_id=uuid.uuid4())

    [first] = await record_batch([record(event, 0)])
    [again] = await record_batch([record(event, 0)])  # redelivered: same bytes, same offset
    [within] = (await record_batch([record(event, 1), record(event, 1)]))[1:]

    assert await ledger.size() == 1
    assert (first.leaf_index, first.created) == (0, True)
    assert (again.leaf_index, again.created, again.conflict_with) == (0, False, None)
    assert (within.leaf_index, within.created) == (0, False)
    assert figures.by_action == {EventType.CASE_VIEWED.value: 1}
    assert figures.sizes == [1]


async def test_the_same_event_id_with_other_bytes_is_recorded_as_a_conflict() -> None:
    record_batch, ledger, figures = ingest()
    case = uuid.uuid4()
    real = viewed("officer-erbil-cpu", case_id=case)
    forged = viewed("officer-duhok-cpu", case_id=case, event_id=real.event_id)

    await record_batch([record(real, 0)])
    [contest] = await record_batch([record(forged, 1)])
    [once_more] = await record_batch([record(forged, 2)])  # that other version again

    assert actions(ledger) == [EventType.CASE_VIEWED.value, CONFLICT]
    kept, conflict = (e.entry for e in ledger.entries)
    assert kept["actor"]["id"] == "officer-erbil-cpu"  # the first one recorded keeps the key
    assert conflict["actor"]["id"] == "officer-duhok-cpu"
    assert conflict["detail"]["contested_key"] == str(real.event_id)
    assert conflict["detail"]["recorded_leaf_index"] == 0
    assert conflict["source_event_id"] is None  # not taken as fact
    assert (contest.leaf_index, contest.created, contest.conflict_with) == (1, True, 0)
    assert (once_more.leaf_index, once_more.created) == (1, False)
    assert figures.conflicts == {TOPIC: 1}
    assert figures.by_action[CONFLICT] == 1


async def test_offsets_never_received_are_recorded_as_a_gap_before_the_record_after_them() -> None:
    record_batch, ledger, figures = ingest()
    await record_batch([record(b"first", 0), record(b"second", 1)])

    results = await record_batch([record(b"after the gap", 5)])

    assert [r.created for r in results] == [True, True]  # the gap's entry, then the record's
    assert actions(ledger) == [UNREADABLE_RECORD, UNREADABLE_RECORD, OFFSET_GAP, UNREADABLE_RECORD]
    gap = ledger.entries[2].entry
    assert (gap["topic"], gap["partition"]) == (TOPIC, 0)
    assert gap["detail"] == {"first_missing_offset": 2, "next_offset_seen": 5, "missing_records": 3}
    assert gap["time"] == NOW.isoformat()  # noticed when the batch came, by the clock given
    assert ledger.offsets == {(TOPIC, 0): 6}
    assert (figures.gaps, figures.missing) == ({TOPIC: 1}, {TOPIC: 3})


async def test_the_first_record_of_a_partition_opens_its_watch_wherever_it_starts() -> None:
    record_batch, ledger, _ = ingest()
    await record_batch([record(b"late start", 100, partition=1)])
    assert OFFSET_GAP not in actions(ledger)
    assert ledger.offsets == {(TOPIC, 1): 101}


async def test_a_batch_retried_after_the_ledger_failed_records_its_gap_once() -> None:
    record_batch, ledger, figures = ingest()
    await record_batch([record(b"first", 0)])
    batch = [record(b"after the gap", 4), record(b"next", 5)]

    ledger.fail_appends = 1
    with pytest.raises(LedgerDownError):
        await record_batch(batch)
    assert await ledger.size() == 1  # nothing of the failed batch
    await record_batch(batch)  # the consumer's retry

    assert actions(ledger).count(OFFSET_GAP) == 1
    assert await ledger.size() == 4
    assert ledger.offsets == {(TOPIC, 0): 6}
    assert figures.gaps == {TOPIC: 1}


async def test_a_restarted_ingest_takes_the_expected_offsets_from_the_ledger() -> None:
    first, ledger, _ = ingest()
    await first([record(b"a", 0), record(b"b", 1)])

    restarted, _, _ = ingest(ledger)
    await restarted([record(b"c", 2)])
    await restarted([record(b"after a gap", 7)])

    gaps = [e.entry["detail"] for e in ledger.entries if e.entry["action"] == OFFSET_GAP]
    assert gaps == [{"first_missing_offset": 3, "next_offset_seen": 7, "missing_records": 4}]


async def test_a_stale_copy_of_the_expected_offsets_is_checked_before_a_gap_is_recorded() -> None:
    """Another replica ingested the partition for a while: the ledger expects more than this
    ingest's copy says, and the records between are in the ledger, so there is no gap."""
    this_one, ledger, _ = ingest()
    await this_one([record(b"a", 0), record(b"b", 1)])
    other_replica, _, _ = ingest(ledger)
    await other_replica([record(b"c", 2), record(b"d", 3), record(b"e", 4)])
    reads_before = len(ledger.offset_reads)

    await this_one([record(b"f", 5)])

    assert OFFSET_GAP not in actions(ledger)
    assert ledger.offset_reads[reads_before:] == [{(TOPIC, 0)}]  # asked once, to check
    await this_one([record(b"g", 6)])  # and now its copy is current: no read at all
    assert len(ledger.offset_reads) == reads_before + 1


# -- reading --------------------------------------------------------------------------------


async def recorded_case() -> tuple[MemoryLedger, uuid.UUID]:
    """A case with three events, recorded in an order other than the one they happened in."""
    record_batch, ledger, _ = ingest()
    case = uuid.uuid4()
    await record_batch(
        [
            record(viewed("officer-b", case_id=case, minutes_ago=2), 0),
            record(viewed("officer-a", case_id=case, minutes_ago=9), 1),
            record(viewed("officer-x", case_id=uuid.uuid4(), minutes_ago=1), 2),
            record(viewed("officer-c", case_id=case, minutes_ago=1), 3),
        ]
    )
    return ledger, case


def reads_over(ledger: MemoryLedger) -> tuple[LedgerReads, AccessLogFake, Checkpointer]:
    access = AccessLogFake()
    checkpointer = Checkpointer(ledger, Ed25519PrivateKey.generate(), "ocsea-audit", FixedClock())
    return LedgerReads(ledger, checkpointer, access), access, checkpointer


async def test_reading_a_case_trail_records_the_read_and_leaves_the_trail_as_it_was() -> None:
    ledger, case = await recorded_case()
    reads, access, _ = reads_over(ledger)

    trail = await reads.case_trail(case, AUDITOR)
    again = await reads.case_trail(case, AUDITOR)

    assert [e.entry["actor"]["id"] for e in trail] == ["officer-a", "officer-b", "officer-c"]
    assert again == trail  # the read was recorded, but not in the case's own trail
    assert (
        access.viewed_reads
        == [(LEDGER_SUBJECT, "auditor-kri", f"auditor read the trail of case {case}")] * 2
    )


async def test_a_read_that_cannot_be_recorded_is_not_answered() -> None:
    ledger, case = await recorded_case()
    reads, access, _ = reads_over(ledger)
    access.down = True
    with pytest.raises(AccessNotRecordedError):
        await reads.case_trail(case, AUDITOR)
    with pytest.raises(AccessNotRecordedError):
        await reads.leaves(0, None, AUDITOR)
    with pytest.raises(AccessNotRecordedError):
        await reads.search(SearchFilter(case_id=str(case)), AUDITOR)


async def test_a_search_records_which_filters_were_used_never_the_values_typed() -> None:
    ledger, case = await recorded_case()
    reads, access, _ = reads_over(ledger)

    page = await reads.search(SearchFilter(actor="officer-b", case_id=str(case)), AUDITOR)

    assert [e.entry["actor"]["id"] for e in page.entries] == ["officer-b"]
    assert page.next_after is None
    [(_, _, reason)] = access.viewed_reads
    assert reason == f"auditor read a search by actor, case_id in case {case}"
    assert "officer-b" not in reason


async def test_a_search_with_a_time_without_offset_is_refused_before_anything_is_read() -> None:
    ledger, _ = await recorded_case()
    reads, access, _ = reads_over(ledger)
    with pytest.raises(ApiError) as refused:
        await reads.search(SearchFilter(until=datetime(2026, 11, 20, 18, 0)), AUDITOR)
    assert (refused.value.status, refused.value.code, refused.value.field) == (
        400,
        "naive_time",
        "until",
    )
    assert access.viewed_reads == []


async def test_a_full_page_says_where_to_continue() -> None:
    ledger, _ = await recorded_case()
    reads, _, _ = reads_over(ledger)
    first = await reads.search(SearchFilter(limit=3), AUDITOR)
    rest = await reads.search(SearchFilter(after=first.next_after, limit=3), AUDITOR)
    assert ([e.leaf_index for e in first.entries], first.next_after) == ([0, 1, 2], 2)
    assert ([e.leaf_index for e in rest.entries], rest.next_after) == ([3], None)


async def test_conflicts_and_gaps_are_read_by_their_action_and_recorded() -> None:
    record_batch, ledger, _ = ingest()
    real = viewed("officer-erbil-cpu", case_id=uuid.uuid4())
    forged = viewed("officer-duhok-cpu", case_id=real.case_id, event_id=real.event_id)
    await record_batch([record(real, 0), record(forged, 1), record(b"after a gap", 9)])
    reads, access, _ = reads_over(ledger)

    conflicts = await reads.conflicts(None, 10, AUDITOR)
    gaps = await reads.offset_gaps(None, 10, AUDITOR)

    assert [e.entry["action"] for e in conflicts.entries] == [CONFLICT]
    assert [e.entry["detail"]["missing_records"] for e in gaps.entries] == [7]
    assert [reason for _, _, reason in access.viewed_reads] == [
        "auditor read the conflicts",
        "auditor read the offset gaps",
    ]


async def test_a_page_of_leaves_is_clamped_to_the_ledger_and_refused_when_too_large() -> None:
    ledger, _ = await recorded_case()
    reads, access, _ = reads_over(ledger)

    page = await reads.leaves(1, 50, AUDITOR)
    assert (page.start, page.end, page.tree_size) == (1, 4, 4)
    assert [leaf.leaf_index for leaf in page.leaves] == [1, 2, 3]
    assert all(
        leaf.leaf_hash == merkle.leaf_hash((leaf.text or "").encode()) for leaf in page.leaves
    )
    beyond = await reads.leaves(9, None, AUDITOR)
    assert (beyond.start, beyond.end, beyond.leaves) == (9, 9, [])
    assert [reason for _, _, reason in access.viewed_reads] == [
        "auditor read entries [1, 4)",
        "auditor read entries [9, 9)",
    ]

    for start, to, code in ((3, 2, "out_of_range"), (0, MAX_PAGE + 1, "page_too_large")):
        with pytest.raises(ApiError) as refused:
            await reads.leaves(start, to, AUDITOR)
        assert (refused.value.status, refused.value.code, refused.value.field) == (400, code, "to")
    assert len(access.viewed_reads) == 2  # a refused read read nothing


async def test_proofs_are_checked_against_the_ledger_and_read_without_a_record() -> None:
    ledger, _ = await recorded_case()
    reads, access, _ = reads_over(ledger)

    leaf, path = await reads.inclusion_proof(2, 4)
    merkle.verify_inclusion(leaf, 2, 4, path, await ledger.root(4))
    consistency = await reads.consistency_proof(1, 4)
    merkle.verify_consistency(1, 4, await ledger.root(1), await ledger.root(4), consistency)
    assert access.viewed_reads == []  # hashes and sizes, no entry's content

    refusals = [
        (reads.inclusion_proof(4, 4), "out_of_range", "leaf_index"),
        (reads.inclusion_proof(0, 5), "beyond_tree_size", "tree_size"),
        (reads.consistency_proof(3, 2), "out_of_range", "first"),
        (reads.consistency_proof(1, 5), "beyond_tree_size", "second"),
    ]
    for call, code, field in refusals:
        with pytest.raises(ApiError) as refused:
            await call
        assert (refused.value.status, refused.value.code, refused.value.field) == (400, code, field)


async def test_a_case_export_holds_what_its_checkpoint_covers_and_verifies_offline() -> None:
    ledger, case = await recorded_case()
    reads, access, checkpointer = reads_over(ledger)
    covered = await checkpointer.current()
    record_batch, _, _ = ingest(ledger)
    await record_batch([record(viewed("officer-d", case_id=case, minutes_ago=0), 4)])

    bundle = await reads.case_export(case, AUDITOR)

    # The export signs afresh (the ledger grew), so the new entry is in it too.
    assert bundle.checkpoint.tree_size == 5 > covered.tree_size
    assert [e.leaf_index for e in bundle.entries] == [1, 0, 3, 4]
    verdict = verify_bundle(bundle, pinned_key=raw_public_key(checkpointer.key))
    assert verdict.ok, verdict.problems
    assert access.viewed_reads == [
        (LEDGER_SUBJECT, "auditor-kri", f"auditor read the export of case {case}")
    ]


async def test_an_export_leaves_out_what_was_recorded_after_its_checkpoint() -> None:
    ledger, case = await recorded_case()
    _, _, checkpointer = reads_over(ledger)
    head = await checkpointer.current()

    class GrowsAfterTheCheckpoint:
        """The ledger as an export finds it when an entry lands between its two reads."""

        async def current(self) -> Checkpoint:
            record_batch, _, _ = ingest(ledger)
            await record_batch([record(viewed("officer-late", case_id=case), 4)])
            return head

    reads = LedgerReads(ledger, GrowsAfterTheCheckpoint(), AccessLogFake())
    bundle = await reads.case_export(case, AUDITOR)
    assert [e.leaf_index for e in bundle.entries] == [1, 0, 3]
    assert verify_bundle(bundle).ok


# -- checkpoints ----------------------------------------------------------------------------


async def test_a_checkpoint_is_signed_once_per_tree_head_and_afresh_when_the_ledger_grows() -> None:
    ledger, _ = await recorded_case()
    key = Ed25519PrivateKey.generate()
    checkpointer = Checkpointer(ledger, key, "ocsea-audit", FixedClock())

    first = await checkpointer.current()
    assert await checkpointer.current() == first
    assert len(ledger.checkpoints) == 1
    assert (first.tree_size, first.root) == (4, await ledger.root(4))
    assert first.timestamp == "2026-11-20T18:30:00.000Z"

    record_batch, _, _ = ingest(ledger)
    await record_batch([record(b"more", 4)])
    grown = await checkpointer.current()
    assert grown.tree_size == 5
    assert len(ledger.checkpoints) == 2

    rotated = Checkpointer(ledger, Ed25519PrivateKey.generate(), "ocsea-audit", FixedClock())
    assert (await rotated.current()).key_id != grown.key_id  # another key signs its own head
    assert len(ledger.checkpoints) == 3


async def test_the_tlog_checkpoint_opens_with_the_verifier_key() -> None:
    ledger, _ = await recorded_case()
    checkpointer = Checkpointer(ledger, Ed25519PrivateKey.generate(), "ocsea-audit", FixedClock())
    head = signed_note.open_checkpoint(
        await checkpointer.tlog_checkpoint(), checkpointer.verifier_key
    )
    assert (head.origin, head.tree_size) == ("ocsea-audit", 4)
    stored = ledger.checkpoints[-1]
    assert json.loads(stored)["tree_size"] == 4
