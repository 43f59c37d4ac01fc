"""The ledger's size and its latest checkpoint, read from the database every refresh.

Entries appended are counted as they are (`Recorder`); what is read here is what a restart or
another writer can change behind the counters: how many leaves the tree has, and how old the
latest signed checkpoint is and how much of the tree it covers. A checkpoint is signed every
`OCSEA_AUDIT_CHECKPOINT_INTERVAL_S` while the ledger grows, so "older than its interval while
the tree has entries it does not cover" means signing has stopped.
"""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from services.audit.domain.checkpoint import Checkpoint
from services.audit.ledger import Ledger


class LedgerFigures:
    def __init__(
        self,
        registry: CollectorRegistry,
        ledger: Ledger,
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
