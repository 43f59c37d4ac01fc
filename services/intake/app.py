"""Intake transport: the partner HTTP API in front of `ocsea.reports.received.v1`."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse

from contracts import topics
from contracts.events import Actor, ActorKind, EventType, make_event, utc_now
from contracts.reports import ErrorBody, PartnerReport, ReportAccepted
from ocsea.runtime.auth import PartnerPrincipal, PrincipalStore
from ocsea.runtime.crypto import CaseKeys, load_or_create_master_key
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.logging import get_logger
from ocsea.runtime.service import ServiceContext, create_http_app, error_response
from ocsea.runtime.settings import Settings
from services.intake.domain import normalise

log = get_logger("ocsea.intake")

IDEMPOTENCY_TTL_S = 7 * 24 * 3600
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Body is not valid JSON"},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    422: {"model": ErrorBody, "description": "A field is invalid; `field` names it"},
    503: {"model": ErrorBody, "description": "The broker did not take the report; retry later"},
}


def build(settings: Settings) -> FastAPI:
    context = ServiceContext.create("intake", settings)
    keys = CaseKeys(context.redis, load_or_create_master_key(settings.resolved_master_key_file))
    app = create_http_app(
        context,
        title="ocsea intake",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )

    @app.post(
        "/v1/reports",
        status_code=202,
        response_model=ReportAccepted,
        responses=_ERRORS,
        tags=["reports"],
        summary="Submit one report in the canonical partner JSON",
    )
    async def submit_report(
        report: PartnerReport,
        principal: PartnerPrincipal,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> ReportAccepted | JSONResponse:
        idem_key = f"ocsea:idempotency:{principal.name}:{idempotency_key}"
        if idempotency_key:
            earlier = await context.redis.get(idem_key)
            if earlier is not None:
                return ReportAccepted.model_validate_json(earlier)

        report_id, case_id = uuid.uuid4(), uuid.uuid4()
        normalised = normalise(
            report, partner_id=principal.name, report_id=report_id, received_at=utc_now()
        )
        data = normalised.clear
        if normalised.personal is not None:
            sealed = await keys.seal(case_id, json.dumps(normalised.personal).encode())
            data = data.model_copy(update={"personal": sealed})
        event = make_event(
            event_type=EventType.REPORT_RECEIVED,
            case_id=case_id,
            report_id=report_id,
            producer="intake",
            actor=Actor(kind=ActorKind.PARTNER, id=principal.name),
            data=data,
        )
        try:
            async with asyncio.timeout(settings.publish_timeout_s):
                await publish_event(context.broker, topics.REPORTS_RECEIVED, event)
        except Exception as exc:
            log.error("report.publish_failed", report_id=str(report_id), error=type(exc).__name__)
            return error_response(
                503,
                "broker_unavailable",
                "the report was not stored; nothing was kept. Retry later with the same "
                "Idempotency-Key",
                headers={"Retry-After": "5"},
            )
        accepted = ReportAccepted(report_id=str(report_id), case_id=str(case_id))
        if idempotency_key:
            await context.redis.set(idem_key, accepted.model_dump_json(), ex=IDEMPOTENCY_TTL_S)
        log.info(
            "report.accepted",
            report_id=str(report_id),
            case_id=str(case_id),
            event_id=str(event.event_id),
            partner=principal.name,
        )
        return accepted

    return app
