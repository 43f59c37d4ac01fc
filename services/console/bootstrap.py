"""Composes the console: its session store, the clients of the services' APIs, its use cases
and its pages. The console serves people, not events: no broker, no consumer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis

from contracts.directory import Directory, load_directory
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import instrument_http_app
from services.console.adapters.principals import LazyPrincipals
from services.console.adapters.services import (
    AuditClient,
    RoutingClient,
    ServiceHttp,
    TriageClient,
)
from services.console.adapters.sessions import RedisBackend, SessionBackend, Sessions
from services.console.entrypoints.http import install_exception_handlers, router
from services.console.entrypoints.pages import STATIC, Pages
from services.console.handlers import Console


def build(
    settings: Settings,
    *,
    session_backend: SessionBackend | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    directory: Directory | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The console app. Tests may pass a session backend, a transport to the services and a
    clock (the sessions')."""
    backend = session_backend or RedisBackend(Redis.from_url(settings.redis_url))
    http = ServiceHttp(transport)
    console = Console(
        routing=RoutingClient(http, settings.console_service_url("routing")),
        triage=TriageClient(http, settings.console_service_url("triage")),
        audit=AuditClient(http, settings.console_service_url("audit")),
        sessions=Sessions(
            backend,
            idle_s=settings.console_session_idle_s,
            max_s=settings.console_session_max_s,
            clock=clock,
        ),
        credentials=LazyPrincipals(settings.resolved_principals_file),
        directory=directory or load_directory(settings.routing_directory_file),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        http.open()
        try:
            yield
        finally:
            await http.close()
            if isinstance(backend, RedisBackend):
                await backend.close()

    app = FastAPI(title="ocsea console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.console = console
    app.state.pages = Pages(settings)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_exception_handlers(app)
    app.include_router(router)
    # Server spans as the services have them (nothing when tracing is off).
    instrument_http_app(app)
    return app
