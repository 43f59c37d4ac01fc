"""In-memory fakes of routing's ports (`services/routing/ports.py`), for fast tests of its use
cases: no broker, no Redis, no key store. Every fake writes what it does to one shared
`Journal`, so a test can check the order of steps (lock, publish, store, mark) across them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.directory import Directory, load_directory
from contracts.events import (
    AgencyType,
    EncryptedBlob,
    Envelope,
    ErasureReason,
    ReportReceivedData,
    TaskAssignedData,
)
from ocsea.runtime.access import access_not_recorded
from ocsea.runtime.auth import Principal
from ocsea.runtime.crypto import CaseErasedError, CaseKeyNotFoundError
from ocsea.runtime.keystore import Erasure
from services.routing.config import RoutingTopics
from services.routing.domain.tasks import TaskState, fold
from services.routing.handlers import RoutingHandlers, RoutingPorts
from services.routing.ports import CaseTriage, LockTimeoutError

T0 = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)


class Journal(list[str]):
    """What the fakes did, in order: `lock <task>`, `publish <topic> <event type> <task>`,
    `store <event type> <task>`, `mark <event type> <task>`, `dispatch <event type> <task>`,
    `unlock <task>`, `access <kind>`, `open <case>` (no task: `-`)."""

    def index_of(self, prefix: str) -> int:
        return next(i for i, line in enumerate(self) if line.startswith(prefix))


def _task_of(event: Envelope) -> str:
    return str(event.data.get("task_id", "-"))


class Outage:
    """A fault switched on and off: while `down`, the fake raises `error`."""

    def __init__(self, error: Callable[[], Exception]) -> None:
        self.down = False
        self._error = error

    def check(self) -> None:
        if self.down:
            raise self._error()


class MemoryStore:
    """`TaskStore`, `CaseStore` and `ProjectionStore` in dicts, with the Redis store's indexes."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.tasks: dict[str, TaskState] = {}
        self.by_agency: dict[str, dict[str, float]] = {}
        self.by_case: dict[uuid.UUID, dict[str, float]] = {}
        self.by_role: dict[tuple[uuid.UUID, AgencyType], dict[str, float]] = {}
        self.escalated: dict[str, dict[str, float]] = {}
        self.load: dict[str, int] = {}
        self.claims: dict[str, Envelope] = {}
        self.traces: dict[str, str] = {}
        self.reports_of: dict[uuid.UUID, dict[uuid.UUID, ReportReceivedData]] = {}
        self.triages: dict[uuid.UUID, CaseTriage] = {}
        self.triage_seen: dict[uuid.UUID, set[uuid.UUID]] = {}
        self.current_epoch: str | None = "epoch-1"
        self.outage = Outage(lambda: ConnectionError("the store is down"))
        self._locks: dict[str, asyncio.Lock] = {}
        self.lock_wait_s: float | None = None
        """When set, a lock not had within this time raises `LockTimeoutError`."""

    # ------------------------------------------------------------------ tasks

    @asynccontextmanager
    async def lock(
        self, task_id: uuid.UUID | str, *, within_s: float = 15.0
    ) -> AsyncIterator[None]:
        self.outage.check()
        lock = self._locks.setdefault(str(task_id), asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), self.lock_wait_s or within_s)
        except TimeoutError as exc:
            raise LockTimeoutError(f"task {task_id} is busy") from exc
        self.journal.append(f"lock {task_id}")
        try:
            yield
        finally:
            self.journal.append(f"unlock {task_id}")
            lock.release()

    async def get(self, task_id: uuid.UUID | str) -> TaskState | None:
        self.outage.check()
        return self.tasks.get(str(task_id))

    async def get_many(self, task_ids: Iterable[str]) -> list[TaskState]:
        self.outage.check()
        return [self.tasks[t] for t in task_ids if t in self.tasks]

    def _listed(self, index: Mapping[str, float]) -> list[TaskState]:
        return [self.tasks[t] for t, _ in sorted(index.items(), key=lambda kv: kv[1])]

    async def for_agency(self, agency_id: str) -> list[TaskState]:
        self.outage.check()
        return self._listed(self.by_agency.get(agency_id, {}))

    async def escalated_to(self, agency_id: str) -> list[TaskState]:
        self.outage.check()
        return self._listed(self.escalated.get(agency_id, {}))

    async def for_case(self, case_id: uuid.UUID) -> list[TaskState]:
        self.outage.check()
        return self._listed(self.by_case.get(case_id, {}))

    async def role_task_ids(self, case_id: uuid.UUID, role: AgencyType) -> list[str]:
        self.outage.check()
        index = self.by_role.get((case_id, role), {})
        return [t for t, _ in sorted(index.items(), key=lambda kv: kv[1])]

    async def unit_load(self) -> dict[str, int]:
        self.outage.check()
        return dict(self.load)

    async def apply(self, event: Envelope) -> TaskState | None:
        self.outage.check()
        task_id = event.data.get("task_id")
        if task_id is None:
            return None
        old = self.tasks.get(str(task_id))
        new = fold(old, event)
        if new is None or new == old:
            return new
        self._write(old, new, event)
        return new

    async def apply_locked(self, current: TaskState, event: Envelope) -> TaskState | None:
        self.outage.check()
        new = fold(current, event)
        if new is None or new == current:
            return new
        self._write(current, new, event)
        return new

    def _write(self, old: TaskState | None, new: TaskState, event: Envelope) -> None:
        self.journal.append(f"store {event.event_type} {new.task_id}")
        task = str(new.task_id)
        self.tasks[task] = new
        at = new.assigned_at.timestamp()
        self.by_agency.setdefault(new.agency_id, {})[task] = at
        self.by_case.setdefault(new.case_id, {})[task] = at
        self.by_role.setdefault((new.case_id, new.role), {})[task] = at
        if new.escalated_to_agency:
            self.escalated.setdefault(new.escalated_to_agency, {})[task] = at
        if new.unit_id is not None:
            was_open = old is not None and old.is_open
            if new.is_open and not was_open:
                self.load[new.unit_id] = self.load.get(new.unit_id, 0) + 1
            elif was_open and not new.is_open:
                self.load[new.unit_id] = self.load.get(new.unit_id, 0) - 1

    async def claim_assignment(self, slot: str, envelope: Envelope) -> Envelope:
        self.outage.check()
        return self.claims.setdefault(slot, envelope)

    async def keep_trace_context(self, task_id: uuid.UUID | str, traceparent: str) -> None:
        self.traces[str(task_id)] = traceparent

    async def trace_context(self, task_id: uuid.UUID | str) -> str | None:
        return self.traces.get(str(task_id))

    # ------------------------------------------------------------------ cases

    async def add_report(self, case_id: uuid.UUID, report: ReportReceivedData) -> None:
        self.outage.check()
        self.reports_of.setdefault(case_id, {})[report.report_id] = report

    async def reports(self, case_id: uuid.UUID) -> list[ReportReceivedData]:
        self.outage.check()
        return sorted(self.reports_of.get(case_id, {}).values(), key=lambda r: r.received_at)

    async def set_triage(self, case_id: uuid.UUID, triage: CaseTriage) -> None:
        self.outage.check()
        self.triages[case_id] = triage

    async def triage(self, case_id: uuid.UUID) -> CaseTriage | None:
        self.outage.check()
        return self.triages.get(case_id)

    async def note_triage(self, case_id: uuid.UUID, event_id: uuid.UUID) -> bool:
        self.outage.check()
        seen = self.triage_seen.setdefault(case_id, set())
        before = event_id in seen
        seen.add(event_id)
        return before

    async def triage_and_note(
        self, case_id: uuid.UUID, event_id: uuid.UUID
    ) -> tuple[CaseTriage | None, bool]:
        return await self.triage(case_id), await self.note_triage(case_id, event_id)

    # ------------------------------------------------------------------ projection

    async def epoch(self) -> str | None:
        self.outage.check()
        return self.current_epoch

    async def set_epoch(self, value: str) -> None:
        self.current_epoch = value

    async def put_rebuilt(self, state: TaskState) -> TaskState:
        stored = self.tasks.get(str(state.task_id))
        final = stored if stored and stored.version > state.version else state
        self.tasks[str(final.task_id)] = final
        return final

    async def reset_load(self, states: Iterable[TaskState]) -> None:
        self.load = {}
        for state in states:
            if state.unit_id is not None and state.is_open:
                self.load[state.unit_id] = self.load.get(state.unit_id, 0) + 1

    async def timer_count(self) -> int:
        return 0


