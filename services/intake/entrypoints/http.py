"""Intake's partner HTTP API in front of the received-reports topics.

Channels: `POST /v1/reports` (canonical JSON) and `POST /v1/reports/cybertipline` (one NCMEC
`<report>` document) publish to the live lane (`ocsea.reports.received.v1`); `POST
/v1/reports/batch` (NDJSON or CSV) publishes to the bulk lane (`ocsea.reports.received.bulk.v1`),
so an upload never queues ahead of a live report. `GET /v1/reports/{id}` is the submitting
partner's view, from a projection of both lanes' triage results and of routing's events.

The routes only do what needs the request: authenticate; refuse media, unsupported types and
oversize bodies; hand the body to a use case (`handlers/submissions.py`); render its answer.
Errors are `{code, message, field, errors}`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from redis.exceptions import RedisError

from contracts.reports import BatchResult, PartnerReport, ReportAccepted, ReportStatus
from ocsea.runtime.auth import PartnerPrincipal
from ocsea.runtime.errors import error_response, error_responses
from ocsea.runtime.logging import get_logger
from services.intake.config import IntakeSettings
from services.intake.domain.batch import CSV_TYPES, NDJSON_TYPES, batch_kind
from services.intake.domain.refusals import MEDIA_MESSAGE, Refusal
from services.intake.handlers.submissions import Answer, Intake, Submission
from services.intake.ports import Figures

log = get_logger("ocsea.intake")

STORE_RETRY_AFTER_S = 5
JSON = "application/json"
JSON_TYPES = frozenset({"", JSON})
UTF8_NAMES = frozenset({"utf-8", "utf8"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
# Containers of files: a report is text; material is never uploaded here.
MEDIA_TYPE_PREFIXES = ("multipart/", "image/", "video/", "audio/")
MEDIA_TYPES = frozenset({"application/octet-stream", "application/zip", "application/pdf"})

SUBMISSION_ERRORS = error_responses(
    400, 401, 403, 409, 413, 415, 422, 429, 503,
    s400="The body cannot be read (JSON, XML, CSV, text)",
    s409="A request with this Idempotency-Key is in progress; see Retry-After",
    s413="The body is larger than this channel takes, holds more elements than a report can, "
    "takes too long to read, or seals to more than one event carries",
    s415="Media (multipart uploads, images, video…) or an unsupported type",
    s422="A field is invalid, too long, or carries media; JSON or XML nested too deep, a "
    "duplicate key, an over-long integer, a NUL or an unpaired surrogate; `field` names the "
    "place",
    s429="Rate limit reached; see Retry-After",
    s503="The broker did not take the report; retry later",
)  # fmt: skip

IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=200,
        description="Retries with the same key replay the first answer; reusing a key "
        "for a different request is refused",
    ),
]

EXAMPLES = {
    "application/xml": "<report><incidentSummary><incidentType>Online Enticement of Children"
    " for Sexual Acts</incidentType><platform>Instagram</platform><incidentDateTime>"
    "2026-03-01T18:45:00Z</incidentDateTime></incidentSummary><victim><victimPerson><age>14"
    "</age></victimPerson></victim></report>",
    "text/csv": "channel,governorate,survivor_age,categories\nngo,Duhok,14,sextortion\n",
}
EXAMPLES["text/xml"] = EXAMPLES["application/xml"]


def get_intake(request: Request) -> Intake:
    """The use cases bootstrap composed for this app."""
    intake: Intake = request.app.state.intake
    return intake


Handlers = Annotated[Intake, Depends(get_intake)]


def _request_body(media: dict[str, Any], description: str) -> dict[str, Any]:
    """The body's documentation: routes read raw bodies themselves (size limits, media
    refusal and normalisation come before validation), so FastAPI cannot infer it."""
    return {"requestBody": {"required": True, "description": description, "content": media}}


def _schema_ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _text_body(*media_types: str, max_length: int) -> dict[str, Any]:
    return {
        t: {"schema": {"type": "string", "maxLength": max_length}, "example": EXAMPLES[t]}
        for t in media_types
    }


def content_type(
    request: Request, accepted: frozenset[str], expected: str, suffix: str | None = None
) -> tuple[str, str | None]:
    """The media type and charset, refusing media and types the route does not take."""
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
            415, "unsupported_charset", "send the body in UTF-8 (charset=utf-8)", "Content-Type"
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes the channel's limit."""
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


