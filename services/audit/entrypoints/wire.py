"""What the auditors' API answers (besides checkpoints and bundles, which are the domain's).

Hashes are lowercase hex. A `leaf` is an entry's exact canonical JSON text: its leaf hash is
SHA-256(0x00 || UTF-8 bytes of `leaf`), so anyone can recompute the tree from these alone.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TrailEntry(BaseModel):
    leaf_index: int = Field(ge=0)
    leaf_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    entry: dict[str, Any]


class CaseTrail(BaseModel):
    case_id: uuid.UUID
    entries: list[TrailEntry] = Field(
        description="In the order things happened: by the event's time, then by leaf index"
    )


class InclusionProof(BaseModel):
    leaf_index: int
    tree_size: int
    leaf_hash: str = Field(description="The tree's hash of the leaf (recompute it from the entry)")
    audit_path: list[str] = Field(description="RFC 9162 inclusion proof, leaf end first")


class ConsistencyProof(BaseModel):
    first: int
    second: int
    consistency_path: list[str] = Field(description="RFC 9162 consistency proof")


class Leaf(BaseModel):
    leaf_index: int
    leaf: str | None = Field(
        description="The entry's exact canonical JSON; null if the stored entry has gone missing"
    )
    leaf_hash: str = Field(description="The tree's stored leaf hash: a claim, to be recomputed")


class EntriesPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from")
    to: int = Field(description="Exclusive end of this page (clamped to tree_size)")
    tree_size: int
    entries: list[Leaf]


class SearchPage(BaseModel):
    entries: list[TrailEntry]
    next_after: int | None = Field(
        description="Pass as `after` for the next page; null when this page is the last"
    )
