"""`ocsea triage replay` on a recorded set of reports in real Kafka: a changed weight prints
the expected differences, and nothing is published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts import topics
from contracts.events import Envelope, ReportReceivedData
from contracts.reports import RiskFlag
from services.triage.domain.rules import SAMPLE_RULES
from testkit.kafka import create_topic, end_offsets, read_all
from testkit.system import REPO
from testkit.triage_events import received, survivor
from tests.triage.events import publish, received_event

pytestmark = pytest.mark.integration

HONOUR = (RiskFlag.HONOUR_BASED_VIOLENCE_RISK,)
START = datetime(2026, 11, 1, tzinfo=UTC)


def at(hours: int) -> int:
    return int((START + timedelta(hours=hours)).timestamp() * 1000)


def recorded_set() -> tuple[dict[str, uuid.UUID], list[Envelope], list[int]]:
    """Five cases; the range is hours [10, 20)."""
    cases = {name: uuid.uuid4() for name in ("child", "adult", "before", "pooled", "after")}
    reports: list[tuple[str, ReportReceivedData, int]] = [
        # 30 child + 40 honour = 70: P2; with honour at 60, 90: P1.
        ("child", received(survivor(stated_age=15), flags=HONOUR), at(12)),
        # 40: P2 either way.
        ("adult", received(survivor(stated_age=30), flags=HONOUR), at(13)),
        # Before the range: not replayed.
        ("before", received(survivor(stated_age=14), flags=HONOUR), at(5)),
        # Its first report, before the range, is evidence: s1 is 16. 30 + 40 + 15 = 85: P1
        # either way (alone, the second report would be 70 -> 90: a change).
        ("pooled", received(survivor(stated_age=16)), at(6)),
        ("pooled", received(survivor(), flags=HONOUR), at(15)),
        # After the range: not replayed.
        ("after", received(survivor(stated_age=15), flags=HONOUR), at(25)),
    ]
    events = [received_event(cases[name], data) for name, data, _ in reports]
    return cases, events, [timestamp for _, _, timestamp in reports]


def replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocsea.cli", "triage", "replay", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_replay_with_a_changed_weight_prints_the_differences_and_publishes_nothing(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = stack_env["OCSEA_KAFKA_BOOTSTRAP"]
    topic = f"ocsea.test.triage-replay.{uuid.uuid4().hex[:10]}"
    await create_topic(bootstrap, topic, partitions=2)
    cases, events, timestamps = recorded_set()
    await publish(bootstrap, events, topic=topic, timestamps_ms=timestamps)

    candidate = tmp_path / "candidate.toml"
    candidate.write_text(
        SAMPLE_RULES.read_text(encoding="utf-8")
        .replace("honour_based_violence_risk = 40", "honour_based_violence_risk = 60")
        .replace('version = "kri-sample-2026.1"', 'version = "kri-sample-2026.2"'),
        encoding="utf-8",
    )
    env = {**os.environ, **stack_env, "OCSEA_VAR_DIR": str(tmp_path / "var")}
    window = [
        "--rules", str(candidate), "--topic", topic,
        "--from", (START + timedelta(hours=10)).isoformat(),
        "--to", (START + timedelta(hours=20)).isoformat(),
    ]  # fmt: skip
    inputs_before = await end_offsets(bootstrap, topic)
    triaged_before = await end_offsets(bootstrap, topics.REPORTS_TRIAGED)

    as_json = replay(env, *window, "--json")
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["candidate"]["version"] == "kri-sample-2026.2"
    assert summary["baseline"]["version"] == "kri-sample-2026.1"
    assert (summary["reports_read"], summary["reports_in_range"], summary["cases"]) == (5, 3, 3)
    assert summary["priority_transitions"] == {"P1 -> P1": 1, "P2 -> P1": 1, "P2 -> P2": 1}
    assert summary["classification_transitions"] == {
        "TF-CSEA -> TF-CSEA": 2,
        "TFGBV -> TFGBV": 1,
    }
    assert [c["case_id"] for c in summary["changed"]] == [str(cases["child"])]
    assert summary["changed"][0]["old"] == {
        "classification": "TF-CSEA",
        "priority": "P2",
        "score": 70,
    }
    assert summary["changed"][0]["new"] == {
        "classification": "TF-CSEA",
        "priority": "P1",
        "score": 90,
    }

    as_text = replay(env, *window)
    assert as_text.returncode == 0, as_text.stderr
    lines = as_text.stdout.splitlines()
    assert "nothing was published" in lines
    assert any(line.split() == ["P2", "->", "P1", "1"] for line in lines), as_text.stdout
    assert "cases that would change: 1" in lines
    assert any(line.startswith(str(cases["child"])) for line in lines)
    for name in ("adult", "before", "pooled", "after"):
        assert str(cases[name]) not in as_text.stdout

    # Nothing was published: the recorded topic is as it was, and whatever else reached the
    # triaged topic meanwhile (other suites share the broker) is not about these cases.
    assert await end_offsets(bootstrap, topic) == inputs_before
    triaged_after = await end_offsets(bootstrap, topics.REPORTS_TRIAGED)
    new_records = [
        r
        for r in await read_all(bootstrap, topics.REPORTS_TRIAGED)
        if r.offset >= triaged_before.get(r.partition, 0)
        and r.offset < triaged_after.get(r.partition, 0)
    ]
    assert not [r for r in new_records if any(str(c).encode() in r.value for c in cases.values())]


def test_replay_refuses_a_bad_rule_set(stack_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SAMPLE_RULES.read_text(encoding="utf-8").replace("self_harm = 100", ""))
    done = replay({**os.environ, **stack_env}, "--rules", str(bad))
    assert done.returncode == 2
    assert "no weight for ['self_harm']" in done.stderr
