"""A supervisor's triage override as the console's form gives it: the request triage takes,
and what is wrong with it before anything is sent. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.events import Classification, OverrideReason, Priority

MIN_REASON = 3
"""Characters an explanation needs at least (the form's own `minlength`)."""


def override_request(form: Mapping[str, str]) -> dict[str, Any]:
    """The body of `POST /v1/triage/cases/{id}/override`; an empty choice keeps the value."""
    return {
        "priority": form.get("priority") or None,
        "classification": form.get("classification") or None,
        "reason_code": form.get("reason_code", ""),
        "reason": form.get("reason", "").strip(),
    }


def override_problem(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """The message and the field at fault, or None when triage may be asked."""
    if body["priority"] not in (None, *Priority):
        return "error.invalid_request", "priority"
    if body["classification"] not in (None, *Classification):
        return "error.invalid_request", "classification"
    if body["priority"] is None and body["classification"] is None:
        return "error.override_nothing", "priority"
    if body["reason_code"] not in set(OverrideReason):
        return "error.override_reason_code", "reason_code"
    if len(body["reason"]) < MIN_REASON:
        return "error.override_reason", "reason"
    return None
