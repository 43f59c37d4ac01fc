"""The ledger on one database: SQLite (default) or PostgreSQL (`OCSEA_AUDIT_DB_URL`).

`Ledger` is the `LedgerStore` port: the queries (`queries.py`), and appends through the writer
that suits the database (the `LedgerWriter` port): `SqliteDirect` on a SQLite file,
`PostgresWriter` on PostgreSQL, `EngineWriter` on anything else SQLAlchemy speaks (an in-memory
SQLite). The tables are in `schema.py`; what an append means is decided in
`domain/append_plan.py`, which every writer plans with.

Appends are group-committed: concurrent ``append`` calls that arrive while a transaction is being
written share the next one (one durable commit for many entries). They are serialised by an
in-process lock plus, on PostgreSQL, a transaction-scoped advisory lock, so replicas sharing a
database still produce dense leaf indexes; on SQLite the transaction takes the write lock at once
(``BEGIN IMMEDIATE``). The caller (the Kafka consumer) commits its offset only after ``append``
returned, i.e. after the entry and its nodes are durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from contracts.events import utc_now
from ocsea.runtime.telemetry import instrument_engine
from services.audit.adapters.postgres import PostgresWriter
from services.audit.adapters.queries import SqlQueries, select_nodes, select_recorded, select_size
from services.audit.adapters.schema import (
    audit_checkpoints,
    audit_entries,
    audit_nodes,
    create_tables,
)
from services.audit.adapters.sql import offset_rows, upsert_offsets, write_transaction
from services.audit.adapters.sqlite import SqliteDirect, configure_sqlite
from services.audit.domain import merkle
from services.audit.domain.append_plan import Appended, lookup_keys, plan_appends
from services.audit.domain.entry import NewEntry
from services.audit.domain.offsets import Partition
from services.audit.ports import LedgerWriter

MAX_BATCH = 2000
"""Most entries one group commit writes; more waiting callers share the next one."""


class EngineWriter:
    """Appends through SQLAlchemy: one transaction of a few statements. For the databases
    without a writer of their own (an in-memory SQLite, which no second connection could see)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(
        self, entries: Sequence[NewEntry], next_offsets: Mapping[Partition, int]
    ) -> list[Appended]:
        offsets = offset_rows(next_offsets)
        async with write_transaction(self._engine) as conn:
            known = await select_recorded(conn, lookup_keys(entries))
            known.update(await select_recorded(conn, lookup_keys(entries, known)))
            size = await select_size(conn)
            nodes = await select_nodes(conn, merkle.root_nodes(size))
            plan = plan_appends(entries, known, size, nodes, utc_now())
            if plan.entry_rows:
                await conn.execute(audit_entries.insert(), plan.entry_rows)
                await conn.execute(audit_nodes.insert(), plan.node_rows)
            if offsets:
                values = ":topic, :partition_id, :next_offset"
                await conn.execute(text(upsert_offsets(values)), offsets)
            return plan.results

    async def close(self) -> None:
        """Nothing of its own: it borrows the engine's pooled connections."""


@dataclass
class _Pending:
    entry: NewEntry
    future: asyncio.Future[Appended]


class Ledger(SqlQueries):
    def __init__(self, url: str, *, max_batch: int = MAX_BATCH) -> None:
        self.url = url
        sqlite: SqliteDirect | None = None
        if url.startswith("sqlite"):
            database = url.split("///", 1)[-1]
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Reads run without a transaction (one SELECT is atomic), so a connection going
            # back to the pool has nothing to roll back: skipping that halves a proof's latency.
            self.engine: AsyncEngine = create_async_engine(url, pool_reset_on_return=None)
            configure_sqlite(self.engine)
            file = self.engine.url.database
            if file and file != ":memory:":
                sqlite = SqliteDirect(file)
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True)
        instrument_engine(self.engine)  # client spans when tracing is on
        super().__init__(self.engine, sqlite)
        self._writer: LedgerWriter
        if sqlite is not None:
            self._writer = sqlite
        elif self.engine.dialect.name == "postgresql":
            self._writer = PostgresWriter(self.engine)
        else:
            self._writer = EngineWriter(self.engine)
        self._append_lock = asyncio.Lock()
        self._pending: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None
        self._max_batch = max_batch

    # -- lifecycle --------------------------------------------------------------------------

    async def create(self) -> None:
        async with write_transaction(self.engine) as conn:
            await create_tables(conn)

    async def close(self) -> None:
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        await self._writer.close()
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    # -- appending --------------------------------------------------------------------------

    async def append(self, entry: NewEntry) -> Appended:
        """Append one entry durably (group-committed with concurrent callers).

        Returns its leaf index, and whether it was new: an entry whose `dedup_key` is already
        recorded (a redelivered event) adds nothing and returns the existing index.
        """
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(entry, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="audit-ledger-writer")
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self.append_batch([p.entry for p in batch])
            except Exception as exc:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            else:
                for pending, result in zip(batch, results, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(result)

    async def append_batch(
        self,
        entries: Sequence[NewEntry],
        next_offsets: Mapping[Partition, int] | None = None,
    ) -> list[Appended]:
        """Append entries in order in one transaction: all of them durable, or none.

        `next_offsets` advances the offsets expected next on the batch's partitions (never
        back) in the same transaction, so they always match what the ledger holds.
        """
        async with self._append_lock:
            return await self._writer.write(entries, next_offsets or {})

    # -- checkpoints --------------------------------------------------------------------------

    async def add_checkpoint(
        self, *, tree_size: int, key_id: str, signed_at: datetime, checkpoint: str
    ) -> None:
        async with write_transaction(self.engine) as conn:
            await conn.execute(
                audit_checkpoints.insert().values(
                    tree_size=tree_size,
                    key_id=key_id,
                    signed_at=signed_at.astimezone(UTC),
                    checkpoint=checkpoint,
                )
            )
