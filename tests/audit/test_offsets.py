"""Gaps in a partition's offsets: found exactly where offsets were never received, never on a
redelivery, and recorded as entries just before the record that revealed them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ocsea.runtime.consumer import Origin
from services.audit.domain.entry import LEDGER_ACTOR, OFFSET_GAP, NewEntry
from services.audit.domain.offsets import Gap, find_gaps, with_gap_entries

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def at(offset: int, topic: str = "t", partition: int = 0) -> Origin:
    return Origin(topic, partition, offset, hashlib.sha256(b"%d" % offset).hexdigest())


def test_contiguous_offsets_have_no_gap_and_move_the_expectation_on() -> None:
    gaps, following = find_gaps({("t", 0): 5}, [at(5), at(6), at(7)])
    assert gaps == []
    assert following == {("t", 0): 8}


def test_a_partition_seen_first_opens_its_watch_wherever_it_starts() -> None:
    gaps, following = find_gaps({}, [at(1000), at(1001)])
    assert gaps == []
    assert following == {("t", 0): 1002}


def test_a_jump_is_a_gap_of_the_offsets_skipped() -> None:
    gaps, following = find_gaps({("t", 0): 5}, [at(5), at(9), at(10), at(12)])
    assert gaps == [Gap("t", 0, 6, 9, 1), Gap("t", 0, 11, 12, 3)]
    assert [g.missing for g in gaps] == [3, 1]
    assert following == {("t", 0): 13}


def test_a_redelivery_is_no_gap_and_never_moves_the_expectation_back() -> None:
    gaps, following = find_gaps({("t", 0): 10}, [at(3), at(4), at(10)])
    assert gaps == []
    assert following == {("t", 0): 11}
    gaps, following = find_gaps({("t", 0): 10}, [at(3)])
    assert (gaps, following) == ([], {("t", 0): 10})


def test_partitions_are_watched_apart_and_only_the_batchs_are_returned() -> None:
    expected = {("t", 0): 5, ("t", 1): 5, ("u", 0): 2}
    gaps, following = find_gaps(expected, [at(5, "t", 1), at(5), at(7, "t", 1), at(6)])
    assert gaps == [Gap("t", 1, 6, 7, 2)]
    assert following == {("t", 0): 7, ("t", 1): 8}


@given(
    st.sets(st.integers(min_value=0, max_value=60), min_size=1),
    st.lists(st.integers(min_value=0, max_value=60), max_size=10),
)
def test_the_gaps_are_exactly_the_offsets_never_received(
    received: set[int], redelivered: list[int]
) -> None:
    """Offsets arrive in order (with some redelivered); every offset between the first and the
    last received that never arrived is in exactly one gap, and nothing else is."""
    in_order = sorted(received)
    stream = sorted([*in_order, *(r for r in redelivered if r in received)])
    gaps, following = find_gaps({}, [at(o) for o in stream])
    missing = [o for g in gaps for o in range(g.first_missing, g.next_seen)]
    assert missing == [o for o in range(in_order[0], in_order[-1]) if o not in received]
    assert following == {("t", 0): in_order[-1] + 1}


def entry(key: str) -> NewEntry:
    return NewEntry(dedup_key=key, fields={"action": "report.received"})


def test_a_gap_is_recorded_just_before_the_record_after_it() -> None:
    entries = [entry("a"), entry("b"), entry("c")]
    gaps = [Gap("t", 2, 6, 9, 1), Gap("u", 0, 1, 4, 1)]
    batch = with_gap_entries(entries, gaps, noticed_at=NOW)
    assert [e.dedup_key for e in batch] == ["a", "gap:t:2:6:9", "gap:u:0:1:4", "b", "c"]
    gap = batch[1]
    assert gap.action == OFFSET_GAP
    assert gap.case_id is None
    assert gap.actor_id == LEDGER_ACTOR
    assert gap.occurred_at == NOW
    assert gap.fields["topic"] == "t"
    assert gap.fields["partition"] == 2
    assert gap.fields["offset"] is None
    assert gap.fields["detail"] == {
        "first_missing_offset": 6,
        "next_offset_seen": 9,
        "missing_records": 3,
    }
    assert with_gap_entries(entries, [], noticed_at=NOW) == entries
