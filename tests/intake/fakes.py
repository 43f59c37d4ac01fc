"""In-memory fakes of intake's ports (`services/intake/ports.py`), for the use cases' fast tests.

One `Journal` records, in order, what the fakes were asked to do (hold, publish, acknowledged,
record), so a test can check the order the use cases promise. The broker keeps what reached it,
so the state can be rebuilt from it (`FakeHistory`) after the store lost everything
(`MemoryStore.lose`, a FLUSHALL).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events import EncryptedBlob, Envelope, PartnerAssessment
from contracts.reports import PartnerKind
from ocsea.runtime.auth import Principal, Role
from ocsea.runtime.projection import ProjectionGuard
from services.intake.config import IntakeSettings
from services.intake.domain.canonical import Normalisers
from services.intake.domain.matching import Matcher
from services.intake.domain.planning import CaseContext, Earlier, Held, LinkedReport
from services.intake.domain.rebuild import Recorded, RestoredState, Windows
from services.intake.domain.status import ReportStatusRecord
from services.intake.domain.xml_document import XmlLimits
from services.intake.handlers.acceptance import Acceptor
from services.intake.handlers.reading import JsonReader
from services.intake.handlers.rebuild import StateRebuild
from services.intake.handlers.submissions import Intake
from services.intake.ports import (
    AcceptedReport,
    Admission,
    CaseNotKnown,
    DuplicateReceipt,
    Lookup,
    RateLimit,
    Reservation,
    StoredAnswer,
)

SECRET = b"s" * 32
START = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)

Journal = list[str]


class Killed(BaseException):
    """The process dies here (kill -9): nothing after it runs, no `except Exception` sees it."""


class MemoryStore:
    """Admissions, the report index and the status projection, in dictionaries. Held events
    are kept encoded, as the Redis adapter keeps them, so a retry publishes what was decoded."""

    def __init__(
        self,
        journal: Journal | None = None,
        links: dict[str, uuid.UUID] | None = None,
        openers: dict[uuid.UUID, str] | None = None,
    ) -> None:
        self.journal = journal if journal is not None else []
        self.links = dict(links or {})
        self.openers = dict(openers or {})
        self.case_reports: dict[uuid.UUID, list[LinkedReport]] = {}
        self.wait_s = 0  # > 0: the partner's rate limit is reached
        self.reservations: dict[tuple[str, str], Reservation] = {}
        self.answers: dict[tuple[str, str], StoredAnswer] = {}
        self.held: dict[uuid.UUID, str] = {}
        self.let_go: set[uuid.UUID] = set()  # held events to expire soon (remembered reports)
        self.duplicates: dict[str, Earlier] = {}
        self.statuses: dict[uuid.UUID, dict[str, str]] = {}
        self.views: dict[tuple[uuid.UUID, str], dict[str, str]] = {}
        self.fail_hold: BaseException | None = None
        self.fail_record: BaseException | None = None

    # Admissions ------------------------------------------------------------------------------

    async def admit(
        self, partner: str, limit: RateLimit, reservation: Reservation | None
    ) -> Admission:
        if self.wait_s:
            return Admission(self.wait_s)
        if reservation is None:
            return Admission(0)
        key = (partner, reservation.key_digest)
        if key in self.answers:
            return Admission(0, earlier=self.answers[key])
        if key in self.reservations:
            return Admission(0, in_progress_digest=self.reservations[key].request_digest)
        self.reservations[key] = reservation
        return Admission(0)

    async def release(self, reservation: Reservation) -> None:
        key = (reservation.partner, reservation.key_digest)
        if self.reservations.get(key) == reservation:
            del self.reservations[key]

    def expire_reservations(self) -> None:
        """What the reservations' expiry does after a process died holding them."""
        self.reservations.clear()

    # ReportIndex -----------------------------------------------------------------------------

    async def lookup(
        self,
        fingerprints: Sequence[str],
        link_digests: Sequence[str],
        report_ids: Sequence[uuid.UUID],
    ) -> Lookup:
        return Lookup(
            [self.duplicates.get(f) for f in fingerprints],
            {d: self.links[d] for d in link_digests if d in self.links},
            [Held.decode(self.held[r]) if r in self.held else None for r in report_ids],
        )

    async def cases(self, case_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, CaseContext]:
        return {
            c: CaseContext(list(self.case_reports.get(c, [])), self.openers.get(c))
            for c in case_ids
        }

    async def hold(self, prepared: Sequence[Held]) -> list[Held]:
        self.journal.append("hold")
        if self.fail_hold is not None:
            raise self.fail_hold
        kept = []
        for held in prepared:
            if held.report_id in self.held:
                kept.append(Held.decode(self.held[held.report_id]))
            else:
                self.held[held.report_id] = held.encode()
                kept.append(held)
        return kept

    async def record(
        self,
        accepted: Sequence[AcceptedReport],
        duplicates: Sequence[DuplicateReceipt],
        answer: tuple[Reservation, StoredAnswer] | None = None,
    ) -> None:
        self.journal.append("record")
        if self.fail_record is not None:
            raise self.fail_record
        for report in accepted:
            self.duplicates[report.fingerprint] = Earlier(
                report.report_id, report.case_id, report.case_ref
            )
            for digest in report.link_digests:
                self.links.setdefault(digest, report.case_id)
            self.case_reports.setdefault(report.case_id, []).append(
                LinkedReport(report.report_id, report.partner_id)
            )
            if report.opened_case:
                self.openers.setdefault(report.case_id, report.partner_id)
            self.statuses[report.report_id] = {
                "partner": report.partner_id,
                "case_id": str(report.case_id),
                "case_ref": str(report.case_ref),
                "received_at": report.received_at.isoformat(),
                "source_format": report.source_format,
                "lane": report.lane,
                "linked": json.dumps([[str(r.report_id), r.partner_id] for r in report.linked]),
            }
            if report.report_id in self.held:
                self.let_go.add(report.report_id)
        for duplicate in duplicates:
            self.statuses[duplicate.receipt_id] = {
                "partner": duplicate.partner_id,
                "case_id": str(duplicate.case_id),
                "case_ref": str(duplicate.case_ref),
                "received_at": duplicate.received_at.isoformat(),
                "source_format": duplicate.source_format,
                "duplicate_of": str(duplicate.duplicate_of),
            }
        if answer is not None:
            reservation, stored = answer
            key = (reservation.partner, reservation.key_digest)
            self.answers[key] = stored
            self.reservations.pop(key, None)

    # StatusProjection ------------------------------------------------------------------------

    async def report_view(self, report_id: uuid.UUID) -> ReportStatusRecord | None:
        fields = self.statuses.get(report_id)
        if not fields:
            return None
        view = self.views.get((uuid.UUID(fields["case_id"]), fields["partner"]), {})
        return ReportStatusRecord(dict(fields), dict(fields), dict(view))

    async def mark_triaged(
        self,
        report_id: uuid.UUID,
        case_id: uuid.UUID,
        at: datetime,
        now: datetime,
        *,
        own: PartnerAssessment | None,
        case_result: tuple[str, str],
    ) -> None:
        if report_id in self.statuses:
            self.statuses[report_id]["triaged_at"] = at.isoformat()

    async def mark_routed(self, report_id: uuid.UUID, case_id: uuid.UUID, at: datetime) -> None:
        if report_id in self.statuses:
            self.statuses[report_id]["routed_at"] = at.isoformat()

    # StateRestore: set if absent, as the Redis adapter writes ----------------------------------

    async def restore(self, state: RestoredState) -> None:
        self.journal.append("restore")
        for report in state.reports:
            fields = {
                "partner": report.partner_id,
                "case_id": str(report.case_id),
                "case_ref": str(report.case_ref),
                "received_at": report.received_at.isoformat(),
                "source_format": report.source_format,
                "lane": report.lane,
                "linked": json.dumps([[str(r.report_id), r.partner_id] for r in report.linked]),
                "triaged_at": report.triaged_at.isoformat() if report.triaged_at else None,
                "routed_at": report.routed_at.isoformat() if report.routed_at else None,
            }
            status = self.statuses.setdefault(report.report_id, {})
            for name, value in fields.items():
                if value is not None:
                    status.setdefault(name, value)
            if report.fingerprint is not None:
                earlier = Earlier(report.report_id, report.case_id, report.case_ref)
                self.duplicates.setdefault(report.fingerprint, earlier)
            if report.held is not None:
                self.held.setdefault(report.report_id, report.held.encode())
        for case in state.cases:
            reports = self.case_reports.setdefault(case.case_id, [])
            reports[:0] = [r for r in case.reports if r not in reports]
            if case.opener is not None:
                self.openers.setdefault(case.case_id, case.opener)
            for partner_id, view in case.views.items():
                self.views.setdefault(
                    (case.case_id, partner_id),
                    {"classification": view.classification, "priority": view.priority},
                )
        for link in state.links:
            self.links.setdefault(link.digest, link.case_id)
        for answer in state.answers:
            stored = StoredAnswer(answer.request_digest, answer.status, dict(answer.body))
            self.answers.setdefault((answer.partner_id, answer.key_digest), stored)

    def lose(self) -> None:
        """What a FLUSHALL (or a Redis restarted without its data) does."""
        for kept in (
            self.links, self.openers, self.case_reports, self.reservations, self.answers,
            self.held, self.duplicates, self.statuses, self.views,
        ):  # fmt: skip
            kept.clear()
        self.let_go.clear()


