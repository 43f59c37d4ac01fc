"""The Grafana dashboard and the Prometheus alert rules in deploy/, against what the services
export: every metric they use is exported by some service (each built as `ocsea run` builds
it, not started: every metric is registered at build time), every expression parses
(promtool), and each alert fires when it should and not otherwise (promtool's rule unit tests,
on synthetic series)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ocsea.runner import SERVICES, prepare_local
from ocsea.runtime.metrics import exported_names
from ocsea.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "ocsea.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
SCRAPED = ("intake", "triage", "routing", "audit")
"""The services Prometheus scrapes (the console serves pages for people, no /metrics)."""
PROMETHEUS_OWN = frozenset({"up"})
"""Series Prometheus writes itself for every target it scrapes."""

# Words of PromQL that are not metric names where they stand on their own.
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "group_left", "group_right"}
)
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRINGS = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_NAME = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not a function or
    aggregation (followed by `(`), a keyword, a label (in `{…}` or a `by (…)` list), a string,
    a duration (in `[…]`) or a Grafana variable (`$…`)."""
    expr = _STRINGS.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = _LABEL_LISTS.sub(" ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)
    names = set()
    for match in _NAME.finditer(expr):
        followed_by = expr[match.end() :].lstrip()[:1]
        if followed_by != "(" and match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_expressions() -> list[str]:
    return [t["expr"] for p in panels(dashboard()["panels"]) for t in p.get("targets", [])]


def variable_metrics() -> set[str]:
    """Metrics the dashboard's variables list label values of (`label_values(metric, label)`)."""
    found = set()
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        found |= set(re.findall(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,", text))
    return found


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_metric_name_reader_finds_metrics_and_nothing_else() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, job) (rate(a_seconds_bucket{x="y(z)}"}[5m])))'
    ) == {"a_seconds_bucket"}
    assert metric_names(
        "max by (agency_type) (b{priority='P1'}) / on (job) group_left c > bool 1e3 "
        "and d offset 5m unless sum(e[$__rate_interval:1m]) without (instance)"
    ) == {"b", "c", "d", "e"}
    assert metric_names('sum by (group) (increase(f_total{group=~"$group"}[10m])) > 0') == {
        "f_total"
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """What each scraped service exports, by name as a query names it (`x_total`, …)."""
    settings = Settings(var_dir=tmp_path_factory.mktemp("metrics") / "var")
    prepare_local(settings)
    return {
        name: exported_names(SERVICES[name].build(settings).state.context.registry)
        for name in SCRAPED
    }


def test_every_service_exports_its_process_its_requests_and_its_readiness(
    exported: dict[str, set[str]],
) -> None:
    common = {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_gc_collections_total",
        "python_info",
        "ocsea_http_requests_total",
        "ocsea_http_request_duration_seconds_bucket",
        "ocsea_service_ready",
        "ocsea_service_check_ready",
    }
    for name in SCRAPED:
        assert common <= exported[name], (name, common - exported[name])
    # Every service but intake's API-only front consumes: its lag and its handlers show.
    for name in SCRAPED:
        assert {"ocsea_consumer_lag_records", "ocsea_consumer_dead_letters_total"} <= exported[name]


def test_every_metric_the_dashboard_uses_is_exported_by_some_service(
    exported: dict[str, set[str]],
) -> None:
    everything = set().union(*exported.values())
    expressions = dashboard_expressions()
    used = set().union(*map(metric_names, expressions)) | variable_metrics()
    assert len(expressions) >= 30
    assert used - everything - PROMETHEUS_OWN == set()


def test_every_metric_the_alert_rules_use_is_exported_by_some_service(
    exported: dict[str, set[str]],
) -> None:
    everything = set().union(*exported.values())
    used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    assert used
    assert used - everything - PROMETHEUS_OWN == set()


def test_the_dashboard_shows_what_the_mechanism_is_judged_by() -> None:
    used = set().union(*map(metric_names, dashboard_expressions()))
    wanted = {
        # throughput per stage
        "ocsea_intake_reports_total",
        "ocsea_triage_reports_total",
        "ocsea_routing_tasks_assigned_total",
        "ocsea_audit_entries_appended_total",
        "ocsea_consumer_records_total",
        # lag, latency to assignment
        "ocsea_consumer_lag_records",
        "ocsea_triage_latency_seconds_bucket",
        "ocsea_routing_assignment_latency_seconds_bucket",
        # SLA breaches and escalations by agency, time to acknowledge and accept
        "ocsea_routing_sla_breaches_total",
        "ocsea_routing_escalations_total",
        "ocsea_routing_time_to_acknowledge_seconds_bucket",
        "ocsea_routing_time_to_accept_seconds_bucket",
        "ocsea_routing_open_tasks",
        "ocsea_routing_overdue_tasks",
        # dead letters, ledger growth, checkpoint age
        "ocsea_consumer_dead_letters_total",
        "ocsea_audit_tree_size",
        "ocsea_audit_checkpoint_age_seconds",
    }
    assert wanted - used == set()


def test_the_dashboard_is_provisionable_on_the_prometheus_data_source() -> None:
    board = dashboard()
    assert board["uid"] == "ocsea"
    [source] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert (source["name"], source["query"]) == ("datasource", "prometheus")
    shown = [p for p in panels(board["panels"]) if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in shown)
    assert all(t["datasource"]["uid"] == "${datasource}" for p in shown for t in p["targets"])
    ids = [p["id"] for p in panels(board["panels"])]
    assert len(ids) == len(set(ids))
    for p in panels(board["panels"]):
        grid = p["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, p["title"]


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install Debian's prometheus package (./dev does)"
    return found


def run_promtool(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, argv)], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """Each expression, with Grafana's variables given values, as a recording rule."""
    values = {"$__rate_interval": "5m", "$agency_type": ".*", "$group": ".*"}
    rules = []
    for number, expr in enumerate(dashboard_expressions()):
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:panel_{number}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run_promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_says_how_severe_it_is_and_what_happened() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "OcseaP1UnacknowledgedNearDeadline",
        "OcseaConsumerLagGrowing",
        "OcseaDeadLetter",
        "OcseaAuditCheckpointStale",
        "OcseaServiceNotReady",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    text = ", ".join(f'{k}="{v}"' for k, v in {"job": "j", "instance": "i", **labels}.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def fires(name: str, at: str, *labels: dict[str, str]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": x} for x in labels]}


OPEN_P1 = {"priority": "P1", "status": "assigned", "agency_type": "police"}
ALERT_TESTS: list[dict[str, Any]] = [
    {
        # A P1 task warned in two replicas (one task, seen twice) and a warned P2: one alert.
        "input_series": [
            series("ocsea_routing_open_tasks", "0 0 1 1 1", instance="a", sla="warned", **OPEN_P1),
            series("ocsea_routing_open_tasks", "0 0 1 1 1", instance="b", sla="warned", **OPEN_P1),
            series("ocsea_routing_open_tasks", "0 0 0 0 1", sla="overdue", **OPEN_P1),
            series(
                "ocsea_routing_open_tasks",
                "3x4",
                priority="P2",
                status="assigned",
                agency_type="police",
                sla="warned",
            ),
        ],
        "alert_rule_test": [
            fires("OcseaP1UnacknowledgedNearDeadline", "15s"),
            fires(
                "OcseaP1UnacknowledgedNearDeadline",
                "30s",
                {"severity": "critical", "agency_type": "police"},
            ),
            fires("OcseaP1AcknowledgementMissed", "45s"),
            fires(
                "OcseaP1AcknowledgementMissed",
                "60s",
                {"severity": "critical", "agency_type": "police"},
            ),
        ],
    },
    {
        # One group falls further behind for good; another has a backlog that drains.
        "input_series": [
            series(
                "ocsea_consumer_lag_records", "0+10x100", group="stuck", topic="t", partition="0"
            ),
            series(
                "ocsea_consumer_lag_records",
                "5000-40x100",
                group="draining",
                topic="t",
                partition="0",
            ),
        ],
        "alert_rule_test": [
            fires("OcseaConsumerLagGrowing", "5m"),
            fires("OcseaConsumerLagGrowing", "20m", {"severity": "warning", "group": "stuck"}),
        ],
    },
    {
        # The group's count is there at zero from the start (the consumer shows it): its
        # first dead letter is an increase.
        "input_series": [
            series("ocsea_consumer_dead_letters_total", "0 0 0 1 1", group="g"),
            series("ocsea_consumer_dead_letters_total", "0x4", group="quiet"),
        ],
        "alert_rule_test": [
            fires("OcseaDeadLetter", "30s"),
            fires("OcseaDeadLetter", "60s", {"severity": "warning", "group": "g"}),
        ],
    },
    {
        "input_series": [
            series("ocsea_service_ready", "1 1 0x20", job="triage"),
            series("ocsea_service_ready", "1x22", job="routing"),
            series("up", "1 0x10", job="audit"),
            series("up", "1 0x10", job="prometheus"),
        ],
        "alert_rule_test": [
            fires("OcseaServiceNotReady", "1m"),
            fires(
                "OcseaServiceNotReady",
                "3m",
                {"severity": "critical", "job": "triage", "instance": "i"},
            ),
            fires(
                "OcseaServiceDown", "2m", {"severity": "critical", "job": "audit", "instance": "i"}
            ),
        ],
    },
    {
        # `a` stopped signing while entries arrive; `b` is as old, but nothing is uncovered.
        "input_series": [
            series("ocsea_audit_checkpoint_age_seconds", "0+15x40", instance="a"),
            series("ocsea_audit_checkpoint_interval_seconds", "60x40", instance="a"),
            series("ocsea_audit_tree_size", "100+5x40", instance="a"),
            series("ocsea_audit_checkpoint_tree_size", "100x40", instance="a"),
            series("ocsea_audit_checkpoint_age_seconds", "0+15x40", instance="b"),
            series("ocsea_audit_checkpoint_interval_seconds", "60x40", instance="b"),
            series("ocsea_audit_tree_size", "100x40", instance="b"),
            series("ocsea_audit_checkpoint_tree_size", "100x40", instance="b"),
        ],
        "alert_rule_test": [
            fires("OcseaAuditCheckpointStale", "2m"),
            fires(
                "OcseaAuditCheckpointStale",
                "4m",
                {"severity": "warning", "job": "j", "instance": "a"},
            ),
        ],
    },
]


def test_each_alert_fires_when_it_should_and_not_otherwise(tmp_path: Path) -> None:
    """promtool's rule unit tests, on the rules without their annotations (those are texts
    for people, checked above; the behaviour is in the expressions and labels)."""
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    spec = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "15s",
        "tests": [{"interval": "15s", **case} for case in ALERT_TESTS],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    done = run_promtool("test", "rules", tmp_path / "tests.yml")
    assert done.returncode == 0, done.stdout + done.stderr
