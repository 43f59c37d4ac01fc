"""Triage transport: received reports in, triaged results out (each in its lane: live or
bulk, see `contracts/topics.py`), and the supervisors' override.

For every received report triage re-runs the rules on the case's combined reports and
publishes the case's current result as `report.triaged`; when the classification or priority
changed it first publishes `case.reclassified` (old, new, why). A supervisor's override is
published as `case.triage_overridden`, then the same pair. All are keyed by case, in order.

Need-to-know (`ocsea.runtime.access`, the one rule): a supervisor reads a case's triage, and
overrides it, only with an open task of their agency on the case; an auditor reads it on the
role. Triage holds no tasks, so it asks routing, the holder of the task projection, with the
caller's own bearer token (`GET /v1/cases/{id}/grounds`). Asking rather than keeping a second
projection of the task events here means the rule is applied to one set of tasks, the one
routing itself acts on: no lag between a task closing there and access ending here, and no
copy of the task fold and the directory's escalation to keep in step. The price is that
triage's case endpoints need routing up; without its answer they answer 503 and show nothing.
Every read, and every refusal, is recorded on `ocsea.access.v1` before the answer; an unknown
case and a case the caller has no grounds on answer alike (404).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field

from contracts import topics
from contracts.events import (
    Actor,
    ActorKind,
    CaseTriageOverriddenData,
    Classification,
    Envelope,
    EventType,
    OverrideReason,
    Priority,
    ReclassificationTrigger,
    ReportReceivedData,
    ReportTriagedData,
    TriageOverrideInfo,
    derived_event_id,
    make_event,
    utc_now,
)
from contracts.reports import ErrorBody
from contracts.topics import Lane
from ocsea.runtime.access import (
    AccessLog,
    Basis,
    GroundsClient,
    GroundsUnavailableError,
    grounds_unavailable,
    may_change_triage,
    triage_read_basis,
)
from ocsea.runtime.auth import Principal, PrincipalStore, Role, bearer_token, require
from ocsea.runtime.consumer import Origin
from ocsea.runtime.crypto import CaseKeys
from ocsea.runtime.errors import error_response
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.keystore import ErasureNotice
from ocsea.runtime.logging import get_logger
from ocsea.runtime.metrics import LATENCY_BUCKETS
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.triage.config import TriageSettings
from services.triage.domain import reclassification, triage_case
from services.triage.rules import load_rules
from services.triage.sealed import SealedReader
from services.triage.store import TriageStore

log = get_logger("ocsea.triage")
SYSTEM = Actor(kind=ActorKind.SYSTEM, id="triage")

SupervisorPrincipal = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
CaseReaderPrincipal = Annotated[Principal, Depends(require(Role.SUPERVISOR, Role.AUDITOR))]


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    classification: Classification | None = None
    priority: Priority | None = None
    reason_code: OverrideReason
    reason: str = Field(
        min_length=3,
        max_length=2000,
        description="Why, in words. Sealed under the case's key (it may name people); only "
        "reason_code travels in the clear",
    )


class TriageHistoryEntry(BaseModel):
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    actor: Actor
    report_id: uuid.UUID | None
    data: dict[str, object]


class CaseTriageView(BaseModel):
    case_id: uuid.UUID
    current: ReportTriagedData
    history: list[TriageHistoryEntry] = Field(
        description="Every result, reclassification and override, oldest first"
    )
    personal_data_erased: ErasureNotice | None = Field(
        default=None,
        description="Set once the case's personal data was erased (sealed notes then open no "
        "more): when, and why",
    )


URGENT = frozenset({Priority.P1, Priority.P2})


def lane_of_topic(topic: str) -> Lane:
    return Lane.BULK if topic == topics.REPORTS_RECEIVED_BULK else Lane.LIVE


def triaged_topic(event: Envelope, lane: Lane) -> str:
    """Results stay in their report's lane, except urgent ones: a P1 or P2 found in a bulk
    upload is published on the live lane, so routing assigns it ahead of the rest."""
    priority = event.data.get("priority") or event.data.get("new_priority")
    if lane is Lane.BULK and priority not in URGENT:
        return topics.REPORTS_TRIAGED_BULK
    return topics.REPORTS_TRIAGED


def build(settings: Settings) -> FastAPI:
    triage_settings = TriageSettings()
    rules = load_rules(triage_settings.rules_file)
    context = ServiceContext.create("triage", settings)
    store = TriageStore(context.redis, lock_timeout_s=triage_settings.lock_timeout_s)
    keys = CaseKeys.for_service(context)
    sealed = SealedReader(keys if triage_settings.read_sealed else None)
    results = Counter(
        "ocsea_triage_results_total",
        "Triage results published, by classification and priority",
        ["classification", "priority"],
        registry=context.registry,
    )
    reclassified = Counter(
        "ocsea_triage_reclassifications_total",
        "Cases whose classification or priority changed",
        ["trigger"],
        registry=context.registry,
    )
    reports = Counter(
        "ocsea_triage_reports",
        "Reports triaged, by the report's channel and lane and the classification and "
        "priority its case has after it",
        ["channel", "lane", "classification", "priority"],
        registry=context.registry,
    )
    latency = Histogram(
        "ocsea_triage_latency_seconds",
        "From a report's receipt by intake to its case's triage result, by lane and priority",
        ["lane", "priority"],
        buckets=LATENCY_BUCKETS,
        registry=context.registry,
    )

    def count_report(received: ReportReceivedData, lane: Lane, events: Sequence[Envelope]) -> None:
        for event in events:
            if event.event_type == EventType.REPORT_TRIAGED:
                result = event.payload(ReportTriagedData)
                reports.labels(received.channel, lane, result.classification, result.priority).inc()
                waited = (utc_now() - received.received_at).total_seconds()
                latency.labels(lane, result.priority).observe(max(0.0, waited))

    def outputs(
        *,
        cause_id: str,
        case_id: uuid.UUID,
        previous: ReportTriagedData | None,
        result: ReportTriagedData,
        trigger: ReclassificationTrigger,
        actor: Actor,
    ) -> list[Envelope]:
        # Ids derive from the cause: a redelivered cause yields events consumers recognise.
        events = []
        change = reclassification(previous, result, trigger=trigger)
        if change is not None:
            events.append(
                make_event(
                    event_type=EventType.CASE_RECLASSIFIED,
                    event_id=derived_event_id(cause_id, EventType.CASE_RECLASSIFIED),
                    case_id=case_id,
                    report_id=result.report_id,
                    producer="triage",
                    actor=actor,
                    data=change,
                )
            )
        events.append(
            make_event(
                event_type=EventType.REPORT_TRIAGED,
                event_id=derived_event_id(cause_id, EventType.REPORT_TRIAGED),
                case_id=case_id,
                report_id=result.report_id,
                producer="triage",
                actor=actor,
                data=result,
            )
        )
        return events

    async def publish(events: Sequence[Envelope], lane: Lane = Lane.LIVE) -> None:
        for event in events:
            await publish_event(context.broker, triaged_topic(event, lane), event)
            if event.event_type == EventType.REPORT_TRIAGED:
                data = event.payload(ReportTriagedData)
                results.labels(data.classification.value, data.priority.value).inc()
            elif event.event_type == EventType.CASE_RECLASSIFIED:
                reclassified.labels(str(event.data.get("trigger"))).inc()
            log.info(
                event.event_type,
                case_id=str(event.case_id),
                report_id=str(event.report_id),
                event_id=str(event.event_id),
                classification=event.data.get("classification")
                or event.data.get("new_classification"),
                priority=event.data.get("priority") or event.data.get("new_priority"),
                score=event.data.get("score"),
                rules_version=event.data.get("rules_version"),
                inputs_digest=event.data.get("inputs_digest"),
            )

    async def on_received(envelope: Envelope, origin: Origin) -> None:
        if envelope.event_type != EventType.REPORT_RECEIVED:
            return
        received = envelope.payload(ReportReceivedData)
        case_id, cause = envelope.case_id, f"report:{received.report_id}"
        async with store.lock(case_id):
            case = await store.take_report(case_id, received)
            # Already on Kafka (a redelivery, or a new consumer group reading history):
            # nothing to do, and nothing to publish twice.
            if case.published:
                return
            events = case.outcome
            if events is None:
                result = triage_case(
                    await sealed.case_reports(case.reports),
                    rules,
                    trigger_report_id=received.report_id,
                    override=case.override,
                )
                events = outputs(
                    cause_id=str(envelope.event_id),
                    case_id=case_id,
                    previous=case.current,
                    result=result,
                    trigger=ReclassificationTrigger.NEW_REPORT,
                    actor=SYSTEM,
                )
                # Recorded before publishing: a failed publish is retried from the record,
                # with the same events, so the case never moves on unannounced.
                await store.record(case_id, cause, events, result)
        lane = lane_of_topic(origin.topic)
        await publish(events, lane)
        count_report(received, lane, events)
        await store.mark_published(case_id, cause)

    # One consumer group per lane: a bulk backlog never delays a live report.
    context.consume(topics.REPORTS_RECEIVED, handler=on_received, lane=Lane.LIVE)
    context.consume(
        topics.REPORTS_RECEIVED_BULK, handler=on_received, group_suffix=Lane.BULK, lane=Lane.BULK
    )

    app = create_http_app(
        context,
        title="ocsea triage",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    errors: dict[int | str, dict[str, object]] = {
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {
            "model": ErrorBody,
            "description": "No such case, or none the caller has an open task on (alike)",
        },
        422: {"model": ErrorBody},
        503: {
            "model": ErrorBody,
            "description": "The broker did not take the events, or the access rule could not "
            "be checked or the read recorded; nothing was shown or changed",
        },
    }
    grounds_client = GroundsClient(
        settings.triage_routing, timeout_s=settings.triage_routing_timeout_s
    )
    context.on_shutdown.append(grounds_client.close)
    access_log = AccessLog(context.broker, "triage")

    def not_found() -> HTTPException:
        # One answer for an unknown case and a case that is not the caller's.
        return HTTPException(
            404, {"code": "case_not_found", "message": "no case with this id that you may see"}
        )

    async def open_tasks_of(case_id: uuid.UUID, http: Request) -> tuple[uuid.UUID, ...]:
        """The caller's open tasks on the case, as routing knows them (empty: no grounds)."""
        token = bearer_token(http)
        if token is None:  # `require` admitted the caller by this very header
            raise not_found()
        try:
            found = await grounds_client.grounds(case_id, token)
        except GroundsUnavailableError as exc:
            log.error("case.grounds_unavailable", case_id=str(case_id), error=str(exc))
            raise grounds_unavailable() from exc
        return found.task_ids if found is not None else ()

    @app.get(
        "/v1/triage/cases/{case_id}",
        response_model=CaseTriageView,
        responses=errors,
        tags=["triage"],
        summary="The case's current triage result with its factors, and its history",
    )
    async def case_triage(
        case_id: uuid.UUID, principal: CaseReaderPrincipal, http: Request
    ) -> CaseTriageView:
        basis = triage_read_basis(principal)
        if basis is None:
            raise HTTPException(403, {"code": "forbidden", "message": "not a reader of cases"})
        grounds: tuple[uuid.UUID, ...] = ()
        if basis is Basis.OPEN_TASK:
            grounds = await open_tasks_of(case_id, http)
            if not grounds:
                await access_log.denied(
                    case_id, principal, reason="no open task of the caller's on this case"
                )
                raise not_found()
        current = await store.current(case_id)
        if current is None:
            raise not_found()
        try:
            erasure = await keys.erasure(case_id)
        except Exception as exc:
            log.error("case.keys_unavailable", case_id=str(case_id), error=type(exc).__name__)
            raise HTTPException(
                503,
                {"code": "keys_unavailable", "message": "the case keys could not be read"},
                headers={"Retry-After": "5"},
            ) from exc
        history = [
            TriageHistoryEntry(
                event_id=e.event_id,
                event_type=e.event_type,
                occurred_at=e.occurred_at,
                actor=e.actor,
                report_id=e.report_id,
                data=e.data,
            )
            for e in await store.history(case_id)
        ]
        # Recorded before it is shown; raises (503) when it cannot be.
        await access_log.viewed(
            case_id,
            principal,
            reason=basis.value,
            task_ids=grounds,
            report_ids=current.case_report_ids,
        )
        return CaseTriageView(
            case_id=case_id,
            current=current,
            history=history,
            personal_data_erased=ErasureNotice.of(erasure),
        )

    @app.post(
        "/v1/triage/cases/{case_id}/override",
        response_model=ReportTriagedData,
        responses=errors,
        tags=["triage"],
        summary="Override the case's classification or priority, with a reason (supervisors "
        "with an open task of their agency on the case)",
    )
    async def override_case(
        case_id: uuid.UUID,
        request: OverrideRequest,
        principal: SupervisorPrincipal,
        http: Request,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> ReportTriagedData | JSONResponse:
        # The override moves deadlines (a lower priority gives more time): only a supervisor
        # who holds the case may make it, and the event names them as its actor.
        if not may_change_triage(principal, await open_tasks_of(case_id, http)):
            await access_log.denied(
                case_id, principal, reason="override without an open task of the caller's"
            )
            raise not_found()
        if request.classification is None and request.priority is None:
            return error_response(
                422,
                "nothing_to_override",
                "give a classification or a priority (or both)",
                "classification",
            )
        # With an Idempotency-Key a retried request is the same override, the same events.
        override_id = (
            derived_event_id("triage", "override", principal.name, str(case_id), idempotency_key)
            if idempotency_key
            else uuid.uuid4()
        )
        cause = f"override:{override_id}"
        async with store.lock(case_id):
            events = await store.outcome(case_id, cause)
            if events is None:
                received = await store.reports(case_id)
                if not received:
                    raise not_found()
                reports = await sealed.case_reports(received)
                computed = triage_case(reports, rules)
                info = TriageOverrideInfo(
                    override_id=override_id,
                    by=principal.name,
                    at=utc_now(),
                    reason_code=request.reason_code,
                    classification=request.classification,
                    priority=request.priority,
                    computed_classification=computed.classification,
                    computed_priority=computed.priority,
                )
                result = triage_case(reports, rules, override=info)
                previous = await store.current(case_id)
                actor = Actor(kind=ActorKind.SUPERVISOR, id=principal.name, agency=principal.agency)
                overridden = make_event(
                    event_type=EventType.CASE_TRIAGE_OVERRIDDEN,
                    event_id=derived_event_id(str(override_id), EventType.CASE_TRIAGE_OVERRIDDEN),
                    case_id=case_id,
                    report_id=result.report_id,
                    producer="triage",
                    actor=actor,
                    data=CaseTriageOverriddenData(
                        report_id=result.report_id,
                        override_id=override_id,
                        reason_code=request.reason_code,
                        note=await keys.seal(case_id, request.reason.encode()),
                        classification=request.classification,
                        priority=request.priority,
                        old_classification=(previous or computed).classification,
                        new_classification=result.classification,
                        old_priority=(previous or computed).priority,
                        new_priority=result.priority,
                        computed_classification=computed.classification,
                        computed_priority=computed.priority,
                        rules_version=rules.version,
                    ),
                )
                events = [
                    overridden,
                    *outputs(
                        cause_id=str(override_id),
                        case_id=case_id,
                        previous=previous,
                        result=result,
                        trigger=ReclassificationTrigger.OVERRIDE,
                        actor=actor,
                    ),
                ]
                try:
                    async with asyncio.timeout(settings.publish_timeout_s):
                        await publish(events)
                except Exception as exc:
                    log.error(
                        "override.publish_failed", case_id=str(case_id), error=type(exc).__name__
                    )
                    return error_response(
                        503,
                        "broker_unavailable",
                        "the override was not recorded; retry with the same Idempotency-Key",
                        headers={"Retry-After": "5"},
                    )
                # Recorded only once published: a failed publish leaves the case as it was.
                await store.record(case_id, cause, events, result, override=info, published=True)
                return result
        # A retried request whose override is recorded, hence published: the same answer.
        return events[-1].payload(ReportTriagedData)

    return app
