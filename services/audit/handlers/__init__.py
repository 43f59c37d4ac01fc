"""The audit's use cases, over the ports of `ports.py`: recording a batch of records
(`ingest`), the auditors' reads with their access recorded (`reads`), signing checkpoints
(`checkpoints`), and verifying a ledger or a case bundle trusting nothing its source says
(`verify`)."""

from __future__ import annotations

from dataclasses import dataclass

from services.audit.handlers.checkpoints import Checkpointer
from services.audit.handlers.ingest import OffsetWatch, RecordBatch
from services.audit.handlers.reads import LeavesPage, LedgerReads, Page
from services.audit.handlers.verify import Verdict, verify_bundle, verify_ledger

__all__ = [
    "AuditHandlers",
    "Checkpointer",
    "LeavesPage",
    "LedgerReads",
    "OffsetWatch",
    "Page",
    "RecordBatch",
    "Verdict",
    "verify_bundle",
    "verify_ledger",
]


@dataclass(frozen=True)
class AuditHandlers:
    """What the HTTP routes call, as bootstrap composed it."""

    reads: LedgerReads
    checkpoints: Checkpointer
