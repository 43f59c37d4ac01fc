"""What exports contain: a case's trail that verifies offline, and the header of a whole-ledger
export. Shared by the service, its client and the verifier.

Hashes are lowercase hex. A `leaf` is an entry's exact canonical JSON text: its leaf hash is
SHA-256(0x00 || UTF-8 bytes of `leaf`), so anyone can recompute the tree from these alone.
"""

from __future__ import annotations

import uuid
from typing import Final, Literal

from pydantic import BaseModel

from services.audit.domain.checkpoint import Checkpoint

CASE_BUNDLE_FORMAT: Final = "ocsea-audit-case-bundle/v1"
LEDGER_EXPORT_FORMAT: Final = "ocsea-audit-ledger/v1"


class BundleEntry(BaseModel):
    leaf_index: int
    leaf: str
    inclusion_proof: list[str]


class CaseBundle(BaseModel):
    """A case's trail that verifies offline: entries, their proofs, the checkpoint, the key."""

    format: Literal["ocsea-audit-case-bundle/v1"] = CASE_BUNDLE_FORMAT
    case_id: uuid.UUID
    checkpoint: Checkpoint
    entries: list[BundleEntry]


class LedgerExportHeader(BaseModel):
    """First line of a ledger export; one leaf per following line (see
    `adapters/ledger_sources.py`)."""

    format: Literal["ocsea-audit-ledger/v1"] = LEDGER_EXPORT_FORMAT
    checkpoint: Checkpoint
