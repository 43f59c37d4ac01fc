"""`ocsea run` on the real stack: a process per service, supervised.

A `kill -9` of one service process in the middle of a stream of reports, then its restart by
the supervisor, loses no report and applies no event twice: every accepted report ends with
exactly one task per role it needs, and the audit ledger with one entry per event.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import topics
from testkit.kafka import read_all
from testkit.reports import post_report
from testkit.system import RunningSystem, start_system
from testkit.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# A child's sextortion in Erbil: child protection and police each get a task.
REPORT: dict[str, Any] = {
    "source_reference": "PPS",
    "channel": "hotline",
    "language": "ckb",
    "incident": {
        "occurred_at": "2026-11-20T21:30:00+03:00",
        "governorate": "erbil",
        "platform": "instagram",
    },
    "survivors": [{"age": 15}],
    "categories": ["sextortion"],
    "risk_flags": ["sextortion_deadline"],
}
ROLES = {"child_protection", "police"}
OFFICERS = {"child_protection": "officer-erbil-cpu", "police": "officer-krg-cybercrime"}
REPORTS = 200
BATCH_ROWS = 40
CONCURRENCY = 8


@pytest.fixture(scope="module")
def supervised(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSystem]:
    running = start_system(
        stack_env,
        tmp_path_factory.mktemp("per-service") / "var",
        f"ocsea-pps-{uuid.uuid4().hex[:8]}",
    )
    yield running
    running.stop()
    assert running.process.returncode == 0, running.log_file.read_text()[-3000:]


Victim = tuple[str, int]
"""A service and the replica of it to kill."""


async def post_stream(
    client: httpx.AsyncClient, system: RunningSystem, count: int, kills: dict[int, Victim]
) -> tuple[list[str], dict[Victim, int]]:
    """Post `count` reports, `CONCURRENCY` at a time; once `n` are accepted, `kill -9` the
    process `kills[n]`. Returns the accepted case ids and each victim's pid."""
    accepted: list[str] = []
    killed: dict[Victim, int] = {}
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with slots:
            response = await post_report(client, system, REPORT)
            assert response.status_code == 202, response.text
            accepted.append(response.json()["case_id"])
            victim = kills.get(len(accepted))
            if victim is not None:
                pid = system.pid(*victim)
                assert pid is not None, f"no pid file for {victim}"
                os.kill(pid, signal.SIGKILL)
                killed[victim] = pid

    await asyncio.gather(*(one() for _ in range(count)))
    return accepted, killed


async def wait_restarted(system: RunningSystem, victim: Victim, old_pid: int) -> int:
    async def restarted() -> int | None:
        pid = system.pid(*victim)
        return pid if pid not in (None, old_pid) and system.is_ready(*victim) else None

    return await wait_for(restarted, within=90, interval=0.2, what=f"{victim} restarted")


