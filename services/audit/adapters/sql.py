"""SQL the ledger's adapters share: bounded IN lists, node lookups, and advancing offsets."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import TextClause

from services.audit.domain.offsets import Partition

IN_CHUNK = 500
"""Most parameters of one IN (...) list."""


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that writes: on SQLite it takes the write lock as it begins (see
    `sqlite.configure_sqlite`), so two processes cannot interleave."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(ocsea_write=True)
        async with conn.begin():
            yield conn


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def nodes_where(count: int, mark: Callable[[int], str]) -> str:
    """`WHERE` of a SELECT of `count` nodes by key, as point lookups joined by OR: SQLite plans
    that as one primary-key search per key, but a row-value `IN` list as a full table scan."""
    return " OR ".join(f"(level = {mark(2 * n)} AND idx = {mark(2 * n + 1)})" for n in range(count))


@functools.lru_cache(maxsize=256)
def nodes_query(count: int) -> TextClause:
    """SELECT of `count` nodes by key. Written once per count and cached: compiling an expanding
    IN on every call cost more than the query itself (a proof's latency budget)."""
    where = nodes_where(count, lambda n: f":p{n}")
    return text(f"SELECT level, idx, hash FROM audit_nodes WHERE {where}")  # noqa: S608


def upsert_offsets(values: str) -> str:
    """Advance partitions' expected offsets, never back (a redelivered batch is older)."""
    return (
        f"INSERT INTO audit_offsets (topic, partition_id, next_offset) VALUES ({values})"  # noqa: S608 (placeholders)
        " ON CONFLICT (topic, partition_id) DO UPDATE SET next_offset = CASE"
        " WHEN excluded.next_offset > audit_offsets.next_offset THEN excluded.next_offset"
        " ELSE audit_offsets.next_offset END"
    )


def offset_rows(next_offsets: Mapping[Partition, int]) -> list[dict[str, Any]]:
    return [
        {"topic": topic, "partition_id": partition, "next_offset": offset}
        for (topic, partition), offset in sorted(next_offsets.items())
    ]
