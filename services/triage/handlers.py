"""Triage's use cases, over its ports: triage a received report (re-triaging its case), a
supervisor's override, the case's triage view, and a replay of past reports under a candidate
rule set.

For every received report triage re-runs the rules on the case's combined reports and
publishes the case's current result as `report.triaged`; when the classification or priority
changed it first publishes `case.reclassified` (old, new, why). A supervisor's override is
published as `case.triage_overridden`, then the same pair. All are keyed by case, in order, and
their ids derive from their cause, so a redelivered cause yields events consumers recognise.

The case state lives in Redis, and comes back from Kafka when Redis lost it (`rebuild_state`):
every use case passes the state guard first, which rebuilds it once if its epoch marker is gone.

Need-to-know (`ocsea.runtime.access`, the one rule): a supervisor reads a case's triage, and
overrides it, only with an open task of their agency on the case; an auditor reads it on the
role. Triage holds no tasks, so it asks routing, the holder of the task projection, with the
caller's own bearer token (`GroundsSource`). Asking rather than keeping a second projection of
the task events here means the rule is applied to one set of tasks, the one routing itself acts
on: no lag between a task closing there and access ending here. The price is that triage's
case endpoints need routing up; without its answer they answer 503 and show nothing. Every
read, and every refusal, is recorded (`AccessRecord`) before the answer; an unknown case and a
case the caller has no grounds on answer alike (404).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contracts.events import (
    Actor,
    ActorKind,
    Classification,
    Envelope,
    EventType,
    OverrideReason,
    Priority,
    ReclassificationTrigger,
    ReportReceivedData,
    ReportTriagedData,
    derived_event_id,
    make_event,
)
from contracts.topics import Lane
from ocsea.runtime.access import (
    AccessRecord,
    Basis,
    GroundsUnavailableError,
    grounds_unavailable,
    may_change_triage,
    triage_read_basis,
)
from ocsea.runtime.auth import Principal
from ocsea.runtime.errors import ApiError
from ocsea.runtime.keystore import Erasure
from ocsea.runtime.logging import get_logger
from services.triage.domain.case import triage_case
from services.triage.domain.lanes import RECEIVED_TOPICS, TRIAGED_TOPICS, triaged_topic
from services.triage.domain.overrides import overridden_data, override_info
from services.triage.domain.rebuild import (
    StateFold,
    is_complete,
    override_cause,
    report_cause,
    settle,
)
from services.triage.domain.reclassification import reclassification
from services.triage.domain.replay import ReplaySummary, compare
from services.triage.domain.rules import Rules
from services.triage.domain.signals import ScanCache
from services.triage.ports import (
    CaseKeyring,
    CaseState,
    Clock,
    EventHistory,
    EventPublisher,
    GroundsSource,
    ReceivedHistory,
    SealedOpener,
    StateGuard,
    StateRestore,
    TriageFigures,
)

log = get_logger("ocsea.triage")
SYSTEM = Actor(kind=ActorKind.SYSTEM, id="triage")


def case_not_found() -> ApiError:
    # One answer for an unknown case and a case that is not the caller's.
    return ApiError(404, "case_not_found", "no case with this id that you may see")


@dataclass(frozen=True)
class OverrideCommand:
    """A supervisor's override of a case's classification or priority (or both)."""

    case_id: uuid.UUID
    reason_code: OverrideReason
    reason: str = field(repr=False)  # sealed: it may name people
    classification: Classification | None = None
    priority: Priority | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class CaseTriage:
    """A case's triage as a reader is shown it."""

    case_id: uuid.UUID
    current: ReportTriagedData
    history: list[Envelope]
    erasure: Erasure | None


