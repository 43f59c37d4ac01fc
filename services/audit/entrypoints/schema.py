"""The ledger's tables in a deployment: created, and granted, by the role that owns them.

In a deployment the audit service reaches PostgreSQL as a role that may only read rows and add
them: it can neither create tables, nor drop the append-only guards, nor change a recorded row.
So the tables are created beforehand by their owner role:

    OCSEA_AUDIT_DB_URL=<the owner's URL> python -m services.audit.entrypoints.schema \\
        --grant-to ocsea_audit

(deploy/ runs it as a one-shot compose service and as the audit pod's init container), and the
service, started with `OCSEA_AUDIT_DB_CREATE_SCHEMA=false`, only checks that the tables and
their guards are there (`adapters.schema.expect_schema`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ocsea.runtime.settings import Settings
from services.audit.adapters.ledger import Ledger
from services.audit.adapters.schema import grant_to as grant_share


async def create_schema(url: str, *, grant_to: str | None = None) -> None:
    """Create the tables and their guards (idempotent), as the role that is to own them, and
    grant the service's role its share."""
    ledger = Ledger(url)
    try:
        await ledger.create()
        if grant_to is None:
            return
        async with ledger.engine.begin() as conn:
            await grant_share(conn, grant_to)
    finally:
        await ledger.close()


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
