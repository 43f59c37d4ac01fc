"""Intake transport: the partner HTTP API in front of `ocsea.reports.received.v1`.

Channels: `POST /v1/reports` (canonical JSON), `POST /v1/reports/cybertipline` (one NCMEC
`<report>` document), `POST /v1/reports/batch` (NDJSON or CSV), and `GET /v1/reports/{id}`
(the submitting partner's view, from a projection of triage and routing events).

Each request: authenticate, rate-limit, refuse media and oversize bodies, replay an earlier
answer to the same Idempotency-Key, map the body to canonical reports, accept them
(`acceptance.py`). Errors are `{code, message, field, errors}`; nothing is published or
remembered for a refused request.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel
from redis.exceptions import RedisError

from contracts import topics
from contracts.events import (
    CaseReclassifiedData,
    Envelope,
    EventType,
    ReportTriagedData,
    SourceFormat,
    TaskAssignedData,
)
from contracts.reports import (
    BatchResult,
    BatchRowResult,
    BatchRowStatus,
    ErrorBody,
    PartnerReport,
    ReportAccepted,
    ReportState,
    ReportStatus,
)
from ocsea.runtime.auth import PartnerPrincipal, Principal, PrincipalStore
from ocsea.runtime.consumer import Origin
from ocsea.runtime.crypto import CaseKeys, load_or_create_master_key
from ocsea.runtime.logging import get_logger
from ocsea.runtime.service import ServiceContext, create_http_app, error_response
from ocsea.runtime.settings import Settings
from services.intake.acceptance import Acceptor, Outcome
from services.intake.batch import (
    CSV_TYPES,
    NDJSON_TYPES,
    batch_kind,
    decode,
    parse_csv,
    parse_ndjson,
)
from services.intake.canonical import Normalisers, canonical_report
from services.intake.config import IntakeSettings
from services.intake.cybertipline import parse_cybertipline
from services.intake.matching import Matcher
from services.intake.reference import Gazetteer, Vocabulary
from services.intake.refusals import MEDIA_MESSAGE, Problem, Refusal
from services.intake.store import IntakeStore, RateLimit, RateLimiter, StoredAnswer

log = get_logger("ocsea.intake")

RETRY_AFTER_S = 5
JSON_TYPES = frozenset({"", "application/json"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
# Containers of files: a report is text; material is never uploaded here.
MEDIA_TYPE_PREFIXES = ("multipart/", "image/", "video/", "audio/")
MEDIA_TYPES = frozenset({"application/octet-stream", "application/zip", "application/pdf"})

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body cannot be read (JSON, XML, CSV, text)"},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    413: {"model": ErrorBody, "description": "The body is larger than this channel takes"},
    415: {
        "model": ErrorBody,
        "description": "Media (multipart uploads, images, video…) or an unsupported type",
    },
    422: {
        "model": ErrorBody,
        "description": "A field is invalid, too long, or carries media; `field` names it",
    },
    429: {"model": ErrorBody, "description": "Rate limit reached; see Retry-After"},
    503: {"model": ErrorBody, "description": "The broker did not take the report; retry later"},
}


IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=200,
        description="Retries with the same key replay the first answer; reusing a key "
        "for a different request is refused",
    ),
]


def _request_body(media: dict[str, Any], description: str) -> dict[str, Any]:
    """The body's documentation: routes read raw bodies themselves (size limits, media
    refusal and normalisation come before validation), so FastAPI cannot infer it."""
    return {"requestBody": {"required": True, "description": description, "content": media}}


def _schema_ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


EXAMPLES = {
    "application/xml": "<report><incidentSummary><incidentType>Online Enticement of Children"
    " for Sexual Acts</incidentType><platform>Instagram</platform><incidentDateTime>"
    "2026-03-01T18:45:00Z</incidentDateTime></incidentSummary><victim><victimPerson><age>14"
    "</age></victimPerson></victim></report>",
    "text/csv": "channel,governorate,survivor_age,categories\nngo,Duhok,14,sextortion\n",
}
EXAMPLES["text/xml"] = EXAMPLES["application/xml"]


def _text_body(*media_types: str, max_length: int) -> dict[str, Any]:
    return {
        t: {"schema": {"type": "string", "maxLength": max_length}, "example": EXAMPLES[t]}
        for t in media_types
    }


def _with_components(app: FastAPI, *models: type[BaseModel]) -> None:
    """Publish models that request bodies refer to in the OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def build(settings: Settings, intake: IntakeSettings | None = None) -> FastAPI:
    config = intake or IntakeSettings()
    context = ServiceContext.create("intake", settings)
    zone = ZoneInfo(config.default_time_zone)
    gazetteer = Gazetteer.load(config.places_file)
    vocabulary = Vocabulary.load(config.vocabulary_file)
    refs = Normalisers(gazetteer, vocabulary, zone, config.max_base64_run)
    store = IntakeStore(context.redis, config)
    limiter = RateLimiter(context.redis)
    matching_secret = load_or_create_master_key(
        config.matching_key_file or settings.var_dir / "matching.key"
    )
    acceptor = Acceptor(
        broker=context.broker,
        keys=CaseKeys(context.redis, load_or_create_master_key(settings.resolved_master_key_file)),
        store=store,
        matcher=Matcher(matching_secret, vocabulary),
        gazetteer=gazetteer,
        vocabulary=vocabulary,
        zone=zone,
        publish_timeout_s=settings.publish_timeout_s,
        concurrency=config.batch_publish_concurrency,
    )
    app = create_http_app(
        context,
        title="ocsea intake",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    outcomes = Counter(
        "ocsea_intake_reports",
        "Reports by channel and outcome",
        ["source_format", "outcome"],
        registry=context.registry,
    )
    refusals = Counter(
        "ocsea_intake_refusals", "Refused requests by code", ["code"], registry=context.registry
    )

    async def on_refusal(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refusal)
        refusals.labels(exc.code).inc()
        return error_response(
            exc.status,
            exc.code,
            exc.message,
            exc.field,
            [p.as_dict() for p in exc.problems],
            headers=exc.headers,
        )

    async def on_store_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("intake.store_unavailable", error=type(exc).__name__)
        return error_response(
            503,
            "store_unavailable",
            "intake's state store is unreachable; nothing was stored. Retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    app.add_exception_handler(Refusal, on_refusal)
    app.add_exception_handler(RedisError, on_store_error)

    # --- request helpers -------------------------------------------------------------------

    async def admit(principal: Principal) -> None:
        limit = RateLimit(
            principal.rate_limit_per_minute or config.rate_limit_per_minute,
            principal.rate_limit_burst or config.rate_limit_burst,
        )
        wait_s = await limiter.wait_s(principal.name, limit)
        if wait_s:
            raise Refusal(
                429,
                "rate_limited",
                f"this partner's rate limit ({limit.per_minute} per minute) is reached; "
                f"retry in {wait_s} s",
                headers={"Retry-After": str(wait_s)},
            )

    def content_type(
        request: Request, accepted: frozenset[str], expected: str, suffix: str | None = None
    ) -> tuple[str, str | None]:
        header = request.headers.get("content-type", "")
        media_type, _, parameters = header.partition(";")
        media_type = media_type.strip().casefold()
        if media_type.startswith(MEDIA_TYPE_PREFIXES) or media_type in MEDIA_TYPES:
            raise Refusal(415, "media_not_accepted", MEDIA_MESSAGE, "Content-Type")
        if media_type not in accepted and not (suffix and media_type.endswith(suffix)):
            raise Refusal(415, "unsupported_media_type", f"send {expected}", "Content-Type")
        charset = None
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().casefold() == "charset" and value.strip():
                charset = value.strip().strip('"')
        return media_type, charset

    async def read_body(request: Request, limit: int) -> bytes:
        too_large = Refusal(
            413, "body_too_large", f"the body exceeds this channel's limit of {limit} bytes", "body"
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def digest_of(channel: str, body: bytes) -> str:
        return hashlib.sha256(channel.encode() + b"\n" + body).hexdigest()

    async def replay(principal: Principal, key: str | None, digest: str) -> JSONResponse | None:
        if not key:
            return None
        earlier = await store.answer_for(principal.name, key)
        if earlier is None:
            return None
        if earlier.request_digest != digest:
            raise Refusal(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request; a new report needs "
                "a new key",
                "Idempotency-Key",
            )
        return JSONResponse(earlier.body, status_code=earlier.status)

    async def answer(
        principal: Principal, key: str | None, digest: str, status: int, body: BaseModel
    ) -> JSONResponse:
        content = body.model_dump(mode="json")
        if key:
            try:
                await store.remember_answer(
                    principal.name, key, StoredAnswer(digest, status, content)
                )
            except RedisError as exc:
                log.error("intake.idempotency_write_failed", error=type(exc).__name__)
        return JSONResponse(content, status_code=status)

    def count(source_format: SourceFormat, outcome: Outcome) -> None:
        kind = (
            "duplicate"
            if outcome.duplicate_of
            else "unavailable"
            if outcome.unavailable
            else "accepted"
        )
        outcomes.labels(source_format.value, kind).inc()

    async def accept_one(
        principal: Principal,
        report: PartnerReport,
        source_format: SourceFormat,
        key: str | None,
        digest: str,
    ) -> JSONResponse:
        [outcome] = await acceptor.accept(principal.name, [report], source_format)
        count(source_format, outcome)
        if outcome.unavailable:
            return unavailable("the report was not stored; nothing was kept")
        accepted = ReportAccepted(
            report_id=str(outcome.report_id),
            case_id=str(outcome.case_id),
            duplicate_of=str(outcome.duplicate_of) if outcome.duplicate_of else None,
        )
        return await answer(principal, key, digest, 202, accepted)

    def unavailable(what: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
        return error_response(
            503,
            "broker_unavailable",
            f"{what}. Retry later with the same request (and Idempotency-Key)",
            errors=errors,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    # --- routes ----------------------------------------------------------------------------

    @app.post(
        "/v1/reports",
        status_code=202,
        response_model=ReportAccepted,
        responses=_ERRORS,
        tags=["reports"],
        summary="Submit one report in the canonical partner JSON",
        openapi_extra=_request_body(
            {"application/json": {"schema": _schema_ref(PartnerReport)}},
            "One canonical report (see PartnerReport)",
        ),
    )
    async def submit_report(
        request: Request, principal: PartnerPrincipal, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        await admit(principal)
        content_type(request, JSON_TYPES, "application/json", "+json")
        body = await read_body(request, config.max_report_bytes)
        digest = digest_of("json", body)
        if (earlier := await replay(principal, idempotency_key, digest)) is not None:
            return earlier
        try:
            raw = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise Refusal(
                400, "invalid_json", f"the body is not valid JSON: {reason}", "body"
            ) from None
        report = canonical_report(raw, refs)
        return await accept_one(
            principal, report, SourceFormat.PARTNER_JSON, idempotency_key, digest
        )

    @app.post(
        "/v1/reports/cybertipline",
        status_code=202,
        response_model=ReportAccepted,
        responses=_ERRORS,
        tags=["reports"],
        summary="Submit one NCMEC CyberTipline <report> XML document",
        openapi_extra=_request_body(
            _text_body("application/xml", "text/xml", max_length=config.max_cybertipline_bytes),
            "One CyberTipline <report> document; no DTD, entities or external references",
        ),
    )
    async def submit_cybertipline(
        request: Request, principal: PartnerPrincipal, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        await admit(principal)
        content_type(request, XML_TYPES, "application/xml", "+xml")
        body = await read_body(request, config.max_cybertipline_bytes)
        digest = digest_of("cybertipline", body)
        if (earlier := await replay(principal, idempotency_key, digest)) is not None:
            return earlier
        report = parse_cybertipline(body, refs)
        return await accept_one(
            principal, report, SourceFormat.CYBERTIPLINE_XML, idempotency_key, digest
        )

    @app.post(
        "/v1/reports/batch",
        status_code=202,
        response_model=BatchResult,
        responses=_ERRORS,
        tags=["reports"],
        summary="Submit many reports: NDJSON (canonical JSON per line) or CSV (one per row)",
        openapi_extra=_request_body(
            {
                # NDJSON has no OpenAPI form of its own: an array of reports, one per line.
                "application/x-ndjson": {
                    "schema": {
                        "type": "array",
                        "items": _schema_ref(PartnerReport),
                        "maxItems": config.max_batch_rows,
                    }
                },
                **_text_body("text/csv", max_length=config.max_batch_bytes),
            },
            f"Up to {config.max_batch_rows} rows; a result per row, with its line",
        ),
    )
    async def submit_batch(
        request: Request, principal: PartnerPrincipal, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        await admit(principal)
        media_type, charset = content_type(
            request, NDJSON_TYPES | CSV_TYPES, "application/x-ndjson or text/csv"
        )
        kind = batch_kind(media_type)
        body = await read_body(request, config.max_batch_bytes)
        digest = digest_of(f"batch-{kind}", body)
        if (earlier := await replay(principal, idempotency_key, digest)) is not None:
            return earlier
        text = decode(body, charset)
        batch = (
            parse_csv(text, config.max_batch_rows)
            if kind == "csv"
            else parse_ndjson(text, config.max_batch_rows)
        )
        results: dict[int, BatchRowResult] = {}
        good: list[tuple[int, PartnerReport]] = []
        for row in batch.rows:
            problem = row.problem
            if kind == "csv" and row.content is not None and principal.partner_kind:
                # An export's rows come through the partner's own channel unless they say.
                row.content.setdefault("channel", principal.partner_kind.value)
            if problem is None and row.content is not None:
                try:
                    good.append((row.line, canonical_report(row.content, refs)))
                    continue
                except Refusal as refusal:
                    first = refusal.problems[0] if refusal.problems else None
                    problem = first or Problem(
                        refusal.field or "body", refusal.code, refusal.message
                    )
            assert problem is not None
            column = batch.field_of(problem.field)
            results[row.line] = BatchRowResult(
                line=row.line,
                status=BatchRowStatus.REFUSED,
                code=problem.code,
                message=f"{column}: {problem.message}" if problem.field else problem.message,
                field=column,
            )
        accepted = (
            await acceptor.accept(principal.name, [r for _, r in good], SourceFormat.BATCH)
            if good
            else []
        )
        for (line, _), outcome in zip(good, accepted, strict=True):
            count(SourceFormat.BATCH, outcome)
            results[line] = BatchRowResult(
                line=line,
                status=BatchRowStatus.DUPLICATE
                if outcome.duplicate_of
                else BatchRowStatus.ACCEPTED,
                report_id=str(outcome.report_id),
                case_id=str(outcome.case_id),
                duplicate_of=str(outcome.duplicate_of) if outcome.duplicate_of else None,
            )
            if outcome.unavailable:
                results[line] = BatchRowResult(
                    line=line,
                    status=BatchRowStatus.REFUSED,
                    code="broker_unavailable",
                    message="not stored: the broker did not take it",
                )
        rows = [results[line] for line in sorted(results)]
        missed = [r for r in rows if r.code == "broker_unavailable"]
        if missed:
            return unavailable(
                f"{len(missed)} of {len(rows)} rows were not stored. Rows that were are "
                "recognised as duplicates when the same upload is sent again",
                [{"line": str(r.line), "code": "broker_unavailable", "field": "row",
                  "message": r.message or ""} for r in missed],
            )  # fmt: skip
        in_count = sum(r.status is not BatchRowStatus.REFUSED for r in rows)
        if in_count == 0:
            raise Refusal(
                422,
                "no_valid_rows",
                f"none of the {len(rows)} rows could be accepted; see errors",
                "rows",
                [Problem(r.field or "row", r.code or "invalid_request",
                         f"line {r.line}: {r.message}") for r in rows],
            )  # fmt: skip
        result = BatchResult(
            accepted=sum(r.status is BatchRowStatus.ACCEPTED for r in rows),
            duplicates=sum(r.status is BatchRowStatus.DUPLICATE for r in rows),
            refused=sum(r.status is BatchRowStatus.REFUSED for r in rows),
            rows=rows,
        )
        return await answer(principal, idempotency_key, digest, 202, result)

    @app.get(
        "/v1/reports/{report_id}",
        response_model=ReportStatus,
        responses={404: {"model": ErrorBody}, 401: {"model": ErrorBody}, 429: {"model": ErrorBody}},
        tags=["reports"],
        summary="Your report's progress: received, triaged, routed",
    )
    async def report_status(report_id: uuid.UUID, principal: PartnerPrincipal) -> ReportStatus:
        await admit(principal)
        record = await store.status(report_id)
        if record is None or record["partner"] != principal.name:
            # Another partner's report is as absent as one that never existed.
            raise Refusal(
                404, "report_not_found", "you submitted no report with this id", "report_id"
            )
        duplicate_of = record.get("duplicate_of")
        progress = record
        if duplicate_of:
            progress = await store.status(uuid.UUID(duplicate_of)) or record
        case = await store.case_status(record["case_id"])
        linked = [
            r
            for r, partner in json.loads(progress.get("linked", "[]"))
            if partner == principal.name
        ]
        state = (
            ReportState.ROUTED
            if progress.get("routed_at")
            else ReportState.TRIAGED
            if progress.get("triaged_at")
            else ReportState.RECEIVED
        )
        known = state is not ReportState.RECEIVED
        return ReportStatus.model_validate(
            {
                "report_id": str(report_id),
                "case_id": record["case_id"],
                "status": state,
                "received_at": record["received_at"],
                "source_format": record["source_format"],
                "classification": case.get("classification") if known else None,
                "priority": case.get("priority") if known else None,
                "triaged_at": progress.get("triaged_at"),
                "routed_at": progress.get("routed_at"),
                "duplicate_of": duplicate_of,
                "duplicates_received": int(record.get("duplicates", 0)),
                "linked_to_existing_case": bool(json.loads(progress.get("linked", "[]"))),
                "linked_report_ids": linked,
            }
        )

    # --- the status projection ----------------------------------------------------------------

    async def on_progress(envelope: Envelope, _origin: Origin) -> None:
        if envelope.event_type == EventType.REPORT_TRIAGED:
            triaged = envelope.payload(ReportTriagedData)
            await store.mark_triaged(
                triaged.report_id,
                envelope.case_id,
                envelope.occurred_at,
                triaged.classification.value,
                triaged.priority.value,
            )
        elif envelope.event_type == EventType.CASE_RECLASSIFIED:
            changed = envelope.payload(CaseReclassifiedData)
            await store.mark_reclassified(
                envelope.case_id,
                envelope.occurred_at,
                changed.new_classification.value,
                changed.new_priority.value,
            )
        elif envelope.event_type == EventType.TASK_ASSIGNED:
            task = envelope.payload(TaskAssignedData)
            await store.mark_routed(task.report_id, envelope.occurred_at)

    context.consume(
        topics.REPORTS_TRIAGED, topics.TASKS_EVENTS, handler=on_progress, group_suffix="status"
    )
    _with_components(app, PartnerReport)
    return app
