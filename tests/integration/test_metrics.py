"""/metrics on the real system (`ocsea run`): after reports in both lanes and an officer's
acknowledgement and acceptance, every figure the operators are promised is there with
plausible values, in each service that owns it; and the personal values seeded into the
reports, and their ids, appear in no metric at all."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.kafka import end_offsets
from testkit.system import RunningSystem
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

SERVICES = ("intake", "triage", "routing", "audit")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
LABEL_NAMES = frozenset(
    {
        # ocsea's own: enums and directory codes
        "method", "route", "status", "group", "topic", "partition", "outcome", "kind", "check",
        "source_format", "channel", "lane", "classification", "priority", "trigger", "code",
        "role", "agency", "agency_type", "sla", "deadline", "target", "cause", "event_type",
        "action",
        # the process and garbage collector
        "generation", "implementation", "major", "minor", "patchlevel", "version",
        # FastStream's broker middleware
        "app_name", "broker", "handler", "destination", "exception_type",
        # histogram buckets
        "le",
    }
)  # fmt: skip
"""Every label name any service may use. A new one fails here until it is judged to carry no
personal data and no id."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Exported:
    """What one service's /metrics showed."""

    samples: list[Sample]
    families: set[str]
    """Every family announced (HELP, TYPE): a labelled one has no sample until it moves."""


Scrape = dict[str, Exported]


async def scrape(client: httpx.AsyncClient, system: RunningSystem) -> Scrape:
    found: Scrape = {}
    for service in SERVICES:
        response = await client.get(f"{system.urls[service]}/metrics")
        assert response.status_code == 200, response.text
        families = list(text_string_to_metric_families(response.text))
        found[service] = Exported(
            [Sample(s.name, dict(s.labels), s.value) for f in families for s in f.samples],
            {f.name for f in families},
        )
    return found


