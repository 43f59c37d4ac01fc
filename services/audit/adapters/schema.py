"""The ledger's tables, in SQLite (default) or PostgreSQL, and the guards that keep them
append-only.

Three tables, none of which is ever updated:

- ``audit_entries``: one row per entry (``seq`` is the leaf index), its canonical JSON, and
  copies of a few fields for search;
- ``audit_nodes``: the Merkle tree as complete-subtree hashes keyed ``(level, idx)`` (see
  ``domain/merkle.py``). An append writes the leaf and the 0…log2(n) nodes it completes **in the
  same transaction** as the entry, so the tree never lags the entries, a proof for any size is
  one indexed SELECT of O(log n) keys, and nothing is ever recomputed;
- ``audit_checkpoints``: every signed tree head handed out.

The database refuses UPDATE and DELETE on all three (triggers), so a bug or a careless operator
cannot rewrite history without first switching the protection off, which verification against
an earlier checkpoint then detects. A fourth table, ``audit_offsets``, is bookkeeping rather than
history: the offset the ledger expects next on each partition (see ``domain/offsets.py``),
advanced in the same transaction as the entries, so a gap is noticed across restarts too.

In a deployment the service's role may only read rows and add them: the owner role creates the
tables (`python -m services.audit.entrypoints.schema`), grants the service its share
(`grant_statements`), and the service only checks they are there (`expect_schema`).
"""

from __future__ import annotations

import re
from typing import Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

metadata = MetaData()

_BigInt = BigInteger().with_variant(Integer, "sqlite")

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", _BigInt, primary_key=True, autoincrement=False),
    Column("dedup_key", String(512), nullable=False, unique=True),
    Column("source_event_id", String(64)),
    Column("case_id", String(64)),
    Column("action", String(100), nullable=False, index=True),
    Column("actor_id", String(200), nullable=False, index=True),
    Column("actor_agency", String(150), index=True),
    Column("subject_agency", String(150), index=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False, index=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("entry", Text, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Index("ix_audit_entries_case_time", "case_id", "occurred_at", "seq"),
)

audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,  # the rows live in the key's B-tree: one lookup, half the pages
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", _BigInt, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signed_at", DateTime(timezone=True), nullable=False),
    Column("checkpoint", Text, nullable=False),
)

audit_offsets = Table(
    "audit_offsets",
    metadata,
    Column("topic", String(255), primary_key=True),
    Column("partition_id", Integer, primary_key=True, autoincrement=False),
    Column("next_offset", _BigInt, nullable=False),
)

APPEND_ONLY_TABLES = ("audit_entries", "audit_nodes", "audit_checkpoints")


class LedgerLayoutError(RuntimeError):
    """The database holds an audit ledger in a layout this code does not write."""


class SchemaMissingError(RuntimeError):
    """The ledger's tables, or their append-only guards, are not in the database."""


def _sqlite_guards(table: str) -> list[str]:
    return [
        f"""CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, 'audit ledger tables are append-only'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, 'audit ledger tables are append-only'); END""",
    ]


_POSTGRES_FUNCTION = """CREATE OR REPLACE FUNCTION ocsea_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit ledger tables are append-only'; END $$"""


def _postgres_guards(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
            ON {table} FOR EACH STATEMENT EXECUTE FUNCTION ocsea_audit_append_only()""",
    ]


def _check_layout(conn: Connection) -> None:
    tables = inspect(conn).get_table_names()
    if "audit_entries" in tables:
        columns = {c["name"] for c in inspect(conn).get_columns("audit_entries")}
        if "dedup_key" not in columns or "audit_nodes" not in tables:
            raise LedgerLayoutError(
                "this database holds an audit ledger from an earlier development layout "
                "(no Merkle node table); move it aside and let the service start a new one"
            )


async def create_tables(conn: AsyncConnection) -> None:
    """Create the tables and their append-only guards (idempotent), in the caller's
    transaction; refuse a database that holds a ledger in another layout."""
    postgres = conn.dialect.name == "postgresql"
    await conn.run_sync(_check_layout)
    await conn.run_sync(metadata.create_all)
    statements = [_POSTGRES_FUNCTION] if postgres else []
    for table in APPEND_ONLY_TABLES:
        statements += _postgres_guards(table) if postgres else _sqlite_guards(table)
    for statement in statements:
        await conn.execute(text(statement))


ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_statements(role: str, checkpoint_sequence: str) -> list[str]:
    """What the service's role may do: read and add rows, and nothing else but advancing the
    partitions' expected offsets."""
    if not ROLE_NAME.fullmatch(role):
        raise ValueError(f"{role!r} is not a plain PostgreSQL role name")
    tables = ", ".join(sorted(metadata.tables))
    return [
        f"GRANT SELECT, INSERT ON {tables} TO {role}",
        # The one exception. audit_offsets is bookkeeping, not history (see above): the
        # offset the ledger expects next on each partition. Advancing it is an upsert
        # (INSERT … ON CONFLICT DO UPDATE SET next_offset = …), and PostgreSQL requires UPDATE
        # on the column such an upsert sets. Only that column, only that table; the history
        # tables stay without UPDATE, DELETE and TRUNCATE.
        f"GRANT UPDATE ({audit_offsets.c.next_offset.name}) ON {audit_offsets.name} TO {role}",
        # A checkpoint's id comes from its sequence: nextval needs USAGE.
        f"GRANT USAGE ON SEQUENCE {checkpoint_sequence} TO {role}",
    ]


async def grant_to(conn: AsyncConnection, role: str) -> None:
    """Grant the service's role its share of the tables (PostgreSQL: SQLite has no roles)."""
    if conn.dialect.name != "postgresql":
        raise ValueError("--grant-to needs PostgreSQL (SQLite has no roles)")
    sequence = (
        await conn.execute(text("SELECT pg_get_serial_sequence('audit_checkpoints', 'id')"))
    ).scalar_one()
    for statement in grant_statements(role, str(sequence)):
        await conn.execute(text(statement))


class OnDatabase(Protocol):
    """Anything holding the ledger's engine (the `Ledger`)."""

    @property
    def engine(self) -> AsyncEngine: ...


async def expect_schema(ledger: OnDatabase) -> None:
    """Refuse to start on a database without the ledger's tables or, on PostgreSQL, without
    the triggers that keep its history append-only."""
    engine = ledger.engine
    async with engine.connect() as conn:
        present = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        guards: set[str] = set()
        if engine.dialect.name == "postgresql":
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            rows = await conn.execute(text(query))
            guards = {str(name) for (name,) in rows}
    missing = sorted(set(metadata.tables) - present)
    if engine.dialect.name == "postgresql":
        wanted = [f"{table}_append_only" for table in APPEND_ONLY_TABLES]
        missing += [f"trigger {name}" for name in wanted if name not in guards]
    if missing:
        raise SchemaMissingError(
            f"the audit ledger's database lacks {', '.join(missing)}: create them as their "
            "owner role (`python -m services.audit.entrypoints.schema --grant-to <service "
            "role>` with OCSEA_AUDIT_DB_URL naming the owner), or set "
            "OCSEA_AUDIT_DB_CREATE_SCHEMA=true where the service's own role may create them"
        )
