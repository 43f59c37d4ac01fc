"""Recording: every record on every project topic in, one ledger entry each, a batch at a time.

Building an entry never fails (`domain/entry.py`), so what can fail is the ledger, and then the
whole batch fails and is retried until it is written: never skipped, never dead-lettered. Each
batch is one transaction (entries, their Merkle nodes, the partitions' next offsets); the
consumer commits its offsets only once that is durable. A redelivered record adds nothing; a
record claiming a recorded event id with other bytes is kept as a conflict; offsets the ledger
never received are recorded as a gap, just before the record that revealed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from contracts.events import utc_now
from ocsea.runtime.logging import get_logger
from services.audit.domain.append_plan import Appended
from services.audit.domain.entry import CONFLICT, OFFSET_GAP, NewEntry, record_entry
from services.audit.domain.offsets import Gap, Partition, find_gaps, with_gap_entries
from services.audit.domain.record import KafkaRecord, RecordOrigin
from services.audit.ports import Clock, IngestFigures, LedgerAppender

log = get_logger("ocsea.audit")


class OffsetWatch:
    """Which offset the ledger expects next on each partition it ingests, to notice gaps.

    The expectations are the ledger's (advanced with each batch); this keeps a copy so that a
    batch costs no extra read. The copy can only lag the ledger (another replica ingested the
    partition for a while), never lead it, so a gap seen against the copy is checked against
    the ledger before it is recorded.
    """

    def __init__(self, ledger: LedgerAppender) -> None:
        self._ledger = ledger
        self._expected: dict[Partition, int] = {}

    async def check(
        self, origins: Sequence[RecordOrigin]
    ) -> tuple[list[Gap], dict[Partition, int]]:
        """The gaps the batch reveals, and the offsets to expect once it is in."""
        unknown = {(o.topic, o.partition) for o in origins} - self._expected.keys()
        if unknown:
            self._expected.update(await self._ledger.next_offsets(unknown))
        gaps, following = find_gaps(self._expected, origins)
        if gaps:
            self._expected.update(
                await self._ledger.next_offsets({(g.topic, g.partition) for g in gaps})
            )
            gaps, following = find_gaps(self._expected, origins)
        return gaps, following

    def advance(self, following: Mapping[Partition, int]) -> None:
        """Once the batch (and these offsets with it) is durable."""
        for partition, offset in following.items():
            self._expected[partition] = max(offset, self._expected.get(partition, offset))


class RecordBatch:
    """A batch of records in, their entries (and any gap's) appended in one transaction."""

    def __init__(
        self, ledger: LedgerAppender, figures: IngestFigures, clock: Clock = utc_now
    ) -> None:
        self.ledger = ledger
        self.figures = figures
        self.clock = clock
        self.offsets = OffsetWatch(ledger)

    async def __call__(self, batch: Sequence[KafkaRecord]) -> list[Appended]:
        """What became of each entry, in the order appended (gap entries included)."""
        received_at = self.clock()
        gaps, following = await self.offsets.check([raw.origin for raw in batch])
        entries = with_gap_entries(
            [record_entry(raw, received_at=received_at) for raw in batch],
            gaps,
            noticed_at=received_at,
        )
        results = await self.ledger.append_batch(entries, following)
        self.offsets.advance(following)
        # One log line per batch: the ledger itself is the per-entry record, and a line per
        # entry cost more than appending it while the service catches up on a backlog. What
        # must not pass unnoticed (a conflict, a gap) gets a warning of its own.
        for entry, result in zip(entries, results, strict=True):
            if result.created:
                self._count(entry, result)
        created = [r.leaf_index for r in results if r.created]
        if created:
            self.figures.tree_size(max(created) + 1)
        log.info(
            "audit.recorded",
            records=len(batch),
            appended=len(created),
            first_leaf=min(created, default=None),
            last_leaf=max(created, default=None),
        )
        return results

    def _count(self, entry: NewEntry, result: Appended) -> None:
        topic = str(entry.fields["topic"])
        if result.conflict_with is not None:
            self.figures.appended(CONFLICT)
            self.figures.conflict(topic)
            log.warning(
                "audit.conflict",
                contested_key=entry.dedup_key,
                topic=topic,
                partition=entry.fields["partition"],
                offset=entry.fields["offset"],
                leaf_index=result.leaf_index,
                recorded_leaf_index=result.conflict_with,
            )
            return
        self.figures.appended(entry.action)
        if entry.action == OFFSET_GAP:
            detail = entry.fields["detail"]
            self.figures.offset_gap(topic, detail["missing_records"])
            log.warning(
                "audit.offset_gap",
                topic=topic,
                partition=entry.fields["partition"],
                first_missing_offset=detail["first_missing_offset"],
                next_offset_seen=detail["next_offset_seen"],
                missing_records=detail["missing_records"],
                leaf_index=result.leaf_index,
            )
