"""Routing benchmark: triaged events routed per second, and SLA timer lateness with many
pending timers, on the real local Kafka and Redis (`uv run ocsea stack up`).

An isolated routing service runs in this process (private topics, its own consumer groups,
a Redis database of its own that is emptied first: `--redis-db`, never 0).

1. Throughput: N triaged events (a mix of TF-CSEA and TFGBV cases, with and without
   offences and consent) are published at once; measured until every task the policy
   requires is assigned. Also the per-case routing latency (task.assigned minus report.triaged).
2. Timer lateness: the projection is seeded with tasks whose timers make `--pending` pending
   timers (four per task: acknowledge warning and breach, first-action warning and breach).
   Most are due hours ahead; `--measured` tasks have their acknowledge deadline spread over
   `--window` seconds. Each of those fires a warning, a breach, and two escalation steps;
   lateness is the event's `occurred_at` minus the moment it was due. `--burst` adds that many
   tasks all due at the same instant (a throughput test of the scheduler).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import devstack as local_stack
from contracts.directory import load_directory
from contracts.events import (
    AgencyType,
    Classification,
    Envelope,
    EscalationStep,
    EscalationTarget,
    EventType,
    Priority,
    ReportTriagedData,
    TaskAssignedData,
    derived_event_id,
    make_event,
)
from contracts.reports import ViolenceType
from ocsea.runtime.logging import configure_logging
from services.routing.domain.policy import CaseFacts, required_roles
from services.routing.domain.tasks import SYSTEM
from testkit.kafka import read_all
from testkit.routing_harness import (
    Isolation,
    RoutingInstance,
    claimed_redis_db,
    envelopes,
    flush_redis_db,
    publish,
    routing_instance,
    short_directory,
    triaged_event,
)
from testkit.waiting import wait_for

STEP_S = 5  # escalation step of the seeded tasks


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(label: str, values: list[float]) -> str:
    return (
        f"| {label:<34} | {len(values):>7} | {percentile(values, 0.5) * 1000:>8.1f} | "
        f"{percentile(values, 0.99) * 1000:>8.1f} | {max(values) * 1000:>8.1f} |"
    )


CASE_KINDS: list[dict[str, Any]] = [
    {"violence_types": [ViolenceType.SEXTORTION]},  # child protection + police
    {},  # child protection
    {"classification": Classification.TFGBV, "police_referral_consent": True},  # GBV + police
    {"classification": Classification.TFGBV},  # GBV case management
]


async def throughput(
    env: dict[str, str], count: int, paced: int, rate: float, redis_db: int
) -> None:
    await flush_redis_db(env, redis_db)
    bootstrap = env["OCSEA_KAFKA_BOOTSTRAP"]
    with tempfile.TemporaryDirectory() as tmp:
        isolation = Isolation.create(
            Path(tmp), short_directory(p1_ack=3600, p1_step=3600), redis_db
        )
        directory = load_directory(isolation.directory_file)

        def needed(events: list[Envelope]) -> int:
            return sum(
                len(
                    required_roles(
                        CaseFacts.from_triaged(e.payload(ReportTriagedData)), directory.policy
                    ).needed
                )
                for e in events
            )

        async def assigned(routing: RoutingInstance, total: int) -> None:
            async def done() -> bool:
                return sum((await routing.store.unit_load()).values()) >= total

            await wait_for(done, within=600, interval=0.02, what="every task assigned")

        burst = [triaged_event(**CASE_KINDS[i % len(CASE_KINDS)]) for i in range(count)]
        async with routing_instance(env, isolation) as routing:
            started = time.monotonic()
            await publish(bootstrap, routing.topics.triaged, burst)
            published = time.monotonic()
            await assigned(routing, needed(burst))
            elapsed = time.monotonic() - started
            # Then a steady stream, well below capacity: the latency of routing itself.
            stream: list[Envelope] = []
            for i in range(paced):
                event = triaged_event(**CASE_KINDS[i % len(CASE_KINDS)])
                stream.append(event)
                await publish(bootstrap, routing.topics.triaged, [event])
                await asyncio.sleep(1 / rate)
            await assigned(routing, needed(burst) + needed(stream))
            tasks = [
                e
                for e in envelopes(await read_all(bootstrap, routing.topics.tasks))
                if e.event_type == EventType.TASK_ASSIGNED
            ]
        triaged_at = {e.case_id: e.occurred_at for e in burst + stream}
        in_burst = {e.case_id for e in burst}

        def latency(events: list[Envelope]) -> list[float]:
            return [(e.occurred_at - triaged_at[e.case_id]).total_seconds() for e in events]

        print("\n## Routing throughput\n")
        print("| triaged events | tasks | publish s | total s | events/s | tasks/s |")
        print("|---|---|---|---|---|---|")
        print(
            f"| {count} | {needed(burst)} | {published - started:.2f} | {elapsed:.2f} | "
            f"{count / elapsed:.0f} | {needed(burst) / elapsed:.0f} |"
        )
        print("\n| task.assigned − report.triaged | n | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|")
        print(
            row(
                f"burst of {count} (mostly queueing)",
                latency([t for t in tasks if t.case_id in in_burst]),
            )
        )
        if stream:
            print(
                row(
                    f"{paced} at {rate:g}/s",
                    latency([t for t in tasks if t.case_id not in in_burst]),
                )
            )


def seeded_assignment(task_id: uuid.UUID, ack_due: datetime, first_due: datetime) -> Envelope:
    case_id = uuid.uuid4()
    data = TaskAssignedData(
        task_id=task_id,
        report_id=uuid.uuid4(),
        agency_id="cpu",
        agency_type=AgencyType.CHILD_PROTECTION,
        classification=Classification.TF_CSEA,
        priority=Priority.P1,
        reason="benchmark",
        acknowledge_due_at=ack_due,
        first_action_due_at=first_due,
        role=AgencyType.CHILD_PROTECTION,
        unit_id="cpu-a",
        acknowledge_warn_at=ack_due - timedelta(seconds=2),
        first_action_warn_at=first_due - timedelta(seconds=60),
        escalation_chain=(
            EscalationStep(
                level=1, target=EscalationTarget.SUPERVISOR, agency_id="cpu", after_breach_s=0
            ),
            EscalationStep(
                level=2,
                target=EscalationTarget.COORDINATOR,
                agency_id="coordination",
                after_breach_s=STEP_S,
            ),
        ),
    )
    return make_event(
        event_type=EventType.TASK_ASSIGNED,
        event_id=derived_event_id(str(task_id), EventType.TASK_ASSIGNED),
        case_id=case_id,
        report_id=data.report_id,
        producer="routing",
        actor=SYSTEM,
        data=data,
    )


async def lateness(
    env: dict[str, str], pending: int, measured: int, window: float, burst: int, redis_db: int
) -> None:
    await flush_redis_db(env, redis_db)
    with tempfile.TemporaryDirectory() as tmp:
        isolation = Isolation.create(Path(tmp), short_directory(), redis_db)
        async with routing_instance(env, isolation) as routing:
            store = routing.store
            slots = asyncio.Semaphore(64)

            async def seed(event: Envelope) -> None:
                async with slots:
                    await store.apply(event)

            background = max(0, pending // 4 - measured - burst)
            now = datetime.now(UTC)
            far = [
                seeded_assignment(
                    uuid.uuid4(),
                    now + timedelta(hours=2, seconds=i % 3600),
                    now + timedelta(hours=6, seconds=i % 3600),
                )
                for i in range(background)
            ]
            seeding = time.monotonic()
            await asyncio.gather(*(seed(e) for e in far))
            # The measured timers start once they are all seeded, with room to spare.
            per_task_s = (time.monotonic() - seeding) / max(1, background)
            lead_s = 5 + 2 * per_task_s * (measured + burst)
            start = datetime.now(UTC) + timedelta(seconds=lead_s)
            schedule: dict[str, datetime] = {}
            soon = []
            for i in range(measured):
                task_id = uuid.uuid4()
                due = start + timedelta(seconds=2 + window * i / max(1, measured))
                schedule[str(task_id)] = due
                soon.append(seeded_assignment(task_id, due, due + timedelta(hours=6)))
            # Well after the spread timers' last escalation, so the two never overlap.
            burst_due = start + timedelta(seconds=2 + window + STEP_S + 15)
            burst_ids = set()
            for _ in range(burst):
                task_id = uuid.uuid4()
                burst_ids.add(str(task_id))
                schedule[str(task_id)] = burst_due
                soon.append(seeded_assignment(task_id, burst_due, burst_due + timedelta(hours=6)))
            await asyncio.gather(*(seed(e) for e in soon))
            seeded_s = time.monotonic() - seeding
            pending_at_start = await store.timers.size()
            expected = 4 * (measured + burst)
            # Done when only their first-action timers are left (read Redis, not the topic,
            # so that watching costs the scheduler nothing).
            settled = pending_at_start - 2 * (measured + burst)

            async def all_fired() -> bool:
                inflight = await store.redis.zcard(store.timers.inflight_key)
                return await store.timers.size() <= settled and inflight == 0

            await wait_for(
                all_fired,
                within=lead_s + window + 120 + burst / 50,
                interval=0.5,
                what="every timer",
            )
            await asyncio.sleep(1.0)  # the last events' projection
            records = await read_all(env["OCSEA_KAFKA_BOOTSTRAP"], routing.topics.tasks)
            fired = [e for e in envelopes(records) if e.event_type != EventType.TASK_ASSIGNED]
            pending_at_end = await store.timers.size()
        spread: list[float] = []
        bursty: list[float] = []
        ids = [str(e.event_id) for e in fired]
        for event in fired:
            fired_for = str(event.data["task_id"])
            due = schedule[fired_for]
            if event.event_type == EventType.TASK_SLA_WARNING:
                at = due - timedelta(seconds=2)
            elif event.event_type == EventType.TASK_ESCALATED and event.data["level"] == 2:
                at = due + timedelta(seconds=STEP_S)
            else:
                at = due
            (bursty if fired_for in burst_ids else spread).append(
                (event.occurred_at - at).total_seconds()
            )
        print("\n## SLA timer lateness (fire time − due time)\n")
        print(
            f"seeded {background + measured + burst} tasks in {seeded_s:.1f} s; pending timers "
            f"at start {pending_at_start}, at end {pending_at_end}; fired {len(fired)} of "
            f"{expected} expected events; duplicates {len(ids) - len(set(ids))}; "
            f"early {sum(1 for v in spread + bursty if v < 0)}\n"
        )
        print("| timers | n | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|")
        if spread:
            print(row(f"{measured} tasks over {window:.0f} s", spread))
        if bursty:
            print(row(f"{burst} tasks due at one instant", bursty))
        if spread:
            print(f"\nmean {statistics.mean(spread) * 1000:.1f} ms (spread timers)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triaged", type=int, default=1000, help="triaged events to route")
    parser.add_argument("--paced", type=int, default=100, help="then this many, one by one")
    parser.add_argument("--rate", type=float, default=10.0, help="paced events per second")
    parser.add_argument("--pending", type=int, default=100_000, help="pending timers")
    parser.add_argument("--measured", type=int, default=1200, help="tasks due in the window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds they spread over")
    parser.add_argument("--burst", type=int, default=0, help="tasks all due at one instant")
    parser.add_argument(
        "--redis-db",
        type=int,
        default=None,
        help="a Redis database of its own (default: claim one)",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if args.redis_db == 0:
        parser.error("--redis-db 0 is shared by every instance; pick another")
    configure_logging("WARNING", json=True)
    env = local_stack.service_env(local_stack.StackSettings())
    async with contextlib.AsyncExitStack() as stack:
        db = args.redis_db
        if db is None:
            db = await stack.enter_async_context(claimed_redis_db(env))
        if not args.skip_throughput:
            await throughput(env, args.triaged, args.paced, args.rate, db)
        await lateness(env, args.pending, args.measured, args.window, args.burst, db)


if __name__ == "__main__":
    asyncio.run(main())
