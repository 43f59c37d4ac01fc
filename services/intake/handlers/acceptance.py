"""Accepting canonical reports: duplicates, case linking, sealing, publishing, remembering.

The order is what makes `202` mean "we have it", a `503` leave nothing to remember, and a
retry send what the failed attempt may have sent:

1. read only: earlier identical reports, the cases identifiers already belong to, and the
   events earlier attempts prepared for these reports but did not remember;
2. decide, for every report of the request in turn (`domain.planning.decide`): a duplicate
   (answered with the earlier report, nothing published: a second event would be counted
   twice), or a report joining an existing case, or the first report of a new case; a report
   with a held event keeps what the earlier attempt decided;
3. seal the personal part under the case's data key and make the event (a single report sent
   with an Idempotency-Key carries keyed digests of key and request, from which the key's
   answer is restored should Redis lose it: `handlers/rebuild.py`), then hold it (keep its
   bytes in the index) before it is first published;
4. publish to the request's lane (all of a batch's rows in flight together), and wait for the
   broker's acknowledgement of each;
5. only then (`remember`) write the duplicate and link index, the status records and the
   request's idempotent answer, letting go of the held events, in one round trip.

Why hold: a publish that timed out may still land (the producer keeps retrying it), and a
process killed after publishing never remembers. The report's ids are derived from its keyed
fingerprint, so the retry's event has the same id; were it made afresh (another time, another
nonce in the sealed part) the topic and the audit ledger would hold two versions of one event,
a conflict. The held event makes the retry the very same bytes, which consumers deduplicate.

A partner is answered with its own reference for the case (`matching.partner_case_ref`),
never with a sign that another partner reported the same person.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import tzinfo

from contracts import topics
from contracts.events import (
    Actor,
    ActorKind,
    Envelope,
    EventType,
    IdempotencyDigests,
    SourceFormat,
    make_event,
)
from contracts.reports import PartnerReport
from ocsea.runtime.logging import get_logger
from services.intake.domain.facts import Linking, clear_facts, received_event_id_for
from services.intake.domain.matching import Matcher
from services.intake.domain.planning import (
    CaseContext,
    Delivery,
    Held,
    Outcome,
    Plan,
    Prepared,
    assign_references,
    decide,
    linked,
    prepare,
    sealed_size,
)
from services.intake.domain.reference import Gazetteer, Vocabulary
from services.intake.ports import (
    AcceptedReport,
    Clock,
    DuplicateReceipt,
    EventPublisher,
    EventTooLarge,
    ReportIndex,
    Reservation,
    Sealer,
    StoredAnswer,
    StoreUnavailable,
)

log = get_logger("ocsea.intake")

Event = Envelope | Delivery  # a report's event, or why it has none
Source = tuple[SourceFormat, IdempotencyDigests | None]  # how the request came


@dataclass
class Acceptance:
    """The outcome of one request's reports, and what to remember of them."""

    outcomes: list[Outcome] = field(default_factory=list)
    accepted: list[AcceptedReport] = field(default_factory=list)
    duplicates: list[DuplicateReceipt] = field(default_factory=list)


