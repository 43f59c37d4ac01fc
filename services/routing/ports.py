"""What routing's use cases need from the world, as `typing.Protocol`s: the adapters
(`adapters/`) implement them on Redis, Kafka, HTTP and Prometheus; the fast tests on memory
(`tests/routing/fakes.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from pydantic import AwareDatetime, BaseModel

from contracts.events import (
    AgencyType,
    EncryptedBlob,
    Envelope,
    ErasureReason,
    ReportReceivedData,
    ReportTriagedData,
    TaskAssignedData,
)
from ocsea.runtime.keystore import Erasure
from services.routing.domain.tasks import TaskState


class LockTimeoutError(TimeoutError):
    """A task's lock was not had in time: another writer is changing it (HTTP 503, retry)."""


class CaseTriage(BaseModel):
    """A case's current triage result, and which event it came in."""

    event_id: uuid.UUID
    occurred_at: AwareDatetime
    data: ReportTriagedData


class TaskStore(Protocol):
    """The tasks' projection: each task's state folded from its events, with its indexes."""

    def lock(
        self, task_id: uuid.UUID | str, *, within_s: float = 15.0
    ) -> AbstractAsyncContextManager[None]:
        """One writer per task at a time; raises `LockTimeoutError` when not had in time."""
        ...

    async def get(self, task_id: uuid.UUID | str) -> TaskState | None: ...

    async def get_many(self, task_ids: Iterable[str]) -> list[TaskState]: ...

    async def for_agency(self, agency_id: str) -> list[TaskState]: ...

    async def escalated_to(self, agency_id: str) -> list[TaskState]: ...

    async def for_case(self, case_id: uuid.UUID) -> list[TaskState]: ...

    async def role_task_ids(self, case_id: uuid.UUID, role: AgencyType) -> list[str]:
        """Every task the case's role ever had (open or closed), oldest first."""
        ...

    async def unit_load(self) -> dict[str, int]:
        """Open tasks per unit."""
        ...

    async def apply(self, event: Envelope) -> TaskState | None:
        """Fold a task event into the stored state (idempotent; any writer, no lock)."""
        ...

    async def apply_locked(self, current: TaskState, event: Envelope) -> TaskState | None:
        """`apply` by the holder of the task's lock, who has just read `current`."""
        ...

    async def claim_assignment(self, slot: str, envelope: Envelope) -> Envelope:
        """The assignment of a role slot: this one, or the one an earlier attempt chose."""
        ...

    async def keep_trace_context(self, task_id: uuid.UUID | str, traceparent: str) -> None:
        """Keep the trace context of a task's assignment, for the work it sets off later."""
        ...

    async def trace_context(self, task_id: uuid.UUID | str) -> str | None: ...


class CaseStore(Protocol):
    """The cases' received reports (personal data still sealed) and latest triage result."""

    async def add_report(self, case_id: uuid.UUID, report: ReportReceivedData) -> None: ...

    async def reports(self, case_id: uuid.UUID) -> list[ReportReceivedData]: ...

    async def set_triage(self, case_id: uuid.UUID, triage: CaseTriage) -> None: ...

    async def triage(self, case_id: uuid.UUID) -> CaseTriage | None: ...

    async def note_triage(self, case_id: uuid.UUID, event_id: uuid.UUID) -> bool:
        """Note a triage result as seen; True if it was seen before."""
        ...

    async def triage_and_note(
        self, case_id: uuid.UUID, event_id: uuid.UUID
    ) -> tuple[CaseTriage | None, bool]:
        """The latest triage result, and whether this one was seen before (now noted)."""
        ...


class ProjectionStore(Protocol):
    """The projection as a whole: whether it is there, and how a rebuild writes it."""

    async def epoch(self) -> str | None:
        """None: the projection is missing (never built, or its store lost it)."""
        ...

    async def set_epoch(self, value: str) -> None: ...

    async def put_rebuilt(self, state: TaskState) -> TaskState:
        """Store a task folded from the topic, unless a newer state is stored already."""
        ...

    async def reset_load(self, states: Iterable[TaskState]) -> None: ...

    async def timer_count(self) -> int: ...


class Publisher(Protocol):
    """Publish an event on a topic; returns once the broker acknowledged it."""

    async def __call__(self, topic: str, event: Envelope, /) -> None: ...


class EventSink(Protocol):
    """Publish an event on the one topic this sink is for."""

    async def __call__(self, event: Envelope, /) -> None: ...


class AppliedMarks(Protocol):
    """Mark an event applied for the projection consumer, which then skips it."""

    async def __call__(self, event: Envelope, /) -> None: ...


class TopicReplay(Protocol):
    """Hand every envelope of a topic, from its beginning to its current end, to `handle`;
    returns how many."""

    async def __call__(
        self, topic: str, handle: Callable[[Envelope], Awaitable[None]], /
    ) -> int: ...


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class Dispatch(Protocol):
    """Hands assigned tasks to the agencies: dispatch topics and signed webhooks."""

    async def on_task_event(self, event: Envelope) -> None:
        """Dispatch a `task.assigned` (once per task; other events are ignored)."""
        ...

    async def requeue_after_rebuild(self, assignments: Mapping[str, Envelope]) -> int:
        """After the projection was lost: owe again every webhook delivery not yet recorded."""
        ...


class RoutingFigures(Protocol):
    """Routing's metrics, counted as it changes tasks."""

    def assigned(
        self,
        role: AgencyType,
        task: TaskAssignedData,
        *,
        for_triage: bool,
        triaged_at: datetime,
        now: datetime,
    ) -> None:
        """A task assigned; `for_triage`: a triage result's own (not a re-route)."""
        ...

    def changed(self, task: TaskState, event: Envelope) -> None:
        """A change to `task` (its state before `event`)."""
        ...

    def timer_fired(self, event_type: str, lateness_s: float) -> None: ...


class CaseKeyring(Protocol):
    """The cases' data keys (`ocsea.runtime.crypto.CaseKeys`)."""

    async def open(self, case_id: uuid.UUID, blob: EncryptedBlob) -> bytes:
        """Raises `CaseErasedError`, `CaseKeyNotFoundError` or `InvalidTag` (see CaseKeys)."""
        ...

    async def erasure(self, case_id: uuid.UUID) -> Erasure | None: ...

    async def erase(
        self,
        case_id: uuid.UUID,
        reason: ErasureReason,
        erased_by: str,
        reference: str | None = None,
    ) -> Erasure | None: ...


class DueQueue(Protocol):
    """Items due at a time (`task|timer` members, task ids), claimed with a lease."""

    async def claim(self, now: float, limit: int) -> list[str]: ...

    async def done(self, members: Iterable[str]) -> None: ...

    async def requeue_expired(self, now: float) -> int: ...

    async def next_due(self) -> float | None: ...


class Notes(Protocol):
    """The service's log (structlog): ids and codes only, never personal data."""

    def info(self, event: str, **fields: Any) -> Any: ...

    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...
