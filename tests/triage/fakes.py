"""In-memory fakes of triage's ports, for its use cases without a broker, Redis or routing.

Every fake writes what it does to one shared journal, so a test can check the order the code
promises (the lock, the state's records and the publishes). What is published, and what the
tests deliver, goes to one in-memory Kafka (`KafkaLog`), as bytes, which a rebuild reads."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from contracts.events import (
    EncryptedBlob,
    Envelope,
    ReportReceivedData,
    ReportTriagedData,
    TriageOverrideInfo,
)
from contracts.reports import Channel
from contracts.topics import RECEIVED_BY_LANE, Lane
from ocsea.runtime.access import CaseGrounds, GroundsUnavailableError
from ocsea.runtime.auth import Principal
from ocsea.runtime.keystore import Erasure
from ocsea.runtime.projection import ProjectionGuard
from services.triage.domain.rebuild import RebuiltCase
from services.triage.domain.reports import CaseReport
from services.triage.domain.rules import shipped_rules
from services.triage.handlers import TriageHandlers, rebuild_state
from services.triage.ports import CaseSnapshot

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@dataclass
class StoredCase:
    """One case's state as the Redis adapter keeps it: JSON, so nothing is shared by reference."""

    reports: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    published: set[str] = field(default_factory=set)
    current: str | None = None
    override: str | None = None
    history: list[str] = field(default_factory=list)


def _events(stored: str) -> list[Envelope]:
    return [Envelope.model_validate_json(e) for e in stored.split("\n")]


def _stored(events: Iterable[Envelope]) -> str:
    return "\n".join(e.model_dump_json() for e in events)


class InMemoryCaseState:
    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.cases: dict[uuid.UUID, StoredCase] = defaultdict(StoredCase)
        self._locks: dict[uuid.UUID, asyncio.Lock] = defaultdict(asyncio.Lock)

    @asynccontextmanager
    async def lock(self, case_id: uuid.UUID) -> AsyncIterator[None]:
        async with self._locks[case_id]:
            self.journal.append("lock")
            try:
                yield
            finally:
                self.journal.append("unlock")

    async def take_report(self, case_id: uuid.UUID, received: ReportReceivedData) -> CaseSnapshot:
        self.journal.append("take_report")
        case, cause = self.cases[case_id], f"report:{received.report_id}"
        case.reports.setdefault(str(received.report_id), received.model_dump_json())
        return CaseSnapshot(
            published=cause in case.published,
            outcome=_events(case.outcomes[cause]) if cause in case.outcomes else None,
            reports=await self.reports(case_id),
            override=(
                TriageOverrideInfo.model_validate_json(case.override) if case.override else None
            ),
            current=await self.current(case_id),
        )

    async def reports(self, case_id: uuid.UUID) -> list[ReportReceivedData]:
        stored = self.cases[case_id].reports.values()
        return [ReportReceivedData.model_validate_json(r) for r in stored]

    async def outcome(self, case_id: uuid.UUID, cause: str) -> list[Envelope] | None:
        stored = self.cases[case_id].outcomes.get(cause)
        return _events(stored) if stored else None

    async def mark_published(self, case_id: uuid.UUID, cause: str) -> None:
        self.journal.append(f"mark_published {cause.split(':')[0]}")
        self.cases[case_id].published.add(cause)

    async def record(
        self,
        case_id: uuid.UUID,
        cause: str,
        events: Sequence[Envelope],
        result: ReportTriagedData,
        override: TriageOverrideInfo | None = None,
        *,
        published: bool = False,
    ) -> None:
        self.journal.append(f"record {cause.split(':')[0]}" + (" published" if published else ""))
        case = self.cases[case_id]
        if published:
            case.published.add(cause)
        case.outcomes[cause] = _stored(events)
        case.current = result.model_dump_json()
        case.history += [e.model_dump_json() for e in events]
        if override is not None:
            case.override = override.model_dump_json()

    async def current(self, case_id: uuid.UUID) -> ReportTriagedData | None:
        stored = self.cases[case_id].current
        return ReportTriagedData.model_validate_json(stored) if stored else None

    async def history(self, case_id: uuid.UUID) -> list[Envelope]:
        return [Envelope.model_validate_json(e) for e in self.cases[case_id].history]

    async def restore(self, cases: Sequence[RebuiltCase]) -> None:
        """As the Redis adapter restores: added or set where absent only, never overwriting."""
        for rebuilt in cases:
            case = self.cases[rebuilt.case_id]
            for report in rebuilt.reports:
                case.reports.setdefault(str(report.report_id), report.model_dump_json())
            for cause, events in rebuilt.outcomes.items():
                case.outcomes.setdefault(cause, _stored(events))
            case.published |= rebuilt.published
            if case.current is None and rebuilt.current is not None:
                case.current = rebuilt.current.model_dump_json()
            if case.override is None and rebuilt.override is not None:
                case.override = rebuilt.override.model_dump_json()
            if not case.history:
                case.history = [e.model_dump_json() for e in rebuilt.history]

    def snapshot(self) -> dict[uuid.UUID, StoredCase]:
        """Every case as stored now (copies), to compare with later."""
        return {
            case_id: StoredCase(
                reports=dict(c.reports),
                outcomes=dict(c.outcomes),
                published=set(c.published),
                current=c.current,
                override=c.override,
                history=list(c.history),
            )
            for case_id, c in self.cases.items()
            if c != StoredCase()
        }