class FakePublisher:
    """The broker. `sent` is what reached it, as `publish_event` encodes it, acknowledged or
    not (a publish that times out may still land). `failures` fail the numbered publishes
    after they reached the broker; with `gate` set, acknowledgements wait for it. With
    `together`, each publish waits until that many are in flight at once (or a second has
    passed), so a test sees whether publishes overlap or follow one another."""

    def __init__(
        self,
        journal: Journal | None = None,
        *,
        failures: dict[int, BaseException] | None = None,
        together: int = 1,
    ) -> None:
        self.journal = journal if journal is not None else []
        self.failures = dict(failures or {})
        self.together = together
        self.sent: list[tuple[str, bytes]] = []
        self.in_flight = self.most_in_flight = 0
        self.all_in = asyncio.Event()
        self.reached = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def publish(self, topic: str, event: Envelope) -> None:
        number = len(self.sent)
        self.journal.append("publish")
        self.sent.append((topic, event.model_dump_json().encode()))
        self.reached.set()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self.together:
            self.all_in.set()
        try:
            if self.together > 1:
                await asyncio.wait_for(self.all_in.wait(), timeout=1)
            if self.gate is not None:
                await self.gate.wait()
        except TimeoutError:
            pass
        finally:
            self.in_flight -= 1
        if number in self.failures:
            raise self.failures[number]
        self.journal.append("acknowledged")

    def bodies(self) -> list[bytes]:
        return [body for _, body in self.sent]


