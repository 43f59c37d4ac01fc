"""What triage's use cases need from the world, as protocols: the case state store (and its
guard and restore, for when Redis lost it), the event publisher, the sealed-data opener, the
case keys, routing's grounds, the access record, the clock, the figures, and the topics'
history (for replays and rebuilds). `adapters/` implements them; the tests' fakes too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from contracts.events import (
    EncryptedBlob,
    Envelope,
    ReportReceivedData,
    ReportTriagedData,
    TriageOverrideInfo,
)
from contracts.reports import Channel
from contracts.topics import Lane
from ocsea.runtime.access import CaseGrounds
from ocsea.runtime.keystore import Erasure
from services.triage.domain.rebuild import RebuiltCase
from services.triage.domain.reports import CaseReport


@dataclass(frozen=True)
class CaseSnapshot:
    """A case as triage finds it when a report arrives."""

    published: bool
    outcome: list[Envelope] | None
    reports: list[ReportReceivedData]
    override: TriageOverrideInfo | None
    current: ReportTriagedData | None


class CaseState(Protocol):
    """Triage's per-case state: the case's reports, its current result, the override in force,
    the events produced for each input (a cause: `report:<id>`, `override:<id>`) and which of
    them are known to be published."""

    def lock(self, case_id: uuid.UUID) -> AbstractAsyncContextManager[Any]:
        """One re-triage of a case at a time (a report and a supervisor's override may race)."""
        ...

    async def take_report(self, case_id: uuid.UUID, received: ReportReceivedData) -> CaseSnapshot:
        """Add a received report to its case (once) and read what re-triage needs."""
        ...

    async def reports(self, case_id: uuid.UUID) -> list[ReportReceivedData]: ...

    async def outcome(self, case_id: uuid.UUID, cause: str) -> list[Envelope] | None:
        """The events already produced for an input."""
        ...

    async def mark_published(self, case_id: uuid.UUID, cause: str) -> None: ...

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
        """The input's events, the case's new current result and (if any) the new override,
        at once; history is appended, never rewritten."""
        ...

    async def current(self, case_id: uuid.UUID) -> ReportTriagedData | None: ...

    async def history(self, case_id: uuid.UUID) -> list[Envelope]: ...


class StateGuard(Protocol):
    async def ensure(self) -> None:
        """Rebuild the case state from Kafka first if Redis lost it (cheap when it did not:
        `ocsea.runtime.projection.ProjectionGuard`)."""
        ...


class StateRestore(Protocol):
    async def restore(self, cases: Sequence[RebuiltCase]) -> None:
        """Write cases folded back from Kafka, overwriting nothing: a live handler of another
        process may have written newer state meanwhile, and several processes may restore
        the same cases at once."""
        ...


class EventHistory(Protocol):
    def read(self, topics: Sequence[str]) -> AsyncIterator[Envelope]:
        """The topics' events up to their end as of now, each partition's in order; records
        that are not events are left out."""
        ...


class EventPublisher(Protocol):
    async def publish(self, topic: str, event: Envelope) -> None:
        """Returns once the broker acknowledged the event; raises otherwise."""
        ...


class SealedOpener(Protocol):
    async def case_reports(self, received: Sequence[ReportReceivedData]) -> list[CaseReport]:
        """The reports with what their sealed parts say, where they could be opened (in
        memory only; a part that does not open is simply not read). Raises when the keys
        cannot be read (an outage): unread data could lower the case's priority."""
        ...


class CaseKeyring(Protocol):
    async def seal(self, case_id: uuid.UUID, plaintext: bytes) -> EncryptedBlob: ...

    async def erasure(self, case_id: uuid.UUID) -> Erasure | None:
        """When and why the case's personal data was erased (None: it was not)."""
        ...


class GroundsSource(Protocol):
    async def grounds(self, case_id: uuid.UUID, token: str) -> CaseGrounds | None:
        """The caller's open tasks on the case, asked with their own token (None: none, or no
        such case); raises `GroundsUnavailableError` when it cannot be said."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class TriageFigures(Protocol):
    def published(self, event: Envelope) -> None:
        """Count a published result or reclassification."""
        ...

    def report_triaged(
        self, *, channel: Channel, lane: Lane, result: ReportTriagedData, waited_s: float
    ) -> None:
        """Count a report triaged and how long it waited since intake received it."""
        ...


@dataclass(frozen=True)
class RecordedReport:
    timestamp_ms: int
    case_id: uuid.UUID
    received: ReportReceivedData


@dataclass(frozen=True)
class Recording:
    reports: list[RecordedReport]
    skipped: int


class ReceivedHistory(Protocol):
    async def read(self, *, until_ms: int | None) -> Recording:
        """Every received report recorded before `until_ms` (all, with None), in order, and
        how many records were not received reports."""
        ...
