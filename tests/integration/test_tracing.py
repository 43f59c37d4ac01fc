"""One trace per report, across every service, on the real stack (`ocsea run`).

A partner's `traceparent` is continued by intake's HTTP span, carried in Kafka headers through
triage and routing, into the audit's ingest, and out to the agency's webhook, whose receiver
gets it in the same trace. Spans come from the services' own exporter: each process appends
its finished spans to the system's JSON-lines span file (`OCSEA_TRACE_FILE`), which is what an
in-memory exporter is for processes of their own.

The webhook is configured for the sample directory's Sulaymaniyah child protection unit, and
the test's report comes from Sulaymaniyah: other systems on the shared broker route the same
report alike, and no other test sends reports there.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from contracts import topics
from ocsea.runtime.projection import epoch_key
from services.routing.adapters.redis import RoutingStore
from services.routing.adapters.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from testkit.routing_harness import claimed_redis_db, redis_url
from testkit.system import REPO, RunningSystem, start_system
from testkit.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

WEBHOOK_SECRET = "tracing-test-secret"
SERVICES = {"intake", "triage", "routing", "audit"}


@dataclass
class Receiver:
    """The agency's system: records every delivery's headers and body, answers 200."""

    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.calls)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, int]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
async def traced(
    stack_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    receiver: tuple[Receiver, int],
) -> AsyncIterator[RunningSystem]:
    """The whole system, the sample directory with a webhook for Sulaymaniyah's unit, and a
    Redis database of its own: on the shared one, another system's routing (without the
    webhook) could take the delivery from the shared due-queue and drop it."""
    _, port = receiver
    base = tmp_path_factory.mktemp("tracing")
    sample = (REPO / "contracts/sample_directory.toml").read_text(encoding="utf-8")
    anchor = 'supervisors = ["supervisor-sulaymaniyah-cpu"]\n'
    assert sample.count(anchor) == 1
    directory = base / "directory.toml"
    directory.write_text(
        sample.replace(
            anchor,
            anchor + "[agencies.delivery]\n"
            # The token in the query must reach no span (spans show URLs without queries).
            f'webhook_url = "http://127.0.0.1:{port}/ocsea/tasks?token=never-in-a-span"\n'
            'webhook_secret_env = "OCSEA_WEBHOOK_SECRET_SULAYMANIYAH_CPU"\n',
        ),
        encoding="utf-8",
    )
    async with claimed_redis_db(stack_env) as db:
        # As for a deployment running all along: routing, triage and intake find their
        # projections present, and do not rebuild them from the shared topics' whole history.
        redis = Redis.from_url(redis_url(stack_env, db))
        try:
            await RoutingStore(redis).set_epoch("tracing-test")
            for projection in ("triage", "intake"):
                await redis.set(epoch_key(projection), "tracing-test")
        finally:
            await redis.aclose()
        running = start_system(
            stack_env,
            base / "var",
            f"ocsea-tracing-{uuid.uuid4().hex[:8]}",
            extra={
                "OCSEA_REDIS_URL": redis_url(stack_env, db),
                "OCSEA_ROUTING_DIRECTORY_FILE": str(directory),
                "OCSEA_WEBHOOK_SECRET_SULAYMANIYAH_CPU": WEBHOOK_SECRET,
            },
        )
        try:
            yield running
        finally:
            running.stop()


def spans_of(system: RunningSystem, trace_id: str) -> list[dict[str, Any]]:
    path = system.var_dir / "spans.jsonl"
    if not path.exists():
        return []
    spans = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [s for s in spans if s["trace_id"] == trace_id]


def is_kafka(span: dict[str, Any]) -> bool:
    return span["kind"] in ("PRODUCER", "CONSUMER")


def consumed(spans: list[dict[str, Any]], service: str, topic: str) -> list[dict[str, Any]]:
    return [
        s
        for s in spans
        if s["service"] == f"ocsea-{service}"
        and s["kind"] == "CONSUMER"
        and s["attributes"].get("messaging.destination.name") == topic
    ]


def published(spans: list[dict[str, Any]], service: str, topic: str) -> list[dict[str, Any]]:
    return [
        s
        for s in spans
        if s["service"] == f"ocsea-{service}"
        and s["kind"] == "PRODUCER"
        and s["attributes"].get("messaging.destination.name") == topic
    ]


def webhook_client_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        s
        for s in spans
        if s["service"] == "ocsea-routing"
        and s["kind"] == "CLIENT"
        and "/ocsea/tasks" in str(s["attributes"].get("url.full", ""))
    ]


PERSONAL = "Personal"


def personal_report(marker: str, phone_digits: str) -> dict[str, Any]:
    """A Sulaymaniyah child's sextortion report (P1: child protection and police) whose every
    personal field holds a value found nowhere else."""

    def value(what: str) -> str:
        return f"{PERSONAL}-{what}-{marker}"

    identifier = {
        "platform": "instagram",
        "handle": value("handle"),
        "user_id": value("user"),
        "display_name": value("display"),
        "url": f"https://instagram.example/{value('profile')}",
    }
    return {
        "source_reference": f"TR-{uuid.uuid4().hex[:12]}",
        "channel": "hotline",
        "language": "ckb",
        "incident": {
            "occurred_at": "2026-11-20T21:30:00+03:00",
            "governorate": "sulaymaniyah",
            "platform": "instagram",
            "location_description": value("place"),
        },
        "survivors": [
            {
                "name": value("name"),
                "age": 15,
                "school_name": value("school"),
                "contact": {
                    "phone": f"+964 770 {phone_digits}",
                    "email": f"{value('email').lower()}@mail.example",
                    "address": value("address"),
                },
                "online_identifiers": [identifier],
            }
        ],
        "reported_persons": [{"name": value("suspect"), "online_identifiers": [identifier]}],
        "categories": ["sextortion"],
        "risk_flags": ["sextortion_deadline"],
        "narrative": value("narrative"),
        "content_urls": [f"https://content.example/{value('content')}"],
    }


@dataclass
class TracedReport:
    trace_id: str
    caller_span_id: str
    case_id: str
    marker: str
    phone_digits: str
    spans: list[dict[str, Any]]
    delivery: tuple[dict[str, str], bytes]


@pytest.fixture(scope="module")
async def traced_report(traced: RunningSystem, receiver: tuple[Receiver, int]) -> TracedReport:
    """One report posted with the partner's own `traceparent`, followed until its trace has
    every stage and the agency's system received it."""
    agency, _ = receiver
    trace_id, caller_span_id = secrets.token_hex(16), secrets.token_hex(8)
    marker, phone_digits = secrets.token_hex(8), f"{secrets.randbelow(10**7):07d}"
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{traced.urls['intake']}/v1/reports",
            json=personal_report(marker, phone_digits),
            headers={
                **traced.headers("partner-hotline"),
                "traceparent": f"00-{trace_id}-{caller_span_id}-01",
            },
        )
    assert response.status_code == 202, response.text
    case_id = response.json()["case_id"]

    def delivery() -> tuple[dict[str, str], bytes] | None:
        return next((c for c in agency.received() if case_id.encode() in c[1]), None)

    async def delivered() -> tuple[dict[str, str], bytes] | None:
        return delivery()

    await wait_for(delivered, within=90, what="the webhook delivery of the case's task")

    async def complete() -> list[dict[str, Any]] | None:
        spans = spans_of(traced, trace_id)
        stages = [
            consumed(spans, "triage", topics.REPORTS_RECEIVED),
            consumed(spans, "routing", topics.REPORTS_TRIAGED),
            consumed(spans, "audit", topics.REPORTS_RECEIVED),
            consumed(spans, "audit", topics.REPORTS_TRIAGED),
            consumed(spans, "audit", topics.TASKS_EVENTS),
            consumed(spans, "audit", topics.DISPATCH_CHILD_PROTECTION),
            webhook_client_spans(spans),
            [s for s in spans if s["name"] == "deliver webhook"],  # ends after its request
        ]
        return spans if all(stages) else None

    spans = await wait_for(complete, within=60, what="every stage's spans in the report's trace")
    found = delivery()
    assert found is not None
    return TracedReport(trace_id, caller_span_id, case_id, marker, phone_digits, spans, found)


