"""The ledger's ingest: every project topic in, through the shared reliable consumer in raw
mode (a batch of records taken as they are; building an entry never fails).

Event topics and the side topics (`.dlq` twins, dispatch feeds) are read by two consumer groups,
so a flood on one never queues the other behind it. A batch that cannot be written is retried
until it is, never skipped and never dead-lettered; offsets are committed once it is durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from contracts.events import utc_now
from ocsea.runtime.consumer import RawRecord
from ocsea.runtime.kafka import project_topics
from ocsea.runtime.service import ServiceContext
from services.audit.adapters.metrics import IngestCounters
from services.audit.domain.entry import TopicRole, role_of
from services.audit.handlers import RecordBatch
from services.audit.ports import Clock, LedgerAppender

INGEST_BATCH = 500
"""Most records per ingest transaction: a backlog goes in at thousands a second, while building
a batch's entries holds the event loop for tens of milliseconds at most."""


class Recorder:
    """The ingest subscriber: the `RecordBatch` use case with its figures, paced.

    A full batch means a backlog (a restart, a replay, an outage behind us). Catching up then
    pauses between batches so that it takes at most `share` of the time: the ledger is never on
    a case's critical path, and in a single-process run (`ocsea run`) routing a live report must
    not wait behind the audit's catch-up.
    """

    def __init__(
        self,
        ledger: LedgerAppender,
        registry: CollectorRegistry | None = None,
        *,
        share: float = 1.0,
        full_batch: int = INGEST_BATCH,
        clock: Clock = utc_now,
    ) -> None:
        self.figures = IngestCounters(registry)
        self.record = RecordBatch(ledger, self.figures, clock)
        self.share = share
        self.full_batch = full_batch

    @property
    def tree_size(self) -> Gauge:
        return self.figures.tree_size_gauge

    @property
    def conflicts(self) -> Counter:
        return self.figures.conflicts

    @property
    def offset_gaps(self) -> Counter:
        return self.figures.offset_gaps

    @property
    def missing_records(self) -> Counter:
        return self.figures.missing_records

    async def __call__(self, batch: Sequence[RawRecord]) -> None:
        started = time.monotonic()
        await self.record(batch)
        if len(batch) >= self.full_batch and self.share < 1:
            busy = time.monotonic() - started
            await asyncio.sleep(busy * (1 / self.share - 1))


def subscribe(context: ServiceContext, recorder: Recorder) -> None:
    """Every project topic into the ledger, in two consumer groups."""
    everything = project_topics()
    event_topics = [t for t in everything if role_of(t) is TopicRole.EVENTS]
    side_topics = [t for t in everything if role_of(t) is not TopicRole.EVENTS]
    context.consume(*event_topics, raw_handler=recorder, raw_batch_size=INGEST_BATCH)
    context.consume(
        *side_topics,
        raw_handler=recorder,
        raw_batch_size=INGEST_BATCH,
        group_suffix="dlq-dispatch",
    )
