"""The runtime's metrics: HTTP requests labelled by route template (never the path sent), the
names a registry exports, refreshes that survive a failure, and readiness check by check."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import cast

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram

from ocsea.runtime.metrics import HttpMetrics, Refresher, ServiceFigures, exported_names
from ocsea.runtime.service import ServiceContext
from ocsea.runtime.settings import Settings
from testkit.waiting import wait_for


def instrumented() -> tuple[FastAPI, CollectorRegistry]:
    registry = CollectorRegistry()
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: uuid.UUID) -> dict[str, str]:
        return {"id": str(thing_id)}

    @app.post("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(
        HttpMetrics,
        requests=Counter("t_requests", "", ["method", "route", "status"], registry=registry),
        duration=Histogram("t_seconds", "", ["method", "route"], registry=registry),
    )
    return app, registry


async def test_requests_are_counted_by_route_template_method_and_status() -> None:
    app, registry = instrumented()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    thing_id = uuid.uuid4()
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get(f"/v1/things/{thing_id}")).status_code == 200
        assert (await client.get("/v1/things/not-a-uuid")).status_code == 422
        assert (await client.get(f"/v1/cases/{thing_id}/secret-name")).status_code == 404
        assert (await client.request("BREW", f"/v1/things/{thing_id}")).status_code == 405
        assert (await client.post("/v1/broken")).status_code == 500

    def count(method: str, route: str, status: str) -> float | None:
        labels = {"method": method, "route": route, "status": status}
        return registry.get_sample_value("t_requests_total", labels)

    template = "/v1/things/{thing_id}"
    assert count("GET", template, "200") == 1
    assert count("GET", template, "422") == 1
    assert count("GET", "unmatched", "404") == 1
    assert count("other", template, "405") == 1
    assert count("POST", "/v1/broken", "500") == 1
    seconds = registry.get_sample_value("t_seconds_count", {"method": "GET", "route": template})
    assert seconds == 2
    # Only templates: no path that was sent, so no id, in any label.
    exposed = [s for m in registry.collect() for s in m.samples]
    assert all(str(thing_id) not in value for s in exposed for value in s.labels.values())


def test_exported_names_are_the_names_queries_use() -> None:
    registry = CollectorRegistry()
    Counter("c", "", registry=registry)
    Histogram("h_seconds", "", ["x"], registry=registry)
    names = exported_names(registry)
    assert {"c_total", "h_seconds_bucket", "h_seconds_sum", "h_seconds_count"} <= names
    assert "c" not in names


async def test_a_failed_refresh_is_tried_again_at_the_next_interval() -> None:
    calls: list[int] = []

    async def refresh() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise ConnectionError("the broker is away")

    refresher = Refresher("test", refresh, interval_s=0.01)
    await refresher.start()
    try:

        async def refreshed_again() -> bool:
            return len(calls) >= 3

        await wait_for(refreshed_again, within=5, what="refreshes after a failure")
    finally:
        await refresher.stop()


async def test_readiness_is_exported_check_by_check_once_read() -> None:
    async def fine() -> None:
        return None

    async def down() -> None:
        raise ConnectionError("Kafka broker not reachable")

    registry = CollectorRegistry()
    context = SimpleNamespace(
        settings=Settings(metrics_refresh_s=1), consumers=[], readiness={"redis": fine}
    )
    figures = ServiceFigures(registry, cast(ServiceContext, context))
    assert registry.get_sample_value("ocsea_service_ready") == 0  # not read yet
    context.readiness["kafka"] = down
    await figures.refresh()
    assert registry.get_sample_value("ocsea_service_ready") == 0
    assert registry.get_sample_value("ocsea_service_check_ready", {"check": "kafka"}) == 0
    assert registry.get_sample_value("ocsea_service_check_ready", {"check": "redis"}) == 1
    context.readiness["kafka"] = fine
    await figures.refresh()
    assert registry.get_sample_value("ocsea_service_ready") == 1
