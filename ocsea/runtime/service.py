"""What every service has: a broker, Redis, metrics, and an HTTP app with health endpoints.

Written once so that intake, triage, routing and audit differ only in their own domain and
handlers, and run the same whether alone or together under `ocsea run`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import BlockingConnectionPool, Redis

from contracts.topics import Lane
from ocsea.runtime.auth import PrincipalStore
from ocsea.runtime.consumer import (
    ConsumerMetrics,
    Handler,
    ProcessedMarkers,
    RawHandler,
    ReliableConsumer,
    RetryPolicy,
)
from ocsea.runtime.errors import install_error_handlers
from ocsea.runtime.kafka import (
    ensure_topics,
    make_broker,
    project_topics,
    start_new_groups_at_end,
)
from ocsea.runtime.lanes import LaneGate
from ocsea.runtime.lifecycle import fatal_reason
from ocsea.runtime.logging import get_logger
from ocsea.runtime.metrics import instrument_service
from ocsea.runtime.redis_batching import CoalescingRedis
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import instrument_http_app, untraced

ReadinessCheck = Callable[[], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


def make_redis(settings: Settings) -> Redis:
    """A client whose pool waits for a free connection rather than failing: batches work on
    many cases at once, and a burst must queue, not error."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.publish_timeout_s,
    )
    # Concurrent cases' commands share round trips (see `redis_batching`): a batch of events
    # costs a few pipelines instead of a few round trips each.
    return CoalescingRedis(pool, max_in_flight=settings.redis_round_trips_in_flight)


@dataclass
class ServiceContext:
    """The shared runtime parts of one service instance."""

    name: str
    settings: Settings
    registry: CollectorRegistry
    broker: KafkaBroker
    redis: Redis
    markers: ProcessedMarkers
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    # Background work that publishes (e.g. timers) starts once the broker is up, and stops
    # before it goes down.
    after_start: list[Hook] = field(default_factory=list)
    before_stop: list[Hook] = field(default_factory=list)
    consumers: list[ReliableConsumer] = field(default_factory=list)
    lane_gate: LaneGate = field(default_factory=LaneGate)
    _consumer_metrics: ConsumerMetrics | None = None

    @classmethod
    def create(cls, name: str, settings: Settings) -> ServiceContext:
        registry = CollectorRegistry()
        redis = make_redis(settings)
        context = cls(
            name=name,
            settings=settings,
            registry=registry,
            broker=make_broker(settings, service=name, registry=registry),
            redis=redis,
            markers=ProcessedMarkers(redis, settings.processed_marker_ttl_s),
        )
        context.readiness["kafka"] = context._kafka_ready
        context.readiness["redis"] = context._redis_ready
        context.readiness["process"] = _process_ready
        return context

    @property
    def group_id(self) -> str:
        return f"{self.settings.consumer_group_prefix}.{self.name}"

    def consume(
        self,
        *topics: str,
        handler: Handler | None = None,
        raw_handler: RawHandler | None = None,
        raw_batch_size: int = 500,
        group_suffix: str = "",
        lane: Lane | None = None,
        event_types: Iterable[str] | None = None,
    ) -> None:
        """Subscribe reliably; a suffix gives a second, independent consumer group;
        `event_types` (for `handler`) leaves records of other types unparsed and unhandled.

        Give `handler` for envelopes, or `raw_handler` for batches of records taken as they are.
        A process that serves one lane only (`serve_lanes`) leaves the other lane's consumers
        to the process that serves it; consumers of no lane run with the live lane.
        """
        if not self.serves(lane):
            return
        if self._consumer_metrics is None:
            self._consumer_metrics = ConsumerMetrics(self.registry)
        consumer = ReliableConsumer(
            self.broker,
            topics=topics,
            group_id=self.group_id + (f".{group_suffix}" if group_suffix else ""),
            handler=handler,
            raw_handler=raw_handler,
            raw_batch_size=raw_batch_size,
            markers=self.markers,
            retry=RetryPolicy.from_settings(self.settings),
            batch_max=self.settings.consumer_batch_max,
            batch_wait_ms=self.settings.consumer_batch_wait_ms,
            metrics=self._consumer_metrics,
            gate=self.lane_gate,
            lane=lane,
            event_types=frozenset(event_types) if event_types is not None else None,
        )
        self.consumers.append(consumer)
        if "consumers" not in self.readiness:
            self.readiness["consumers"] = self._consumers_ready

    def serves(self, lane: Lane | None) -> bool:
        """Whether this process runs the work of `lane` (None: work of no lane, e.g. timers,
        projections, the API, which run with the live lane)."""
        serving = self.settings.serve_lanes
        return serving == "all" or (serving == "bulk") == (lane is Lane.BULK)

    async def _consumers_ready(self) -> None:
        stalled = {c.group_id: c.health.stalled for c in self.consumers if c.health.stalled}
        if stalled:
            raise ConnectionError(f"waiting out an infrastructure failure: {stalled}")

    async def _kafka_ready(self) -> None:
        if not await self.broker.ping(timeout=2.0):
            raise ConnectionError("Kafka broker not reachable")

    async def _redis_ready(self) -> None:
        await self.redis.ping()

    async def start(self) -> None:
        for hook in self.on_startup:
            await hook()
        created = await ensure_topics(self.settings, project_topics())
        if created:
            get_logger("ocsea.service").info("kafka.topics_created", topics=created)
        if self.settings.consumer_new_group_start == "now":
            await start_new_groups_at_end(
                self.settings.kafka_bootstrap, [(c.group_id, c.topics) for c in self.consumers]
            )
        await self.broker.start()
        for hook in self.after_start:
            await hook()
        get_logger("ocsea.service").info("service.started", service=self.name)

    async def stop(self) -> None:
        for hook in reversed(self.before_stop):
            await hook()
        await self.broker.stop()
        for hook in reversed(self.on_shutdown):
            await hook()
        await self.redis.aclose()


API_DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI and ReDoc, shipped in a wheel (fastapi-offline's copies) and served by each
service itself: a deployment without internet access still has its API docs, and no page
loads code from a CDN."""


def serve_api_docs(app: FastAPI) -> None:
    app.mount("/api-docs-assets", StaticFiles(directory=API_DOCS_ASSETS), name="api-docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url="/api-docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/api-docs-assets/swagger-ui.css",
            swagger_favicon_url="/api-docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            redoc_js_url="/api-docs-assets/redoc.standalone.js",
            redoc_favicon_url="/api-docs-assets/favicon.png",
            with_google_fonts=False,
        )


async def _process_ready() -> None:
    reason = fatal_reason()
    if reason is not None:
        raise RuntimeError(f"restarting: {reason}")


def create_http_app(
    context: ServiceContext, *, title: str, principals: PrincipalStore | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await context.start()
        try:
            yield
        finally:
            await context.stop()

    app = FastAPI(title=title, version="1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    serve_api_docs(app)
    app.state.context = context
    app.state.principals = principals
    install_error_handlers(app)
    # Requests, the process, consumer lag and readiness on /metrics (ocsea.runtime.metrics).
    instrument_service(app, context)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": context.name}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        with untraced():  # probed every few seconds
            for name, check in context.readiness.items():
                try:
                    await check()
                    checks[name] = "ok"
                except Exception as exc:
                    checks[name] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(context.registry), media_type=CONTENT_TYPE_LATEST)

    # Server spans continuing the caller's `traceparent` (nothing when tracing is off).
    instrument_http_app(app)
    return app