class FakeHistory:
    """The topics as the broker holds them: what reached `FakePublisher`, and the progress
    events (triage results, assignments) a test adds."""

    def __init__(self, publisher: FakePublisher) -> None:
        self.publisher = publisher
        self.progress: list[tuple[str, Envelope]] = []

    def records(self) -> list[Recorded]:
        sent = [
            *self.publisher.sent,
            *((t, e.model_dump_json().encode()) for t, e in self.progress),
        ]
        return [
            Recorded(topic, Envelope.model_validate_json(raw), raw, timestamp_ms=number)
            for number, (topic, raw) in enumerate(sent)
        ]

    async def read(
        self, topics: Sequence[str], event_types: Iterable[str]
    ) -> AsyncIterator[list[Recorded]]:
        wanted = set(event_types)
        for recorded in self.records():
            if recorded.topic in topics and recorded.envelope.event_type in wanted:
                yield [recorded]


@dataclass
class MemoryEpoch:
    """The projection's epoch marker (`ProjectionGuard`), lost with the store."""

    value: str | None = "built at start"

    async def epoch(self) -> str | None:
        return self.value

    async def set_epoch(self, value: str) -> None:
        self.value = value


class FakeSealer:
    """Seals as AES-GCM does as far as the tests can tell: every sealing differs (a fresh
    nonce), so an event made twice is never the same bytes. With `gate` set, sealing waits.
    Opens what it sealed, unless the case was `erased` (or is `unknown`: another deployment's).
    """

    def __init__(self) -> None:
        self.erased: set[uuid.UUID] = set()
        self.unknown: set[uuid.UUID] = set()
        self.opened = 0
        self.sealed = 0
        self.gate: asyncio.Event | None = None
        self.parked = asyncio.Event()
        self._to_park = 1

    def park(self, count: int) -> None:
        """`parked` is set once `count` sealings wait at the gate."""
        self._to_park = count

    async def seal(self, case_id: uuid.UUID, plaintext: bytes) -> EncryptedBlob:
        self.sealed += 1
        nonce = base64.urlsafe_b64encode(f"nonce-{self.sealed:06d}".encode()).decode()
        if self.gate is not None:
            if self.sealed >= self._to_park:
                self.parked.set()
            await self.gate.wait()
        return EncryptedBlob(
            key_id=str(case_id),
            nonce=nonce,
            ciphertext=base64.urlsafe_b64encode(plaintext[::-1]).decode(),
        )

    async def open(self, case_id: uuid.UUID, blob: EncryptedBlob) -> bytes | None:
        self.opened += 1
        if case_id in self.unknown:
            raise CaseNotKnown(str(case_id))
        if case_id in self.erased or blob.key_id != str(case_id):
            return None
        return base64.urlsafe_b64decode(blob.ciphertext)[::-1]