@dataclass
class TriageHandlers:
    rules: Rules
    state: CaseState
    guard: StateGuard
    publisher: EventPublisher
    sealed: SealedOpener
    keys: CaseKeyring
    grounds: GroundsSource
    access: AccessRecord
    clock: Clock
    figures: TriageFigures
    publish_timeout_s: float
    scans: ScanCache = field(default_factory=ScanCache)

    # ----------------------------------------------------------------- a received report

    async def report_received(self, envelope: Envelope, lane: Lane) -> None:
        """Re-triage the report's case and publish its result, once per report.

        The events are recorded before they are published: a failed publish is retried from
        the record, with the same events, so the case never moves on unannounced. Once
        published they are marked so, and a redelivery publishes nothing again."""
        if envelope.event_type != EventType.REPORT_RECEIVED:
            return
        received = envelope.payload(ReportReceivedData)
        case_id, cause = envelope.case_id, report_cause(received.report_id)
        await self.guard.ensure()
        async with self.state.lock(case_id):
            case = await self.state.take_report(case_id, received)
            # Already on Kafka (a redelivery, or a new consumer group reading history):
            # nothing to do, and nothing to publish twice.
            if case.published:
                return
            events = case.outcome
            # Partly on Kafka (found so by a rebuild): those events stay as they went out.
            if events is None or not is_complete(events):
                result = triage_case(
                    await self.sealed.case_reports(case.reports),
                    self.rules,
                    trigger_report_id=received.report_id,
                    override=case.override,
                    scans=self.scans,
                )
                made = self._outputs(
                    cause_id=str(envelope.event_id),
                    case_id=case_id,
                    previous=case.current,
                    result=result,
                    trigger=ReclassificationTrigger.NEW_REPORT,
                    actor=SYSTEM,
                )
                events = settle(made, case.outcome or ())
                await self.state.record(case_id, cause, events, result)
        await self._publish(events, lane)
        self._count_report(received, lane, events)
        await self.state.mark_published(case_id, cause)

    # ----------------------------------------------------------------- a supervisor's override

    async def override(
        self, command: OverrideCommand, principal: Principal, token: str | None
    ) -> ReportTriagedData:
        """Override the case's classification or priority; the case's new result.

        The override moves deadlines (a lower priority gives more time): only a supervisor who
        holds the case may make it, and the events name them as their actor. The events are
        recorded only once published: a failed publish leaves the case as it was."""
        case_id = command.case_id
        if not may_change_triage(principal, await self._open_tasks_of(case_id, token)):
            await self.access.denied(
                case_id, principal, reason="override without an open task of the caller's"
            )
            raise case_not_found()
        if command.classification is None and command.priority is None:
            raise ApiError(
                422,
                "nothing_to_override",
                "give a classification or a priority (or both)",
                field="classification",
            )
        # With an Idempotency-Key a retried request is the same override, the same events.
        override_id = (
            derived_event_id(
                "triage", "override", principal.name, str(case_id), command.idempotency_key
            )
            if command.idempotency_key
            else uuid.uuid4()
        )
        cause = override_cause(override_id)
        await self.guard.ensure()
        async with self.state.lock(case_id):
            events = await self.state.outcome(case_id, cause)
            # Partly on Kafka (found so by a rebuild): those events stay as they went out.
            if events is None or not is_complete(events):
                received = await self.state.reports(case_id)
                if not received:
                    raise case_not_found()
                reports = await self.sealed.case_reports(received)
                computed = triage_case(reports, self.rules, scans=self.scans)
                info = override_info(
                    override_id=override_id,
                    by=principal.name,
                    at=self.clock.now(),
                    reason_code=command.reason_code,
                    classification=command.classification,
                    priority=command.priority,
                    computed=computed,
                )
                result = triage_case(reports, self.rules, override=info, scans=self.scans)
                previous = await self.state.current(case_id)
                actor = Actor(kind=ActorKind.SUPERVISOR, id=principal.name, agency=principal.agency)
                overridden = make_event(
                    event_type=EventType.CASE_TRIAGE_OVERRIDDEN,
                    event_id=derived_event_id(str(override_id), EventType.CASE_TRIAGE_OVERRIDDEN),
                    case_id=case_id,
                    report_id=result.report_id,
                    producer="triage",
                    actor=actor,
                    data=overridden_data(
                        info,
                        result=result,
                        computed=computed,
                        previous=previous,
                        note=await self.keys.seal(case_id, command.reason.encode()),
                    ),
                    occurred_at=self.clock.now(),
                )
                made = [
                    overridden,
                    *self._outputs(
                        cause_id=str(override_id),
                        case_id=case_id,
                        previous=previous,
                        result=result,
                        trigger=ReclassificationTrigger.OVERRIDE,
                        actor=actor,
                    ),
                ]
                events = settle(made, events or ())
                try:
                    async with asyncio.timeout(self.publish_timeout_s):
                        await self._publish(events)
                except Exception as exc:
                    log.error(
                        "override.publish_failed", case_id=str(case_id), error=type(exc).__name__
                    )
                    raise ApiError(
                        503,
                        "broker_unavailable",
                        "the override was not recorded; retry with the same Idempotency-Key",
                        headers={"Retry-After": "5"},
                    ) from exc
                await self.state.record(
                    case_id, cause, events, result, override=info, published=True
                )
                return result
        # A retried request whose override is recorded, hence published: the same answer.
        return events[-1].payload(ReportTriagedData)

    # ----------------------------------------------------------------- the case's view

    async def case_triage(
        self, case_id: uuid.UUID, principal: Principal, token: str | None
    ) -> CaseTriage:
        """The case's current result and history, for a reader with grounds (or an auditor);
        the read is recorded before it is shown."""
        basis = triage_read_basis(principal)
        if basis is None:
            raise ApiError(403, "forbidden", "not a reader of cases")
        grounds: tuple[uuid.UUID, ...] = ()
        if basis is Basis.OPEN_TASK:
            grounds = await self._open_tasks_of(case_id, token)
            if not grounds:
                await self.access.denied(
                    case_id, principal, reason="no open task of the caller's on this case"
                )
                raise case_not_found()
        await self.guard.ensure()
        current = await self.state.current(case_id)
        if current is None:
            raise case_not_found()
        try:
            erasure = await self.keys.erasure(case_id)
        except Exception as exc:
            log.error("case.keys_unavailable", case_id=str(case_id), error=type(exc).__name__)
            raise ApiError(
                503,
                "keys_unavailable",
                "the case keys could not be read",
                headers={"Retry-After": "5"},
            ) from exc
        history = await self.state.history(case_id)
        # Recorded before it is shown; raises (503) when it cannot be.
        await self.access.viewed(
            case_id,
            principal,
            reason=basis.value,
            task_ids=grounds,
            report_ids=current.case_report_ids,
        )
        return CaseTriage(case_id=case_id, current=current, history=history, erasure=erasure)

    # ----------------------------------------------------------------- steps

    async def _open_tasks_of(self, case_id: uuid.UUID, token: str | None) -> tuple[uuid.UUID, ...]:
        """The caller's open tasks on the case, as routing knows them (empty: no grounds)."""
        if token is None:  # the caller was admitted by this very token: not expected
            raise case_not_found()
        try:
            found = await self.grounds.grounds(case_id, token)
        except GroundsUnavailableError as exc:
            log.error("case.grounds_unavailable", case_id=str(case_id), error=str(exc))
            raise grounds_unavailable() from exc
        return found.task_ids if found is not None else ()

    def _outputs(
        self,
        *,
        cause_id: str,
        case_id: uuid.UUID,
        previous: ReportTriagedData | None,
        result: ReportTriagedData,
        trigger: ReclassificationTrigger,
        actor: Actor,
    ) -> list[Envelope]:
        """`case.reclassified` if the result moved, then `report.triaged`, with ids derived
        from the cause."""
        events = []
        now = self.clock.now()
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
                    occurred_at=now,
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
                occurred_at=now,
            )
        )
        return events

    async def _publish(self, events: Sequence[Envelope], lane: Lane = Lane.LIVE) -> None:
        for event in events:
            await self.publisher.publish(triaged_topic(event, lane), event)
            self.figures.published(event)
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

    def _count_report(
        self, received: ReportReceivedData, lane: Lane, events: Sequence[Envelope]
    ) -> None:
        for event in events:
            if event.event_type == EventType.REPORT_TRIAGED:
                waited = (self.clock.now() - received.received_at).total_seconds()
                self.figures.report_triaged(
                    channel=received.channel,
                    lane=lane,
                    result=event.payload(ReportTriagedData),
                    waited_s=max(0.0, waited),
                )