class ListPublisher:
    """Collects what is published; raises while its `outage` is down."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.sent: list[tuple[str, Envelope]] = []
        self.outage = Outage(lambda: ConnectionError("the broker is down"))

    async def __call__(self, topic: str, event: Envelope) -> None:
        self.outage.check()
        self.journal.append(f"publish {topic} {event.event_type} {_task_of(event)}")
        self.sent.append((topic, event))

    def on(self, topic: str) -> list[Envelope]:
        return [event for t, event in self.sent if t == topic]


class FixedClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Marks:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.marked: list[uuid.UUID] = []

    async def __call__(self, event: Envelope) -> None:
        self.journal.append(f"mark {event.event_type} {_task_of(event)}")
        self.marked.append(event.event_id)


class RecordedDispatch:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.dispatched: dict[str, Envelope] = {}

    async def on_task_event(self, event: Envelope) -> None:
        task_id = str(event.data.get("task_id"))
        if event.event_type == "task.assigned" and task_id not in self.dispatched:
            self.journal.append(f"dispatch {event.event_type} {task_id}")
            self.dispatched[task_id] = event

    async def requeue_after_rebuild(self, assignments: Mapping[str, Envelope]) -> int:
        return len(assignments)


class RecordedFigures:
    def __init__(self) -> None:
        self.assigned_roles: list[AgencyType] = []
        self.changes: list[str] = []
        self.timers: list[str] = []

    def assigned(
        self,
        role: AgencyType,
        task: TaskAssignedData,
        *,
        for_triage: bool,
        triaged_at: datetime,
        now: datetime,
    ) -> None:
        self.assigned_roles.append(role)

    def changed(self, task: TaskState, event: Envelope) -> None:
        self.changes.append(event.event_type)

    def timer_fired(self, event_type: str, lateness_s: float) -> None:
        self.timers.append(event_type)


class SealedKeys:
    """`CaseKeyring` over plaintexts: a blob's ciphertext is the JSON itself."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.known: set[uuid.UUID] = set()
        self.erased: dict[uuid.UUID, Erasure] = {}
        self.outage = Outage(lambda: ConnectionError("the key store is down"))

    def seal(self, case_id: uuid.UUID, personal: dict[str, Any]) -> EncryptedBlob:
        self.known.add(case_id)
        return EncryptedBlob(key_id=str(case_id), nonce="", ciphertext=json.dumps(personal))

    async def open(self, case_id: uuid.UUID, blob: EncryptedBlob) -> bytes:
        self.outage.check()
        self.journal.append(f"open {case_id}")
        if case_id in self.erased:
            raise CaseErasedError(case_id, self.erased[case_id])
        if case_id not in self.known:
            raise CaseKeyNotFoundError(str(case_id))
        return blob.ciphertext.encode()

    async def erasure(self, case_id: uuid.UUID) -> Erasure | None:
        self.outage.check()
        return self.erased.get(case_id)

    async def erase(
        self,
        case_id: uuid.UUID,
        reason: ErasureReason,
        erased_by: str,
        reference: str | None = None,
    ) -> Erasure | None:
        self.outage.check()
        if case_id not in self.known:
            return None
        return self.erased.setdefault(
            case_id, Erasure(erased_at=T0, reason=reason, erased_by=erased_by, reference=reference)
        )