async def ledger_since(
    client: httpx.AsyncClient, system: RunningSystem, since: datetime, cases: set[str]
) -> list[dict[str, Any]]:
    """The ledger entries of `cases` whose event time is `since` or later, in leaf order."""
    found: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        params: dict[str, Any] = {"since": since.isoformat(), "limit": 1000}
        if after is not None:
            params["after"] = after
        response = await client.get(
            f"{system.urls['audit']}/v1/audit/search",
            params=params,
            headers=system.headers("auditor"),
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found += [e["entry"] for e in page["entries"] if e["entry"]["case_id"] in cases]
        after = page["next_after"]
        if after is None:
            return found


async def assert_each_report_handled_once(
    client: httpx.AsyncClient, system: RunningSystem, since: datetime, cases: list[str]
) -> None:
    ours = set(cases)
    assert len(ours) == len(cases), "every report is a case of its own"
    wanted = Counter(
        {"report.received": 1, "report.triaged": 1, "task.assigned": 2, "dispatched": 2}
    )

    async def whole_trails() -> list[dict[str, Any]] | None:
        entries = await ledger_since(client, system, since, ours)
        per_case: dict[str, Counter[str]] = defaultdict(Counter)
        for entry in entries:
            per_case[entry["case_id"]][entry["action"]] += 1
        done = all(per_case[case] >= wanted for case in ours)
        return entries if done else None

    entries = await wait_for(
        whole_trails, within=120, interval=1.0, what="every report's trail to its tasks"
    )

    # Kafka: one triage result per report, one assignment (one task) per role it needs.
    # A redelivered record may repeat an event; it must never be a second event.
    triaged = [
        json.loads(r.value)
        for topic in (topics.REPORTS_TRIAGED, topics.REPORTS_TRIAGED_BULK)
        for r in await read_all(system.bootstrap, topic, within=60)
    ]
    triaged_ids: dict[str, set[str]] = defaultdict(set)
    for event in triaged:
        if event["case_id"] in ours:
            triaged_ids[event["case_id"]].add(event["event_id"])
    assert {case: len(ids) for case, ids in triaged_ids.items()} == dict.fromkeys(ours, 1)

    assignments: dict[tuple[str, str], set[str]] = defaultdict(set)
    assigned_events: set[str] = set()
    for record in await read_all(system.bootstrap, topics.TASKS_EVENTS, within=60):
        event = json.loads(record.value)
        if event["case_id"] in ours and event["event_type"] == "task.assigned":
            assignments[event["case_id"], event["data"]["role"]].add(event["data"]["task_id"])
            assigned_events.add(event["event_id"])
    assert set(assignments) == {(case, role) for case in ours for role in ROLES}
    twice = {key: ids for key, ids in assignments.items() if len(ids) != 1}
    assert not twice, f"a role got more than one task: {twice}"
    assert len(assigned_events) == len(ours) * len(ROLES)

    # Routing's own view: each officer sees exactly one task per case.
    for role, officer in OFFICERS.items():
        response = await client.get(
            f"{system.urls['routing']}/v1/tasks", headers=system.headers(officer)
        )
        assert response.status_code == 200, response.text
        per_case = Counter(t["case_id"] for t in response.json() if t["case_id"] in ours)
        assert per_case == Counter(dict.fromkeys(ours, 1)), f"{role}: {per_case}"

    # The ledger: one entry per event (and one per event handed to an agency's feed), and
    # every assignment event has its entry.
    recorded_twice = [
        key
        for key, n in Counter((e["action"], e["source_event_id"]) for e in entries).items()
        if n > 1
    ]
    assert recorded_twice == []
    # An event produced again with other bytes under its id (a retry that re-made it rather
    # than re-sent it) would be a conflict in the ledger; nothing may be parked either.
    suspicious = [e for e in entries if e["action"] in ("conflict", "offset_gap", "dead_lettered")]
    assert suspicious == []
    recorded = {e["source_event_id"] for e in entries if e["action"] == "task.assigned"}
    assert recorded == assigned_events
    recorded_triage = {e["source_event_id"] for e in entries if e["action"] == "report.triaged"}
    assert recorded_triage == set().union(*triaged_ids.values())


async def test_kill_9_of_routing_then_triage_mid_stream_loses_and_doubles_nothing(
    supervised: RunningSystem, client: httpx.AsyncClient
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    routing, triage = ("routing", 0), ("triage", 0)
    cases, killed = await post_stream(
        client, supervised, REPORTS, {REPORTS // 3: routing, 2 * REPORTS // 3: triage}
    )
    assert set(killed) == {routing, triage}
    for victim, old_pid in killed.items():
        await wait_restarted(supervised, victim, old_pid)

    await assert_each_report_handled_once(client, supervised, since, cases)

    restarts = [
        line
        for line in supervised.log_file.read_text(encoding="utf-8").splitlines()
        if '"service.restarted"' in line
    ]
    logged = {(e["service"], e["exit_code"]) for e in map(json.loads, restarts)}
    assert logged == {("routing", -9), ("triage", -9)}


async def post_batches(
    client: httpx.AsyncClient, system: RunningSystem, uploads: int, kills: dict[int, Victim]
) -> tuple[list[str], dict[Victim, int]]:
    """Post `uploads` NDJSON uploads of `BATCH_ROWS` reports each through the batch channel
    (the bulk lane), one after another; after upload `n`, `kill -9` the process `kills[n]`."""
    accepted: list[str] = []
    killed: dict[Victim, int] = {}
    for upload in range(1, uploads + 1):
        rows = [
            json.dumps({**REPORT, "source_reference": f"PPS-BULK-{uuid.uuid4().hex}"})
            for _ in range(BATCH_ROWS)
        ]
        response = await client.post(
            f"{system.urls['intake']}/v1/reports/batch",
            content="\n".join(rows).encode(),
            headers={**system.headers("partner-ngo"), "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == BATCH_ROWS, response.text
        accepted += [row["case_id"] for row in response.json()["rows"]]
        victim = kills.get(upload)
        if victim is not None:
            pid = system.pid(*victim)
            assert pid is not None, f"no pid file for {victim}"
            os.kill(pid, signal.SIGKILL)
            killed[victim] = pid
    return accepted, killed


def nice_of(pid: int) -> int:
    # /proc/<pid>/stat: the 19th field, counted after the command's closing parenthesis.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])


async def test_the_bulk_lane_runs_apart_behind_live_work_and_survives_kill_9(
    supervised: RunningSystem, client: httpx.AsyncClient
) -> None:
    bulk = [("triage-bulk", 0), ("routing-bulk", 0)]
    pids = {victim: supervised.pid(*victim) for victim in bulk}
    assert None not in pids.values(), pids
    # Lower CPU priority once serving; the main processes keep the default.
    for pid in pids.values():
        assert pid is not None

        async def niced(pid: int = pid) -> bool:
            return nice_of(pid) == 10

        await wait_for(niced, within=30, what="the bulk lane's lower priority")
    main_pid = supervised.pid("triage", 0)
    assert main_pid is not None
    assert nice_of(main_pid) == 0

    since = datetime.now(UTC) - timedelta(seconds=5)
    cases, killed = await post_batches(client, supervised, 6, {2: bulk[0], 4: bulk[1]})
    assert set(killed) == set(bulk)
    for victim, old_pid in killed.items():
        await wait_restarted(supervised, victim, old_pid)
    await assert_each_report_handled_once(client, supervised, since, cases)


async def test_replicas_share_the_port_and_split_the_work(
    stack_env: dict[str, str], tmp_path: Path, client: httpx.AsyncClient
) -> None:
    system = start_system(
        stack_env,
        tmp_path / "var",
        f"ocsea-pps-{uuid.uuid4().hex[:8]}",
        args=("--replicas", "triage=2,routing=2"),
        only=["intake", "triage", "routing", "audit"],
    )
    try:
        pids = {(s, r): system.pid(s, r) for s in ("triage", "routing") for r in (0, 1)}
        assert None not in pids.values(), pids
        assert len(set(pids.values())) == 4, pids
        assert all(system.is_ready(*replica) for replica in pids)

        # While routing-0 is down, routing-1 alone answers on the shared port.
        old = pids["routing", 0]
        assert old is not None
        os.kill(old, signal.SIGKILL)

        async def respawned() -> bool:
            return system.pid("routing", 0) not in (None, old)

        await wait_for(respawned, within=30, what="routing-0 respawned")
        for _ in range(10):
            health = await client.get(f"{system.urls['routing']}/healthz")
            assert health.json() == {"status": "ok", "service": "routing"}
        assert not system.is_ready("routing", 0), "answered before routing-0 was back"
        await wait_restarted(system, ("routing", 0), old)
        assert system.pid("routing", 1) == pids["routing", 1]

        # Work is shared and nothing is applied twice, even when a replica dies mid-stream.
        since = datetime.now(UTC) - timedelta(seconds=5)
        cases, killed = await post_stream(
            client, system, REPORTS // 3, {REPORTS // 6: ("triage", 1)}
        )
        await wait_restarted(system, ("triage", 1), killed["triage", 1])
        await assert_each_report_handled_once(client, system, since, cases)
    finally:
        system.stop()
    assert system.process.returncode == 0, system.log_file.read_text()[-3000:]
