"""Accepting canonical reports: duplicates, case linking, sealing, publishing, remembering.

The order is what makes `202` mean "we have it" and a `503` leave nothing behind:

1. read only: earlier identical reports and the cases identifiers already belong to;
2. decide, for every report of the request in turn: a duplicate (answered with the earlier
   report, nothing published: it adds nothing, and a second event would be counted twice),
   or a report joining an existing case, or the first report of a new case;
3. seal the personal part under the case's data key, publish, and wait for the broker;
4. only then write the duplicate and link index, the status record and the idempotent answer.

Ids are derived from the report's keyed fingerprint, so a retry after an unanswered publish (a
timeout while the broker did take the event) produces the very same event, which consumers
already deduplicate on `event_id`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from faststream.kafka import KafkaBroker
from redis.exceptions import RedisError

from contracts import topics
from contracts.events import Actor, ActorKind, EventType, SourceFormat, make_event, utc_now
from contracts.reports import PartnerReport
from ocsea.runtime.crypto import CaseKeys
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.logging import get_logger
from services.intake.domain import (
    Linking,
    new_case_id_for,
    normalise,
    received_event_id_for,
    report_id_for,
)
from services.intake.matching import Matcher, MatchKey
from services.intake.reference import Gazetteer, Vocabulary
from services.intake.store import (
    AcceptedReport,
    DuplicateReceipt,
    Earlier,
    IntakeStore,
    LinkedReport,
)

log = get_logger("ocsea.intake")


@dataclass(frozen=True)
class Outcome:
    """One report's answer. A duplicate has its own receipt id and `duplicate_of`, and was not
    published; `unavailable` means the broker did not acknowledge the report (nothing was
    remembered: the partner retries)."""

    report_id: uuid.UUID
    case_id: uuid.UUID
    duplicate_of: uuid.UUID | None = None
    published: bool = False
    unavailable: bool = False


@dataclass
class _Plan:
    report: PartnerReport
    fingerprint: str
    keys: list[MatchKey]
    report_id: uuid.UUID
    case_id: uuid.UUID
    duplicate_of: uuid.UUID | None = None
    new_case: bool = True
    reasons: tuple[str, ...] = ()
    matched_cases: list[uuid.UUID] = field(default_factory=list)
    in_batch_links: list[LinkedReport] = field(default_factory=list)
    received_at: datetime = field(default_factory=utc_now)


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
    concurrency: int

    async def accept(
        self, partner_id: str, reports: Sequence[PartnerReport], source_format: SourceFormat
    ) -> list[Outcome]:
        """Accept the reports of one request (one, or a batch's rows in order)."""
        plans = [self._fingerprinted(partner_id, r) for r in reports]
        earlier, links = await self.store.lookup(
            [p.fingerprint for p in plans],
            list(dict.fromkeys(k.digest for p in plans for k in p.keys)),
        )
        self._decide(partner_id, plans, earlier, links)
        known = await self.store.case_reports(c for p in plans for c in p.matched_cases)
        to_publish = [p for p in plans if p.duplicate_of is None]
        results = await self._publish_all(partner_id, to_publish, known, source_format)
        published = {p.report_id for p, ok in zip(to_publish, results, strict=True) if ok}

        outcomes: list[Outcome] = []
        accepted: list[AcceptedReport] = []
        duplicates: list[DuplicateReceipt] = []
        in_this_request = {q.report_id for q in to_publish}
        for plan in plans:
            if plan.duplicate_of is not None:
                # A duplicate of a row of this very request stands only if that row is in.
                ok = plan.duplicate_of not in in_this_request or plan.duplicate_of in published
                receipt = uuid.uuid4()
                outcomes.append(
                    Outcome(receipt, plan.case_id, plan.duplicate_of, unavailable=not ok)
                )
                if ok:
                    duplicates.append(
                        DuplicateReceipt(
                            partner_id,
                            receipt,
                            plan.duplicate_of,
                            plan.case_id,
                            plan.received_at,
                            source_format.value,
                        )
                    )
                continue
            ok = plan.report_id in published
            outcomes.append(Outcome(plan.report_id, plan.case_id, published=ok, unavailable=not ok))
            if ok:
                accepted.append(
                    AcceptedReport(
                        partner_id=partner_id,
                        report_id=plan.report_id,
                        case_id=plan.case_id,
                        fingerprint=plan.fingerprint,
                        link_digests=[k.digest for k in plan.keys],
                        received_at=plan.received_at,
                        source_format=source_format.value,
                        linked=self._linked(plan, known),
                    )
                )
        if accepted or duplicates:
            try:
                await self.store.record(accepted, duplicates)
            except RedisError as exc:
                # The reports are in Kafka: the answer stays 202. A resubmission will not be
                # recognised as a duplicate, but carries the same ids, which consumers dedupe.
                log.error("report.index_write_failed", error=type(exc).__name__)
        for outcome in outcomes:
            log.info(
                "report.duplicate"
                if outcome.duplicate_of
                else ("report.unavailable" if outcome.unavailable else "report.accepted"),
                report_id=str(outcome.report_id),
                case_id=str(outcome.case_id),
                partner=partner_id,
                source_format=source_format.value,
            )
        return outcomes

    def _fingerprinted(self, partner_id: str, report: PartnerReport) -> _Plan:
        fingerprint = self.matcher.fingerprint(partner_id, report)
        report_id = report_id_for(partner_id, fingerprint)
        return _Plan(
            report=report,
            fingerprint=fingerprint,
            keys=self.matcher.keys(partner_id, report),
            report_id=report_id,
            case_id=new_case_id_for(report_id),
        )

    def _decide(
        self,
        partner_id: str,
        plans: list[_Plan],
        earlier: list[Earlier | None],
        links: dict[str, uuid.UUID],
    ) -> None:
        """Duplicates and cases, in request order: a later row can be a duplicate of, or
        join the case of, an earlier row of the same batch."""
        seen: dict[str, _Plan] = {}
        batch_links: dict[str, uuid.UUID] = {}
        batch_reports: dict[uuid.UUID, list[LinkedReport]] = {}
        for plan, before in zip(plans, earlier, strict=True):
            if before is not None:
                plan.report_id, plan.case_id = before.report_id, before.case_id
                plan.duplicate_of = plan.report_id
                continue
            if plan.fingerprint in seen:
                first = seen[plan.fingerprint]
                plan.report_id, plan.case_id = first.report_id, first.case_id
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
            for key in plan.keys:
                batch_links.setdefault(key.digest, plan.case_id)
            batch_reports.setdefault(plan.case_id, []).append(
                LinkedReport(plan.report_id, partner_id)
            )

    def _linked(
        self, plan: _Plan, known: dict[uuid.UUID, list[LinkedReport]]
    ) -> list[LinkedReport]:
        found = [r for c in plan.matched_cases for r in known.get(c, [])]
        found += plan.in_batch_links
        unique = {r.report_id: r for r in found if r.report_id != plan.report_id}
        return list(unique.values())

    async def _publish_all(
        self,
        partner_id: str,
        plans: list[_Plan],
        known: dict[uuid.UUID, list[LinkedReport]],
        source_format: SourceFormat,
    ) -> list[bool]:
        if len(plans) == 1:  # the live path: one report, no gate needed
            return [await self._publish(partner_id, plans[0], known, source_format)]
        gate = asyncio.Semaphore(self.concurrency)

        async def one(plan: _Plan) -> bool:
            async with gate:
                return await self._publish(partner_id, plan, known, source_format)

        return list(await asyncio.gather(*(one(p) for p in plans)))

    async def _publish(
        self,
        partner_id: str,
        plan: _Plan,
        known: dict[uuid.UUID, list[LinkedReport]],
        source_format: SourceFormat,
    ) -> bool:
        linked = self._linked(plan, known)
        normalised = normalise(
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
            sealed = await self.keys.seal(plan.case_id, json.dumps(normalised.personal).encode())
            event = make_event(
                event_type=EventType.REPORT_RECEIVED,
                event_id=received_event_id_for(plan.report_id),
                case_id=plan.case_id,
                report_id=plan.report_id,
                producer="intake",
                actor=Actor(kind=ActorKind.PARTNER, id=partner_id),
                data=normalised.clear.model_copy(update={"personal": sealed}),
            )
            async with asyncio.timeout(self.publish_timeout_s):
                await publish_event(self.broker, topics.REPORTS_RECEIVED, event)
        except Exception as exc:
            # The error's type only: its text could quote the payload.
            log.error(
                "report.publish_failed", report_id=str(plan.report_id), error=type(exc).__name__
            )
            return False
        return True
