"""Accepting canonical reports: duplicates, case linking, sealing, publishing, remembering.

The order is what makes `202` mean "we have it" and a `503` leave nothing behind:

1. read only: earlier identical reports and the cases identifiers already belong to;
2. decide, for every report of the request in turn: a duplicate (answered with the earlier
   report, nothing published: it adds nothing, and a second event would be counted twice),
   or a report joining an existing case, or the first report of a new case;
3. seal the personal part under the case's data key, publish to the request's lane (all of a
   batch's rows in flight together), and wait for the broker's acknowledgement of each;
4. only then (`Acceptance.remember`) write the duplicate and link index, the status records
   and the request's idempotent answer, in one round trip.

Ids are derived from the report's keyed fingerprint, so a retry after an unanswered publish (a
timeout while the broker did take the event) produces the very same event, which consumers
already deduplicate on `event_id`.

A partner is answered with its own reference for the case (`matching.partner_case_ref`),
never with a sign that another partner reported the same person.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import Enum

from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker
from redis.exceptions import RedisError

from contracts import topics
from contracts.events import (
    Actor,
    ActorKind,
    Envelope,
    EventType,
    SourceFormat,
    make_event,
    utc_now,
)
from contracts.reports import PartnerReport
from ocsea.runtime.crypto import CaseKeys
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.logging import get_logger
from services.intake.domain import (
    Linking,
    clear_facts,
    new_case_id_for,
    personal_fields,
    received_event_id_for,
    report_id_for,
)
from services.intake.matching import Matcher, MatchKey, partner_case_ref
from services.intake.reference import Gazetteer, Vocabulary
from services.intake.store import (
    AcceptedReport,
    CaseContext,
    DuplicateReceipt,
    Earlier,
    IntakeStore,
    LinkedReport,
    Reservation,
    StoredAnswer,
)

log = get_logger("ocsea.intake")

# What sealing adds to the personal text: AES-GCM's tag, base64 (4/3), and the event's clear
# part and envelope (a few KB at most).
_SEALING_OVERHEAD = 8 * 1024


def _sealed_size(personal_bytes: int) -> int:
    return (personal_bytes + 16) * 4 // 3 + _SEALING_OVERHEAD


class Delivery(Enum):
    PUBLISHED = "published"
    UNAVAILABLE = "unavailable"  # the broker did not acknowledge it: retrying may succeed
    TOO_LARGE = "too_large"  # sealed, it is larger than the broker takes: retrying cannot


@dataclass(frozen=True)
class Outcome:
    """One report's answer. A duplicate has its own receipt id and `duplicate_of`, and was not
    published; `unavailable` means the broker did not acknowledge the report (nothing was
    remembered: the partner retries); `too_large` that it can never be carried as it is.
    `case_ref` is the partner's reference for the case."""

    report_id: uuid.UUID
    case_id: uuid.UUID
    case_ref: uuid.UUID
    duplicate_of: uuid.UUID | None = None
    delivery: Delivery = Delivery.PUBLISHED

    @property
    def published(self) -> bool:
        return self.delivery is Delivery.PUBLISHED and self.duplicate_of is None

    @property
    def unavailable(self) -> bool:
        return self.delivery is Delivery.UNAVAILABLE

    @property
    def too_large(self) -> bool:
        return self.delivery is Delivery.TOO_LARGE


@dataclass(frozen=True)
class Prepared:
    """A report with what accepting it needs that depends on it alone: its keyed fingerprint
    and identifier keys, and the text to seal. Computed where the report is read (beside the
    event loop, for a large one), since for a large report it is most of the work."""

    report: PartnerReport
    fingerprint: str
    keys: list[MatchKey]
    personal: bytes


@dataclass
class _Plan:
    report: PartnerReport
    fingerprint: str
    keys: list[MatchKey]
    personal: bytes
    report_id: uuid.UUID
    case_id: uuid.UUID
    case_ref: uuid.UUID | None = None
    duplicate_of: uuid.UUID | None = None
    new_case: bool = True
    reasons: tuple[str, ...] = ()
    matched_cases: list[uuid.UUID] = field(default_factory=list)
    in_batch_links: list[LinkedReport] = field(default_factory=list)
    received_at: datetime = field(default_factory=utc_now)

    @property
    def reference(self) -> uuid.UUID:
        assert self.case_ref is not None, "references are set before publishing"
        return self.case_ref