async def test_one_trace_from_the_partner_to_the_agency_webhook(
    traced_report: TracedReport,
) -> None:
    spans = traced_report.spans
    # Intake's server span continues the partner's own span.
    [server] = [
        s for s in spans if s["kind"] == "SERVER" and s["parent_id"] == traced_report.caller_span_id
    ]
    assert server["service"] == "ocsea-intake"
    assert server["attributes"]["http.route"] == "/v1/reports"
    assert server["attributes"]["http.request.method"] == "POST"
    assert server["attributes"]["http.response.status_code"] == 202
    assert server["name"] == "POST /v1/reports"

    # Each stage publishes in the trace, and the next stage's record span continues it.
    stages = [
        ("intake", topics.REPORTS_RECEIVED, "triage"),
        ("triage", topics.REPORTS_TRIAGED, "routing"),
        ("routing", topics.TASKS_EVENTS, "audit"),
    ]
    for producer, topic, consumer in stages:
        assert published(spans, producer, topic), (producer, topic)
        assert consumed(spans, consumer, topic), (consumer, topic)
    assert published(spans, "routing", topics.DISPATCH_CHILD_PROTECTION)
    assert consumed(spans, "audit", topics.DISPATCH_CHILD_PROTECTION)
    by_id = {s["span_id"]: s for s in spans}
    [triage_record] = consumed(spans, "triage", topics.REPORTS_RECEIVED)
    assert by_id[triage_record["parent_id"]]["service"] == "ocsea-intake"

    # Every Kafka span follows the messaging conventions.
    kafka = [s for s in spans if is_kafka(s)]
    assert len(kafka) >= 10
    for span in kafka:
        assert span["attributes"]["messaging.system"] == "kafka", span
        assert span["attributes"]["messaging.destination.name"].startswith("ocsea."), span

    # Each service names itself; Redis calls are in the trace with their arguments elided.
    assert {s["service"] for s in spans} == {f"ocsea-{name}" for name in SERVICES}
    redis = [s for s in spans if s["attributes"].get("db.system.name") == "redis"]
    assert {s["service"] for s in redis} >= {"ocsea-intake", "ocsea-triage", "ocsea-routing"}
    for span in redis:
        text = span["attributes"]["db.query.text"]
        # A command per line, every argument elided (a script's first use loads it).
        command = r"(SCRIPT LOAD|[A-Z.]+)( \?)*"
        assert re.fullmatch(rf"{command}(\n{command})*", text), text

    # The webhook: its client span in the trace, without the URL's token, and the agency's
    # system received the same trace, as the child of that span.
    [client] = webhook_client_spans(spans)
    assert client["attributes"]["url.full"].endswith("/ocsea/tasks")
    assert client["attributes"]["http.request.method"] == "POST"
    assert client["attributes"]["http.response.status_code"] == 200
    assert by_id[client["parent_id"]]["name"] == "deliver webhook"
    headers, body = traced_report.delivery
    assert headers["traceparent"] == f"00-{traced_report.trace_id}-{client['span_id']}-01"
    assert verify(
        WEBHOOK_SECRET.encode(),
        headers[TIMESTAMP_HEADER.lower()],
        body,
        headers[SIGNATURE_HEADER.lower()],
    )


