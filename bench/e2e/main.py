"""`ocsea bench`: start (or use) a system, measure it, print a table and one JSON line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.e2e import phases as ph
from bench.e2e.http import Pool
from bench.e2e.kafka import BenchError, RelayResult, TaskWatcher, average_record_size
from bench.e2e.kafka import relay_baseline as run_relay
from bench.e2e.procs import ALL_IN_ONE, ProcessMonitor, Usage
from bench.e2e.profile import INSTALL_HINT, Profiler, find_py_spy
from bench.e2e.stats import (
    fmt,
    markdown_table,
    parse_replicas,
    per_10k,
    ratio,
    rounded,
    service_of,
)
from bench.e2e.system import (
    System,
    empty_private_stack,
    existing_system,
    kept_stack_dir,
    private_stack,
    start_system,
)
from contracts import topics
from devstack import find_repo_root

PHASES = ("baseline", "batch", "single", "p1", "fixed")  # the order they run in
DEFAULT_MESSAGE_BYTES = 1_500


@dataclass(frozen=True)
class Sizes:
    """How much each phase sends, and how long it may take."""

    name: str
    warm_up: int
    baseline_messages: int
    baseline_within_s: float
    batch_size: int
    fixed_seconds: float
    singles: int
    reports: int
    backlog: int
    fixed: ph.Budget
    single: ph.Budget
    batch: ph.Budget
    p1: ph.Budget
    drain: ph.Budget


# Quick: every phase bounded (posting, then waiting for tasks), so a run stays near a minute
# however slow the system; what did not finish is reported as incomplete.
QUICK = Sizes(
    "quick", 10, 3_000, 6, 250, 10, 500, 3_000, 2_000,
    fixed=ph.Budget(None, 2, 2),
    single=ph.Budget(3, 2, 2),
    batch=ph.Budget(5, 3, 3),
    p1=ph.Budget(4, 4, 4),
    drain=ph.Budget(None, 2, 2),
)  # fmt: skip
FULL = Sizes(
    "full", 50, 20_000, 600, 1_000, 60, 10_000, 100_000, 100_000,
    fixed=ph.Budget(None, 600, 120),
    single=ph.Budget(None, 3600, 120),
    batch=ph.Budget(None, 3600, 120),
    p1=ph.Budget(None, 600, 120),
    drain=ph.Budget(None, 3600, 120),
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    quick: bool = False
    reports: int | None = None
    singles: int | None = None
    backlog: int | None = None
    baseline_messages: int | None = None
    seconds: float | None = None
    rate: float = 200.0
    concurrency: int = 32
    batch_size: int | None = None
    batch_concurrency: int = 2
    replicas: str | None = None
    single_process: bool = False
    lane_processes: bool = True
    partitions: int = 6
    phases: tuple[str, ...] = PHASES
    stall_s: float | None = None
    drain_s: float | None = None
    temp_stack: bool = False
    intake_url: str | None = None
    kafka: str = "127.0.0.1:9092"
    var_dir: Path | None = None
    credentials: Path | None = None
    env: tuple[str, ...] = ()
    profile: bool = False
    keep: bool = False

    def sizes(self) -> Sizes:
        base = QUICK if self.quick else FULL
        sizes = replace(
            base,
            reports=self.reports or base.reports,
            singles=self.singles or base.singles,
            backlog=self.backlog or base.backlog,
            baseline_messages=self.baseline_messages or base.baseline_messages,
            fixed_seconds=self.seconds or base.fixed_seconds,
            batch_size=self.batch_size or base.batch_size,
        )
        if self.stall_s is not None:
            budgets = {
                name: replace(getattr(sizes, name), stall_s=self.stall_s)
                for name in ("fixed", "single", "batch", "p1", "drain")
            }
            sizes = replace(sizes, **budgets)
        if self.drain_s is not None:
            sizes = replace(sizes, drain=replace(sizes.drain, wait_s=self.drain_s))
        return sizes

    def extra_env(self) -> dict[str, str]:
        pairs = {}
        for item in self.env:
            key, separator, value = item.partition("=")
            if not separator or not key.startswith("OCSEA_"):
                raise BenchError(f"--env {item!r}: expected OCSEA_NAME=value")
            pairs[key] = value
        return pairs


@dataclass
class Results:
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_start: tuple[float, float, float] = field(default_factory=os.getloadavg)
    relay: RelayResult | None = None
    fixed: ph.FixedLoad | None = None
    single: ph.Phase | None = None
    batch: ph.BatchRun | None = None
    p1: ph.LiveBehindBacklog | None = None
    profiles: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


_STARTED = time.monotonic()


def say(message: str) -> None:
    print(
        f"ocsea bench [{time.monotonic() - _STARTED:5.1f}s]: {message}", file=sys.stderr, flush=True
    )


async def run(options: Options) -> int:
    """The whole benchmark: 0 when it measured (phases may be incomplete: see the notes),
    1 when it could not (the reason on stderr), 2 for bad options."""
    # aiokafka warns about every retried produce while a new topic's leaders settle: noise.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        parse_replicas(options.replicas)
        options.extra_env()
    except (ValueError, BenchError) as exc:
        say(f"error: {exc}")
        return 2
    unknown = set(options.phases) - set(PHASES)
    if unknown:
        say(f"error: unknown phase(s) {sorted(unknown)}; known: {', '.join(PHASES)}")
        return 2
    try:
        results = await _measure(options)
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    print(report_text(options, results), flush=True)
    print(json.dumps(figures(options, results), ensure_ascii=False), flush=True)
    return 0


@contextlib.asynccontextmanager
async def _system(options: Options, run_dir: Path) -> AsyncIterator[System]:
    if options.intake_url:
        say(
            f"measuring the running system at {options.intake_url} (Kafka {options.kafka}): its "
            "topics receive every benchmark report"
        )
        var_dir = options.var_dir or find_repo_root() / "var"
        yield existing_system(options.intake_url, options.kafka, var_dir, options.credentials)
        return
    directory = None if options.temp_stack else kept_stack_dir()
    with private_stack(directory, say) as settings:
        await empty_private_stack(settings)
        system = await start_system(
            settings,
            run_dir / "var",
            partitions=options.partitions,
            replicas=options.replicas,
            single_process=options.single_process,
            lane_processes=options.lane_processes,
            group_prefix=f"ocsea-bench-{run_dir.name}",
            extra_env=options.extra_env(),
            say=say,
        )
        try:
            yield system
        finally:
            say("stopping the system …")
            system.stop()
        if directory is not None:
            say(
                f"the private Kafka and Redis stay up for the next run ({settings.kafka_bootstrap},"
                f" {settings.redis_url}); `ocsea bench --stop-stack` stops them"
            )


async def _measure(options: Options) -> Results:
    sizes = options.sizes()
    run = uuid.uuid4().hex[:8]
    runs = find_repo_root() / "var" / "bench" / "runs"
    run_dir = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{run}"
    run_dir.mkdir(parents=True, exist_ok=True)
    results = Results()
    succeeded = False
    try:
        async with _system(options, run_dir) as system:
            await _phases(options, sizes, system, run, run_dir, results)
        succeeded = True
    finally:
        if succeeded and not options.keep and not options.profile:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            say(f"kept the run's files (log, ledger, profiles) in {run_dir}")
    return results


async def _phases(
    options: Options, sizes: Sizes, system: System, run: str, run_dir: Path, results: Results
) -> None:
    watcher = TaskWatcher(system.bootstrap)
    try:
        await watcher.start()
    except BaseException:
        await watcher.stop()
        raise
    pool = Pool(system.urls["intake"], limit=1024)
    root_pid = system.process.pid if system.process is not None else None
    monitor = ProcessMonitor(root_pid, system.pid_dir) if root_pid or system.pid_dir else None
    bench = ph.Bench(
        system,
        pool,
        watcher,
        ph.Tracker(watcher),
        monitor,
        run,
        phones=options.intake_url is None,  # a fresh Redis: phone numbers unique in the run
    )
    current = ["start"]
    printer = asyncio.create_task(ph.progress_printer(bench, lambda: current[0]))

    def phase(name: str) -> None:
        current[0] = name
        say(f"{name} …")

    try:
        phase("warm-up")
        await ph.warm_up(bench, sizes.warm_up, within=120)
        if "baseline" in options.phases:
            phase("baseline")
            results.relay = await _baseline(bench, system, sizes, options)
        if "batch" in options.phases:
            phase("batch")
            profiler = _profiler(options, run_dir, monitor, results)
            try:
                results.batch = await ph.batch_throughput(
                    bench, sizes.reports, sizes.batch_size, options.batch_concurrency,
                    sizes.batch,
                )  # fmt: skip
            finally:
                if profiler is not None:
                    results.profiles = profiler.stop()
        if "single" in options.phases:
            phase("single posts")
            results.single = await ph.closed_loop_singles(
                bench, sizes.singles, options.concurrency, sizes.single
            )
        if "p1" in options.phases:
            phase("P1 vs backlog")
            results.p1 = await ph.p1_behind_backlog(
                bench, sizes.backlog, sizes.batch_size, options.batch_concurrency, sizes.p1,
                sizes.drain,
            )  # fmt: skip
        # Last: an overloaded intake still works through requests the fixed load cut at its
        # deadline, which would slow every phase after it.
        if "fixed" in options.phases:
            phase("fixed load")
            results.fixed = await ph.fixed_load(
                bench, options.rate, sizes.fixed_seconds, sizes.fixed
            )
        results.notes += [
            f"{p.name}: {p.end_reason}" for p in bench.tracker.phases if p.end_reason not in
            ("all assigned", "")
        ]  # fmt: skip
        if strays := bench.tracker.strays():
            results.notes.append(
                f"{strays:,} tasks were for reports whose 202 was never read (requests cut at "
                "a phase's deadline that intake still took): later phases met that work too"
            )
    finally:
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
        await pool.close()
        await watcher.stop()


async def _baseline(bench: ph.Bench, system: System, sizes: Sizes, options: Options) -> RelayResult:
    size = await average_record_size(system.bootstrap, topics.REPORTS_RECEIVED)
    done = [0]
    bench.status = lambda: f"relayed {done[0]:,}/{sizes.baseline_messages:,} through 4 stages"
    return await run_relay(
        system.bootstrap,
        messages=sizes.baseline_messages,
        message_bytes=size or DEFAULT_MESSAGE_BYTES,
        partitions=options.partitions,
        within=sizes.baseline_within_s,
        progress=lambda n: done.__setitem__(0, n),
    )


def _profiler(
    options: Options, run_dir: Path, monitor: ProcessMonitor | None, results: Results
) -> Profiler | None:
    if not options.profile:
        return None
    executable = find_py_spy()
    if executable is None:
        results.notes.append(INSTALL_HINT)
        say(INSTALL_HINT)
        return None
    if monitor is None:
        results.notes.append("--profile: no service processes known to profile")
        return None
    profiler = Profiler(executable, run_dir / "profiles")
    profiler.start(monitor.live_pids())
    return profiler


# --------------------------------------------------------------------------------------------
# output


def _usage_rows(batch: ph.BatchRun) -> list[list[str]]:
    reports = len(batch.phase.accepted_at)
    rows = []
    by_service: dict[str, float] = {}
    for label, usage in batch.usage.items():
        by_service[service_of(label)] = by_service.get(service_of(label), 0.0) + usage.cpu_s
        rows.append(_usage_row(label, usage, reports))
    processes = Counter(service_of(label) for label in batch.usage)
    for service, cpu in sorted(by_service.items()):
        if processes[service] > 1:
            rows.append([f"**{service}** (all its processes)", "", fmt(cpu, 1),
                         fmt(per_10k(cpu, reports), 1),
                         fmt(cpu * 1000 / reports if reports else None, 2), ""])  # fmt: skip
    own = batch.load_generator_cpu_s
    rows.append(["load generator (this process)", str(os.getpid()), fmt(own, 1),
                 fmt(per_10k(own, reports), 1),
                 fmt(own * 1000 / reports if reports else None, 2), ""])  # fmt: skip
    return rows


def _usage_row(label: str, usage: Usage, reports: int) -> list[str]:
    name = "all four services (one process)" if label == ALL_IN_ONE else label
    return [
        name,
        ",".join(str(p) for p in usage.pids),
        fmt(usage.cpu_s, 1),
        fmt(per_10k(usage.cpu_s, reports), 1),
        fmt(usage.cpu_s * 1000 / reports if reports else None, 2),
        fmt(usage.peak_rss_mb, 0),
    ]


def report_text(options: Options, results: Results) -> str:
    f = figures(options, results)
    rows: list[list[str]] = []
    if results.relay is not None:
        r = results.relay
        rows.append([
            f"bare aiokafka relay, {r.stages} stages, {r.messages:,} messages of "
            f"{r.message_bytes:,} B{'' if r.complete else ' (incomplete)'}",
            f"{fmt(r.msgs_per_s)} msgs/s",
        ])  # fmt: skip
    if results.batch is not None:
        p = results.batch.phase
        rows.append([
            f"end to end, `POST /v1/reports/batch`, {len(p.accepted_at):,} reports"
            f"{_incomplete(p)}",
            f"**{fmt(f['e2e_reports_per_s'])} reports/s** ({fmt(_pct(f['ratio_to_baseline']), 1)}"
            f"% of the relay); intake accepted {fmt(f['intake_accept_reports_per_s'])}/s",
        ])  # fmt: skip
    if results.single is not None:
        p = results.single
        rows.append([
            f"end to end, `POST /v1/reports`, {len(p.accepted_at):,} reports from "
            f"{options.concurrency} connections{_incomplete(p)}",
            f"{fmt(f['single_reports_per_s'])} reports/s",
        ])  # fmt: skip
    if results.fixed is not None:
        x = results.fixed
        lat = x.phase.latency()
        sent = x.phase.latency(since_sent=True)
        rows.append([
            f"`202` → `task.assigned` at {x.offered_per_s:.0f} reports/s offered for "
            f"{x.send_seconds:.0f} s ({len(x.phase.accepted_at):,} of {x.sent:,} answered 202)"
            f"{_incomplete(x.phase)}",
            f"p50 {fmt(lat.p50_ms, at_least=not lat.complete)} ms, "
            f"p99 **{fmt(lat.p99_ms, at_least=not lat.complete)} ms**, "
            f"max {fmt(lat.max_ms, at_least=not lat.complete)} ms; from sending: p50 "
            f"{fmt(sent.p50_ms, at_least=not sent.complete)} ms, p99 "
            f"{fmt(sent.p99_ms, at_least=not sent.complete)} ms "
            f"(HTTP p99 {fmt(x.http_latency.p99_ms)} ms)"
            + ("" if x.open_loop_held else
               f"; all {x.connection_limit} connections busy: the rate was not held"),
        ])  # fmt: skip
    if results.p1 is not None:
        q = results.p1
        rows.append([
            f"live P1 behind a {len(q.backlog.accepted_at):,}-report batch backlog "
            f"({q.backlog_waiting_at_p1:,} still without a task when it was posted)"
            f"{_incomplete(q.p1)}",
            f"**{fmt(q.p1_seconds, 2, at_least=not q.p1.complete)} s**; backlog drained at "
            f"{fmt(q.drain_rate())} reports/s{_incomplete(q.backlog)}",
        ])  # fmt: skip
    out = [
        "",
        f"ocsea bench ({f['profile']}), {f['date']}, load average {f['load_avg_start']} → "
        f"{f['load_avg_end']}, {f['cpus']} CPUs, {options.partitions} partitions"
        f"{', replicas ' + options.replicas if options.replicas else ''}"
        f"{', one process for all services' if options.single_process else ''}"
        f"{'' if options.lane_processes else ', both lanes in one process per service'}",
        "",
        markdown_table(["measurement", "result"], rows),
    ]
    if results.batch is not None and results.batch.usage:
        out += [
            "",
            "CPU and memory per process during the batch-channel run",
            "",
            markdown_table(
                ["process", "pid", "CPU s", "CPU s / 10k reports", "CPU ms / report",
                 "peak RSS MB"],
                _usage_rows(results.batch),
            ),
        ]  # fmt: skip
    for summary in results.profiles.values():
        out += ["", summary]
    out += [f"\nnote: {n}" for n in results.notes]
    return "\n".join(out) + "\n"


def _incomplete(phase: ph.Phase) -> str:
    return "" if phase.complete else f" — INCOMPLETE: {phase.end_reason}"


def _pct(value: Any) -> float | None:
    return value * 100 if isinstance(value, float) else None


def figures(options: Options, results: Results) -> dict[str, Any]:
    """The JSON line: the five headline figures first, then the rest."""
    relay, batch, single, fixed, p1 = (
        results.relay, results.batch, results.single, results.fixed, results.p1,
    )  # fmt: skip
    e2e = batch.phase.throughput() if batch else None
    baseline = relay.msgs_per_s if relay else None
    latency = fixed.phase.latency() if fixed else None
    sent = fixed.phase.latency(since_sent=True) if fixed else None
    intake = _intake_cpu_ms(batch)
    out: dict[str, Any] = {
        "e2e_reports_per_s": e2e,
        "baseline_msgs_per_s": baseline,
        "ratio_to_baseline": ratio(e2e, baseline),
        "p99_ms_at_fixed_load": latency.p99_ms if latency else None,
        "p1_behind_backlog_s": p1.p1_seconds if p1 else None,
        "date": results.started_at.isoformat(timespec="seconds"),
        "load_avg_start": [round(x, 2) for x in results.load_start],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "profile": options.sizes().name,
        "partitions": options.partitions,
        "replicas": options.replicas,
        "single_process": options.single_process,
        "lane_processes": options.lane_processes,
        "e2e_reports": len(batch.phase.accepted_at) if batch else None,
        "e2e_complete": batch.phase.complete if batch else None,
        "intake_accept_reports_per_s": batch.intake_accept_rate() if batch else None,
        "baseline_messages": relay.messages if relay else None,
        "baseline_message_bytes": relay.message_bytes if relay else None,
        "single_reports_per_s": single.throughput() if single else None,
        "single_reports": len(single.accepted_at) if single else None,
        "single_complete": single.complete if single else None,
        "fixed_load_per_s": fixed.offered_per_s if fixed else None,
        "fixed_load_reports": len(fixed.phase.accepted_at) if fixed else None,
        "fixed_load_waiting": latency.missing if latency else None,
        "p50_ms_at_fixed_load": latency.p50_ms if latency else None,
        "p99_ms_from_send_at_fixed_load": sent.p99_ms if sent else None,
        "fixed_load_sent": fixed.sent if fixed else None,
        "max_ms_at_fixed_load": latency.max_ms if latency else None,
        "http_p99_ms_at_fixed_load": fixed.http_latency.p99_ms if fixed else None,
        "fixed_load_max_send_lag_ms": fixed.max_send_lag_ms if fixed else None,
        "fixed_load_rate_held": fixed.open_loop_held if fixed else None,
        "p1_complete": p1.p1.complete if p1 else None,
        "p1_from_202_s": _seconds(p1.p1.latency().max_ms) if p1 else None,
        "p1_backlog_reports": len(p1.backlog.accepted_at) if p1 else None,
        "p1_backlog_waiting_at_post": p1.backlog_waiting_at_p1 if p1 else None,
        "backlog_drain_reports_per_s": p1.drain_rate() if p1 else None,
        "intake_cpu_ms_per_report": intake,
        "processes": _process_figures(batch),
        "errors": _errors(results),
        "notes": results.notes,
    }
    return rounded(out)


def _seconds(ms: float | None) -> float | None:
    return ms / 1000 if ms is not None else None


def _intake_cpu_ms(batch: ph.BatchRun | None) -> float | None:
    if batch is None or not batch.phase.accepted_at:
        return None
    cpu = [u.cpu_s for label, u in batch.usage.items() if service_of(label) == "intake"]
    return sum(cpu) * 1000 / len(batch.phase.accepted_at) if cpu else None


def _process_figures(batch: ph.BatchRun | None) -> dict[str, Any]:
    if batch is None:
        return {}
    reports = len(batch.phase.accepted_at)
    return {
        label: {"cpu_s_per_10k": per_10k(u.cpu_s, reports), "peak_rss_mb": u.peak_rss_mb}
        for label, u in batch.usage.items()
    }


def _errors(results: Results) -> dict[str, Any]:
    phases = [results.single, results.fixed.phase if results.fixed else None]
    phases += [results.batch.phase if results.batch else None]
    phases += [results.p1.backlog, results.p1.p1] if results.p1 else []
    out: dict[str, Any] = {}
    for p in phases:
        if p is not None and (p.errors or p.refused or p.duplicates or p.retried):
            out[p.name] = {
                **dict(p.errors),
                "refused_rows": p.refused,
                "duplicates": p.duplicates,
                "uploads_retried_after_503": p.retried,
                "samples": p.refusal_samples,
            }
    return out
