"""`ocsea bench`'s pure parts: figures, the report generator, /proc and py-spy parsing."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bench.e2e.kafka import report_id_of_assignment
from bench.e2e.phases import Phase
from bench.e2e.procs import label_from_cmdline, parse_stat, parse_status_kb
from bench.e2e.profile import top_functions
from bench.e2e.reports import make_report, ndjson, p1_report
from bench.e2e.stats import parse_replicas, percentile, service_of, summarise
from contracts.reports import PartnerReport
from services.intake.domain.batch import parse_ndjson
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.matching import Matcher
from services.intake.domain.reference import Gazetteer, Vocabulary
from services.intake.handlers.reading import JsonReader

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def refs() -> Normalisers:
    return Normalisers(Gazetteer.load(), Vocabulary.load(), ZoneInfo("Asia/Baghdad"), 1024)


@pytest.fixture(scope="module")
def reports(refs: Normalisers) -> list[PartnerReport]:
    """600 generated reports, each through intake's own normalisation and validation."""
    return [canonical_report(make_report(n, "run1", "ngo", now=NOW), refs) for n in range(1, 601)]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 … 1, unsorted on purpose
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 0)


def test_reports_still_waiting_count_as_lower_bounds() -> None:
    summary = summarise([10.0] * 98, waiting_ms=[5_000.0, 6_000.0])
    assert (summary.count, summary.missing, summary.complete) == (100, 2, False)
    assert summary.p50_ms == 10
    assert summary.p99_ms == 5_000  # a stalled tail cannot hide behind the done ones
    assert summary.max_ms == 6_000
    assert summarise([]).p99_ms is None


def test_phase_latency_and_throughput() -> None:
    phase = Phase("x", started=100.0)
    phase.sent_at = {"a": 99.0, "b": 100.4, "c": 100.9}
    phase.accepted_at = {"a": 100.0, "b": 100.5, "c": 101.0}
    phase.assigned_at = {"a": 99.8, "b": 101.0}  # a's task existed before its late 202
    phase.ended, phase.end_reason = 103.0, "budget spent"
    latency = phase.latency()
    assert latency.missing == 1
    assert latency.max_ms == pytest.approx(2_000)  # c waited from 101.0 to the end, 103.0
    assert latency.p50_ms == pytest.approx(500)  # of -200 (kept as measured), 500, ≥ 2,000
    from_sending = phase.latency(since_sent=True)  # 800, 600, ≥ 2,100
    assert from_sending.p50_ms == pytest.approx(800)
    assert from_sending.max_ms == pytest.approx(2_100)
    assert not phase.complete
    assert phase.throughput() == pytest.approx(2 / 3)  # 2 through in the 3 s it ran
    stuck = Phase("y", started=0.0, accepted_at={"a": 0.5}, ended=5.0, end_reason="stalled")
    assert stuck.throughput() == 0.0
    assert Phase("z", started=0.0, ended=5.0).throughput() is None  # nothing was accepted
    phase.assigned_at["c"] = 102.0
    phase.end_reason = "all assigned"
    assert phase.complete
    assert phase.throughput() == pytest.approx(3 / 2)  # to the last task, at 102.0


def test_generated_reports_are_valid_and_varied(reports: list[PartnerReport]) -> None:
    governorates = Counter(r.incident.governorate.value for r in reports if r.incident.governorate)
    assert set(governorates) == {"erbil", "duhok", "sulaymaniyah", "halabja"}
    ages = [s.age for r in reports for s in r.survivors if s.age is not None]
    assert any(a < 18 for a in ages)
    assert any(a >= 18 for a in ages)
    assert any(s.date_of_birth for r in reports for s in r.survivors)
    assert any(not (s.age or s.date_of_birth) for r in reports for s in r.survivors)
    assert any(r.consent.police_referral is True for r in reports)
    assert any(r.consent.police_referral is False for r in reports)
    assert len({c for r in reports for c in r.categories}) >= 8
    assert {r.language.value for r in reports if r.language} == {"ckb", "kmr", "ar", "en"}
    assert 0 < sum(bool(r.risk_flags) for r in reports) < len(reports) / 2
    assert all(r.incident.occurred_at and r.incident.occurred_at < NOW for r in reports)


