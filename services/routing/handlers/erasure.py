"""Erasing a case's personal data: the operator's use case, over the case keys and a publisher.

The case's data key is destroyed first (`CaseKeyring.erase`), then `case.erased` is published
on the cases topic, where the audit ledger records it. The event is a pure function of the
erasure the key store keeps (its id derives from the case, its time and actor are the first
erasure's), so a retry after a failed publish, or a second operator's repeated request,
publishes the very same record: the ledger records it once.

The reason is a code and the reference a ticket-like token, never free text: the topic and
the ledger keep what they are given for good, and words could name the very people whose
data is being erased.
"""

from __future__ import annotations

import uuid

from contracts.events import (
    Actor,
    ActorKind,
    CaseErasedData,
    Envelope,
    ErasureReason,
    EventType,
    derived_event_id,
    make_event,
)
from ocsea.runtime.errors import ApiError
from ocsea.runtime.keystore import Erasure
from ocsea.runtime.logging import get_logger
from services.routing.handlers.views import ErasureResult
from services.routing.ports import CaseKeyring, EventSink

log = get_logger("ocsea.routing.erasure")


def erased_event(case_id: uuid.UUID, erasure: Erasure) -> Envelope:
    return make_event(
        event_type=EventType.CASE_ERASED,
        event_id=derived_event_id(EventType.CASE_ERASED, str(case_id)),
        case_id=case_id,
        producer="routing",
        actor=Actor(kind=ActorKind.OPERATOR, id=erasure.erased_by),
        occurred_at=erasure.erased_at,
        data=CaseErasedData(
            reason=erasure.reason, reference=erasure.reference, erased_at=erasure.erased_at
        ),
    )


async def erase_case(
    keys: CaseKeyring,
    publish: EventSink,
    case_id: uuid.UUID,
    *,
    reason: ErasureReason,
    operator: str,
    reference: str | None = None,
) -> ErasureResult:
    """Destroy the case's key and record it. Refused (404) when no key was ever kept for the
    case; a 503 to retry when the key store, or the cases topic, could not be reached."""
    try:
        erasure = await keys.erase(case_id, reason, operator, reference)
    except Exception as exc:
        log.error("case.erasure_failed", case_id=str(case_id), error=type(exc).__name__)
        raise ApiError(
            503,
            "erasure_incomplete",
            "the erasure could not be completed; retry",
            headers={"Retry-After": "5"},
        ) from exc
    if erasure is None:
        raise ApiError(404, "case_not_found", "no personal data is kept for this case")
    event = erased_event(case_id, erasure)
    try:
        await publish(event)
    except Exception as exc:
        log.error("case.erasure_not_recorded", case_id=str(case_id), error=type(exc).__name__)
        raise ApiError(
            503,
            "erasure_not_recorded",
            "the personal data is erased but the erasure is not yet recorded; "
            "retry (it is recorded once)",
            headers={"Retry-After": "5"},
        ) from exc
    log.info("case.erased", case_id=str(case_id), event_id=str(event.event_id))
    return ErasureResult(
        case_id=case_id,
        erased_at=erasure.erased_at,
        reason=erasure.reason,
        reference=erasure.reference,
        event_id=event.event_id,
    )
