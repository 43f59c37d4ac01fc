"""One error type and one error table for every service.

Every refusal is an `ApiError`: a status, a stable code, a message for people and the field at
fault; the shared HTTP app renders it as `ErrorBody`. An outage of something a request depends
on (Redis, the broker, a database) is a 503 with `Retry-After`, never a 500: the caller can
retry, and nothing was changed. The same classification tells the reliable consumer which
failures to wait out rather than dead-letter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import BusyLoadingError as RedisBusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError as RedisLockError
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.reports import ErrorBody
from ocsea.runtime.logging import get_logger

RETRY_AFTER_S = 2
"""What a 503 asks the caller to wait before retrying."""

INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    RedisBusyLoadingError,
    RedisReadOnlyError,
    # A lock that expired or vanished (a slow step, a Redis restart): taking it again cures it.
    RedisLockError,
    KafkaError,
    ConnectionError,
    TimeoutError,
    OSError,
)
# Database drivers' outage errors, by name: the runtime does not import every driver.
_INFRASTRUCTURE_NAMES = frozenset(
    {"OperationalError", "InterfaceError", "ConnectionDoesNotExistError", "CannotConnectNowError"}
)


def is_infrastructure_error(exc: BaseException) -> bool:
    """A failure of something the work depends on, which waiting cures (as opposed to a
    problem with the input or a bug)."""
    return isinstance(exc, INFRASTRUCTURE_ERRORS) or type(exc).__name__ in _INFRASTRUCTURE_NAMES


class ApiError(Exception):
    """An answer to give (not a fault): rendered as `ErrorBody` with its status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.errors = [dict(e) for e in errors]
        self.headers = dict(headers) if headers else None


ERROR_TABLE: dict[int, str] = {
    400: "The body cannot be read",
    401: "No bearer token, or one this service does not know",
    403: "The caller's role or grounds do not allow this",
    404: "No such resource, or none the caller may know of",
    409: "The resource changed or the request conflicts with one in progress",
    413: "The body is larger than this endpoint takes",
    415: "A media type this endpoint does not take (media is never accepted)",
    422: "A field is invalid; `field` names it",
    429: "Too many requests; see Retry-After",
    503: "A store or the broker is unreachable; nothing was changed. Retry after Retry-After",
}


def error_responses(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route answers, each an `ErrorBody`; a
    route may describe a status in its own words (`error_responses(409, s409="…")`)."""
    return {
        status: {
            "model": ErrorBody,
            "description": described.get(f"s{status}", ERROR_TABLE.get(status, "Error")),
        }
        for status in statuses
    }


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(code=code, message=message, field=field, errors=errors or [])
    return JSONResponse(
        body.model_dump(), status_code=status, headers=dict(headers) if headers else None
    )


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": _field_path(e.get("loc", ())),
            "type": str(e.get("type")),
            "message": str(e.get("msg")),
        }
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "body", "type": "invalid", "message": "invalid"}
    if first["type"] == "json_invalid":
        return error_response(
            400, "invalid_json", f"the body is not valid JSON: {first['message']}", "body", errors
        )
    return error_response(
        422, "invalid_request", f"{first['field']}: {first['message']}", first["field"], errors
    )


async def _on_http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if isinstance(detail, dict):
        return error_response(
            exc.status_code,
            str(detail.get("code", "error")),
            str(detail.get("message", "")),
            detail.get("field"),
            headers=exc.headers,
        )
    return error_response(exc.status_code, "http_error", str(detail), headers=exc.headers)


async def _on_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.code, exc.message, exc.field, exc.errors, headers=exc.headers
    )


async def _on_outage(request: Request, exc: Exception) -> JSONResponse:
    # The error's type only: its text may quote a key or a value.
    get_logger("ocsea.http").error(
        "http.dependency_unavailable", path=request.url.path, error=type(exc).__name__
    )
    return error_response(
        503,
        "unavailable",
        "a store or the broker this service needs is unreachable; nothing was changed. Retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(ApiError, _on_api_error)
    for outage in INFRASTRUCTURE_ERRORS:
        app.add_exception_handler(outage, _on_outage)