async def test_personal_values_reach_no_log_span_or_metric_label(
    traced: RunningSystem, traced_report: TracedReport
) -> None:
    """Every personal field held a value of its own; none is in a log line, in any span of
    any service (HTTP, Kafka, Redis, SQL, the webhook), or in a metric of any service."""
    marker, digits = traced_report.marker, traced_report.phone_digits
    needles = [marker, digits]
    path = traced.var_dir / "spans.jsonl"
    spans = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    # The check covers spans of every kind the system makes, not just the report's trace.
    kinds = {
        "http server": [s for s in spans if s["kind"] == "SERVER"],
        "http client": [
            s for s in spans if s["kind"] == "CLIENT" and "url.full" in s["attributes"]
        ],
        "redis": [s for s in spans if s["attributes"].get("db.system.name") == "redis"],
        "sql": [s for s in spans if s["attributes"].get("db.system.name") == "sqlite"],
        "kafka": [s for s in spans if is_kafka(s)],
    }
    assert all(kinds.values()), {kind: len(found) for kind, found in kinds.items()}
    span_text = json.dumps([(s["name"], s["attributes"], s["events"]) for s in spans])
    async with httpx.AsyncClient(timeout=30) as client:
        scraped = {
            name: (await client.get(f"{url}/metrics")).text for name, url in traced.api_urls.items()
        }
    assert all("ocsea_" in text for text in scraped.values()), list(scraped)
    texts = {
        "log": traced.log_file.read_text(encoding="utf-8"),
        "spans": span_text,
        **{f"metrics of {name}": text for name, text in scraped.items()},
    }
    assert traced_report.case_id in texts["log"]  # the case was logged, by id
    for where, text in texts.items():
        leaked = [needle for needle in needles if needle in text or needle.lower() in text]
        assert leaked == [], f"personal data in the {where}: {leaked}"
