"""What the audit's use cases need from the world, as protocols: the ledger (its writers, its
queries, its checkpoints), the access record, the figures, the clock, and the sources the
verifier reads a ledger from. `adapters/` implements them; `tests/audit/fakes.py` fakes them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ocsea.runtime.auth import Principal
from services.audit.domain.append_plan import Appended
from services.audit.domain.checkpoint import Checkpoint
from services.audit.domain.entry import NewEntry
from services.audit.domain.offsets import Partition

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]
"""Called with (done, total) as a long task goes on."""


# -- what the ledger holds, as its queries answer ---------------------------------------------


@dataclass(frozen=True)
class StoredEntry:
    leaf_index: int
    text: str
    leaf_hash: str

    @property
    def entry(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.text)
        return parsed


@dataclass(frozen=True)
class RawLeaf:
    """Leaf ``leaf_index`` as stored: the entry's exact text (None if the row is missing) and
    the tree's leaf hash for it (what the node table holds; the verifier recomputes it)."""

    leaf_index: int
    text: str | None
    leaf_hash: bytes


@dataclass
class SearchFilter:
    actor: str | None = None
    action: str | None = None
    agency: str | None = None
    case_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: int | None = None
    limit: int = 100


# -- the ledger ---------------------------------------------------------------------------------


class LedgerWriter(Protocol):
    """Appends batches to one kind of database (SQLite on its own thread, PostgreSQL in one
    statement, or any other SQLAlchemy speaks): plans each with `domain.append_plan` and writes
    the plan in one transaction. Calls come one at a time (the `Ledger` serialises them)."""

    def write(
        self, entries: Sequence[NewEntry], next_offsets: Mapping[Partition, int]
    ) -> Awaitable[list[Appended]]:
        """Append in order, in one transaction; what became of each entry."""
        ...

    async def close(self) -> None: ...


class LedgerAppender(Protocol):
    async def append_batch(
        self,
        entries: Sequence[NewEntry],
        next_offsets: Mapping[Partition, int] | None = None,
    ) -> list[Appended]:
        """Append entries in order in one transaction: all of them durable, or none; the
        offsets expected next on the batch's partitions advance (never back) with them."""
        ...

    async def next_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The offset expected next on each of `partitions` that the ledger has seen."""
        ...


class TreeHeads(Protocol):
    async def size(self) -> int: ...

    async def root(self, size: int) -> bytes: ...


class CheckpointLog(TreeHeads, Protocol):
    async def add_checkpoint(
        self, *, tree_size: int, key_id: str, signed_at: datetime, checkpoint: str
    ) -> None: ...

    async def latest_checkpoint(self) -> str | None:
        """The latest checkpoint stored, as its JSON."""
        ...


class CurrentCheckpoint(Protocol):
    async def current(self) -> Checkpoint:
        """The latest checkpoint, signed afresh if the ledger has grown since."""
        ...


class LedgerQueries(TreeHeads, Protocol):
    async def inclusion_proof(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """(leaf hash, audit path) of leaf `index` in the tree of `size` leaves."""
        ...

    async def consistency_proof(self, first: int, second: int) -> list[bytes]: ...

    async def leaves(self, start: int, end: int) -> list[RawLeaf]:
        """Leaves [start, end) as stored."""
        ...

    async def case_trail(self, case_id: str) -> list[StoredEntry]:
        """A case's entries in the order things happened: by event time, then leaf index."""
        ...

    async def search(self, query: SearchFilter) -> list[StoredEntry]:
        """Entries matching every given filter, in leaf order, after leaf `after`."""
        ...


class LedgerStore(LedgerAppender, LedgerQueries, CheckpointLog, Protocol):
    """The whole ledger, as the service holds it (`adapters.ledger.Ledger`)."""


# -- around the ledger --------------------------------------------------------------------------


class AccessRecorder(Protocol):
    """The access record (`ocsea.runtime.access.AccessLog`): a read is answered only once it
    is recorded; `viewed` raises the 503 to answer when it cannot be."""

    async def viewed(self, case_id: uuid.UUID, principal: Principal, *, reason: str) -> object: ...


class IngestFigures(Protocol):
    """What the ingest counts (Prometheus, in `adapters.metrics`)."""

    def appended(self, action: str) -> None: ...

    def conflict(self, topic: str) -> None: ...

    def offset_gap(self, topic: str, missing_records: int) -> None: ...

    def tree_size(self, size: int) -> None: ...


# -- what the verifier reads --------------------------------------------------------------------


@dataclass(frozen=True)
class SourceLeaf:
    leaf_index: int
    text: str | None
    claimed_hash: bytes | None


class LedgerSource(Protocol):
    """Where the verifier reads a ledger from: the running service, or an exported file;
    neither is trusted."""

    description: str

    def checkpoint(self) -> Checkpoint:
        """The source's current signed checkpoint."""
        ...

    def leaves(self, start: int, end: int) -> Iterable[SourceLeaf]:
        """Leaves [start, end), in order (the verifier asks for them in order, once)."""
        ...

    def consistency_proof(self, first: int, second: int) -> list[bytes] | None:
        """A proof the source claims; None if it cannot give one (a file)."""
        ...