def render(answer: Answer) -> Response:
    """A model is serialised once, by pydantic, with no second validation on the way out; a
    replayed answer goes back as it was stored."""
    if isinstance(answer.body, BaseModel):
        return Response(answer.body.model_dump_json(), status_code=answer.status, media_type=JSON)
    return JSONResponse(answer.body, status_code=answer.status)


def router(config: IntakeSettings) -> APIRouter:
    """The routes; the limits they document come from the service's settings."""
    api = APIRouter(tags=["reports"])

    @api.post(
        "/v1/reports",
        status_code=202,
        response_model=ReportAccepted,
        responses=SUBMISSION_ERRORS,
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
        request: Request,
        principal: PartnerPrincipal,
        intake: Handlers,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        _, charset = content_type(request, JSON_TYPES, "application/json", "+json")
        utf8_only(charset)
        body = await read_body(request, config.max_report_bytes)
        return render(await intake.submit_json(Submission(principal, body, idempotency_key)))

    @api.post(
        "/v1/reports/cybertipline",
        status_code=202,
        response_model=ReportAccepted,
        responses=SUBMISSION_ERRORS,
        summary="Submit one NCMEC CyberTipline <report> XML document",
        description=f"Elements nested at most {config.max_xml_depth} levels deep, at most "
        f"{config.max_xml_elements} elements and attributes in all.",
        openapi_extra=_request_body(
            _text_body("application/xml", "text/xml", max_length=config.max_cybertipline_bytes),
            "One CyberTipline <report> document; no DTD, entities or external references",
        ),
    )
    async def submit_cybertipline(
        request: Request,
        principal: PartnerPrincipal,
        intake: Handlers,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        content_type(request, XML_TYPES, "application/xml", "+xml")
        body = await read_body(request, config.max_cybertipline_bytes)
        submission = Submission(principal, body, idempotency_key)
        return render(await intake.submit_cybertipline(submission))

    @api.post(
        "/v1/reports/batch",
        status_code=202,
        response_model=BatchResult,
        responses=SUBMISSION_ERRORS,
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
        request: Request,
        principal: PartnerPrincipal,
        intake: Handlers,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        media_type, charset = content_type(
            request, NDJSON_TYPES | CSV_TYPES, "application/x-ndjson or text/csv"
        )
        kind = batch_kind(media_type)
        assert kind is not None
        body = await read_body(request, config.max_batch_bytes)
        submission = Submission(principal, body, idempotency_key)
        return render(await intake.submit_batch(submission, kind, charset))

    @api.get(
        "/v1/reports/{report_id}",
        response_model=ReportStatus,
        responses=error_responses(401, 404, 429),
        summary="Your report's progress: received, triaged, routed",
        description="What happened to your own report, with your own reference for its case; "
        "never whether other partners reported the same person, nor anything drawn from their "
        "reports.",
    )
    async def report_status(
        report_id: uuid.UUID, principal: PartnerPrincipal, intake: Handlers
    ) -> ReportStatus:
        return await intake.report_status(principal, report_id)

    return api


def install_error_handlers(app: FastAPI, figures: Figures) -> None:
    """Intake's refusals (counted by code) and its state store's errors, beside the shared
    handlers `create_http_app` installed (which answer outages 503)."""

    async def on_refusal(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refusal)
        figures.refusal(exc.code)
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
            headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        )

    app.add_exception_handler(Refusal, on_refusal)
    app.add_exception_handler(RedisError, on_store_error)


def document_models(app: FastAPI, *models: type[BaseModel]) -> None:
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
