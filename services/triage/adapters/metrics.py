"""The `TriageFigures` port in Prometheus: results, reclassifications, reports and latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from contracts.events import Envelope, EventType, ReportTriagedData
from contracts.reports import Channel
from contracts.topics import Lane
from ocsea.runtime.metrics import LATENCY_BUCKETS


class PrometheusFigures:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.results = Counter(
            "ocsea_triage_results_total",
            "Triage results published, by classification and priority",
            ["classification", "priority"],
            registry=registry,
        )
        self.reclassified = Counter(
            "ocsea_triage_reclassifications_total",
            "Cases whose classification or priority changed",
            ["trigger"],
            registry=registry,
        )
        self.reports = Counter(
            "ocsea_triage_reports",
            "Reports triaged, by the report's channel and lane and the classification and "
            "priority its case has after it",
            ["channel", "lane", "classification", "priority"],
            registry=registry,
        )
        self.latency = Histogram(
            "ocsea_triage_latency_seconds",
            "From a report's receipt by intake to its case's triage result, by lane and priority",
            ["lane", "priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def published(self, event: Envelope) -> None:
        if event.event_type == EventType.REPORT_TRIAGED:
            data = event.payload(ReportTriagedData)
            self.results.labels(data.classification.value, data.priority.value).inc()
        elif event.event_type == EventType.CASE_RECLASSIFIED:
            self.reclassified.labels(str(event.data.get("trigger"))).inc()

    def report_triaged(
        self, *, channel: Channel, lane: Lane, result: ReportTriagedData, waited_s: float
    ) -> None:
        self.reports.labels(channel, lane, result.classification, result.priority).inc()
        self.latency.labels(lane, result.priority).observe(waited_s)
