"""The audit's figures on `/metrics`: what the ingest counts as it appends, and what is read
from the ledger every refresh.

Entries appended are counted as they are (`IngestCounters`, the `IngestFigures` port); what is
read (`LedgerFigures`) is what a restart or another writer can change behind the counters: how
many leaves the tree has, and how old the latest signed checkpoint is and how much of the tree
it covers. A checkpoint is signed every `OCSEA_AUDIT_CHECKPOINT_INTERVAL_S` while the ledger
grows, so "older than its interval while the tree has entries it does not cover" means signing
has stopped. Labels are actions and topics, never an id.
"""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.audit.domain.checkpoint import Checkpoint
from services.audit.ports import CheckpointLog


class IngestCounters:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.appended_total = Counter(
            "ocsea_audit_entries_appended",
            "Ledger entries appended, by action",
            ["action"],
            registry=registry,
        )
        self.tree_size_gauge = Gauge(
            "ocsea_audit_tree_size", "Entries in the ledger's Merkle tree", registry=registry
        )
        self.conflicts = Counter(
            "ocsea_audit_conflicts",
            "Records kept as conflicts: a recorded key (an event id) with other bytes",
            ["topic"],
            registry=registry,
        )
        self.offset_gaps = Counter(
            "ocsea_audit_offset_gaps",
            "Gaps in a partition's offsets: records the ledger never received",
            ["topic"],
            registry=registry,
        )
        self.missing_records = Counter(
            "ocsea_audit_missing_records",
            "Records in the offset gaps the ledger recorded",
            ["topic"],
            registry=registry,
        )

    def appended(self, action: str) -> None:
        self.appended_total.labels(action=action).inc()

    def conflict(self, topic: str) -> None:
        self.conflicts.labels(topic=topic).inc()

    def offset_gap(self, topic: str, missing_records: int) -> None:
        self.offset_gaps.labels(topic=topic).inc()
        self.missing_records.labels(topic=topic).inc(missing_records)

    def tree_size(self, size: int) -> None:
        self.tree_size_gauge.set(size)


class LedgerFigures:
    def __init__(
        self,
        registry: CollectorRegistry,
        ledger: CheckpointLog,
        *,
        tree_size: Gauge,
        checkpoint_interval_s: float,
    ) -> None:
        self._ledger = ledger
        self._tree_size = tree_size
        # Until a checkpoint is found, the ledger has gone without one since this process began.
        self._signed_at = time.time()
        self.checkpoint_tree_size = Gauge(
            "ocsea_audit_checkpoint_tree_size",
            "Entries the latest signed checkpoint covers (0 before the first)",
            registry=registry,
        )
        self.checkpoint_age = Gauge(
            "ocsea_audit_checkpoint_age_seconds",
            "Seconds since the latest checkpoint was signed (since start-up, before the first)",
            registry=registry,
        )
        self.checkpoint_age.set_function(lambda: max(0.0, time.time() - self._signed_at))
        Gauge(
            "ocsea_audit_checkpoint_interval_seconds",
            "How often a checkpoint is signed while the ledger grows (the setting)",
            registry=registry,
        ).set(checkpoint_interval_s)

    async def refresh(self) -> None:
        self._tree_size.set(await self._ledger.size())
        stored = await self._ledger.latest_checkpoint()
        if stored is not None:
            checkpoint = Checkpoint.model_validate_json(stored)
            self.checkpoint_tree_size.set(checkpoint.tree_size)
            self._signed_at = datetime.fromisoformat(checkpoint.timestamp).timestamp()
