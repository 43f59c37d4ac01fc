"""The services' HTTP APIs, called with the signed-in user's own bearer token.

The console holds no privilege of its own: routing, triage and audit apply their access rules
and record every access exactly as for any other caller.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings

log = get_logger("ocsea.console")


class ApiError(Exception):
    """A service refused (4xx) or could not answer (5xx, unreachable)."""

    def __init__(self, status: int, code: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.field = field


@dataclass(frozen=True)
class TaskPage:
    tasks: list[dict[str, Any]]
    total: int
    next_cursor: str | None


class Api:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.transport = transport
        self.http = httpx.AsyncClient(transport=transport, timeout=15)
        self.routing = settings.console_service_url("routing")
        self.triage = settings.console_service_url("triage")
        self.audit = settings.console_service_url("audit")

    def open(self) -> None:
        """A fresh connection pool (an app may be started again after a stop)."""
        if self.http.is_closed:
            self.http = httpx.AsyncClient(transport=self.transport, timeout=15)

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(
        self,
        method: str,
        url: str,
        token: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self.http.request(
                method,
                url,
                params=params,
                json=json,
                headers={"Authorization": f"Bearer {token}", **(headers or {})},
            )
        except httpx.HTTPError as exc:
            log.warning("console.service_unreachable", url=url, error=type(exc).__name__)
            raise ApiError(503, "service_unavailable") from exc
        if response.status_code >= 400:
            code, field = "error", None
            try:
                body = response.json()
                code, field = str(body.get("code", "error")), body.get("field")
            except ValueError:
                pass
            raise ApiError(response.status_code, code, field)
        return response

    async def _json(self, method: str, url: str, token: str, **kwargs: Any) -> dict[str, Any]:
        found: dict[str, Any] = (await self._call(method, url, token, **kwargs)).json()
        return found

    async def tasks(self, token: str, params: dict[str, str]) -> TaskPage:
        response = await self._call("GET", f"{self.routing}/v1/tasks", token, params=params)
        return TaskPage(
            tasks=list(response.json()),
            total=int(response.headers.get("X-Total-Count", "0")),
            next_cursor=response.headers.get("X-Next-Cursor"),
        )

    async def task(self, token: str, task_id: uuid.UUID) -> dict[str, Any]:
        return await self._json("GET", f"{self.routing}/v1/tasks/{task_id}", token)

    async def command(
        self, token: str, task_id: uuid.UUID, command: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        return await self._json(
            "POST", f"{self.routing}/v1/tasks/{task_id}/{command}", token, json=body
        )

    async def case(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        return await self._json("GET", f"{self.routing}/v1/cases/{case_id}", token)

    async def case_triage(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        return await self._json("GET", f"{self.triage}/v1/triage/cases/{case_id}", token)

    async def override(
        self, token: str, case_id: uuid.UUID, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        return await self._json(
            "POST",
            f"{self.triage}/v1/triage/cases/{case_id}/override",
            token,
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )

    async def trail(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        return await self._json("GET", f"{self.audit}/v1/audit/cases/{case_id}/trail", token)

    async def case_bundle(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        return await self._json("GET", f"{self.audit}/v1/audit/cases/{case_id}/export", token)

    async def checkpoint(self, token: str) -> dict[str, Any]:
        return await self._json("GET", f"{self.audit}/v1/audit/checkpoint", token)