def matching(exported: Exported, name: str, **labels: str) -> list[Sample]:
    """The samples named so whose labels include these."""
    return [
        s
        for s in exported.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def total(exported: Exported, name: str, **labels: str) -> float:
    return sum(s.value for s in matching(exported, name, **labels))


MARKER = f"MetricsMarker{uuid.uuid4().hex[:10]}"
REPORT: dict[str, Any] = {
    "channel": "hotline",
    "language": "ckb",
    "incident": {
        "occurred_at": "2026-11-20T21:30:00+03:00",
        "governorate": "erbil",
        "platform": "instagram",
        "location_description": f"{MARKER} street",
    },
    "survivors": [
        {
            "name": f"{MARKER} Survivor",
            "age": 15,
            "contact": {"phone": "+9647501234567", "email": f"{MARKER.lower()}@example.org"},
            "school_name": f"{MARKER} school",
        }
    ],
    "reported_persons": [{"name": f"{MARKER} Suspect", "relationship": "online_only"}],
    "categories": ["sextortion"],
    "risk_flags": ["sextortion_deadline"],
    "narrative": f"{MARKER} narrative",
}


@dataclass
class Traffic:
    before: Scrape
    after: Scrape
    secrets: set[str]
    group_prefix: str
    received_partitions: list[int]

    def delta(self, service: str, name: str, **labels: str) -> float:
        return total(self.after[service], name, **labels) - total(
            self.before[service], name, **labels
        )


@pytest.fixture(scope="module")
async def traffic(system: RunningSystem) -> Traffic:
    """Reports in both lanes, a task acknowledged and accepted; /metrics before and after
    (once every figure that is read rather than counted has been read again)."""
    async with httpx.AsyncClient(timeout=30) as client:
        before = await scrape(client, system)
        partner = system.headers("partner-hotline")
        live = await client.post(
            f"{system.urls['intake']}/v1/reports",
            json={**REPORT, "source_reference": f"{MARKER}-live"},
            headers={**partner, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert live.status_code == 202, live.text
        case_id, report_id = live.json()["case_id"], live.json()["report_id"]
        row = {**REPORT, "source_reference": f"{MARKER}-bulk", "survivors": [{"age": 30}]}
        bulk = await client.post(
            f"{system.urls['intake']}/v1/reports/batch",
            content=json.dumps(row).encode() + b"\n",
            headers={**partner, "Content-Type": "application/x-ndjson"},
        )
        assert bulk.status_code == 202, bulk.text
        secrets = {MARKER, case_id, report_id, *(r["report_id"] for r in bulk.json()["rows"])}

        officer = system.headers("officer-erbil-cpu")
        routing = system.urls["routing"]

        async def assigned() -> list[dict[str, Any]] | None:
            response = await client.get(
                f"{routing}/v1/tasks", params={"case_id": case_id}, headers=officer
            )
            assert response.status_code == 200, response.text
            return response.json() or None

        [task] = await wait_for(assigned, within=30, what="the case's task for Erbil's CPU")
        secrets.add(task["task_id"])
        for command in ("acknowledge", "accept"):
            done = await client.post(
                f"{routing}/v1/tasks/{task['task_id']}/{command}", headers=officer
            )
            assert done.status_code == 200, done.text

        async def caught_up() -> Scrape | None:
            after = await scrape(client, system)
            ready = (
                total(after["triage"], "ocsea_triage_reports_total", priority="P1", lane="live")
                > total(before["triage"], "ocsea_triage_reports_total", priority="P1", lane="live")
                and total(
                    after["routing"], "ocsea_routing_open_tasks", status="accepted", priority="P1"
                )
                >= 1
                and total(after["audit"], "ocsea_audit_tree_size")
                > total(before["audit"], "ocsea_audit_tree_size")
            )
            return after if ready else None

        after = await wait_for(caught_up, within=60, interval=0.5, what="the figures to move")
    prefix = system.env["OCSEA_CONSUMER_GROUP_PREFIX"]
    partitions = await end_offsets(system.bootstrap, "ocsea.reports.received.v1")
    return Traffic(before, after, secrets, prefix, sorted(partitions))


def test_intake_counts_reports_by_channel_lane_and_outcome(traffic: Traffic) -> None:
    reports = "ocsea_intake_reports_total"
    live = {"source_format": "partner_json", "channel": "hotline", "lane": "live"}
    assert traffic.delta("intake", reports, outcome="accepted", **live) == 1
    bulk = {"source_format": "batch", "channel": "hotline", "lane": "bulk"}
    assert traffic.delta("intake", reports, outcome="accepted", **bulk) == 1
    posted = {"method": "POST", "route": "/v1/reports", "status": "202"}
    assert traffic.delta("intake", "ocsea_http_requests_total", **posted) == 1
    assert traffic.delta("intake", "ocsea_http_request_duration_seconds_count", method="POST",
                         route="/v1/reports/batch") == 1  # fmt: skip


def test_triage_counts_reports_by_channel_lane_classification_and_priority(
    traffic: Traffic,
) -> None:
    child_p1 = {"channel": "hotline", "lane": "live", "classification": "TF-CSEA"}
    assert traffic.delta("triage", "ocsea_triage_reports_total", priority="P1", **child_p1) >= 1
    waited = traffic.delta("triage", "ocsea_triage_latency_seconds_sum", lane="live")
    counted = traffic.delta("triage", "ocsea_triage_latency_seconds_count", lane="live")
    assert counted >= 1
    assert 0 < waited / counted < 30  # seconds from receipt to result, on a loaded machine


def test_routing_times_assignment_acknowledgement_and_acceptance(traffic: Traffic) -> None:
    p1_cpu = {"priority": "P1", "agency_type": "child_protection"}
    assert traffic.delta("routing", "ocsea_routing_tasks_assigned_total") >= 2  # CPU, police
    assert traffic.delta("routing", "ocsea_routing_assignment_latency_seconds_count", **p1_cpu) >= 1
    for name in ("time_to_acknowledge", "time_to_accept"):
        count = traffic.delta("routing", f"ocsea_routing_{name}_seconds_count", **p1_cpu)
        seconds = traffic.delta("routing", f"ocsea_routing_{name}_seconds_sum", **p1_cpu)
        assert count >= 1, name
        assert 0 < seconds / count < 120, name  # acted on within the test's own minute
    acted = {"method": "POST", "route": "/v1/tasks/{task_id}/acknowledge", "status": "200"}
    assert traffic.delta("routing", "ocsea_http_requests_total", **acted) == 1
    # Counted only when a deadline passes or a task is escalated: announced from the start.
    assert {"ocsea_routing_sla_breaches", "ocsea_routing_escalations"} <= traffic.after[
        "routing"
    ].families


def test_routing_gauges_tasks_by_state_with_open_overdue_and_breached(traffic: Traffic) -> None:
    after = traffic.after["routing"]
    # The routing state is shared by every system on this Redis: at least this test's task.
    accepted_p1 = {"status": "accepted", "priority": "P1", "agency_type": "child_protection"}
    assert total(after, "ocsea_routing_open_tasks", sla="ok", **accepted_p1) >= 1
    assert total(after, "ocsea_routing_tasks", **accepted_p1) >= 1
    assert total(after, "ocsea_routing_tasks", status="assigned", priority="P1") >= 1  # police
    for gauge in (
        "ocsea_routing_open_tasks",
        "ocsea_routing_overdue_tasks",
        "ocsea_routing_breached_tasks",
    ):
        values = matching(after, gauge)
        assert all(s.value >= 0 and s.value == int(s.value) for s in values), gauge
    open_total = total(after, "ocsea_routing_open_tasks")
    by_status = sum(
        total(after, "ocsea_routing_tasks", status=s)
        for s in ("assigned", "acknowledged", "accepted")
    )
    assert open_total == by_status  # the same tasks, counted two ways
    assert total(after, "ocsea_routing_overdue_tasks") == total(
        after, "ocsea_routing_open_tasks", sla="overdue"
    )


def test_consumers_export_lag_per_partition_handler_times_retries_and_dead_letters(
    traffic: Traffic,
) -> None:
    triage = traffic.after["triage"]
    group = f"{traffic.group_prefix}.triage"
    lag = matching(triage, "ocsea_consumer_lag_records", group=group)
    assert {s.labels["topic"] for s in lag} == {"ocsea.reports.received.v1"}
    assert {int(s.labels["partition"]) for s in lag} == set(traffic.received_partitions)
    assert all(s.value >= 0 for s in lag)
    assert traffic.delta("triage", "ocsea_consumer_handler_seconds_count", group=group) >= 1
    applied = traffic.delta("triage", "ocsea_consumer_records_total", group=group,
                            outcome="applied")  # fmt: skip
    assert applied >= 1
    assert [s.value for s in matching(triage, "ocsea_consumer_dead_letters_total", group=group)]
    assert "ocsea_consumer_retries" in triage.families
    routing_lag = matching(traffic.after["routing"], "ocsea_consumer_lag_records")
    assert {s.labels["group"] for s in routing_lag} >= {
        f"{traffic.group_prefix}.routing",
        f"{traffic.group_prefix}.routing.projection",
    }
    audit = f"{traffic.group_prefix}.audit"
    assert traffic.delta("audit", "ocsea_consumer_batch_seconds_count", group=audit) >= 1


def test_the_audit_exports_ledger_size_and_checkpoint_age(traffic: Traffic) -> None:
    audit = traffic.after["audit"]
    assert traffic.delta("audit", "ocsea_audit_tree_size") >= 4  # received, triaged, tasks
    assert total(audit, "ocsea_audit_checkpoint_tree_size") <= total(audit, "ocsea_audit_tree_size")
    assert 0 <= total(audit, "ocsea_audit_checkpoint_age_seconds") < 24 * 3600
    assert total(audit, "ocsea_audit_checkpoint_interval_seconds") > 0
    assert traffic.delta("audit", "ocsea_audit_entries_appended_total") >= 4


def test_every_service_exports_its_process_and_readiness(traffic: Traffic) -> None:
    for service in SERVICES:
        samples = traffic.after[service]
        assert {"process_cpu_seconds", "python_gc_objects_collected", "python_info"} <= (
            samples.families
        )
        assert total(samples, "process_resident_memory_bytes") > 10 * 2**20, service
        assert total(samples, "process_cpu_seconds_total") > 0, service
        assert matching(samples, "python_gc_collections_total", generation="0"), service
        assert total(samples, "ocsea_service_ready") == 1, service
        checks = {
            s.labels["check"]: s.value for s in matching(samples, "ocsea_service_check_ready")
        }
        assert {"kafka", "redis"} <= checks.keys(), service
        assert set(checks.values()) == {1.0}, (service, checks)


def test_no_personal_value_and_no_id_is_in_any_metric(traffic: Traffic) -> None:
    for service, exported in traffic.after.items():
        for s in exported.samples:
            assert set(s.labels) <= LABEL_NAMES, (service, s.name, set(s.labels) - LABEL_NAMES)
            for value in s.labels.values():
                assert not UUID.search(value), (service, s.name, s.labels)
                assert not any(secret.lower() in value.lower() for secret in traffic.secrets), (
                    service,
                    s.name,
                    s.labels,
                )