@dataclass
class Acceptor:
    publisher: EventPublisher
    sealer: Sealer
    index: ReportIndex
    clock: Clock
    matcher: Matcher
    gazetteer: Gazetteer
    vocabulary: Vocabulary
    zone: tzinfo
    publish_timeout_s: float
    seal_concurrency: int
    max_event_bytes: int = 1_000_000
    batch_publish_timeout_s: float | None = None  # several reports at once; default: the same

    def prepare(self, partner_id: str, report: PartnerReport) -> Prepared:
        """The pure part of accepting a report (no I/O, safe in a worker thread)."""
        return prepare(self.matcher, partner_id, report)

    async def accept(
        self,
        partner_id: str,
        reports: Sequence[Prepared],
        source_format: SourceFormat,
        lane: topics.Lane,
        idempotency: IdempotencyDigests | None = None,
    ) -> Acceptance:
        """Accept the reports of one request (one, or a batch's rows in order) into a lane;
        a report's new event carries the request's `idempotency` digests."""
        received_at = self.clock.now()
        plans = [Plan.of(partner_id, r, received_at) for r in reports]
        found = await self.index.lookup(
            [p.fingerprint for p in plans],
            list(dict.fromkeys(k.digest for p in plans for k in p.keys)),
            [p.report_id for p in plans],
        )
        opened = decide(partner_id, plans, found.earlier, found.links, found.held)
        cases = await self.index.cases(c for p in plans for c in p.matched_cases)
        assign_references(self.matcher, partner_id, plans, opened, cases)
        to_publish = [p for p in plans if p.duplicate_of is None]
        results = await self._deliver(
            partner_id,
            to_publish,
            cases,
            (source_format, idempotency),
            topics.RECEIVED_BY_LANE[lane],
        )
        deliveries = {p.report_id: d for p, d in zip(to_publish, results, strict=True)}

        acceptance = Acceptance()
        for plan in plans:
            if plan.duplicate_of is not None:
                # A duplicate of a row of this very request stands only if that row is in.
                delivery = deliveries.get(plan.duplicate_of, Delivery.PUBLISHED)
                receipt = uuid.uuid4()
                acceptance.outcomes.append(
                    Outcome(receipt, plan.case_id, plan.reference, plan.duplicate_of, delivery)
                )
                if delivery is Delivery.PUBLISHED:
                    acceptance.duplicates.append(
                        DuplicateReceipt(
                            partner_id,
                            receipt,
                            plan.duplicate_of,
                            plan.case_id,
                            plan.reference,
                            plan.received_at,
                            source_format.value,
                        )
                    )
                continue
            delivery = deliveries[plan.report_id]
            acceptance.outcomes.append(
                Outcome(plan.report_id, plan.case_id, plan.reference, delivery=delivery)
            )
            if delivery is Delivery.PUBLISHED:
                acceptance.accepted.append(
                    AcceptedReport(
                        partner_id=partner_id,
                        report_id=plan.report_id,
                        case_id=plan.case_id,
                        case_ref=plan.reference,
                        opened_case=plan.new_case,
                        fingerprint=plan.fingerprint,
                        link_digests=[k.digest for k in plan.keys],
                        received_at=plan.received_at,
                        source_format=source_format.value,
                        lane=lane.value,
                        linked=linked(plan, cases),
                    )
                )
        _log(partner_id, acceptance.outcomes, source_format, lane)
        return acceptance

    async def remember(
        self, acceptance: Acceptance, answer: tuple[Reservation, StoredAnswer] | None = None
    ) -> None:
        """Write the index, status records and the request's idempotent answer (one round
        trip). The reports are in Kafka whatever happens here, so a failure is logged, and
        the answer stays 202: a resubmission is then not recognised as a duplicate, but sends
        the held events again, the same bytes, which consumers deduplicate."""
        if not (acceptance.accepted or acceptance.duplicates or answer):
            return
        try:
            await self.index.record(acceptance.accepted, acceptance.duplicates, answer)
        except StoreUnavailable as exc:
            cause = exc.__cause__ or exc
            log.error("report.index_write_failed", error=type(cause).__name__)

    async def _deliver(
        self,
        partner_id: str,
        plans: list[Plan],
        cases: dict[uuid.UUID, CaseContext],
        source: Source,
        topic: str,
    ) -> list[Delivery]:
        """Make every report's event (or take the one held for it), hold the new ones, then
        publish them all at once and wait for every acknowledgement: the producer batches
        what is in flight together, so a batch's rows cost a few produce requests, not one
        round trip each. Sealing and publishing share one deadline."""
        if not plans:
            return []
        timeout = self.publish_timeout_s
        if len(plans) > 1 and self.batch_publish_timeout_s is not None:
            timeout = self.batch_publish_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                events = await self._events(partner_id, plans, cases, source)
        except TimeoutError:
            log.error("report.seal_failed", reports=len(plans), error="TimeoutError")
            events = [Delivery.UNAVAILABLE] * len(plans)
        # Not under the deadline: an event that cannot be held is not published at all (the
        # store's outage is the request's answer), never published unheld.
        events = await self._hold(plans, events, cases)
        return await self._publish(plans, events, topic, deadline)

    async def _events(
        self,
        partner_id: str,
        plans: list[Plan],
        cases: dict[uuid.UUID, CaseContext],
        source: Source,
    ) -> list[Event]:
        if len(plans) == 1:  # the live path: no gate, no tasks
            return [await self._event(partner_id, plans[0], cases, source)]
        gate = asyncio.Semaphore(self.seal_concurrency)

        async def sealed(plan: Plan) -> Event:
            async with gate:
                return await self._event(partner_id, plan, cases, source)

        return list(await asyncio.gather(*(sealed(p) for p in plans)))

    async def _event(
        self,
        partner_id: str,
        plan: Plan,
        cases: dict[uuid.UUID, CaseContext],
        source: Source,
    ) -> Event:
        source_format, idempotency = source
        if plan.held is not None:
            return plan.held.event  # an earlier attempt's, as it was
        if sealed_size(len(plan.personal)) > self.max_event_bytes:
            return Delivery.TOO_LARGE  # known before spending the work of sealing it
        clear = clear_facts(
            plan.report,
            partner_id=partner_id,
            report_id=plan.report_id,
            received_at=plan.received_at,
            source_format=source_format,
            zone=self.zone,
            gazetteer=self.gazetteer,
            vocabulary=self.vocabulary,
            linking=Linking(tuple(r.report_id for r in linked(plan, cases)), plan.reasons),
        )
        try:
            sealed = await self.sealer.seal(plan.case_id, plan.personal)
        except Exception as exc:
            log.error("report.seal_failed", report_id=str(plan.report_id), error=type(exc).__name__)
            return Delivery.UNAVAILABLE
        return make_event(
            event_type=EventType.REPORT_RECEIVED,
            event_id=received_event_id_for(plan.report_id),
            case_id=plan.case_id,
            report_id=plan.report_id,
            producer="intake",
            actor=Actor(kind=ActorKind.PARTNER, id=partner_id),
            data=clear.model_copy(update={"personal": sealed, "idempotency": idempotency}),
            occurred_at=self.clock.now(),
        )

    async def _hold(
        self, plans: list[Plan], events: list[Event], cases: dict[uuid.UUID, CaseContext]
    ) -> list[Event]:
        """Keep the new events before they are published. A report whose event another
        attempt held in the meantime (two requests racing with the same report) takes that
        attempt's event and decisions instead of its own."""
        fresh = [
            (index, Held(event, plan.reference, plan.new_case, tuple(linked(plan, cases))))
            for index, (plan, event) in enumerate(zip(plans, events, strict=True))
            if isinstance(event, Envelope) and plan.held is None
        ]
        if not fresh:
            return events
        kept = await self.index.hold([held for _, held in fresh])
        events = list(events)
        for (index, ours), held in zip(fresh, kept, strict=True):
            if held != ours:
                plans[index].adopt(held)
                events[index] = held.event
        return events

    async def _publish(
        self, plans: list[Plan], events: list[Event], topic: str, deadline: float
    ) -> list[Delivery]:
        if len(plans) == 1:  # the live path: no tasks
            [plan], [event] = plans, events
            if isinstance(event, Delivery):
                return [event]
            try:
                async with asyncio.timeout_at(deadline):
                    await self.publisher.publish(topic, event)
            except Exception as exc:
                return [_failed(plan, exc)]
            return [Delivery.PUBLISHED]
        sends = {
            index: asyncio.ensure_future(self.publisher.publish(topic, event))
            for index, event in enumerate(events)
            if isinstance(event, Envelope)
        }
        if sends:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            _, pending = await asyncio.wait(sends.values(), timeout=timeout)
            for unacknowledged in pending:
                unacknowledged.cancel()
        results = []
        for index, plan in enumerate(plans):
            send, event = sends.get(index), events[index]
            if send is None:  # not sealed (logged where it failed), or too large
                results.append(event if isinstance(event, Delivery) else Delivery.UNAVAILABLE)
            elif not send.done() or send.cancelled():
                results.append(_failed(plan, TimeoutError()))
            elif (error := send.exception()) is not None:
                results.append(_failed(plan, error))
            else:
                results.append(Delivery.PUBLISHED)
        return results


