"""Audit transport: every event topic in, one ledger entry per event, and the auditors' API."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from contracts import topics
from contracts.events import Envelope
from contracts.reports import ErrorBody
from ocsea.runtime.auth import AuditorPrincipal, PrincipalStore
from ocsea.runtime.consumer import Origin
from ocsea.runtime.logging import get_logger
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.audit.ledger import Ledger

log = get_logger("ocsea.audit")


class TrailEntry(BaseModel):
    leaf_index: int
    leaf_hash: str
    entry: dict[str, Any]


class CaseTrail(BaseModel):
    case_id: uuid.UUID
    entries: list[TrailEntry]


def build(settings: Settings) -> FastAPI:
    context = ServiceContext.create("audit", settings)
    ledger = Ledger(settings.resolved_audit_db_url)
    context.on_startup.append(ledger.create)
    context.on_shutdown.append(ledger.close)
    context.readiness["database"] = ledger.ping

    async def record(envelope: Envelope, origin: Origin) -> None:
        index, created = await ledger.append(
            envelope,
            topic=origin.topic,
            partition=origin.partition,
            offset=origin.offset,
            event_sha256=origin.body_sha256,
        )
        log.info(
            "audit.appended" if created else "audit.already_recorded",
            leaf_index=index,
            event_id=str(envelope.event_id),
            case_id=str(envelope.case_id),
            action=envelope.event_type,
        )

    context.consume(*topics.ALL_EVENT_TOPICS, handler=record)

    app = create_http_app(
        context,
        title="ocsea audit",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )

    @app.get(
        "/v1/audit/cases/{case_id}/trail",
        response_model=CaseTrail,
        responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
        tags=["audit"],
    )
    async def case_trail(case_id: uuid.UUID, _principal: AuditorPrincipal) -> CaseTrail:
        """The case's ledger entries in order, each with its leaf index."""
        entries = await ledger.case_trail(str(case_id))
        return CaseTrail(
            case_id=case_id,
            entries=[
                TrailEntry(leaf_index=e.leaf_index, leaf_hash=e.leaf_hash, entry=e.entry)
                for e in entries
            ],
        )

    return app