@dataclass
class Acceptance:
    """The outcome of one request's reports, and what to remember of them."""

    outcomes: list[Outcome]
    accepted: list[AcceptedReport]
    duplicates: list[DuplicateReceipt]
    store: IntakeStore

    async def remember(self, answer: tuple[Reservation, StoredAnswer] | None = None) -> None:
        """Write the index, status records and the request's idempotent answer (one round
        trip). The reports are in Kafka whatever happens here, so a failure is logged, and
        the answer stays 202: a resubmission will not be recognised as a duplicate, but
        carries the same ids, which consumers deduplicate."""
        if not (self.accepted or self.duplicates or answer):
            return
        try:
            await self.store.record(self.accepted, self.duplicates, answer)
        except RedisError as exc:
            log.error("report.index_write_failed", error=type(exc).__name__)


@dataclass
class Acceptor:
    broker: KafkaBroker
    keys: CaseKeys
    store: IntakeStore
    matcher: Matcher
    gazetteer: Gazetteer
    vocabulary: Vocabulary
    zone: tzinfo
    publish_timeout_s: float
    seal_concurrency: int
    max_event_bytes: int = 1_000_000

    def prepare(self, partner_id: str, report: PartnerReport) -> Prepared:
        """The pure part of accepting a report (no I/O, safe in a worker thread)."""
        return Prepared(
            report,
            self.matcher.fingerprint(partner_id, report),
            self.matcher.keys(partner_id, report),
            json.dumps(personal_fields(report)).encode(),
        )

    async def accept(
        self,
        partner_id: str,
        reports: Sequence[Prepared],
        source_format: SourceFormat,
        lane: topics.Lane,
    ) -> Acceptance:
        """Accept the reports of one request (one, or a batch's rows in order) into a lane."""
        plans = [self._planned(partner_id, r) for r in reports]
        earlier, links = await self.store.lookup(
            [p.fingerprint for p in plans],
            list(dict.fromkeys(k.digest for p in plans for k in p.keys)),
        )
        openers = self._decide(partner_id, plans, earlier, links)
        cases = await self.store.cases(c for p in plans for c in p.matched_cases)
        for plan in plans:
            if plan.case_ref is None:
                opener = openers.get(plan.case_id) or cases[plan.case_id].opener
                plan.case_ref = partner_case_ref(self.matcher, partner_id, plan.case_id, opener)
        to_publish = [p for p in plans if p.duplicate_of is None]
        results = await self._publish_all(
            partner_id, to_publish, cases, source_format, topics.RECEIVED_BY_LANE[lane]
        )
        deliveries = {p.report_id: d for p, d in zip(to_publish, results, strict=True)}

        acceptance = Acceptance([], [], [], self.store)
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
                        linked=self._linked(plan, cases),
                    )
                )
        self._log(partner_id, acceptance.outcomes, source_format, lane)
        return acceptance

    @staticmethod
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

    @staticmethod
    def _planned(partner_id: str, prepared: Prepared) -> _Plan:
        return _Plan(
            report=prepared.report,
            fingerprint=prepared.fingerprint,
            keys=prepared.keys,
            personal=prepared.personal,
            report_id=report_id_for(partner_id, prepared.fingerprint),
            case_id=new_case_id_for(partner_id, prepared.fingerprint),
        )

    def _decide(
        self,
        partner_id: str,
        plans: list[_Plan],
        earlier: list[Earlier | None],
        links: dict[str, uuid.UUID],
    ) -> dict[uuid.UUID, str]:
        """Duplicates and cases, in request order: a later row can be a duplicate of, or
        join the case of, an earlier row of the same batch. Returns the cases opened by this
        request (by this partner)."""
        seen: dict[str, _Plan] = {}
        batch_links: dict[str, uuid.UUID] = {}
        batch_reports: dict[uuid.UUID, list[LinkedReport]] = {}
        opened: dict[uuid.UUID, str] = {}
        for plan, before in zip(plans, earlier, strict=True):
            if before is not None:
                plan.report_id, plan.case_id = before.report_id, before.case_id
                plan.case_ref = before.case_ref
                plan.duplicate_of = plan.report_id
                continue
            if plan.fingerprint in seen:
                first = seen[plan.fingerprint]
                plan.report_id, plan.case_id = first.report_id, first.case_id
                plan.case_ref = first.case_ref
                plan.duplicate_of = first.report_id
                continue
            seen[plan.fingerprint] = plan
            matches = [
                (key, case)
                for key in plan.keys
                if (case := batch_links.get(key.digest) or links.get(key.digest)) is not None
            ]
            if matches:
                plan.case_id = matches[0][1]  # keys are ordered strongest evidence first
                plan.new_case = False
                plan.reasons = tuple(
                    dict.fromkeys(k.reason.value for k, c in matches if c == plan.case_id)
                )
                plan.matched_cases = list(dict.fromkeys(c for _, c in matches))
                plan.in_batch_links = [
                    r for c in plan.matched_cases for r in batch_reports.get(c, [])
                ]
            else:
                plan.case_ref = plan.case_id  # the opener's reference is the case id
                opened[plan.case_id] = partner_id
            for key in plan.keys:
                batch_links.setdefault(key.digest, plan.case_id)
            batch_reports.setdefault(plan.case_id, []).append(
                LinkedReport(plan.report_id, partner_id)
            )
        return opened

    def _linked(self, plan: _Plan, cases: dict[uuid.UUID, CaseContext]) -> list[LinkedReport]:
        found = [r for c in plan.matched_cases for r in cases[c].reports]
        found += plan.in_batch_links
        unique = {r.report_id: r for r in found if r.report_id != plan.report_id}
        return list(unique.values())

    async def _publish_all(
        self,
        partner_id: str,
        plans: list[_Plan],
        cases: dict[uuid.UUID, CaseContext],
        source_format: SourceFormat,
        topic: str,
    ) -> list[Delivery]:
        """Seal every report, then publish them all at once and wait for every
        acknowledgement: the producer batches what is in flight together, so a batch's rows
        cost a few produce requests, not one round trip each."""
        if len(plans) == 1:  # the live path: no gate, no tasks
            return [await self._publish_one(partner_id, plans[0], cases, source_format, topic)]
        gate = asyncio.Semaphore(self.seal_concurrency)

        async def sealed(plan: _Plan) -> Envelope | Delivery:
            async with gate:
                return await self._event(partner_id, plan, cases, source_format)

        events: list[Envelope | Delivery]
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                events = list(await asyncio.gather(*(sealed(p) for p in plans)))
        except TimeoutError:
            log.error("report.seal_failed", reports=len(plans), error="TimeoutError")
            events = [Delivery.UNAVAILABLE] * len(plans)
        sends = {
            index: asyncio.ensure_future(publish_event(self.broker, topic, event))
            for index, event in enumerate(events)
            if isinstance(event, Envelope)
        }
        if sends:
            _, pending = await asyncio.wait(sends.values(), timeout=self.publish_timeout_s)
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

    async def _publish_one(
        self,
        partner_id: str,
        plan: _Plan,
        cases: dict[uuid.UUID, CaseContext],
        source_format: SourceFormat,
        topic: str,
    ) -> Delivery:
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                event = await self._event(partner_id, plan, cases, source_format)
                if isinstance(event, Delivery):
                    return event
                await publish_event(self.broker, topic, event)
        except Exception as exc:
            return _failed(plan, exc)
        return Delivery.PUBLISHED

    async def _event(
        self,
        partner_id: str,
        plan: _Plan,
        cases: dict[uuid.UUID, CaseContext],
        source_format: SourceFormat,
    ) -> Envelope | Delivery:
        if _sealed_size(len(plan.personal)) > self.max_event_bytes:
            return Delivery.TOO_LARGE  # known before spending the work of sealing it
        linked = self._linked(plan, cases)
        clear = clear_facts(
            plan.report,
            partner_id=partner_id,
            report_id=plan.report_id,
            received_at=plan.received_at,
            source_format=source_format,
            zone=self.zone,
            gazetteer=self.gazetteer,
            vocabulary=self.vocabulary,
            linking=Linking(tuple(r.report_id for r in linked), plan.reasons),
        )
        try:
            sealed = await self.keys.seal(plan.case_id, plan.personal)
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
            data=clear.model_copy(update={"personal": sealed}),
        )


def _failed(plan: _Plan, error: BaseException) -> Delivery:
    # The error's type only: its text could quote the payload.
    log.error("report.publish_failed", report_id=str(plan.report_id), error=type(error).__name__)
    if isinstance(error, MessageSizeTooLargeError):
        return Delivery.TOO_LARGE
    return Delivery.UNAVAILABLE
