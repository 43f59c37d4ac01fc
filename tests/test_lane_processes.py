"""`ocsea run`'s processes: triage and routing get bulk-lane processes of their own, which run
only the bulk topics' consumers, on no public port; the main processes run the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.topics import Lane
from ocsea.runner import child_specs
from ocsea.runtime.service import ServiceContext
from ocsea.runtime.settings import Settings


def settings(tmp_path: Path, **changes: object) -> Settings:
    return Settings(var_dir=tmp_path, **changes)  # type: ignore[arg-type]


def lanes_of(argv: tuple[str, ...]) -> str:
    return argv[argv.index("--lanes") + 1]


def test_services_with_a_bulk_lane_get_a_bulk_process_each(tmp_path: Path) -> None:
    specs = child_specs(settings(tmp_path), {"intake": 1, "triage": 1, "routing": 1, "audit": 1})
    assert [(s.service, s.replica, lanes_of(s.argv)) for s in specs] == [
        ("intake", 0, "all"),
        ("triage", 0, "live"),
        ("triage-bulk", 0, "bulk"),
        ("routing", 0, "live"),
        ("routing-bulk", 0, "bulk"),
        ("audit", 0, "all"),
    ]
    bulk = next(s for s in specs if s.service == "triage-bulk")
    assert bulk.pid_file.name == "triage-bulk-0.pid"
    assert bulk.ready_file.name == "triage-bulk-0.ready"
    assert bulk.argv[bulk.argv.index("serve-one") + 1] == "triage"


def test_replicas_apply_to_each_lane_and_only_the_public_ones_share_the_port(
    tmp_path: Path,
) -> None:
    specs = child_specs(settings(tmp_path), {"routing": 2})
    assert [(s.service, s.replica, "--reuse-port" in s.argv) for s in specs] == [
        ("routing", 0, True),
        ("routing", 1, True),
        ("routing-bulk", 0, False),
        ("routing-bulk", 1, False),
    ]


def test_without_lane_processes_each_service_runs_both_lanes(tmp_path: Path) -> None:
    specs = child_specs(settings(tmp_path), {"triage": 1}, lane_processes=False)
    assert [(s.service, lanes_of(s.argv)) for s in specs] == [("triage", "all")]


@pytest.mark.parametrize(
    ("serving", "live", "bulk", "no_lane"),
    [("all", True, True, True), ("live", True, False, True), ("bulk", False, True, False)],
)
def test_a_process_runs_the_consumers_of_the_lanes_it_serves(
    tmp_path: Path, serving: str, live: bool, bulk: bool, no_lane: bool
) -> None:
    context = ServiceContext.create("triage", settings(tmp_path, serve_lanes=serving))

    async def handler(*_: object) -> None:
        return None

    context.consume("live.topic", handler=handler, lane=Lane.LIVE)
    context.consume("bulk.topic", handler=handler, group_suffix="bulk", lane=Lane.BULK)
    context.consume("tasks.topic", handler=handler, group_suffix="projection")
    running = {topic for consumer in context.consumers for topic in consumer.topics}
    assert running == {
        topic
        for topic, runs in (("live.topic", live), ("bulk.topic", bulk), ("tasks.topic", no_lane))
        if runs
    }
    assert (context.serves(Lane.LIVE), context.serves(Lane.BULK), context.serves(None)) == (
        live,
        bulk,
        no_lane,
    )