class KafkaLog:
    """The topics as bytes, in the order written (the `EventHistory` port reads them)."""

    def __init__(self, records: Iterable[tuple[str, bytes]] = ()) -> None:
        self.records: list[tuple[str, bytes]] = list(records)

    def append(self, topic: str, event: Envelope) -> None:
        self.records.append((topic, event.model_dump_json().encode()))

    def copy(self) -> KafkaLog:
        return KafkaLog(self.records)

    async def read(self, topics: Sequence[str]) -> AsyncIterator[Envelope]:
        for topic, value in list(self.records):
            if topic in topics:
                yield Envelope.model_validate_json(value)

    def values_by_id(self) -> dict[str, set[bytes]]:
        """Each event id with every distinct byte string published under it."""
        found: dict[str, set[bytes]] = defaultdict(set)
        for _topic, value in self.records:
            found[str(Envelope.model_validate_json(value).event_id)].add(value)
        return dict(found)


class MemoryEpoch:
    """The state's epoch marker (`ocsea.runtime.projection.EpochMarker`), present at first: as
    for a deployment running all along."""

    def __init__(self) -> None:
        self.value: str | None = "running"

    async def epoch(self) -> str | None:
        return self.value

    async def set_epoch(self, value: str) -> None:
        self.value = value


class ListPublisher:
    """Collects what is published (and writes it to the Kafka log); `failures` publishes fail
    first (an unreachable broker), and so do those of the `refused` event types."""

    def __init__(self, journal: list[str], kafka: KafkaLog) -> None:
        self.journal = journal
        self.kafka = kafka
        self.published: list[tuple[str, Envelope]] = []
        self.failures = 0
        self.refused: set[str] = set()

    async def publish(self, topic: str, event: Envelope) -> None:
        if self.failures or event.event_type in self.refused:
            self.failures = max(0, self.failures - 1)
            self.journal.append(f"publish failed {event.event_type}")
            raise ConnectionError("broker unreachable")
        self.journal.append(f"publish {event.event_type}")
        self.published.append((topic, event.model_copy(deep=True)))
        self.kafka.append(topic, event)

    @property
    def events(self) -> list[Envelope]:
        return [event for _topic, event in self.published]

    @property
    def types(self) -> list[str]:
        return [event.event_type for event in self.events]


class UnsealedReports:
    """Opens nothing: the reports as they travelled in the clear."""

    async def case_reports(self, received: Sequence[ReportReceivedData]) -> list[CaseReport]:
        return [CaseReport(r) for r in received]


class FakeKeyring:
    def __init__(self) -> None:
        self.sealed: list[tuple[uuid.UUID, bytes]] = []
        self.erasures: dict[uuid.UUID, Erasure] = {}
        self.unreadable = False

    async def seal(self, case_id: uuid.UUID, plaintext: bytes) -> EncryptedBlob:
        self.sealed.append((case_id, plaintext))
        return EncryptedBlob(key_id=str(case_id), nonce="bm9uY2U", ciphertext="c2VhbGVk")

    async def erasure(self, case_id: uuid.UUID) -> Erasure | None:
        if self.unreadable:
            raise ConnectionError("key store unreachable")
        return self.erasures.get(case_id)