def test_generated_reports_never_match_each_other(
    reports: list[PartnerReport], refs: Normalisers
) -> None:
    """No report is a duplicate of, or linked into the case of, another: each gets its task."""
    matcher = Matcher(b"k" * 32, refs.vocabulary)
    assert len({matcher.fingerprint("p", r) for r in reports}) == len(reports)
    keys = [k.digest for r in reports for k in matcher.keys("p", r)]
    assert len(keys) == len(set(keys))
    other_run = canonical_report(make_report(1, "run2", "ngo", now=NOW, phones=False), refs)
    assert not {k.digest for k in matcher.keys("p", other_run)} & set(keys)


def test_generation_is_reproducible() -> None:
    assert make_report(42, "r", "ngo", now=NOW) == make_report(42, "r", "ngo", now=NOW)
    assert make_report(42, "r", "ngo", now=NOW) != make_report(43, "r", "ngo", now=NOW)


def test_batch_body_is_ndjson_intake_reads(refs: Normalisers) -> None:
    body = ndjson(make_report(n, "r", "ngo", now=NOW) for n in range(5))
    batch = parse_ndjson(body.decode(), max_rows=1000, read_json=JsonReader().read)
    assert [row.line for row in batch.rows] == [1, 2, 3, 4, 5]
    assert all(row.problem is None and row.content for row in batch.rows)


def test_p1_report_is_the_readme_sextortion_case(refs: Normalisers) -> None:
    report = canonical_report(p1_report("r", 1), refs)
    assert report.survivors[0].age == 15
    assert [c.value for c in report.categories] == ["sextortion"]
    assert [f.value for f in report.risk_flags] == ["sextortion_deadline"]
    assert PartnerReport.model_validate(p1_report("r", 1)).channel.value == "hotline"


def test_replicas_option() -> None:
    assert parse_replicas("triage=2,routing=2") == {"triage": 2, "routing": 2}
    assert parse_replicas(None) == {}
    for bad in ("triage", "nope=2", "triage=0", "triage=x"):
        with pytest.raises(ValueError, match="--replicas"):
            parse_replicas(bad)
    assert service_of("triage-2") == "triage"
    assert service_of("routing-bulk-0") == "routing"
    assert service_of("supervisor") == "supervisor"


def test_task_assigned_records_give_their_report_id() -> None:
    envelope = {"event_type": "task.assigned", "data": {"report_id": "r-1", "task_id": "t"}}
    value = json.dumps(envelope).encode()
    assert report_id_of_assignment(value, [("event_type", b"task.assigned")]) == "r-1"
    assert report_id_of_assignment(value, []) == "r-1"  # no headers: read the envelope
    acknowledged = json.dumps({**envelope, "event_type": "task.acknowledged"}).encode()
    assert report_id_of_assignment(acknowledged, [("event_type", b"task.acknowledged")]) is None
    assert report_id_of_assignment(b"not json task.assigned", []) is None
    assert report_id_of_assignment(None, []) is None


def test_proc_parsing() -> None:
    stat = "123 (python3 (x) y) S 45 1 1 0 -1 0 0 0 0 0 250 50 0 0 20 0 1 0 0 0 0"
    parsed = parse_stat(stat, ticks=100)
    assert (parsed.state, parsed.ppid, parsed.cpu_s) == ("S", 45, 3.0)
    status = "Name:\tpython3\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert parse_status_kb(status, "VmHWM") == 204_800
    assert parse_status_kb(status, "VmSwap") is None
    assert label_from_cmdline(["python", "-m", "ocsea.cli", "triage"]) == "triage"
    assert label_from_cmdline(["python", "-m", "ocsea.cli", "run"]) is None


def test_profile_summary_from_collapsed_stacks() -> None:
    collapsed = (
        "MainThread;run (a.py:1);handle (engine.py:10);dumps (json.py:5) 60\n"
        "MainThread;run (a.py:1);handle (engine.py:12) 30\n"
        "MainThread;run (a.py:1);poll (kafka.py:3) 10\n"
    )
    top = {h.function: h for h in top_functions(collapsed)}
    assert top["dumps (json.py)"].self_share == pytest.approx(0.6)
    assert top["handle (engine.py)"].self_share == pytest.approx(0.3)
    assert top["handle (engine.py)"].total_share == pytest.approx(0.9)
    assert top["run (a.py)"].total_share == pytest.approx(1.0)
    assert next(iter(top)) == "dumps (json.py)"
