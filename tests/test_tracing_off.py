"""Tracing costs nothing where no exporter is configured: no provider, no instrumentation,
no Kafka telemetry middleware, no spans; with one, all of them are there.

Each case runs in a fresh interpreter: a process decides once, at its first use of tracing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.system import REPO

PROBE = """
import json, sys
from opentelemetry import trace
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from httpx import AsyncHTTPTransport

from ocsea.runtime.consumer_spans import record_span
from ocsea.runtime.kafka import make_broker
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import current_traceparent, tracer_provider, tracing

provider = tracer_provider("ocsea-probe")
settings = Settings(var_dir=sys.argv[1])
broker = make_broker(settings, service="probe", registry=CollectorRegistry())
app = create_http_app(ServiceContext.create("probe", settings), title="probe")
app.build_middleware_stack()


class Record:
    topic, partition, offset = "ocsea.reports.received.v1", 0, 7
    headers = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]


with record_span(Record(), "group") as span:
    traceparent = current_traceparent()
print(json.dumps({
    "provider": provider is not None,
    "tracing": tracing(),
    "global_provider": type(trace.get_tracer_provider()).__name__,
    "kafka_middlewares": sorted(type(m).__name__ for m in broker.middlewares),
    "redis_wrapped": hasattr(Redis.execute_command, "__wrapped__"),
    "httpx_wrapped": hasattr(AsyncHTTPTransport.handle_async_request, "__wrapped__"),
    "fastapi_instrumented": bool(getattr(app, "_is_instrumented_by_opentelemetry", False)),
    "record_span": span is not None,
    "traceparent": traceparent,
}))
"""


def probe(tmp_path: Path, **env: str) -> dict[str, object]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "OCSEA_TRACE_FILE"
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_without_an_exporter_nothing_is_instrumented(tmp_path: Path) -> None:
    found = probe(tmp_path)
    assert found == {
        "provider": False,
        "tracing": False,
        "global_provider": "ProxyTracerProvider",
        "kafka_middlewares": ["KafkaPrometheusMiddleware"],
        "redis_wrapped": False,
        "httpx_wrapped": False,
        "fastapi_instrumented": False,
        "record_span": False,
        "traceparent": None,
    }


@pytest.mark.parametrize("exporter", ["OCSEA_TRACE_FILE", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_with_an_exporter_everything_is(tmp_path: Path, exporter: str) -> None:
    value = (
        str(tmp_path / "spans.jsonl") if exporter == "OCSEA_TRACE_FILE" else "http://127.0.0.1:9"
    )
    found = probe(tmp_path, **{exporter: value})
    for on in ("provider", "tracing", "redis_wrapped", "httpx_wrapped", "fastapi_instrumented"):
        assert found[on] is True, on
    assert found["global_provider"] == "TracerProvider"
    assert "KafkaTelemetryMiddleware" in str(found["kafka_middlewares"])
    # A record's span continues its producer's trace.
    assert str(found["traceparent"]).startswith("00-0af7651916cd43dd8448eb211c80319c-")
    if exporter == "OCSEA_TRACE_FILE":
        [line] = (tmp_path / "spans.jsonl").read_text(encoding="utf-8").splitlines()
        span = json.loads(line)
        assert span["service"] == "ocsea-probe"
        assert span["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert span["attributes"]["messaging.destination.name"] == "ocsea.reports.received.v1"
