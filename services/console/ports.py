"""What the console's use cases need from the world: the services' HTTP APIs (each called with
the signed-in user's own token), the session store, the credentials and a clock."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from ocsea.runtime.auth import Principal

Clock = Callable[[], datetime]
"""Now, in UTC (tasks' countdowns)."""


class ServiceCallError(Exception):
    """A service refused (4xx) or could not answer (5xx, unreachable: 503
    `service_unavailable`), with its error code and the field it named."""

    def __init__(self, status: int, code: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.field = field


@dataclass(frozen=True)
class TaskPage:
    """One page of `GET /v1/tasks`."""

    tasks: list[dict[str, Any]]
    total: int
    next_cursor: str | None


class RoutingApi(Protocol):
    """Routing's task and case API."""

    async def tasks(self, token: str, query: dict[str, str]) -> TaskPage: ...

    async def task(self, token: str, task_id: uuid.UUID) -> dict[str, Any]: ...

    async def command(
        self, token: str, task_id: uuid.UUID, command: str, body: dict[str, Any] | None
    ) -> dict[str, Any]: ...

    async def case(self, token: str, case_id: uuid.UUID) -> dict[str, Any]: ...


class TriageApi(Protocol):
    """Triage's case view and supervisors' override."""

    async def case_triage(self, token: str, case_id: uuid.UUID) -> dict[str, Any]: ...

    async def override(
        self, token: str, case_id: uuid.UUID, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]: ...


class AuditApi(Protocol):
    """The auditors' ledger API."""

    async def trail(self, token: str, case_id: uuid.UUID) -> dict[str, Any]: ...

    async def case_bundle(self, token: str, case_id: uuid.UUID) -> dict[str, Any]: ...

    async def checkpoint(self, token: str) -> dict[str, Any]: ...


class Session(BaseModel):
    """A signed-in user, as the console's pages need them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    principal: Principal
    token: str
    csrf: str
    created_at: float

    def csrf_ok(self, submitted: str | None) -> bool:
        return submitted is not None and hmac.compare_digest(submitted.encode(), self.csrf.encode())


class SessionStore(Protocol):
    """Sessions behind an opaque id (the cookie's value): they end when idle, when too old, or
    at sign-out."""

    async def start(self, principal: Principal, token: str) -> tuple[str, Session]:
        """A new session: its id (for the cookie only) and the session."""
        ...

    async def find(self, session_id: str | None) -> Session | None:
        """The live session of this id (its idle time restarted), or None."""
        ...

    async def end(self, session_id: str | None) -> None: ...

    async def ping(self) -> None:
        """Raises when the store cannot be reached (readiness)."""
        ...


class Credentials(Protocol):
    """Bearer tokens and whom they belong to."""

    def authenticate(self, token: str) -> Principal | None: ...
