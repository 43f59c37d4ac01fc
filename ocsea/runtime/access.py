"""Need-to-know: the one access rule for case data, and the record every read of it leaves.

The rule (every service applies it through this module, so it is written once):

- an officer or a supervisor sees a case only through an open task of their agency on it;
  the coordinator's supervisors (the directory names the coordinator) also through tasks
  escalated to the coordinator. Such a task is the *grounds* for the read;
- only a supervisor with grounds on a case may change its triage (an override);
- an auditor reads triage results and the ledger, read-only, on the strength of the role;
- partners and operators read no case (a partner sees its own reports' status in intake).

Which roles an endpoint admits at all is its own `require(...)`; grounds come from routing's
task projection, the only holder of tasks: routing applies `case_grounds` itself, other
services ask it (`GroundsClient`).

Every read of case data, granted or refused, is published on `ocsea.access.v1` (`AccessLog`)
before anything is answered; a read that cannot be recorded is not answered (503).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Protocol, TypeVar

import httpx
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ConfigDict, Field

from contracts import topics
from contracts.events import Actor, ActorKind, CaseAccessData, EventType, make_event
from ocsea.runtime.auth import Principal, Role
from ocsea.runtime.errors import ApiError
from ocsea.runtime.kafka import publish_event
from ocsea.runtime.logging import get_logger

log = get_logger("ocsea.access")

LEDGER_SUBJECT = uuid.UUID(int=0)
"""The `case_id` under which reads of the ledger are recorded. Not under the case read: a
case's trail is the record of what happened to the case, and reading it must not change it
(two reads of a trail agree; an export matches the trail). The reason names what was read."""


class TaskOnCase(Protocol):
    """What the rule needs to know of a task (routing's `TaskState` is one)."""

    @property
    def agency_id(self) -> str: ...

    @property
    def escalated_to_agency(self) -> str | None: ...

    @property
    def is_open(self) -> bool: ...


TaskT = TypeVar("TaskT", bound=TaskOnCase)


def is_coordinator(principal: Principal, coordinator: str) -> bool:
    return principal.role is Role.SUPERVISOR and principal.agency == coordinator


def sees_task(principal: Principal, task: TaskOnCase, coordinator: str) -> bool:
    """Officers and supervisors see their agency's tasks; the coordinator's supervisors also
    the tasks escalated to the coordinator. No one else sees tasks."""
    if principal.agency is None or principal.role not in (Role.OFFICER, Role.SUPERVISOR):
        return False
    if task.agency_id == principal.agency:
        return True
    return is_coordinator(principal, coordinator) and task.escalated_to_agency == principal.agency


def case_grounds(principal: Principal, tasks: Iterable[TaskT], coordinator: str) -> list[TaskT]:
    """The open tasks that entitle the principal to the case (none: no access)."""
    return [t for t in tasks if t.is_open and sees_task(principal, t, coordinator)]


def may_change_triage(principal: Principal, grounds: Sequence[object]) -> bool:
    return principal.role is Role.SUPERVISOR and bool(grounds)


class Basis(StrEnum):
    """What a read of a case's triage rests on."""

    OPEN_TASK = "open task on the case"
    AUDITOR = "auditor, read-only"


def triage_read_basis(principal: Principal) -> Basis | None:
    """Auditors read triage results on their role; officers and supervisors need an open task
    (checked against routing); anyone else reads nothing."""
    if principal.role is Role.AUDITOR:
        return Basis.AUDITOR
    if principal.role in (Role.OFFICER, Role.SUPERVISOR) and principal.agency is not None:
        return Basis.OPEN_TASK
    return None


# ------------------------------------------------------------------------- the access record


def actor_of(principal: Principal) -> Actor:
    return Actor(kind=ActorKind(principal.role.value), id=principal.name, agency=principal.agency)


def access_not_recorded() -> ApiError:
    return ApiError(
        503,
        "access_not_recorded",
        "the read could not be recorded, so nothing is shown; retry",
        headers={"Retry-After": "5"},
    )


class AccessRecord(Protocol):
    """Where every read of a case is recorded (`AccessLog`: the access topic), granted or
    refused, before the answer; the port the services' handlers take."""

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
        """The access event's id; raises (the 503 to answer) when it cannot be recorded."""
        ...

    async def denied(self, case_id: uuid.UUID, principal: Principal, *, reason: str) -> None:
        """Record a refusal; never raises (the refusal stands either way)."""
        ...


class AccessLog:
    """Publishes `case.viewed` and `case.access_denied` on the access topic, acknowledged by
    the broker before the caller answers (the audit ledger takes them from there)."""

    def __init__(self, broker: KafkaBroker, producer: str, topic: str = topics.ACCESS) -> None:
        self.broker = broker
        self.producer = producer
        self.topic = topic

    async def _publish(
        self, event_type: EventType, case_id: uuid.UUID, principal: Principal, data: CaseAccessData
    ) -> uuid.UUID:
        event = make_event(
            event_type=event_type,
            case_id=case_id,
            producer=self.producer,
            actor=actor_of(principal),
            data=data,
        )
        await publish_event(self.broker, self.topic, event)
        log.info(
            event_type.value,
            case_id=str(case_id),
            viewer=principal.name,
            event_id=str(event.event_id),
        )
        return event.event_id

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
        """Record a granted read; raises the 503 to answer instead when it cannot be recorded."""
        data = CaseAccessData(
            viewer=principal.name,
            role=principal.role.value,
            agency=principal.agency,
            task_ids=tuple(task_ids),
            report_ids=tuple(report_ids),
            personal_data_shown=personal_data_shown,
            reason=reason,
        )
        try:
            return await self._publish(EventType.CASE_VIEWED, case_id, principal, data)
        except Exception as exc:
            log.error("case.access_record_failed", case_id=str(case_id), error=type(exc).__name__)
            raise access_not_recorded() from exc

    async def denied(self, case_id: uuid.UUID, principal: Principal, *, reason: str) -> None:
        """Record a refused read. The refusal stands whether or not it could be recorded (it
        shows nothing), so a failure is logged, not raised."""
        data = CaseAccessData(
            viewer=principal.name, role=principal.role.value, agency=principal.agency, reason=reason
        )
        try:
            await self._publish(EventType.CASE_ACCESS_DENIED, case_id, principal, data)
        except Exception as exc:
            log.error("case.access_record_failed", case_id=str(case_id), error=type(exc).__name__)


# ------------------------------------------------------------------------- grounds, over HTTP


class CaseGrounds(BaseModel):
    """Routing's answer to "may this caller see this case": the caller's open tasks on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_id: uuid.UUID
    task_ids: tuple[uuid.UUID, ...] = Field(min_length=1)


class GroundsUnavailableError(Exception):
    """Routing could not say (unreachable, slow, or answering 5xx): no access can be granted."""


class GroundsClient:
    """Asks routing, with the caller's own bearer token, for the caller's grounds on a case.

    Routing authenticates the caller itself, so this service can claim nothing on their behalf;
    an unknown case and a case without grounds answer alike (None)."""

    def __init__(
        self,
        routing_url: str,
        *,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.routing_url = routing_url.rstrip("/")
        self.timeout_s = timeout_s
        self.transport = transport
        self.http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self.http is None or self.http.is_closed:
            self.http = httpx.AsyncClient(transport=self.transport, timeout=self.timeout_s)
        return self.http

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def grounds(self, case_id: uuid.UUID, token: str) -> CaseGrounds | None:
        url = f"{self.routing_url}/v1/cases/{case_id}/grounds"
        try:
            response = await self._client().get(url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise GroundsUnavailableError(type(exc).__name__) from exc
        if response.status_code in (401, 403, 404):
            return None
        if response.status_code != 200:
            raise GroundsUnavailableError(f"routing answered {response.status_code}")
        try:
            found = CaseGrounds.model_validate_json(response.content)
        except ValueError as exc:
            raise GroundsUnavailableError("routing's answer is not grounds") from exc
        if found.case_id != case_id:
            raise GroundsUnavailableError("routing answered for another case")
        return found


def grounds_unavailable() -> ApiError:
    return ApiError(
        503,
        "access_not_checked",
        "the access rule could not be checked, so nothing is shown; retry",
        headers={"Retry-After": "5"},
    )
