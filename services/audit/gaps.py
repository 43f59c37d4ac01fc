"""Which offset the ledger expects next on each partition it ingests, to notice gaps.

The expectations are the ledger's (`audit_offsets`, advanced with each batch); this keeps a
copy so that a batch costs no extra read. The copy can only lag the database (another replica
ingested the partition for a while), never lead it, so a gap seen against the copy is checked
against the database before it is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ocsea.runtime.consumer import Origin
from services.audit.domain.offsets import Gap, Partition, find_gaps
from services.audit.ledger import Ledger


class OffsetWatch:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._expected: dict[Partition, int] = {}

    async def check(self, origins: Sequence[Origin]) -> tuple[list[Gap], dict[Partition, int]]:
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
