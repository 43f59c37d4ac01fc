"""Composes the audit service: its ledger and keys, its use cases, its routes and its ingest.

`ingest=False` serves the API over an existing ledger only (tools, tests and benchmarks that
must not pull the shared topics into their ledger).
"""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from ocsea.runtime.access import AccessLog
from ocsea.runtime.auth import PrincipalStore
from ocsea.runtime.metrics import refresh_periodically
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.audit.adapters.ledger import Ledger
from services.audit.adapters.metrics import LedgerFigures
from services.audit.adapters.schema import expect_schema
from services.audit.adapters.signing_key import signing_key_for
from services.audit.domain import merkle
from services.audit.entrypoints import http
from services.audit.entrypoints.kafka import Recorder, subscribe
from services.audit.handlers import AuditHandlers, Checkpointer, LedgerReads

__all__ = ["build"]


def build(settings: Settings, *, ingest: bool = True) -> FastAPI:
    context = ServiceContext.create("audit", settings)
    ledger = Ledger(settings.resolved_audit_db_url)
    checkpointer = Checkpointer(ledger, signing_key_for(settings), settings.audit_log_origin)
    context.readiness["database"] = ledger.ping
    # Where the service's role may only read and add rows, the owner made the tables.
    context.on_startup.append(
        ledger.create if settings.audit_db_create_schema else partial(expect_schema, ledger)
    )
    context.on_shutdown.append(ledger.close)

    recorder = Recorder(ledger, context.registry, share=settings.audit_ingest_share)
    if ingest:
        subscribe(context, recorder)

        async def start_checkpoints() -> None:
            await checkpointer.start(settings.audit_checkpoint_interval_s)

        context.on_startup.append(start_checkpoints)
        context.on_shutdown.append(checkpointer.stop)
        figures = LedgerFigures(
            context.registry,
            ledger,
            tree_size=recorder.tree_size,
            checkpoint_interval_s=settings.audit_checkpoint_interval_s,
        )
        refresh_periodically(context, "ledger", figures.refresh)

    app = create_http_app(
        context,
        title="ocsea audit",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    reads = LedgerReads(ledger, checkpointer, AccessLog(context.broker, "audit"))
    app.state.audit = AuditHandlers(reads=reads, checkpoints=checkpointer)
    app.add_exception_handler(merkle.MissingNodeError, http.on_ledger_damaged)
    app.include_router(http.router)
    return app
