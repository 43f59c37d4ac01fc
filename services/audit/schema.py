"""The ledger's tables in a deployment: created, and granted, by the role that owns them.

In a deployment the audit service reaches PostgreSQL as a role that may only read rows and add
them: it can neither create tables, nor drop the append-only guards, nor change a recorded row.
So the tables are created beforehand by their owner role:

    OCSEA_AUDIT_DB_URL=<the owner's URL> python -m services.audit.schema --grant-to ocsea_audit

(deploy/ runs it as a one-shot compose service and as the audit pod's init container), and the
service, started with `OCSEA_AUDIT_DB_CREATE_SCHEMA=false`, only checks that the tables and
their guards are there (`expect_schema`).
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

import typer
from sqlalchemy import inspect, text

from ocsea.runtime.settings import Settings
from services.audit.ledger import APPEND_ONLY_TABLES, Ledger, audit_offsets, metadata

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class SchemaMissingError(RuntimeError):
    """The ledger's tables, or their append-only guards, are not in the database."""


def grant_statements(role: str, checkpoint_sequence: str) -> list[str]:
    """What the service's role may do: read and add rows, and nothing else but advancing the
    partitions' expected offsets."""
    if not ROLE_NAME.fullmatch(role):
        raise ValueError(f"{role!r} is not a plain PostgreSQL role name")
    tables = ", ".join(sorted(metadata.tables))
    return [
        f"GRANT SELECT, INSERT ON {tables} TO {role}",
        # The one exception. audit_offsets is bookkeeping, not history (see ledger.py): the
        # offset the ledger expects next on each partition. Advancing it is an upsert
        # (INSERT … ON CONFLICT DO UPDATE SET next_offset = …), and PostgreSQL requires UPDATE
        # on the column such an upsert sets. Only that column, only that table; the history
        # tables stay without UPDATE, DELETE and TRUNCATE.
        f"GRANT UPDATE ({audit_offsets.c.next_offset.name}) ON {audit_offsets.name} TO {role}",
        # A checkpoint's id comes from its sequence: nextval needs USAGE.
        f"GRANT USAGE ON SEQUENCE {checkpoint_sequence} TO {role}",
    ]


async def create_schema(url: str, *, grant_to: str | None = None) -> None:
    """Create the tables and their guards (idempotent), as the role that is to own them, and
    grant the service's role its share."""
    ledger = Ledger(url)
    try:
        await ledger.create()
        if grant_to is None:
            return
        if ledger.engine.dialect.name != "postgresql":
            raise ValueError("--grant-to needs PostgreSQL (SQLite has no roles)")
        async with ledger.engine.begin() as conn:
            sequence = (
                await conn.execute(text("SELECT pg_get_serial_sequence('audit_checkpoints', 'id')"))
            ).scalar_one()
            for statement in grant_statements(grant_to, str(sequence)):
                await conn.execute(text(statement))
    finally:
        await ledger.close()


async def expect_schema(ledger: Ledger) -> None:
    """Refuse to start on a database without the ledger's tables or, on PostgreSQL, without
    the triggers that keep its history append-only."""
    async with ledger.engine.connect() as conn:
        present = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        guards: set[str] = set()
        if ledger.engine.dialect.name == "postgresql":
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            rows = await conn.execute(text(query))
            guards = {str(name) for (name,) in rows}
    missing = sorted(set(metadata.tables) - present)
    if ledger.engine.dialect.name == "postgresql":
        wanted = [f"{table}_append_only" for table in APPEND_ONLY_TABLES]
        missing += [f"trigger {name}" for name in wanted if name not in guards]
    if missing:
        raise SchemaMissingError(
            f"the audit ledger's database lacks {', '.join(missing)}: create them as their "
            "owner role (`python -m services.audit.schema --grant-to <service role>` with "
            "OCSEA_AUDIT_DB_URL naming the owner), or set OCSEA_AUDIT_DB_CREATE_SCHEMA=true "
            "where the service's own role may create them"
        )


def main(
    grant_to: Annotated[
        str | None,
        typer.Option(help="The audit service's role: SELECT and INSERT, and nothing more"),
    ] = None,
) -> None:
    """Create the audit ledger's tables in OCSEA_AUDIT_DB_URL (as the role that owns them)."""
    settings = Settings()
    asyncio.run(create_schema(settings.resolved_audit_db_url, grant_to=grant_to))
    typer.echo("audit ledger tables in place" + (f"; granted to {grant_to}" if grant_to else ""))


if __name__ == "__main__":
    typer.run(main)
