"""The services' HTTP APIs, called with the signed-in user's own bearer token.

The console holds no privilege of its own: routing, triage and audit apply their access rules
and record every access exactly as for any other caller.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from ocsea.runtime.logging import get_logger
from services.console.ports import ServiceCallError, TaskPage

log = get_logger("ocsea.console")

TIMEOUT_S = 15


class ServiceHttp:
    """One connection pool for the calls to every service; refusals and failures become
    `ServiceCallError` (an unreachable service: 503 `service_unavailable`)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport
        self.http = httpx.AsyncClient(transport=transport, timeout=TIMEOUT_S)

    def open(self) -> None:
        """A fresh connection pool (an app may be started again after a stop)."""
        if self.http.is_closed:
            self.http = httpx.AsyncClient(transport=self.transport, timeout=TIMEOUT_S)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
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
            raise ServiceCallError(503, "service_unavailable") from exc
        if response.status_code >= 400:
            code, field = "error", None
            try:
                body = response.json()
                code, field = str(body.get("code", "error")), body.get("field")
            except ValueError:
                pass
            raise ServiceCallError(response.status_code, code, field)
        return response

    async def json(self, method: str, url: str, token: str, **kwargs: Any) -> dict[str, Any]:
        found: dict[str, Any] = (await self.call(method, url, token, **kwargs)).json()
        return found


class RoutingClient:
    def __init__(self, http: ServiceHttp, base_url: str) -> None:
        self.http = http
        self.base_url = base_url

    async def tasks(self, token: str, query: dict[str, str]) -> TaskPage:
        response = await self.http.call("GET", f"{self.base_url}/v1/tasks", token, params=query)
        return TaskPage(
            tasks=list(response.json()),
            total=int(response.headers.get("X-Total-Count", "0")),
            next_cursor=response.headers.get("X-Next-Cursor"),
        )

    async def task(self, token: str, task_id: uuid.UUID) -> dict[str, Any]:
        return await self.http.json("GET", f"{self.base_url}/v1/tasks/{task_id}", token)

    async def command(
        self, token: str, task_id: uuid.UUID, command: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        url = f"{self.base_url}/v1/tasks/{task_id}/{command}"
        return await self.http.json("POST", url, token, json=body)

    async def case(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        return await self.http.json("GET", f"{self.base_url}/v1/cases/{case_id}", token)


class TriageClient:
    def __init__(self, http: ServiceHttp, base_url: str) -> None:
        self.http = http
        self.base_url = base_url

    async def case_triage(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        return await self.http.json("GET", f"{self.base_url}/v1/triage/cases/{case_id}", token)

    async def override(
        self, token: str, case_id: uuid.UUID, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        return await self.http.json(
            "POST",
            f"{self.base_url}/v1/triage/cases/{case_id}/override",
            token,
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )


class AuditClient:
    def __init__(self, http: ServiceHttp, base_url: str) -> None:
        self.http = http
        self.base_url = base_url

    async def trail(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        return await self.http.json("GET", f"{self.base_url}/v1/audit/cases/{case_id}/trail", token)

    async def case_bundle(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        url = f"{self.base_url}/v1/audit/cases/{case_id}/export"
        return await self.http.json("GET", url, token)

    async def checkpoint(self, token: str) -> dict[str, Any]:
        return await self.http.json("GET", f"{self.base_url}/v1/audit/checkpoint", token)