@dataclass(frozen=True)
class AccessEvent:
    kind: str
    case_id: uuid.UUID
    viewer: str
    reason: str
    personal_data_shown: bool = False
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)


class RecordedAccess:
    """`AccessRecord` as a list; while its `outage` is down, `viewed` raises the 503 to
    answer, as `AccessLog.viewed` does when the access topic cannot be reached."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.events: list[AccessEvent] = []
        self.outage = Outage(access_not_recorded)

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
        self.outage.check()
        event = AccessEvent("viewed", case_id, principal.name, reason, personal_data_shown)
        self.journal.append("access viewed")
        self.events.append(event)
        return event.event_id

    async def denied(self, case_id: uuid.UUID, principal: Principal, *, reason: str) -> None:
        self.journal.append("access denied")
        self.events.append(AccessEvent("denied", case_id, principal.name, reason))


class RecordedNotes:
    """The service log as a list of (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append(("error", event, fields))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [fields for _, event, fields in self.lines if event == name]


async def no_replay(_topic: str, _handle: Callable[[Envelope], Awaitable[None]]) -> int:
    return 0


@dataclass
class World:
    """Routing's use cases on fakes of all their ports."""

    directory: Directory = field(default_factory=load_directory)
    topics: RoutingTopics = field(default_factory=lambda: RoutingTopics.isolated("fake"))
    journal: Journal = field(default_factory=Journal)
    clock: FixedClock = field(default_factory=FixedClock)
    figures: RecordedFigures = field(default_factory=RecordedFigures)
    notes: RecordedNotes = field(default_factory=RecordedNotes)

    def __post_init__(self) -> None:
        self.store = MemoryStore(self.journal)
        self.publish = ListPublisher(self.journal)
        self.marks = Marks(self.journal)
        self.dispatch = RecordedDispatch(self.journal)
        self.keys = SealedKeys(self.journal)
        self.access = RecordedAccess(self.journal)
        self.handlers = RoutingHandlers(
            RoutingPorts(
                tasks=self.store,
                cases=self.store,
                projection=self.store,
                publish=self.publish,
                replay=no_replay,
                figures=self.figures,
                keys=self.keys,
                access=self.access,
                clock=self.clock,
                dispatch=self.dispatch,
                mark_applied=self.marks,
                notes=self.notes,
            ),
            self.directory,
            self.topics,
        )

    def task_events(self) -> list[Envelope]:
        return self.publish.on(self.topics.tasks)
