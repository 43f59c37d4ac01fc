"""What intake's use cases need from the world, as protocols: admission (rate limits and
Idempotency-Key reservations), the report index, the partners' status projection, the event
publisher, the sealer, the clock and the figures. `adapters/` implements them on Redis, Kafka,
the case key store and Prometheus; the tests on in-memory fakes (`tests/intake/fakes.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from contracts.events import EncryptedBlob, Envelope, IdempotencyDigests, PartnerAssessment
from services.intake.domain.planning import CaseContext, Earlier, Held, LinkedReport
from services.intake.domain.rebuild import Recorded, RestoredState
from services.intake.domain.status import ReportStatusRecord


class StoreUnavailable(Exception):  # noqa: N818 (the store's condition, as the use cases see it)
    """The store could not be written. Raised by `ReportIndex.record`, which runs after the
    broker took the reports, when failing the request would only invite a retry of what is
    already in Kafka."""


class EventTooLarge(Exception):  # noqa: N818 (the broker's answer, as the use cases see it)
    """The broker refuses the event for its size: retrying cannot help."""


@dataclass(frozen=True)
class RateLimit:
    per_minute: int
    burst: int


@dataclass(frozen=True)
class StoredAnswer:
    """The first answer to an Idempotency-Key, replayed to every retry of the request."""

    request_digest: str
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Reservation:
    """An Idempotency-Key held by a request in progress (`token` tells this request's
    reservation from a later one's). The key and the request are keyed digests
    (`Matcher.idempotency_key`, `Matcher.request`): the store never sees the key itself."""

    partner: str
    key_digest: str
    request_digest: str
    token: str

    @property
    def digests(self) -> IdempotencyDigests:
        """What the report's event carries of them, to restore the answer from Kafka."""
        return IdempotencyDigests(key=self.key_digest, request=self.request_digest)


@dataclass(frozen=True)
class Admission:
    """What admitting a request found: how long to wait (rate limit), else what the request's
    Idempotency-Key already held (None: it is now reserved for this request)."""

    wait_s: int
    earlier: StoredAnswer | None = None
    in_progress_digest: str | None = None


@dataclass(frozen=True)
class Lookup:
    """What the index knows before a request's reports are decided, in the reports' order:
    earlier identical reports, the case each identifier belongs to, and the events earlier
    attempts prepared for these very reports but did not remember."""

    earlier: list[Earlier | None]
    links: dict[str, uuid.UUID]
    held: list[Held | None]


@dataclass(frozen=True)
class AcceptedReport:
    """What to remember once a report is in Kafka."""

    partner_id: str
    report_id: uuid.UUID
    case_id: uuid.UUID
    case_ref: uuid.UUID
    opened_case: bool
    fingerprint: str
    link_digests: Sequence[str]
    received_at: datetime
    source_format: str
    lane: str
    linked: Sequence[LinkedReport]


@dataclass(frozen=True)
class DuplicateReceipt:
    """A submission recognised as an earlier report: its own receipt id, nothing published."""

    partner_id: str
    receipt_id: uuid.UUID
    duplicate_of: uuid.UUID
    case_id: uuid.UUID
    case_ref: uuid.UUID
    received_at: datetime
    source_format: str


class Admissions(Protocol):
    async def admit(
        self, partner: str, limit: RateLimit, reservation: Reservation | None
    ) -> Admission:
        """Count the request against the partner's rate and, if it may go ahead, reserve its
        Idempotency-Key, in one step, before any work: of two simultaneous requests with one
        key, exactly one gets the reservation; a refused request reserves nothing."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Give a reserved key back, if it is still this request's (the request was refused,
        or not stored): a retry with the same key is then a new attempt. Best effort: an
        unreachable store lets the reservation expire on its own."""
        ...


class ReportIndex(Protocol):
    async def lookup(
        self,
        fingerprints: Sequence[str],
        link_digests: Sequence[str],
        report_ids: Sequence[uuid.UUID],
    ) -> Lookup: ...

    async def cases(self, case_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, CaseContext]: ...

    async def hold(self, prepared: Sequence[Held]) -> list[Held]:
        """Keep each report's prepared event before it is first published, unless an event is
        already kept for the report (a concurrent attempt's): returns, for each, the one kept,
        which is the one to publish."""
        ...

    async def record(
        self,
        accepted: Sequence[AcceptedReport],
        duplicates: Sequence[DuplicateReceipt],
        answer: tuple[Reservation, StoredAnswer] | None = None,
    ) -> None:
        """Remember published reports (and the duplicates recognised), with the request's
        idempotent answer, and let go of their held events (once no request that looked them
        up before this record can still be in progress); `StoreUnavailable` if the store
        cannot be written."""
        ...


class StatusProjection(Protocol):
    async def report_view(self, report_id: uuid.UUID) -> ReportStatusRecord | None: ...

    async def mark_triaged(
        self,
        report_id: uuid.UUID,
        case_id: uuid.UUID,
        at: datetime,
        now: datetime,
        *,
        own: PartnerAssessment | None,
        case_result: tuple[str, str],
    ) -> None: ...

    async def mark_routed(self, report_id: uuid.UUID, case_id: uuid.UUID, at: datetime) -> None: ...


class ProjectionCheck(Protocol):
    async def ensure(self) -> None:
        """Rebuild intake's state from Kafka first if Redis lost it (cheap when it did not:
        `ocsea.runtime.projection.ProjectionGuard` looks at most once a second)."""
        ...


class StateRestore(Protocol):
    async def restore(self, state: RestoredState) -> None:
        """Write state folded back from Kafka, each record for the time it has left,
        overwriting nothing (set if absent): a live request of another replica may have
        written newer state meanwhile, and several replicas may restore the same state at
        once."""
        ...


class EventHistory(Protocol):
    def read(
        self, topics: Sequence[str], event_types: Iterable[str]
    ) -> AsyncIterator[list[Recorded]]:
        """The topics' events of these types up to their end as of now, in batches (each of
        one partition, in order); records that are not events are left out."""
        ...


class CaseNotKnown(LookupError):  # noqa: N818 (a condition of the case, as the use case sees it)
    """This deployment's key store never held the case's key: the event is not this
    deployment's (another one sharing the broker), since intake keeps a key (or its erasure)
    for every case it sealed anything for."""


class SealedOpener(Protocol):
    async def open(self, case_id: uuid.UUID, blob: EncryptedBlob) -> bytes | None:
        """The plaintext, or None where it cannot be opened (the case's key was erased, or
        the blob is not sealed under it); `CaseNotKnown` for a case this deployment never
        held a key for. Raises when the keys cannot be read (an outage), which must not pass
        for an erasure."""
        ...


class EventPublisher(Protocol):
    async def publish(self, topic: str, event: Envelope) -> None:
        """Returns once the broker acknowledged the event (keyed by its case); raises
        `EventTooLarge` if the broker refuses it for its size."""
        ...


class Sealer(Protocol):
    async def seal(self, case_id: uuid.UUID, plaintext: bytes) -> EncryptedBlob:
        """The plaintext sealed under the case's data key."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class Figures(Protocol):
    def report(self, source_format: str, channel: str, lane: str, outcome: str) -> None: ...

    def refusal(self, code: str) -> None: ...
