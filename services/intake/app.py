"""Intake transport: the partner HTTP API in front of the received-reports topics.

Channels: `POST /v1/reports` (canonical JSON) and `POST /v1/reports/cybertipline` (one NCMEC
`<report>` document) publish to the live lane (`ocsea.reports.received.v1`); `POST
/v1/reports/batch` (NDJSON or CSV) publishes to the bulk lane (`ocsea.reports.received.bulk.v1`),
so an upload never queues ahead of a live report. `GET /v1/reports/{id}` is the submitting
partner's view, from a projection of both lanes' triage results and of routing's events.

Each request: authenticate; refuse media, unsupported types and oversize bodies; rate-limit and
reserve the Idempotency-Key in one round trip (a retry gets the first answer, a simultaneous
twin is told the request is in progress); read the body with limits (`reading.py`, beside the
event loop when large); accept the reports (`acceptance.py`). Errors are `{code, message,
field, errors}`; nothing is published or remembered for a refused request, and its key is
released.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from pydantic import BaseModel
from redis.exceptions import RedisError

from contracts import topics
from contracts.events import (
    Envelope,
    EventType,
    ReportTriagedData,
    SourceFormat,
    TaskAssignedData,
    utc_now,
)
from contracts.reports import (
    BatchResult,
    BatchRowResult,
    BatchRowStatus,
    Channel,
    ErrorBody,
    PartnerReport,
    ReportAccepted,
    ReportState,
    ReportStatus,
)
from contracts.topics import Lane
from ocsea.runtime import safe_json
from ocsea.runtime.auth import PartnerPrincipal, Principal, PrincipalStore
from ocsea.runtime.consumer import Origin
from ocsea.runtime.crypto import CaseKeys, load_or_create_master_key
from ocsea.runtime.errors import error_response
from ocsea.runtime.logging import get_logger
from ocsea.runtime.redis_batching import CoalescingRedis
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.intake.acceptance import Acceptance, Acceptor, Delivery, Outcome, Prepared
from services.intake.batch import (
    CSV_TYPES,
    NDJSON_TYPES,
    JsonLimits,
    Upload,
    batch_kind,
    read_upload,
)
from services.intake.canonical import Normalisers, canonical_report
from services.intake.config import IntakeSettings
from services.intake.cybertipline import XmlLimits, parse_cybertipline
from services.intake.matching import Matcher
from services.intake.reading import Deadline, read_beside_loop
from services.intake.reference import Gazetteer, Vocabulary
from services.intake.refusals import MEDIA_MESSAGE, Problem, Refusal
from services.intake.store import (
    IntakeStore,
    RateLimit,
    ReportStatusRecord,
    Reservation,
    StoredAnswer,
)

log = get_logger("ocsea.intake")

RETRY_AFTER_S = 5
JSON = "application/json"
JSON_TYPES = frozenset({"", JSON})
UTF8_NAMES = frozenset({"utf-8", "utf8"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
# Containers of files: a report is text; material is never uploaded here.
MEDIA_TYPE_PREFIXES = ("multipart/", "image/", "video/", "audio/")
MEDIA_TYPES = frozenset({"application/octet-stream", "application/zip", "application/pdf"})

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body cannot be read (JSON, XML, CSV, text)"},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    409: {
        "model": ErrorBody,
        "description": "A request with this Idempotency-Key is in progress; see Retry-After",
    },
    413: {
        "model": ErrorBody,
        "description": "The body is larger than this channel takes, holds more elements than "
        "a report can, takes too long to read, or seals to more than one event carries",
    },
    415: {
        "model": ErrorBody,
        "description": "Media (multipart uploads, images, video…) or an unsupported type",
    },
    422: {
        "model": ErrorBody,
        "description": "A field is invalid, too long, or carries media; JSON or XML nested too "
        "deep, a duplicate key, an over-long integer, a NUL or an unpaired surrogate; `field` "
        "names the place",
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
    json_limits = JsonLimits(config.max_json_depth, config.max_json_integer_digits)
    xml_limits = XmlLimits(config.max_xml_depth, config.max_xml_elements)
    # Concurrent requests' Redis commands share round trips (the hot path has four).
    redis = CoalescingRedis(context.redis.connection_pool)
    store = IntakeStore(redis, config)
    matching_secret = load_or_create_master_key(
        config.matching_key_file or settings.var_dir / "matching.key",
        create=not settings.deployment,
        setting="OCSEA_INTAKE_MATCHING_KEY_FILE",
    )
    acceptor = Acceptor(
        broker=context.broker,
        keys=CaseKeys.for_service(context, redis),
        store=store,
        matcher=Matcher(matching_secret, vocabulary),
        gazetteer=gazetteer,
        vocabulary=vocabulary,
        zone=zone,
        publish_timeout_s=settings.publish_timeout_s,
        seal_concurrency=config.batch_seal_concurrency,
        max_event_bytes=config.max_event_bytes,
    )
    app = create_http_app(
        context,
        title="ocsea intake",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    outcomes = Counter(
        "ocsea_intake_reports",
        "Reports by source format, the report's channel, lane and outcome",
        ["source_format", "channel", "lane", "outcome"],
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

    async def on_unavailable(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Unavailable)
        return exc.response

    app.add_exception_handler(Refusal, on_refusal)
    app.add_exception_handler(RedisError, on_store_error)
    app.add_exception_handler(Unavailable, on_unavailable)

    # --- request helpers -------------------------------------------------------------------

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

    def utf8_only(charset: str | None) -> None:
        """JSON is UTF-8 (RFC 8259); XML declares its own encoding inside the document."""
        if charset is not None and charset.casefold().replace("_", "-") not in UTF8_NAMES:
            raise Refusal(
                415,
                "unsupported_charset",
                "send the body in UTF-8 (charset=utf-8)",
                "Content-Type",
            )

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

    async def admit(
        principal: Principal, key: str | None, digest: str
    ) -> tuple[Reservation | None, JSONResponse | None]:
        """Rate-limit the request and reserve its Idempotency-Key, in one round trip, before
        any work: a retry of an answered request gets the first answer (replay), and of two
        simultaneous requests with one key only one goes ahead."""
        limit = RateLimit(
            principal.rate_limit_per_minute or config.rate_limit_per_minute,
            principal.rate_limit_burst or config.rate_limit_burst,
        )
        reservation = Reservation(principal.name, key, digest, uuid.uuid4().hex) if key else None
        admission = await store.admit(principal.name, limit, reservation)
        if admission.wait_s:
            raise Refusal(
                429,
                "rate_limited",
                f"this partner's rate limit ({limit.per_minute} per minute) is reached; "
                f"retry in {admission.wait_s} s",
                headers={"Retry-After": str(admission.wait_s)},
            )
        held = admission.earlier.request_digest if admission.earlier else None
        held = held or admission.in_progress_digest
        if held is not None and held != digest:
            raise Refusal(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request; a new report needs "
                "a new key",
                "Idempotency-Key",
            )
        if admission.earlier is not None:
            earlier = admission.earlier
            return None, JSONResponse(earlier.body, status_code=earlier.status)
        if admission.in_progress_digest is not None:
            raise Refusal(
                409,
                "request_in_progress",
                "a request with this Idempotency-Key is being handled; retry shortly for "
                "its answer",
                "Idempotency-Key",
                headers={"Retry-After": "1"},
            )
        return reservation, None

    @asynccontextmanager
    async def reserved(reservation: Reservation | None) -> AsyncIterator[None]:
        """Give the key back if the request ends without an answer to remember (a refusal,
        a 503, an error): nothing is remembered for a request that was not taken."""
        try:
            yield
        except BaseException:
            if reservation is not None:
                with contextlib.suppress(RedisError):
                    await store.release(reservation)
            raise

    def count(source_format: SourceFormat, channel: Channel, lane: Lane, outcome: Outcome) -> None:
        kind = (
            "duplicate"
            if outcome.duplicate_of and outcome.delivery is Delivery.PUBLISHED
            else "accepted"
            if outcome.published
            else outcome.delivery.value
        )
        outcomes.labels(source_format, channel, lane, kind).inc()

    def too_large() -> Refusal:
        return Refusal(
            413,
            "too_large_to_publish",
            "the report, once sealed, is larger than the broker takes in one event; send "
            "fewer or shorter details",
            "body",
        )

    def unavailable(what: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
        return error_response(
            503,
            "broker_unavailable",
            f"{what}. Retry later with the same request (and Idempotency-Key)",
            errors=errors,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    async def answer(
        acceptance: Acceptance, reservation: Reservation | None, status: int, model: BaseModel
    ) -> Response:
        """Remember the request's reports and answer (one round trip), then answer. The body
        is serialised once, by pydantic, with no second validation on the way out."""
        stored = None
        if reservation is not None:
            content = model.model_dump(mode="json")
            stored = (reservation, StoredAnswer(reservation.request_digest, status, content))
        await acceptance.remember(stored)
        return Response(model.model_dump_json(), status_code=status, media_type=JSON)

    async def accept_one(
        principal: Principal,
        report: Prepared,
        source_format: SourceFormat,
        reservation: Reservation | None,
    ) -> Response:
        acceptance = await acceptor.accept(principal.name, [report], source_format, Lane.LIVE)
        [outcome] = acceptance.outcomes
        count(source_format, report.report.channel, Lane.LIVE, outcome)
        if outcome.unavailable:
            raise Unavailable(unavailable("the report was not stored; nothing was kept"))
        if outcome.too_large:
            raise too_large()
        accepted = ReportAccepted(
            report_id=str(outcome.report_id),
            case_id=str(outcome.case_ref),
            duplicate_of=str(outcome.duplicate_of) if outcome.duplicate_of else None,
        )
        return await answer(acceptance, reservation, 202, accepted)

    # --- routes ----------------------------------------------------------------------------

    @app.post(
        "/v1/reports",
        status_code=202,
        response_model=ReportAccepted,
        responses=_ERRORS,
        tags=["reports"],
        summary="Submit one report in the canonical partner JSON",
        description=f"JSON nested at most {config.max_json_depth} levels deep, integers of "
        f"at most {config.max_json_integer_digits} digits, each key once per object, no NUL "
        "characters or unpaired surrogates; UTF-8.",
        openapi_extra=_request_body(
            {"application/json": {"schema": _schema_ref(PartnerReport)}},
            "One canonical report (see PartnerReport)",
        ),
    )
    async def submit_report(
        request: Request, principal: PartnerPrincipal, idempotency_key: IdempotencyKey = None
    ) -> Response:
        _, charset = content_type(request, JSON_TYPES, "application/json", "+json")
        utf8_only(charset)
        body = await read_body(request, config.max_report_bytes)
        digest = digest_of("json", body)
        reservation, replay = await admit(principal, idempotency_key, digest)
        if replay is not None:
            return replay

        def read(_deadline: Deadline) -> Prepared:
            try:
                raw = safe_json.loads(
                    body,
                    max_depth=json_limits.max_depth,
                    max_int_digits=json_limits.max_int_digits,
                )
            except safe_json.JsonRefused as refused:
                status = 400 if refused.code in ("invalid_json", "invalid_encoding") else 422
                message = f"the body is not acceptable JSON: {refused.message}"
                raise Refusal(status, refused.code, message, refused.path or "body") from None
            return acceptor.prepare(principal.name, canonical_report(raw, refs))

        async with reserved(reservation):
            report = await read_beside_loop(read, size=len(body), timeout_s=config.parse_timeout_s)
            return await accept_one(principal, report, SourceFormat.PARTNER_JSON, reservation)

    @app.post(
        "/v1/reports/cybertipline",
        status_code=202,
        response_model=ReportAccepted,
        responses=_ERRORS,
        tags=["reports"],
        summary="Submit one NCMEC CyberTipline <report> XML document",
        description=f"Elements nested at most {config.max_xml_depth} levels deep, at most "
        f"{config.max_xml_elements} elements and attributes in all.",
        openapi_extra=_request_body(
            _text_body("application/xml", "text/xml", max_length=config.max_cybertipline_bytes),
            "One CyberTipline <report> document; no DTD, entities or external references",
        ),
    )
    async def submit_cybertipline(
        request: Request, principal: PartnerPrincipal, idempotency_key: IdempotencyKey = None
    ) -> Response:
        content_type(request, XML_TYPES, "application/xml", "+xml")
        body = await read_body(request, config.max_cybertipline_bytes)
        digest = digest_of("cybertipline", body)
        reservation, replay = await admit(principal, idempotency_key, digest)
        if replay is not None:
            return replay
        async with reserved(reservation):
            report = await read_beside_loop(
                lambda deadline: acceptor.prepare(
                    principal.name, parse_cybertipline(body, refs, xml_limits, deadline)
                ),
                size=len(body),
                timeout_s=config.parse_timeout_s,
            )
            return await accept_one(principal, report, SourceFormat.CYBERTIPLINE_XML, reservation)

    @app.post(
        "/v1/reports/batch",
        status_code=202,
        response_model=BatchResult,
        responses=_ERRORS,
        tags=["reports"],
        summary="Submit many reports: NDJSON (canonical JSON per line) or CSV (one per row)",
        description="Reports taken here travel in the bulk lane: urgent ones are found and "
        "promoted by triage, and live single reports never wait behind an upload. A bad row "
        "is refused with its line and field and never stops the good ones.",
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
    ) -> Response:
        media_type, charset = content_type(
            request, NDJSON_TYPES | CSV_TYPES, "application/x-ndjson or text/csv"
        )
        kind = batch_kind(media_type)
        assert kind is not None
        body = await read_body(request, config.max_batch_bytes)
        digest = digest_of(f"batch-{kind}", body)
        reservation, replay = await admit(principal, idempotency_key, digest)
        if replay is not None:
            return replay
        partner_kind = principal.partner_kind.value if principal.partner_kind else None

        def read(deadline: Deadline) -> tuple[Upload, list[Prepared]]:
            upload = read_upload(
                body,
                kind,
                charset,
                max_rows=config.max_batch_rows,
                limits=json_limits,
                partner_kind=partner_kind,
                refs=refs,
                deadline=deadline,
            )
            return upload, [acceptor.prepare(principal.name, r) for _, r in upload.good]

        async with reserved(reservation):
            upload, prepared = await read_beside_loop(
                read, size=len(body), timeout_s=config.parse_timeout_s
            )
            return await accept_batch(principal, upload, prepared, reservation)

    async def accept_batch(
        principal: Principal,
        upload: Upload,
        prepared: list[Prepared],
        reservation: Reservation | None,
    ) -> Response:
        results = dict(upload.refused)
        good = upload.good
        acceptance = (
            await acceptor.accept(principal.name, prepared, SourceFormat.BATCH, Lane.BULK)
            if good
            else None
        )
        for (line, row), outcome in zip(
            good, acceptance.outcomes if acceptance else [], strict=True
        ):
            count(SourceFormat.BATCH, row.channel, Lane.BULK, outcome)
            if outcome.unavailable:
                results[line] = BatchRowResult(
                    line=line,
                    status=BatchRowStatus.REFUSED,
                    code="broker_unavailable",
                    message="not stored: the broker did not take it",
                )
                continue
            if outcome.too_large:
                refusal = too_large()
                results[line] = BatchRowResult(
                    line=line,
                    status=BatchRowStatus.REFUSED,
                    code=refusal.code,
                    message=refusal.message,
                    field="row",
                )
                continue
            results[line] = BatchRowResult(
                line=line,
                status=BatchRowStatus.DUPLICATE
                if outcome.duplicate_of
                else BatchRowStatus.ACCEPTED,
                report_id=str(outcome.report_id),
                case_id=str(outcome.case_ref),
                duplicate_of=str(outcome.duplicate_of) if outcome.duplicate_of else None,
            )
        rows = [results[line] for line in sorted(results)]
        missed = [r for r in rows if r.code == "broker_unavailable"]
        if missed:
            if acceptance is not None:
                await acceptance.remember()
            raise Unavailable(unavailable(
                f"{len(missed)} of {len(rows)} rows were not stored. Rows that were are "
                "recognised as duplicates when the same upload is sent again",
                [{"line": str(r.line), "code": "broker_unavailable", "field": "row",
                  "message": r.message or ""} for r in missed],
            ))  # fmt: skip
        if acceptance is None:
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
        return await answer(acceptance, reservation, 202, result)

    @app.get(
        "/v1/reports/{report_id}",
        response_model=ReportStatus,
        responses={404: {"model": ErrorBody}, 401: {"model": ErrorBody}, 429: {"model": ErrorBody}},
        tags=["reports"],
        summary="Your report's progress: received, triaged, routed",
        description="What happened to your own report, with your own reference for its case; "
        "never whether other partners reported the same person, nor anything drawn from their "
        "reports.",
    )
    async def report_status(report_id: uuid.UUID, principal: PartnerPrincipal) -> ReportStatus:
        await admit(principal, None, "")
        record = await store.report_view(report_id)
        if record is None or record.fields["partner"] != principal.name:
            # Another partner's report is as absent as one that never existed.
            raise Refusal(
                404, "report_not_found", "you submitted no report with this id", "report_id"
            )
        return partner_view(report_id, principal.name, record)

    # --- the status projection ----------------------------------------------------------------

    async def on_progress(envelope: Envelope, _origin: Origin) -> None:
        if envelope.event_type == EventType.REPORT_TRIAGED:
            triaged = envelope.payload(ReportTriagedData)
            await store.mark_triaged(
                triaged.report_id,
                envelope.case_id,
                envelope.occurred_at,
                utc_now(),
                own=triaged.partner_assessment,
                case_result=(triaged.classification.value, triaged.priority.value),
            )
        elif envelope.event_type == EventType.TASK_ASSIGNED:
            task = envelope.payload(TaskAssignedData)
            await store.mark_routed(task.report_id, envelope.case_id, envelope.occurred_at)

    async def freeze_start_up_objects() -> None:
        # What start-up imported and built lives as long as the process: out of the cyclic
        # collector's reach, a full collection (which stops every thread, the event loop's
        # included) scans only what requests create. Reading a 2 MiB document used to set
        # off 60-100 ms collections.
        gc.freeze()

    context.after_start.append(freeze_start_up_objects)

    # Both lanes' triage results: a batch row's status follows the bulk lane.
    context.consume(
        topics.REPORTS_TRIAGED,
        topics.REPORTS_TRIAGED_BULK,
        topics.TASKS_EVENTS,
        handler=on_progress,
        group_suffix="status",
    )
    _with_components(app, PartnerReport)
    return app


class Unavailable(Exception):  # noqa: N818 (an answer to give, not a fault)
    """A 503 to answer after the reservation of the request's key was released."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def partner_view(report_id: uuid.UUID, partner: str, record: ReportStatusRecord) -> ReportStatus:
    """A report as its partner may see it: its own progress, its own reference for the case,
    its own earlier reports on the case, and the classification and priority triage drew from
    its own reports alone (never from another partner's): the same answer as had no other
    partner reported the same person."""
    fields, progress, view = record.fields, record.progress, record.view
    own_linked = [r for r, other in json.loads(progress.get("linked", "[]")) if other == partner]
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
            "case_id": fields.get("case_ref", fields["case_id"]),
            "status": state,
            "received_at": fields["received_at"],
            "source_format": fields["source_format"],
            "classification": view.get("classification") if known else None,
            "priority": view.get("priority") if known else None,
            "triaged_at": progress.get("triaged_at"),
            "routed_at": progress.get("routed_at"),
            "duplicate_of": fields.get("duplicate_of"),
            "duplicates_received": int(fields.get("duplicates", 0)),
            "linked_to_existing_case": bool(own_linked),
            "linked_report_ids": own_linked,
        }
    )
