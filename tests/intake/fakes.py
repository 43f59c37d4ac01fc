"""In-memory fakes of intake's ports (`services/intake/ports.py`), for the use cases' fast tests.

One `Journal` records, in order, what the fakes were asked to do (hold, publish, acknowledged,
record), so a test can check the order the use cases promise.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events import EncryptedBlob, Envelope, PartnerAssessment
from contracts.reports import PartnerKind
from ocsea.runtime.auth import Principal, Role
from services.intake.config import IntakeSettings
from services.intake.domain.canonical import Normalisers
from services.intake.domain.matching import Matcher
from services.intake.domain.planning import CaseContext, Earlier, Held, LinkedReport
from services.intake.domain.status import ReportStatusRecord
from services.intake.domain.xml_document import XmlLimits
from services.intake.handlers.acceptance import Acceptor
from services.intake.handlers.reading import JsonReader
from services.intake.handlers.submissions import Intake
from services.intake.ports import (
    AcceptedReport,
    Admission,
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
        key = (partner, reservation.key)
        if key in self.answers:
            return Admission(0, earlier=self.answers[key])
        if key in self.reservations:
            return Admission(0, in_progress_digest=self.reservations[key].request_digest)
        self.reservations[key] = reservation
        return Admission(0)

    async def release(self, reservation: Reservation) -> None:
        key = (reservation.partner, reservation.key)
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
            key = (reservation.partner, reservation.key)
            self.answers[key] = stored
            self.reservations.pop(key, None)

    # StatusProjection ------------------------------------------------------------------------

    async def report_view(self, report_id: uuid.UUID) -> ReportStatusRecord | None:
        fields = self.statuses.get(report_id)
        return ReportStatusRecord(dict(fields), dict(fields), {}) if fields else None

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


class FakeSealer:
    """Seals as AES-GCM does as far as the tests can tell: every sealing differs (a fresh
    nonce), so an event made twice is never the same bytes. With `gate` set, sealing waits."""

    def __init__(self) -> None:
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

    def __post_init__(self) -> None:
        self.store = MemoryStore(self.journal)
        self.publisher = FakePublisher(self.journal)

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
            figures=self.figures,
            clock=self.clock,
            refs=self.refs,
            json=JsonReader(config.max_json_depth, config.max_json_integer_digits),
            xml_limits=XmlLimits(config.max_xml_depth, config.max_xml_elements),
        )


def partner(name: str = "hotline-a", kind: PartnerKind = PartnerKind.HOTLINE) -> Principal:
    return Principal(name=name, role=Role.PARTNER, partner_kind=kind)