def _failed(plan: Plan, error: BaseException) -> Delivery:
    # The error's type only: its text could quote the payload.
    log.error("report.publish_failed", report_id=str(plan.report_id), error=type(error).__name__)
    if isinstance(error, EventTooLarge):
        return Delivery.TOO_LARGE
    return Delivery.UNAVAILABLE


def _log(
    partner_id: str, outcomes: list[Outcome], source_format: SourceFormat, lane: topics.Lane
) -> None:
    if len(outcomes) == 1:
        [outcome] = outcomes
        log.info(
            "report.duplicate"
            if outcome.duplicate_of and outcome.delivery is Delivery.PUBLISHED
            else f"report.{outcome.delivery.value}",
            report_id=str(outcome.report_id),
            case_id=str(outcome.case_id),
            partner=partner_id,
            source_format=source_format.value,
            lane=lane.value,
        )
        return
    # A batch is one line: ids of every row would make a 1,000-row upload 1,000 lines.
    log.info(
        "reports.batch",
        partner=partner_id,
        source_format=source_format.value,
        lane=lane.value,
        accepted=sum(o.published for o in outcomes),
        duplicates=sum(o.duplicate_of is not None and not o.unavailable for o in outcomes),
        unavailable=sum(o.unavailable for o in outcomes),
        too_large=sum(o.too_large for o in outcomes),
        report_ids=[str(o.report_id) for o in outcomes if o.published],
    )
