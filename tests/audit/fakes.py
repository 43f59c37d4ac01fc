"""In-memory fakes of the audit's ports (`services/audit/ports.py`), for its use cases' tests.

`MemoryLedger` appends the way every real writer does, by planning with
`domain.append_plan` and keeping the plan's rows, so what a use case gets back (leaf indexes,
redeliveries, conflicts) is what a database would give; it holds them in dicts, all or nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ocsea.runtime.auth import Principal
from services.audit.domain import merkle
from services.audit.domain.append_plan import Appended, Recorded, lookup_keys, plan_appends
from services.audit.domain.entry import NewEntry
from services.audit.domain.offsets import Partition
from services.audit.ports import RawLeaf, SearchFilter, StoredEntry

NOW = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)


class FixedClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class LedgerDownError(ConnectionError):
    """The fake ledger's outage."""


class MemoryLedger:
    """The `LedgerStore` port in memory."""

    def __init__(self, clock: FixedClock | None = None) -> None:
        self.clock = clock or FixedClock()
        self.rows: list[dict[str, Any]] = []
        self.nodes: dict[merkle.NodeKey, bytes] = {}
        self.by_key: dict[str, Recorded] = {}
        self.offsets: dict[Partition, int] = {}
        self.checkpoints: list[str] = []
        self.fail_appends = 0
        """How many of the next appends fail (an outage), writing nothing."""
        self.offset_reads: list[set[Partition]] = []

    # -- appending ----------------------------------------------------------------------------

    async def append_batch(
        self, entries: Sequence[NewEntry], next_offsets: Mapping[Partition, int] | None = None
    ) -> list[Appended]:
        if self.fail_appends:
            self.fail_appends -= 1
            raise LedgerDownError("the ledger's database is unreachable")
        known = {k: self.by_key[k] for k in lookup_keys(entries) if k in self.by_key}
        known |= {k: self.by_key[k] for k in lookup_keys(entries, known) if k in self.by_key}
        size = len(self.rows)
        peaks = {key: self.nodes[key] for key in merkle.root_nodes(size)}
        plan = plan_appends(entries, known, size, peaks, self.clock())
        for row in plan.entry_rows:
            self.rows.append(row)
            self.by_key[row["dedup_key"]] = Recorded(row["seq"], row["entry"])
        self.nodes.update({(r["level"], r["idx"]): r["hash"] for r in plan.node_rows})
        for partition, offset in (next_offsets or {}).items():
            self.offsets[partition] = max(offset, self.offsets.get(partition, offset))
        return plan.results

    async def next_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        wanted = set(partitions)
        self.offset_reads.append(wanted)
        return {p: o for p, o in self.offsets.items() if p in wanted}

    # -- reading ------------------------------------------------------------------------------

    @property
    def entries(self) -> list[StoredEntry]:
        return [StoredEntry(r["seq"], r["entry"], r["leaf_hash"].hex()) for r in self.rows]

    async def size(self) -> int:
        return len(self.rows)

    async def root(self, size: int) -> bytes:
        return merkle.root(size, self.nodes)

    async def inclusion_proof(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        return self.nodes[(0, index)], merkle.inclusion_proof(index, size, self.nodes)

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return merkle.consistency_proof(first, second, self.nodes)

    async def leaves(self, start: int, end: int) -> list[RawLeaf]:
        return [RawLeaf(r["seq"], r["entry"], r["leaf_hash"]) for r in self.rows[start:end]]

    async def case_trail(self, case_id: str) -> list[StoredEntry]:
        rows = sorted(
            (r for r in self.rows if r["case_id"] == case_id),
            key=lambda r: (r["occurred_at"], r["seq"]),
        )
        return [StoredEntry(r["seq"], r["entry"], r["leaf_hash"].hex()) for r in rows]

    async def search(self, query: SearchFilter) -> list[StoredEntry]:
        def matches(row: dict[str, Any]) -> bool:
            return (
                query.actor in (None, row["actor_id"])
                and query.action in (None, row["action"])
                and query.agency in (None, row["actor_agency"], row["subject_agency"])
                and query.case_id in (None, row["case_id"])
                and (query.since is None or row["occurred_at"] >= query.since)
                and (query.until is None or row["occurred_at"] < query.until)
                and (query.after is None or row["seq"] > query.after)
            )

        found = [r for r in self.rows if matches(r)][: query.limit]
        return [StoredEntry(r["seq"], r["entry"], r["leaf_hash"].hex()) for r in found]

    # -- checkpoints --------------------------------------------------------------------------

    async def add_checkpoint(
        self, *, tree_size: int, key_id: str, signed_at: datetime, checkpoint: str
    ) -> None:
        self.checkpoints.append(checkpoint)

    async def latest_checkpoint(self) -> str | None:
        return self.checkpoints[-1] if self.checkpoints else None


class AccessNotRecordedError(Exception):
    """What the fake access log raises when the access topic is down (the real one: a 503)."""


@dataclass
class AccessLogFake:
    """The `AccessRecorder` port: every read it was told of, in order."""

    viewed_reads: list[tuple[uuid.UUID, str, str]] = field(default_factory=list)
    down: bool = False

    async def viewed(self, case_id: uuid.UUID, principal: Principal, *, reason: str) -> object:
        if self.down:
            raise AccessNotRecordedError
        self.viewed_reads.append((case_id, principal.name, reason))
        return uuid.uuid4()


@dataclass
class FiguresFake:
    """The `IngestFigures` port, counted in dicts."""

    by_action: Counter[str] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    gaps: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    sizes: list[int] = field(default_factory=list)

    def appended(self, action: str) -> None:
        self.by_action[action] += 1

    def conflict(self, topic: str) -> None:
        self.conflicts[topic] += 1

    def offset_gap(self, topic: str, missing_records: int) -> None:
        self.gaps[topic] += 1
        self.missing[topic] += missing_records

    def tree_size(self, size: int) -> None:
        self.sizes.append(size)
