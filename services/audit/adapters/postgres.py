"""The ledger's writer on PostgreSQL: a batch in one statement and one round trip.

Appends are serialised by a transaction-scoped advisory lock, so replicas sharing a database
still produce dense leaf indexes. The caller (the Kafka consumer) commits its offsets only after
a write returned, i.e. after the entries and their nodes are durable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Column
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.events import utc_now
from ocsea.runtime.telemetry import db_client_span
from services.audit.adapters.schema import audit_entries, audit_nodes, audit_offsets
from services.audit.adapters.sql import offset_rows
from services.audit.domain import merkle
from services.audit.domain.append_plan import (
    Appended,
    AppendPlan,
    Recorded,
    TreeState,
    lookup_keys,
    plan_appends,
)
from services.audit.domain.entry import NewEntry
from services.audit.domain.offsets import Partition

ADVISORY_LOCK_KEY = 0x0C5EA
"""The PostgreSQL advisory lock every writer of the ledger holds while it appends."""


def _array_type(column: Column[Any], dialect: Dialect) -> str:
    """The column's PostgreSQL type for an array parameter, without its length: an explicit cast
    to VARCHAR(n) would cut an overlong value short silently, where the insert refuses it."""
    return column.type.compile(dialect=dialect).split("(")[0] + "[]"


def _append_statement(dialect: Dialect) -> str:
    """One statement that appends a planned batch only if the tree is still the one it was
    planned on: same size, same peaks, none of its dedup keys recorded. It returns whether it
    wrote; outside a transaction block it is a transaction of its own (all rows or none), and
    its reply comes after the commit, so a returned ``true`` is durable.

    Parameters: $1 the advisory lock key, $2 the expected size, $3-$5 the expected peaks (levels,
    indexes, hashes), then one array per column of ``audit_entries``, of ``audit_nodes`` and of
    ``audit_offsets`` (the partitions' offsets expected next, advanced with the batch).

    The checks read the statement's snapshot, taken before the lock is granted. A writer that
    committed in between is caught all the same: the first leaf index it used is this batch's
    first, so the inserts hit the primary key and the statement fails as a whole.
    """
    entry_columns, node_columns = list(audit_entries.columns), list(audit_nodes.columns)
    offset_columns = list(audit_offsets.columns)
    first_entry = 6
    first_node = first_entry + len(entry_columns)
    first_offset = first_node + len(node_columns)
    dedup = first_entry + [c.name for c in entry_columns].index("dedup_key")
    keys = f"${dedup}::{_array_type(audit_entries.c.dedup_key, dialect)}"

    def names(columns: list[Column[Any]]) -> str:
        return ", ".join(c.name for c in columns)

    def arrays(columns: list[Column[Any]], first: int) -> str:
        return ", ".join(f"${first + n}::{_array_type(c, dialect)}" for n, c in enumerate(columns))

    return f"""
        WITH turn AS MATERIALIZED (SELECT pg_advisory_xact_lock($1::bigint)),
        state AS MATERIALIZED (
            SELECT
                (SELECT coalesce(max(idx) + 1, 0) FROM audit_nodes WHERE level = 0) = $2::bigint
                AND NOT EXISTS (SELECT FROM audit_entries WHERE dedup_key = ANY({keys}))
                AND (
                    SELECT count(*)
                    FROM unnest($3::smallint[], $4::bigint[], $5::bytea[]) AS p(level, idx, hash)
                    JOIN audit_nodes AS n
                      ON n.level = p.level AND n.idx = p.idx AND n.hash = p.hash
                ) = cardinality($3::smallint[])
                AS ok
            FROM turn
        ),
        entries AS (
            INSERT INTO audit_entries ({names(entry_columns)})
            SELECT * FROM unnest({arrays(entry_columns, first_entry)})
            WHERE (SELECT ok FROM state)
        ),
        nodes AS (
            INSERT INTO audit_nodes ({names(node_columns)})
            SELECT * FROM unnest({arrays(node_columns, first_node)})
            WHERE (SELECT ok FROM state)
        ),
        offsets AS (
            INSERT INTO audit_offsets ({names(offset_columns)})
            SELECT * FROM unnest({arrays(offset_columns, first_offset)})
            WHERE (SELECT ok FROM state)
            ON CONFLICT (topic, partition_id) DO UPDATE
            SET next_offset = greatest(audit_offsets.next_offset, excluded.next_offset)
        )
        SELECT ok FROM state
    """  # noqa: S608 (names and types from the table definitions, values as parameters)


class PostgresWriter:
    """Appends on PostgreSQL in one round trip per batch.

    The writer keeps the tree it last committed (size and peaks), plans the next batch on it
    and sends it as one statement (`_append_statement`) that checks the database still holds that
    tree and inserts every entry and node row from column arrays. The first batch, a batch after
    a failure, and a batch whose check fails (some of its entries are recorded already: a
    redelivery) or whose insert collides (a replica appended in between) go the long way: a
    transaction that takes the lock, reads the recorded keys, the size and the peaks, and then
    sends the same statement.

    Why: at 500 entries a batch, the transaction of seven statements with a row-at-a-time insert
    per table cost the server about 63 µs of CPU per entry, one multi-row insert about 35 µs;
    and on a busy machine every further round trip waits for the server process to be
    scheduled. Plain asyncpg on one kept connection, not SQLAlchemy: the column arrays go
    straight to asyncpg's binary codecs, and a pool checkout (with its liveness ping) cost as
    much as the statement.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._tree: TreeState | None = None
        self._statement = _append_statement(engine.dialect)

    @db_client_span("postgresql", "BATCH", "audit_entries")
    async def write(
        self, entries: Sequence[NewEntry], next_offsets: Mapping[Partition, int]
    ) -> list[Appended]:
        if not entries:
            return []
        if self._connection is None:
            self._connection = await self._engine.connect()
        connection = self._connection
        try:
            raw = await connection.get_raw_connection()
            return await self._write(raw.driver_connection, entries, offset_rows(next_offsets))
        except BaseException:
            # Whatever failed, the commit's outcome may be unknown: start over from the database.
            self._connection, self._tree = None, None
            await connection.invalidate()
            await connection.close()
            raise

    async def _write(
        self, pg: Any, entries: Sequence[NewEntry], offsets: list[dict[str, Any]]
    ) -> list[Appended]:
        tree = self._tree
        self._tree = None  # known again only once this batch's outcome is
        if tree is not None:
            # Planned as if no key were recorded: the statement checks that none is (a
            # redelivery, or another version of a recorded event, takes the long way).
            plan = plan_appends(entries, {}, tree.size, tree.peaks, utc_now())
            try:
                if await self._insert(pg, tree, plan, offsets):
                    self._tree = plan.tree
                    return plan.results
            except asyncpg.UniqueViolationError:
                pass  # another writer appended first; the locked path below sorts it out
        async with pg.transaction():
            # Replicas sharing the database take turns, so leaf indexes stay dense.
            await pg.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
            known = await self._recorded(pg, lookup_keys(entries))
            if known:
                known.update(await self._recorded(pg, lookup_keys(entries, known)))
            last = await pg.fetchval("SELECT max(idx) FROM audit_nodes WHERE level = 0")
            size = 0 if last is None else int(last) + 1
            peaks = merkle.root_nodes(size)
            rows = await pg.fetch(
                "SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) IN"
                " (SELECT * FROM unnest($1::smallint[], $2::bigint[]))",
                [level for level, _ in peaks],
                [index for _, index in peaks],
            )
            tree = TreeState(size, {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows})
            plan = plan_appends(entries, known, tree.size, tree.peaks, utc_now())
            if (plan.entry_rows or offsets) and not await self._insert(pg, tree, plan, offsets):
                # Only a writer that ignores the lock (someone by hand) gets here; the caller
                # retries, and the next attempt reads the ledger afresh.
                raise RuntimeError("the audit ledger changed while this writer held its lock")
        self._tree = plan.tree
        return plan.results

    @staticmethod
    async def _recorded(pg: Any, keys: list[str]) -> dict[str, Recorded]:
        rows = await pg.fetch(
            "SELECT dedup_key, seq, entry FROM audit_entries WHERE dedup_key = ANY($1::text[])",
            keys,
        )
        return {row["dedup_key"]: Recorded(int(row["seq"]), row["entry"]) for row in rows}

    async def _insert(
        self, pg: Any, tree: TreeState, plan: AppendPlan, offsets: list[dict[str, Any]]
    ) -> bool:
        peaks = list(tree.peaks.items())
        # `fetch`, not `fetchval`: no row limit on the portal, the plain run-to-completion path.
        rows = await pg.fetch(
            self._statement,
            ADVISORY_LOCK_KEY,
            tree.size,
            [level for (level, _), _ in peaks],
            [index for (_, index), _ in peaks],
            [value for _, value in peaks],
            *([row[c.name] for row in plan.entry_rows] for c in audit_entries.columns),
            *([row[c.name] for row in plan.node_rows] for c in audit_nodes.columns),
            *([row[c.name] for row in offsets] for c in audit_offsets.columns),
        )
        return bool(rows[0][0])

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