class FakeGrounds:
    """Routing's answer: the open tasks each token's holder has on each case."""

    def __init__(self) -> None:
        self.tasks: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, ...]] = {}
        self.unavailable = False

    def grant(self, case_id: uuid.UUID, token: str) -> uuid.UUID:
        task_id = uuid.uuid4()
        self.tasks[(case_id, token)] = (task_id,)
        return task_id

    async def grounds(self, case_id: uuid.UUID, token: str) -> CaseGrounds | None:
        if self.unavailable:
            raise GroundsUnavailableError("routing answered 503")
        found = self.tasks.get((case_id, token))
        return CaseGrounds(case_id=case_id, task_ids=found) if found else None


class AccessNotRecordedError(Exception):
    pass


@dataclass(frozen=True)
class AccessEntry:
    kind: str
    case_id: uuid.UUID
    who: str
    reason: str
    task_ids: tuple[uuid.UUID, ...] = ()
    report_ids: tuple[uuid.UUID, ...] = ()


class RecordingAccessLog:
    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.entries: list[AccessEntry] = []
        self.failing = False

    async def viewed(
        self,
        case_id: uuid.UUID,
        principal: Principal,
        *,
        reason: str,
        task_ids: Iterable[uuid.UUID] = (),
        report_ids: Iterable[uuid.UUID] = (),
        personal_data_shown: bool = False,
    ) -> uuid.UUID:
        assert not personal_data_shown  # triage shows no personal data
        if self.failing:
            raise AccessNotRecordedError
        self.journal.append("access viewed")
        self.entries.append(
            AccessEntry(
                "viewed", case_id, principal.name, reason, tuple(task_ids), tuple(report_ids)
            )
        )
        return uuid.uuid4()

    async def denied(self, case_id: uuid.UUID, principal: Principal, *, reason: str) -> None:
        self.journal.append("access denied")
        self.entries.append(AccessEntry("denied", case_id, principal.name, reason))


class FixedClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


class CollectedFigures:
    def __init__(self) -> None:
        self.counted: list[str] = []
        self.reports: list[tuple[Channel, Lane, str, float]] = []

    def published(self, event: Envelope) -> None:
        self.counted.append(event.event_type)

    def report_triaged(
        self, *, channel: Channel, lane: Lane, result: ReportTriagedData, waited_s: float
    ) -> None:
        self.reports.append((channel, lane, result.priority.value, waited_s))


@dataclass
class World:
    """Triage's handlers over fakes, with the fakes at hand."""

    journal: list[str] = field(default_factory=list)
    kafka: KafkaLog = field(default_factory=KafkaLog)
    epoch: MemoryEpoch = field(default_factory=MemoryEpoch)
    state: InMemoryCaseState = field(init=False)
    guard: ProjectionGuard = field(init=False)
    publisher: ListPublisher = field(init=False)
    keys: FakeKeyring = field(default_factory=FakeKeyring)
    grounds: FakeGrounds = field(default_factory=FakeGrounds)
    access: RecordingAccessLog = field(init=False)
    clock: FixedClock = field(default_factory=FixedClock)
    figures: CollectedFigures = field(default_factory=CollectedFigures)
    handlers: TriageHandlers = field(init=False)

    def __post_init__(self) -> None:
        self.state = InMemoryCaseState(self.journal)
        self.guard = ProjectionGuard(
            None,
            "triage",
            partial(rebuild_state, self.kafka, self.state),
            recheck_s=0.0,
            marker=self.epoch,
        )
        self.publisher = ListPublisher(self.journal, self.kafka)
        self.access = RecordingAccessLog(self.journal)
        self.handlers = TriageHandlers(
            rules=shipped_rules(),
            state=self.state,
            guard=self.guard,
            publisher=self.publisher,
            sealed=UnsealedReports(),
            keys=self.keys,
            grounds=self.grounds,
            access=self.access,
            clock=self.clock,
            figures=self.figures,
            publish_timeout_s=1.0,
        )

    async def receive(self, envelope: Envelope, lane: Lane = Lane.LIVE) -> None:
        """A received report as the consumer hands it over, once it is on Kafka."""
        self.kafka.append(RECEIVED_BY_LANE[lane], envelope)
        await self.handlers.report_received(envelope, lane)

    def lose_redis(self) -> None:
        """A FLUSHALL: the case state and the epoch marker gone."""
        self.state.cases.clear()
        self.epoch.value = None
