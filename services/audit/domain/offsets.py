"""Gaps in what the ledger received: offsets of a partition it never saw.

The project's producers are idempotent and not transactional, and no project topic is compacted,
so a partition's offsets are contiguous: every offset holds a record (a transactional producer
would leave an offset to each commit marker, which consumers never see; none is used). The
ledger therefore expects, on each partition, the offset after the last one it received. A record
further on means the ones between never reached it: deleted by retention before it read them,
or skipped because its consumer group's offset was moved past them. An earlier offset is a
redelivery (or a topic made anew), never a gap. The first record the ledger sees of a partition
opens its watch: where it starts is the consumer group's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.audit.domain.entry import NewEntry, offset_gap_entry
from services.audit.domain.record import RecordOrigin

Partition = tuple[str, int]
"""(topic, partition)"""


@dataclass(frozen=True)
class Gap:
    topic: str
    partition: int
    first_missing: int
    next_seen: int
    position: int
    """Where in the batch the record after the gap is (its gap entry goes before it)."""

    @property
    def missing(self) -> int:
        return self.next_seen - self.first_missing


def find_gaps(
    expected: Mapping[Partition, int], origins: Sequence[RecordOrigin]
) -> tuple[list[Gap], dict[Partition, int]]:
    """The gaps a batch of records reveals, given the offset expected next on each partition,
    and the offsets expected next once the batch is in (for the partitions in it)."""
    following = dict(expected)
    touched: set[Partition] = set()
    gaps: list[Gap] = []
    for position, origin in enumerate(origins):
        partition = (origin.topic, origin.partition)
        touched.add(partition)
        want = following.get(partition)
        if want is not None and origin.offset > want:
            gaps.append(Gap(origin.topic, origin.partition, want, origin.offset, position))
        if want is None or origin.offset >= want:
            following[partition] = origin.offset + 1
    return gaps, {partition: following[partition] for partition in touched}


def with_gap_entries(
    entries: Sequence[NewEntry], gaps: Sequence[Gap], *, noticed_at: datetime
) -> list[NewEntry]:
    """A batch's entries with each gap's entry just before the record that revealed it."""
    before: dict[int, list[NewEntry]] = {}
    for gap in gaps:
        before.setdefault(gap.position, []).append(
            offset_gap_entry(
                gap.topic, gap.partition, gap.first_missing, gap.next_seen, noticed_at=noticed_at
            )
        )
    return [e for position, entry in enumerate(entries) for e in (*before.get(position, ()), entry)]
