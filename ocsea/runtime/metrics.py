"""What every service exports on `/metrics` besides its own figures: its HTTP requests, its
process and garbage collector, its consumers' lag and its readiness; and the one way to export
a figure that is read (every `OCSEA_METRICS_REFRESH_S`) rather than counted.

Label values are low-cardinality vocabularies only: route templates (never the path a caller
sent, which holds case and task ids), methods, status codes, consumer groups, topics,
partitions, readiness checks; never an id of a case, report or task, a name, or free text.
The same holds for every service's own figures (`tests/integration/test_metrics.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ocsea.runtime.logging import get_logger

if TYPE_CHECKING:
    from ocsea.runtime.service import ServiceContext

log = get_logger("ocsea.metrics")

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
"""The route label of a request no route matched: its path is whatever the caller sent."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""Seconds, for work a service does itself (a request, a handler, a stage)."""


class HttpMetrics:
    """ASGI middleware: requests counted by method, route template and status, and timed.

    Pure ASGI rather than `BaseHTTPMiddleware`, so responses stream as before. The route is
    read after the app ran, from the scope FastAPI's router filled in."""

    def __init__(self, app: ASGIApp, *, requests: Counter, duration: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.duration = duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts: the app raised
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope.get("method", "")
            method = method if method in HTTP_METHODS else "other"
            route = route_template(scope)
            self.requests.labels(method, route, str(status)).inc()
            self.duration.labels(method, route).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/tasks/{task_id}`), a mount's prefix, or
    `unmatched`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    root = scope.get("root_path", "")
    return root if isinstance(root, str) and root else UNMATCHED_ROUTE


class Refresher:
    """Runs `refresh` now and then every `interval_s` until stopped; a failed refresh is
    logged and tried again at the next interval (its figures keep their last values)."""

    def __init__(self, name: str, refresh: Callable[[], Awaitable[None]], interval_s: float):
        self.name = name
        self.refresh = refresh
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"metrics:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("metrics.refresh_failed", figures=self.name, error=type(exc).__name__)
            await asyncio.sleep(self.interval_s)


def refresh_periodically(
    context: ServiceContext, name: str, refresh: Callable[[], Awaitable[None]]
) -> None:
    """Refresh figures while the service runs: from once the broker is up until it stops."""
    refresher = Refresher(name, refresh, context.settings.metrics_refresh_s)
    context.after_start.append(refresher.start)
    context.before_stop.append(refresher.stop)


class ServiceFigures:
    """Consumer lag per group, topic and partition, and readiness: read every refresh, since
    asking the broker or running the checks on every scrape would let scrapes load them."""

    def __init__(self, registry: CollectorRegistry, context: ServiceContext) -> None:
        self._context = context
        self._lag: dict[tuple[str, str, int], int] = {}
        self._checks: dict[str, bool] = {}
        registry.register(self)

    async def refresh(self) -> None:
        # Readiness first, each step bounded: a broker outage must not hold up its own report.
        within = self._context.settings.metrics_refresh_s
        self._checks = {
            name: await _passes(check, within) for name, check in self._context.readiness.items()
        }
        lag: dict[tuple[str, str, int], int] = {}
        for consumer in self._context.consumers:
            try:
                partitions = await asyncio.wait_for(consumer.lag(), timeout=within)
            except Exception as exc:
                # Left out rather than stale: a group whose lag cannot be read shows no lag.
                log.warning("metrics.lag_unreadable", group=consumer.group_id, error=repr(exc))
                continue
            for (topic, partition), records in partitions.items():
                lag[(consumer.group_id, topic, partition)] = records
        self._lag = lag

    def collect(self) -> Iterable[Metric]:
        lag = GaugeMetricFamily(
            "ocsea_consumer_lag_records",
            "Records on a partition this process's consumer group member has not taken yet "
            "(the partition's end offset minus the member's position), by group, topic and "
            "partition",
            labels=["group", "topic", "partition"],
        )
        for (group, topic, partition), records in sorted(self._lag.items()):
            lag.add_metric([group, topic, str(partition)], records)
        yield lag
        checks = GaugeMetricFamily(
            "ocsea_service_check_ready",
            "Whether each of the service's readiness checks (those of /readyz) passes: 1 or 0",
            labels=["check"],
        )
        for name, passed in sorted(self._checks.items()):
            checks.add_metric([name], 1.0 if passed else 0.0)
        yield checks
        # Not ready until the checks have run once.
        ready = bool(self._checks) and all(self._checks.values())
        yield GaugeMetricFamily(
            "ocsea_service_ready",
            "1 while every readiness check passes (as /readyz answers 200), else 0",
            value=1.0 if ready else 0.0,
        )


async def _passes(check: Callable[[], Awaitable[None]], timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(check(), timeout=timeout_s)
    except Exception:
        return False
    return True


def instrument_service(app: FastAPI, context: ServiceContext) -> None:
    """Export the process, its garbage collector, its HTTP requests, its consumers' lag and
    its readiness into the service's registry."""
    registry = context.registry
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    requests = Counter(
        "ocsea_http_requests",
        "HTTP requests answered, by method, route template and status code",
        ["method", "route", "status"],
        registry=registry,
    )
    duration = Histogram(
        "ocsea_http_request_duration_seconds",
        "Time to answer an HTTP request, by method and route template",
        ["method", "route"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    app.add_middleware(HttpMetrics, requests=requests, duration=duration)
    refresh_periodically(context, "service", ServiceFigures(registry, context).refresh)


SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gauge": ("",),
    "unknown": ("",),
}


def exported_names(registry: CollectorRegistry) -> set[str]:
    """The names of the series a registry exports (as a query names them: `x_total`,
    `x_bucket`, ...), whether or not any has a sample yet."""
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }
