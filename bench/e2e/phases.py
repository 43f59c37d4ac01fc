"""The measurements. Each phase posts its reports, notes when intake answered `202` for each,
and waits, with a deadline, until every one of them has its first `task.assigned`.

No phase can hang: a phase ends when its reports all have a task, when no new task appeared
for `stall_s` (the system is stuck), when its budget is spent, or when `ocsea run` has exited.
An incomplete phase still reports what it measured, marked as such; reports still waiting
count in latency figures with the time they had waited (a lower bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.e2e.http import HttpError, Pool, Response
from bench.e2e.kafka import BenchError, TaskWatcher
from bench.e2e.procs import ProcessMonitor, Usage
from bench.e2e.reports import make_report, ndjson, p1_report
from bench.e2e.stats import Latency, rate, summarise
from bench.e2e.system import System

REPORTS_PATH = "/v1/reports"
BATCH_PATH = "/v1/reports/batch"
# The longest one request may take: intake answers within its publish timeout or says 503.
SINGLE_TIMEOUT_S = 60.0
BATCH_TIMEOUT_S = 300.0
BATCH_ATTEMPTS = 5
UNANSWERED = "no answer before the phase's deadline"


@dataclass
class Phase:
    """One measurement's reports: when each was accepted and when its first task appeared."""

    name: str
    started: float = field(default_factory=time.monotonic)
    accepted_at: dict[str, float] = field(default_factory=dict)
    assigned_at: dict[str, float] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    posted: int = 0
    duplicates: int = 0
    refused: int = 0
    retried: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    refusal_samples: list[str] = field(default_factory=list)
    last_response: float | None = None
    ended: float | None = None
    end_reason: str = ""

    @property
    def waiting(self) -> int:
        return len(self.accepted_at) - len(self.assigned_at)

    @property
    def complete(self) -> bool:
        return bool(self.accepted_at) and self.waiting == 0 and self.end_reason == "all assigned"

    @property
    def last_assigned(self) -> float | None:
        return max(self.assigned_at.values(), default=None)

    def throughput(self) -> float | None:
        """Reports with a task per second, from the first post to the last task seen (to the
        phase's end when some are still waiting: then a rate over what got through)."""
        if not self.accepted_at:
            return None  # nothing to measure: intake took none (see the errors)
        end = (self.last_assigned if self.complete else self.ended) or time.monotonic()
        return rate(len(self.assigned_at), end - self.started) or 0.0

    def latency(self, *, since_sent: bool = False) -> Latency:
        """`202` → first `task.assigned`, ms; still-waiting reports as lower bounds. When intake
        answers late (overloaded), the task can exist before the `202` arrives: a negative
        latency, kept as measured. `since_sent`: from sending the request instead."""
        moment = self.ended or time.monotonic()
        start = self.sent_at if since_sent else self.accepted_at
        done = [(self.assigned_at[r] - start[r]) * 1000 for r in self.accepted_at
                if r in self.assigned_at]  # fmt: skip
        waiting = [(moment - start[r]) * 1000 for r in self.accepted_at
                   if r not in self.assigned_at]  # fmt: skip
        return summarise(done, waiting)


class Tracker:
    """Connects the task watcher to the phase each report belongs to."""

    def __init__(self, watcher: TaskWatcher) -> None:
        self.watcher = watcher
        self.owner: dict[str, Phase] = {}
        self.phases: list[Phase] = []
        watcher.on_assigned = self._assigned

    def begin(self, name: str) -> Phase:
        phase = Phase(name)
        self.phases.append(phase)
        return phase

    def _assigned(self, report_id: str, at: float) -> None:
        phase = self.owner.get(report_id)
        # A phase's figures are as of its end.
        if phase is not None and (phase.ended is None or at <= phase.ended):
            phase.assigned_at.setdefault(report_id, at)

    def accepted(self, phase: Phase, report_id: str, sent: float, at: float) -> None:
        if phase.ended is not None:
            return
        phase.sent_at[report_id] = sent
        phase.accepted_at[report_id] = at
        self.owner[report_id] = phase
        seen = self.watcher.seen.get(report_id)
        if seen is not None:  # the task appeared before the answer was read
            phase.assigned_at.setdefault(report_id, seen)

    def strays(self) -> int:
        """Tasks for reports whose `202` the benchmark never read (requests cut at a phase's
        deadline that intake still took): work the phases after it met unannounced."""
        return sum(1 for r in self.watcher.seen if r not in self.owner)


@dataclass
class Budget:
    """How long a phase may start new requests (None: no limit), then how long requests in
    flight may take to be answered and, after that, how long it waits for its tasks; and the
    stall time: no new task for this long ends the wait."""

    post_s: float | None
    wait_s: float
    stall_s: float


@dataclass
class Bench:
    """What every phase uses."""

    system: System
    pool: Pool
    watcher: TaskWatcher
    tracker: Tracker
    monitor: ProcessMonitor | None
    run: str
    phones: bool
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    status: Callable[[], str] = lambda: ""

    def headers(self, partner: str, content_type: str, key: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.system.token(partner)}",
            "Content-Type": content_type,
            "Idempotency-Key": key,
        }

    def single_bodies(self, count: int) -> list[tuple[str, bytes]]:
        """(idempotency key, body) of `count` hotline reports, made before the clock starts."""
        out = []
        for _ in range(count):
            number = next(self.numbers)
            report = make_report(number, self.run, "hotline", now=self.now, phones=self.phones)
            out.append((f"{self.run}-{number}", json.dumps(report, ensure_ascii=False).encode()))
        return out

    def batch_bodies(self, count: int, size: int) -> list[tuple[str, bytes]]:
        """NDJSON uploads of an NGO's export, `size` rows each."""
        out = []
        for start in range(0, count, size):
            numbers = [next(self.numbers) for _ in range(min(size, count - start))]
            reports = (
                make_report(n, self.run, "ngo", now=self.now, phones=self.phones) for n in numbers
            )
            out.append((f"{self.run}-batch-{numbers[0]}", ndjson(reports)))
        return out

    async def post_single(self, phase: Phase, key: str, body: bytes) -> str | None:
        """One report through `POST /v1/reports`; its report id once answered 202."""
        headers = self.headers("partner-hotline", "application/json", key)
        sent = time.monotonic()
        response = await self._post(phase, REPORTS_PATH, body, headers, SINGLE_TIMEOUT_S)
        if response is None:
            return None
        if response.status != 202:
            phase.errors[f"HTTP {response.status}"] += 1
            self._sample(phase, response.body)
            return None
        try:
            answer = json.loads(response.body)
            report_id = str(answer["report_id"])
        except (ValueError, KeyError, TypeError):
            phase.errors["202 without a report id"] += 1
            return None
        if answer.get("duplicate_of"):
            phase.duplicates += 1
            return None
        self.tracker.accepted(phase, report_id, sent, phase.last_response or time.monotonic())
        return report_id

    async def post_batch(self, phase: Phase, key: str, body: bytes) -> None:
        """Post an upload as a partner's client would: a `503` (intake could not store every
        row in time) is sent again, same body and Idempotency-Key, after its Retry-After;
        the rows stored the first time come back as duplicates of themselves."""
        headers = self.headers("partner-ngo", "application/x-ndjson", key)
        sent = time.monotonic()
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            response = await self._post(phase, BATCH_PATH, body, headers, BATCH_TIMEOUT_S)
            if response is None:
                return
            if response.status != 503 or attempt == BATCH_ATTEMPTS:
                break
            phase.retried += 1
            await asyncio.sleep(response.retry_after_s or 1.0)
        retried = attempt > 1
        if response.status != 202:
            phase.errors[f"HTTP {response.status}"] += body.count(b"\n")
            self._sample(phase, response.body)
            return
        answered = phase.last_response or time.monotonic()
        for row in json.loads(response.body)["rows"]:
            if row["status"] == "accepted":
                self.tracker.accepted(phase, str(row["report_id"]), sent, answered)
            elif row["status"] == "duplicate" and retried and row.get("duplicate_of"):
                # Every benchmark report is distinct: a duplicate on a retry is the row itself,
                # stored by an earlier attempt.
                self.tracker.accepted(phase, str(row["duplicate_of"]), sent, answered)
            elif row["status"] == "duplicate":
                phase.duplicates += 1
            else:
                phase.refused += 1
                self._sample(phase, json.dumps(row).encode())

    async def _post(
        self, phase: Phase, path: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> Response | None:
        phase.posted += 1
        try:
            async with asyncio.timeout(timeout_s):
                response = await self.pool.post(path, body, headers)
        except HttpError as exc:
            phase.errors[str(exc).split(":")[0]] += 1
            return None
        except TimeoutError:
            phase.errors[f"no answer in {timeout_s:.0f} s"] += 1
            return None
        except asyncio.CancelledError:
            phase.errors[UNANSWERED] += 1  # the phase's posting window closed
            raise
        phase.last_response = time.monotonic()
        return response

    @staticmethod
    def _sample(phase: Phase, body: bytes) -> None:
        if len(phase.refusal_samples) < 3:
            phase.refusal_samples.append(body[:300].decode(errors="replace"))

    async def wait_for_tasks(self, phase: Phase, budget: Budget) -> None:
        """Until every report of the phase has a task, a stall, the budget's end, or the
        system's exit."""
        if not phase.accepted_at:
            phase.end_reason = "intake accepted none of its reports (see errors)"
            phase.ended = time.monotonic()
            return
        deadline = time.monotonic() + budget.wait_s
        last_count, last_progress = len(phase.assigned_at), time.monotonic()
        while phase.waiting:
            self.watcher.check()
            self.system.check()
            now = time.monotonic()
            if len(phase.assigned_at) != last_count:
                last_count, last_progress = len(phase.assigned_at), now
            if now - last_progress > budget.stall_s:
                phase.end_reason = (
                    f"stalled: no new task.assigned for {budget.stall_s:.0f} s with "
                    f"{phase.waiting:,} reports waiting"
                )
                break
            if now > deadline:
                phase.end_reason = (
                    f"budget spent: {phase.waiting:,} of {len(phase.accepted_at):,} reports "
                    f"still without a task after waiting {budget.wait_s:.0f} s"
                )
                break
            await asyncio.sleep(0.1)
        else:
            phase.end_reason = "all assigned"
        phase.ended = time.monotonic()


async def warm_up(bench: Bench, count: int, within: float) -> Phase:
    """A few reports through the whole system first: consumers joined, connections open."""
    phase = bench.tracker.begin("warm-up")
    bench.status = lambda: f"{len(phase.assigned_at)}/{count} warm-up reports assigned"
    bodies = bench.single_bodies(count)
    await asyncio.gather(*(bench.post_single(phase, k, b) for k, b in bodies))
    if not phase.accepted_at:
        raise BenchError(
            f"intake accepted none of {count} warm-up reports: {dict(phase.errors)} "
            f"{phase.refusal_samples[:1]}"
        )
    await bench.wait_for_tasks(phase, Budget(None, within, within))
    if phase.waiting:
        raise BenchError(
            f"{phase.waiting} of {len(phase.accepted_at)} warm-up reports had no task.assigned "
            f"after {within:.0f} s ({phase.end_reason}): the pipeline does not work; see the "
            f"system's log{f' {bench.system.log_file}' if bench.system.log_file else ''}"
        )
    return phase


@dataclass
class FixedLoad:
    phase: Phase
    offered_per_s: float
    sent: int
    send_seconds: float
    max_send_lag_ms: float
    http_latency: Latency
    peak_connections: int
    connection_limit: int

    @property
    def open_loop_held(self) -> bool:
        """False when every connection was busy: later reports waited for a free one, so the
        offered rate was not kept (intake answered slower than the schedule needed)."""
        return self.peak_connections < self.connection_limit


async def fixed_load(bench: Bench, per_s: float, seconds: float, budget: Budget) -> FixedLoad:
    """Open loop: report i is sent at start + i/rate whatever the answers to earlier ones,
    each on a free keep-alive connection (a new one when none is free)."""
    phase = bench.tracker.begin("fixed load")
    count = max(1, round(per_s * seconds))
    bodies = bench.single_bodies(count)
    http_ms: list[float] = []
    lags: list[float] = []
    sent = 0

    async def one(key: str, body: bytes, due: float) -> None:
        lags.append(max(0.0, time.monotonic() - due) * 1000)
        started = time.monotonic()
        if await bench.post_single(phase, key, body) is not None:
            http_ms.append((time.monotonic() - started) * 1000)

    bench.status = lambda: (
        f"sent {sent:,}/{count:,} at {per_s:.0f}/s; accepted {len(phase.accepted_at):,}; "
        f"assigned {len(phase.assigned_at):,}"
    )
    start = time.monotonic() + 0.05
    bench.pool.peak_busy = 0
    in_flight: set[asyncio.Task[None]] = set()
    try:
        for i, (key, body) in enumerate(bodies):
            due = start + i / per_s
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(key, body, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
            bench.system.check()
            bench.watcher.check()
    except BaseException:
        for task in in_flight:
            task.cancel()
        raise
    send_seconds = time.monotonic() - start
    await _supervised(bench, list(in_flight), 0, budget.wait_s)
    await bench.wait_for_tasks(phase, budget)
    return FixedLoad(
        phase=phase,
        offered_per_s=per_s,
        sent=sent,
        send_seconds=send_seconds,
        max_send_lag_ms=max(lags, default=0.0),
        http_latency=summarise(http_ms),
        peak_connections=bench.pool.peak_busy,
        connection_limit=bench.pool.limit,
    )


async def closed_loop_singles(bench: Bench, count: int, concurrency: int, budget: Budget) -> Phase:
    """`count` reports through `POST /v1/reports` from `concurrency` connections, each sending
    its next report when the last was answered."""
    phase = bench.tracker.begin("single posts")
    bodies = iter(bench.single_bodies(count))
    bench.status = lambda: (
        f"accepted {len(phase.accepted_at):,}/{count:,}; assigned {len(phase.assigned_at):,}"
    )

    window = _Window(budget.post_s)

    async def worker() -> None:
        for key, body in bodies:
            if not window.open():
                return
            await bench.post_single(phase, key, body)

    phase.started = time.monotonic()
    await _supervised(bench, [worker() for _ in range(concurrency)], budget.post_s, budget.wait_s)
    await bench.wait_for_tasks(phase, budget)
    return phase


async def batches(
    bench: Bench,
    phase: Phase,
    uploads: Sequence[tuple[str, bytes]],
    concurrency: int,
    budget: Budget,
) -> None:
    """Post NDJSON uploads from `concurrency` connections, each its next when answered."""
    queue = iter(uploads)
    window = _Window(budget.post_s)

    async def worker() -> None:
        for key, body in queue:
            if not window.open():
                return
            await bench.post_batch(phase, key, body)

    await _supervised(bench, [worker() for _ in range(concurrency)], budget.post_s, budget.wait_s)


class _Window:
    """A posting window: open for `seconds` from now (None: no end)."""

    def __init__(self, seconds: float | None) -> None:
        self.closes = None if seconds is None else time.monotonic() + seconds

    def open(self) -> bool:
        return self.closes is None or time.monotonic() < self.closes


async def _supervised(
    bench: Bench, work: Sequence[Any], post_s: float | None, grace_s: float
) -> None:
    """Run posting work while checking that the system and the watcher are alive. Workers
    start no new request after `post_s`; what is still in flight `grace_s` later is cancelled
    (those reports count as unanswered)."""
    tasks = [asyncio.ensure_future(w) for w in work]
    deadline = None if post_s is None else time.monotonic() + post_s + grace_s
    try:
        while pending := [t for t in tasks if not t.done()]:
            bench.watcher.check()
            bench.system.check()
            timeout = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if timeout <= 0:
                break
            await asyncio.wait(pending, timeout=timeout)
        for task in tasks:
            if task.done() and not task.cancelled():
                task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class BatchRun:
    phase: Phase
    reports: int
    usage: dict[str, Usage]
    load_generator_cpu_s: float

    def intake_accept_rate(self) -> float | None:
        end = self.phase.last_response
        return rate(len(self.phase.accepted_at), (end or 0) - self.phase.started) if end else None


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


async def batch_throughput(
    bench: Bench, count: int, size: int, concurrency: int, budget: Budget
) -> BatchRun:
    phase = bench.tracker.begin("batch channel")
    uploads = bench.batch_bodies(count, size)
    bench.status = lambda: (
        f"accepted {len(phase.accepted_at):,}/{count:,}; assigned {len(phase.assigned_at):,}"
    )
    mark = bench.monitor.mark() if bench.monitor else {}
    own = _own_cpu_s()
    phase.started = time.monotonic()
    await batches(bench, phase, uploads, concurrency, budget)
    await bench.wait_for_tasks(phase, budget)
    usage = bench.monitor.since(mark) if bench.monitor else {}
    return BatchRun(phase, count, usage, _own_cpu_s() - own)


@dataclass
class LiveBehindBacklog:
    backlog: Phase
    p1: Phase
    backlog_waiting_at_p1: int
    p1_seconds: float
    """From sending the P1 to its first task.assigned (to the phase's end if none came)."""

    def drain_rate(self) -> float | None:
        return self.backlog.throughput()


async def p1_behind_backlog(
    bench: Bench, backlog: int, size: int, concurrency: int, budget: Budget, drain: Budget
) -> LiveBehindBacklog:
    """A bulk backlog through the batch channel, then one live P1 through `POST /v1/reports`:
    how long until the P1 has its task while the backlog drains."""
    bulk = bench.tracker.begin("backlog")
    uploads = bench.batch_bodies(backlog, size)
    live = bench.tracker.begin("live P1")
    bench.status = lambda: (
        f"backlog accepted {len(bulk.accepted_at):,}/{backlog:,}, assigned "
        f"{len(bulk.assigned_at):,}; P1 {'assigned' if live.assigned_at else 'waiting'}"
    )
    bulk.started = time.monotonic()
    await batches(bench, bulk, uploads, concurrency, budget)
    waiting_at_p1 = bulk.waiting
    number = next(bench.numbers)
    body = json.dumps(p1_report(bench.run, number), ensure_ascii=False).encode()
    live.started = time.monotonic()
    report_id = await bench.post_single(live, f"{bench.run}-p1-{number}", body)
    if report_id is None:
        raise BenchError(f"intake refused the P1 report: {dict(live.errors)}")
    await bench.wait_for_tasks(live, budget)
    # From the moment the partner sent it: the 202 itself may come after the task exists.
    assigned = live.assigned_at.get(report_id) or live.ended or time.monotonic()
    # Then the backlog's drain (a second batch-channel throughput figure).
    await bench.wait_for_tasks(bulk, drain)
    return LiveBehindBacklog(bulk, live, waiting_at_p1, assigned - live.started)


async def progress_printer(bench: Bench, phase_name: Callable[[], str]) -> None:
    """A line a second on stderr: the phase, its counts, the rate of tasks assigned."""
    last_seen, last_time, started = len(bench.watcher.seen), time.monotonic(), time.monotonic()
    while True:
        await asyncio.sleep(1)
        now = time.monotonic()
        seen = len(bench.watcher.seen)
        rate_now = (seen - last_seen) / (now - last_time)
        last_seen, last_time = seen, now
        if bench.monitor is not None:
            with contextlib.suppress(OSError):
                bench.monitor.sample()
        print(
            f"  [{now - started:6.1f}s] {phase_name():<14} {bench.status()}; "
            f"tasks seen {seen:,} ({rate_now:,.0f}/s)",
            file=sys.stderr,
            flush=True,
        )
