"""Intake's figures on the service's Prometheus registry. Labels are kinds, never content."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IntakeFigures:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._reports = Counter(
            "ocsea_intake_reports",
            "Reports by source format, the report's channel, lane and outcome",
            ["source_format", "channel", "lane", "outcome"],
            registry=registry,
        )
        self._refusals = Counter(
            "ocsea_intake_refusals", "Refused requests by code", ["code"], registry=registry
        )

    def report(self, source_format: str, channel: str, lane: str, outcome: str) -> None:
        self._reports.labels(source_format, channel, lane, outcome).inc()

    def refusal(self, code: str) -> None:
        self._refusals.labels(code).inc()
