"""Links between the console's pages, and the message a page shows for a service's refusal.
Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

# A service's error code → the message the error page shows; any other refusal is generic.
REFUSALS = {
    "case_access_denied": "error.case_access_denied",
    "task_not_found": "error.task_not_found",
    "service_unavailable": "error.service_unavailable",
    "unauthenticated": "error.credential_revoked",
}
# A command routing refused → the message on the task page, shown as the task now is.
COMMAND_REFUSALS = {
    "invalid_transition": "error.invalid_transition",
    "forbidden": "error.not_allowed",
    "invalid_request": "error.choose_code",
}
# Statuses of a refused command or override the task page explains itself; any other goes to
# the error page (a task that vanished, a revoked credential…).
COMMAND_REFUSED_ON_PAGE = frozenset({409, 422, 503})
OVERRIDE_REFUSED_ON_PAGE = frozenset({422, 503})
NOT_RECORDED = "error.not_recorded"


def refusal_message(code: str) -> str:
    return REFUSALS.get(code, "error.service_refused")


def refusal_status(status: int) -> int:
    """The error page's status: the service's refusal as it was, any failure of its a 503."""
    return status if status < 500 else 503


def command_refused_on_page(status: int, code: str) -> bool:
    return status in COMMAND_REFUSED_ON_PAGE or code == "forbidden"


def command_refusal_message(code: str) -> str:
    return COMMAND_REFUSALS.get(code, NOT_RECORDED)


def url(path: str, **params: object) -> str:
    """`path` with the given query parameters; None and empty ones left out."""
    kept = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    return f"{path}?{urlencode(kept)}" if kept else path


def table_links(
    path: str,
    query: Mapping[str, str],
    *,
    region: str,
    cursor: str | None,
    next_cursor: str | None,
) -> dict[str, Any]:
    """A table's pager and live-update links: the page's own query with this table's cursor
    moved (other tables stay where they are)."""
    own = {k: v for k, v in query.items() if k != "fragment"}
    cursor_name = f"{region}_cursor"
    return {
        "next_url": url(path, **{**own, cursor_name: next_cursor}) if next_cursor else None,
        "first_url": url(path, **{**own, cursor_name: None}) if cursor else None,
        "poll_url": url(path, **{**own, "fragment": region}),
    }
