"""Reading the ledger: its size and tree heads, proofs, leaves, a case's trail, search, the
latest checkpoint, and the offsets it expects next.

Through SQLAlchemy on either database; on a SQLite file the reads whose latency is the auditors'
API's promise (a size, a proof's nodes, a page of leaves) go through `SqliteDirect` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.audit.adapters.schema import (
    audit_checkpoints,
    audit_entries,
    audit_nodes,
    audit_offsets,
)
from services.audit.adapters.sql import chunks, nodes_query
from services.audit.adapters.sqlite import SqliteDirect, select_leaves
from services.audit.adapters.sqlite import select_nodes as sqlite_nodes
from services.audit.adapters.sqlite import select_size as sqlite_size
from services.audit.domain import merkle
from services.audit.domain.append_plan import Recorded
from services.audit.domain.offsets import Partition
from services.audit.ports import RawLeaf, SearchFilter, StoredEntry


async def select_size(conn: AsyncConnection) -> int:
    """Leaves in the tree (entries are only ever appended together with their leaf)."""
    last = await conn.scalar(select(func.max(audit_nodes.c.idx)).where(audit_nodes.c.level == 0))
    return 0 if last is None else int(last) + 1


async def select_nodes(
    conn: AsyncConnection, keys: Sequence[merkle.NodeKey]
) -> dict[merkle.NodeKey, bytes]:
    nodes: dict[merkle.NodeKey, bytes] = {}
    for chunk in chunks(list(keys)):
        flat = [value for key in chunk for value in key]
        params = {f"p{n}": value for n, value in enumerate(flat)}
        rows = await conn.execute(nodes_query(len(chunk)), params)
        nodes.update({(int(level), int(idx)): bytes(value) for level, idx, value in rows})
    return nodes


async def select_recorded(conn: AsyncConnection, keys: Sequence[str]) -> dict[str, Recorded]:
    known: dict[str, Recorded] = {}
    for chunk in chunks(list(dict.fromkeys(keys))):
        rows = await conn.execute(
            select(audit_entries.c.dedup_key, audit_entries.c.seq, audit_entries.c.entry).where(
                audit_entries.c.dedup_key.in_(chunk)
            )
        )
        known.update({key: Recorded(int(seq), entry) for key, seq, entry in rows})
    return known


def _stored(seq: int, entry: str, digest: bytes) -> StoredEntry:
    return StoredEntry(int(seq), entry, bytes(digest).hex())


class SqlQueries:
    def __init__(self, engine: AsyncEngine, sqlite: SqliteDirect | None = None) -> None:
        self._engine = engine
        self._sqlite = sqlite

    # -- the tree -----------------------------------------------------------------------------

    async def size(self) -> int:
        if self._sqlite is not None:
            return self._sqlite.read_now(sqlite_size)
        async with self._engine.connect() as conn:
            return await select_size(conn)

    async def nodes(self, keys: Sequence[merkle.NodeKey]) -> dict[merkle.NodeKey, bytes]:
        """The stored nodes among `keys`, in one SELECT (per 500 keys)."""
        if self._sqlite is not None:
            return self._sqlite.read_now(sqlite_nodes, keys)
        async with self._engine.connect() as conn:
            return await select_nodes(conn, keys)

    async def root(self, size: int) -> bytes:
        return merkle.root(size, await self.nodes(merkle.root_nodes(size)))

    async def inclusion_proof(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """(leaf hash, audit path) of leaf `index` in the tree of `size` leaves; one SELECT."""
        nodes = await self.nodes([(0, index), *merkle.inclusion_proof_nodes(index, size)])
        if (0, index) not in nodes:
            raise merkle.MissingNodeError(0, index)
        return nodes[(0, index)], merkle.inclusion_proof(index, size, nodes)

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        nodes = await self.nodes(merkle.consistency_proof_nodes(first, second))
        return merkle.consistency_proof(first, second, nodes)

    # -- entries --------------------------------------------------------------------------------

    async def leaves(self, start: int, end: int) -> list[RawLeaf]:
        """Leaves [start, end) as stored; an entry row that has gone missing shows as None."""
        if self._sqlite is not None:
            return await self._sqlite.read(select_leaves, start, end)
        query = (
            select(audit_nodes.c.idx, audit_entries.c.entry, audit_nodes.c.hash)
            .select_from(
                audit_nodes.outerjoin(audit_entries, audit_entries.c.seq == audit_nodes.c.idx)
            )
            .where(audit_nodes.c.level == 0, audit_nodes.c.idx >= start, audit_nodes.c.idx < end)
            .order_by(audit_nodes.c.idx)
        )
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return [RawLeaf(int(idx), entry, bytes(digest)) for idx, entry, digest in rows]

    async def case_trail(self, case_id: str) -> list[StoredEntry]:
        """A case's entries in the order things happened: by event time, then leaf index.

        Leaf order is the order the audit service learned of events, which across topics
        need not be causal (a task event can be fetched before the report it came from).
        """
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.leaf_hash)
                .where(audit_entries.c.case_id == case_id)
                .order_by(audit_entries.c.occurred_at, audit_entries.c.seq)
            )
            return [_stored(seq, entry, digest) for seq, entry, digest in rows]

    async def search(self, query: SearchFilter) -> list[StoredEntry]:
        """Entries matching every given filter, in leaf order, after leaf `after`."""
        conditions = []
        if query.actor is not None:
            conditions.append(audit_entries.c.actor_id == query.actor)
        if query.action is not None:
            conditions.append(audit_entries.c.action == query.action)
        if query.agency is not None:
            conditions.append(
                or_(
                    audit_entries.c.actor_agency == query.agency,
                    audit_entries.c.subject_agency == query.agency,
                )
            )
        if query.case_id is not None:
            conditions.append(audit_entries.c.case_id == query.case_id)
        if query.since is not None:
            conditions.append(audit_entries.c.occurred_at >= query.since.astimezone(UTC))
        if query.until is not None:
            conditions.append(audit_entries.c.occurred_at < query.until.astimezone(UTC))
        if query.after is not None:
            conditions.append(audit_entries.c.seq > query.after)
        statement = (
            select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.leaf_hash)
            .where(and_(True, *conditions))
            .order_by(audit_entries.c.seq)
            .limit(query.limit)
        )
        async with self._engine.connect() as conn:
            rows = await conn.execute(statement)
            return [_stored(seq, entry, digest) for seq, entry, digest in rows]

    # -- bookkeeping ----------------------------------------------------------------------------

    async def latest_checkpoint(self) -> str | None:
        async with self._engine.connect() as conn:
            stored: str | None = await conn.scalar(
                select(audit_checkpoints.c.checkpoint)
                .order_by(audit_checkpoints.c.id.desc())
                .limit(1)
            )
            return stored

    async def next_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The offset expected next on each of `partitions` that the ledger has seen."""
        wanted = set(partitions)
        topics = sorted({topic for topic, _ in wanted})
        if not topics:
            return {}
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(
                    audit_offsets.c.topic, audit_offsets.c.partition_id, audit_offsets.c.next_offset
                ).where(audit_offsets.c.topic.in_(topics))
            )
            found = {(topic, int(part)): int(offset) for topic, part, offset in rows}
        return {key: offset for key, offset in found.items() if key in wanted}
