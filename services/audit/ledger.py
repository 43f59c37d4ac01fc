"""The ledger's storage: an append-only table in SQLite (default) or PostgreSQL.

Appends are serialised (an in-process lock, plus a transaction-scoped advisory lock on
PostgreSQL for replicas) so sequence numbers are dense leaf indexes. The database itself
refuses UPDATE and DELETE on entries (triggers), so a bug or a careless operator cannot
rewrite history without switching the protection off, which verification then detects.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from contracts.events import Envelope, utc_now
from services.audit.domain.entry import canonical_json, entry_for
from services.audit.domain.merkle import leaf_hash

metadata = MetaData()

audit_entries = Table(
    "audit_entries",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("source_event_id", String(64), nullable=False, unique=True),
    Column("case_id", String(64), nullable=False, index=True),
    Column("action", String(100), nullable=False),
    Column("actor_id", String(200), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("entry", Text, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
)

_SQLITE_GUARDS = [
    """CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
       BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries
       BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END""",
]
_POSTGRES_GUARDS = [
    """CREATE OR REPLACE FUNCTION ocsea_audit_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit entries are append-only'; END $$""",
    "DROP TRIGGER IF EXISTS audit_entries_append_only ON audit_entries",
    """CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
       ON audit_entries FOR EACH STATEMENT EXECUTE FUNCTION ocsea_audit_append_only()""",
]
_ADVISORY_LOCK_KEY = 0x0C5EA


@dataclass(frozen=True)
class StoredEntry:
    leaf_index: int
    entry: dict[str, Any]
    leaf_hash: str


class Ledger:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            database = url.split("///", 1)[-1]
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=True)
        self._is_postgres = self.engine.dialect.name == "postgresql"
        self._append_lock = asyncio.Lock()

    async def create(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            for statement in _POSTGRES_GUARDS if self._is_postgres else _SQLITE_GUARDS:
                await conn.execute(text(statement))

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    async def append(
        self,
        envelope: Envelope,
        *,
        topic: str,
        partition: int,
        offset: int,
        event_sha256: str,
    ) -> tuple[int, bool]:
        """Append the event's entry; returns (leaf index, created). A redelivery adds nothing."""
        async with self._append_lock, self.engine.begin() as conn:
            if self._is_postgres:
                await conn.execute(select(func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
            existing = await conn.scalar(
                select(audit_entries.c.seq).where(
                    audit_entries.c.source_event_id == str(envelope.event_id)
                )
            )
            if existing is not None:
                return int(existing), False
            seq = await self._next_seq(conn)
            recorded_at = utc_now()
            entry = entry_for(
                seq=seq,
                envelope=envelope,
                recorded_at=recorded_at,
                topic=topic,
                partition=partition,
                offset=offset,
                event_sha256=event_sha256,
            )
            encoded = canonical_json(entry)
            await conn.execute(
                audit_entries.insert().values(
                    seq=seq,
                    source_event_id=str(envelope.event_id),
                    case_id=str(envelope.case_id),
                    action=envelope.event_type,
                    actor_id=envelope.actor.id,
                    occurred_at=envelope.occurred_at.astimezone(UTC),
                    recorded_at=recorded_at,
                    entry=encoded.decode(),
                    leaf_hash=leaf_hash(encoded),
                )
            )
            return seq, True

    @staticmethod
    async def _next_seq(conn: AsyncConnection) -> int:
        last = await conn.scalar(select(func.max(audit_entries.c.seq)))
        return 0 if last is None else int(last) + 1

    async def case_trail(self, case_id: str) -> list[StoredEntry]:
        """A case's entries in the order things happened.

        Leaf order is the order the audit service learned of events, which across topics
        need not be causal (a task event can be fetched before the report it came from).
        """
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.leaf_hash)
                .where(audit_entries.c.case_id == case_id)
                .order_by(audit_entries.c.occurred_at, audit_entries.c.seq)
            )
            return [
                StoredEntry(int(seq), json.loads(entry), bytes(digest).hex())
                for seq, entry, digest in rows
            ]

    async def size(self) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(audit_entries)) or 0)