@dataclass
class FixedClock:
    at: datetime = START

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class RecordingFigures:
    reports: list[tuple[str, str, str, str]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def report(self, source_format: str, channel: str, lane: str, outcome: str) -> None:
        self.reports.append((source_format, channel, lane, outcome))

    def refusal(self, code: str) -> None:
        self.refusals.append(code)


@dataclass
class World:
    """One intake's ports, shared by the `Intake` instances a test makes over them (a new
    instance stands for a restarted process: it holds nothing in memory)."""

    refs: Normalisers
    journal: Journal = field(default_factory=list)
    store: MemoryStore = field(init=False)
    publisher: FakePublisher = field(init=False)
    sealer: FakeSealer = field(default_factory=FakeSealer)
    clock: FixedClock = field(default_factory=FixedClock)
    figures: RecordingFigures = field(default_factory=RecordingFigures)
    publish_timeout_s: float = 5
    epoch: MemoryEpoch = field(default_factory=MemoryEpoch)
    history: FakeHistory = field(init=False)
    guard: ProjectionGuard = field(init=False)

    def __post_init__(self) -> None:
        self.store = MemoryStore(self.journal)
        self.publisher = FakePublisher(self.journal)
        self.history = FakeHistory(self.publisher)
        # Checked on every use (no once-a-second grace): a loss is noticed at once.
        self.guard = ProjectionGuard(
            None, "intake", self.rebuild(), recheck_s=0.0, marker=self.epoch
        )

    def rebuild(self) -> StateRebuild:
        config = IntakeSettings()
        windows = Windows(
            duplicate_s=config.duplicate_window_s,
            link_s=config.link_ttl_s,
            held_s=config.held_event_ttl_s,
            idempotency_s=config.idempotency_ttl_s,
            max_linked_reports=config.max_linked_reports,
        )
        return StateRebuild(
            history=self.history,
            opener=self.sealer,
            restore=self.store,
            matcher=Matcher(SECRET, self.refs.vocabulary),
            windows=windows,
            clock=self.clock,
            open_concurrency=4,
        )

    def lose_state(self) -> None:
        """Redis flushed: intake's records and the projection's epoch marker are gone."""
        self.store.lose()
        self.epoch.value = None

    def acceptor(self, **overrides: Any) -> Acceptor:
        settings: dict[str, Any] = {
            "publisher": self.publisher,
            "sealer": self.sealer,
            "index": self.store,
            "clock": self.clock,
            "matcher": Matcher(SECRET, self.refs.vocabulary),
            "gazetteer": self.refs.gazetteer,
            "vocabulary": self.refs.vocabulary,
            "zone": self.refs.default_zone,
            "publish_timeout_s": self.publish_timeout_s,
            "seal_concurrency": 4,
        }
        return Acceptor(**(settings | overrides))

    def intake(self) -> Intake:
        config = IntakeSettings()
        return Intake(
            config=config,
            acceptor=self.acceptor(),
            admissions=self.store,
            status=self.store,
            guard=self.guard,
            figures=self.figures,
            clock=self.clock,
            refs=self.refs,
            json=JsonReader(config.max_json_depth, config.max_json_integer_digits),
            xml_limits=XmlLimits(config.max_xml_depth, config.max_xml_elements),
        )


def partner(name: str = "hotline-a", kind: PartnerKind = PartnerKind.HOTLINE) -> Principal:
    return Principal(name=name, role=Role.PARTNER, partner_kind=kind)