# ------------------------------------------------------------------------------- rebuild


async def rebuild_state(history: EventHistory, store: StateRestore) -> dict[str, int]:
    """Fold triage's case state back from the topics, after Redis lost it: each case's reports,
    history, current result and override in force, and which inputs' events are already on
    Kafka (so a redelivered input publishes nothing, or the very events it published).
    Publishes nothing and overwrites nothing written meanwhile; folding twice changes nothing,
    so processes that notice the loss together may each rebuild."""
    fold = StateFold()
    async for event in history.read([*RECEIVED_TOPICS, *TRIAGED_TOPICS]):
        fold.add(event)
    cases = fold.cases()
    await store.restore(cases)
    return {"cases": len(cases), "events": fold.events, "skipped": fold.skipped}


# ------------------------------------------------------------------------------- replay


async def replay_rules(
    history: ReceivedHistory,
    sealed: SealedOpener,
    *,
    baseline: Rules,
    candidate: Rules,
    from_at: datetime | None,
    to_at: datetime | None,
) -> ReplaySummary:
    """What a candidate rule set would change on past reports, compared with the baseline on
    the very same inputs; publishes nothing."""

    def ms(moment: datetime | None) -> int | None:
        return int(moment.astimezone(UTC).timestamp() * 1000) if moment else None

    recording = await history.read(until_ms=ms(to_at))
    reports = await sealed.case_reports([r.received for r in recording.reports])
    return compare(
        reports,
        [r.timestamp_ms for r in recording.reports],
        [r.case_id for r in recording.reports],
        baseline=baseline,
        candidate=candidate,
        from_ms=ms(from_at),
        skipped=recording.skipped,
    )
