"""`ocsea drill`: failure drills on a private, throwaway stack; a table and one JSON line.

One private stack (Kafka, Redis, PostgreSQL on ports and in directories of their own, torn
down at the end: the drills stop its parts, so never the shared one) and one `ocsea run` on
it, with the ledger on that PostgreSQL and the sample actor directory's response times cut to
seconds so every drill sees SLA timers fire. Then, drill after drill: a stream of reports,
a checkpoint of the ledger, the fault (mid-stream), the stream's end, a re-send of some
accepted requests, and a wait (each with a deadline) for every accepted report's tasks, its
timers and its ledger entries; then the checks of `drills/check.py`, the ledger verified
against the checkpoint taken before the fault, and the `.dlq` topics counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

import devstack as stack
from bench.e2e.http import Pool
from bench.e2e.kafka import BenchError
from bench.e2e.system import System, private_stack, start_system
from contracts.directory import SAMPLE_DIRECTORY, load_directory
from devstack import StackError, StackSettings
from drills.check import (
    Accepted,
    DrillFigures,
    Events,
    Ledger,
    check_timers,
    figures_of,
    last_acknowledge_timer,
    lost_reports,
    table,
)
from drills.faults import DRILL_NAMES, DRILLS, Drill, Target
from drills.load import (
    ROLES,
    Acker,
    DrillError,
    Sent,
    Stream,
    officer_tokens,
    replays_answered_anew,
)
from drills.observe import EVENT_TOPICS, Follower, LedgerReader, added, dead_letters
from services.audit.adapters.ledger_sources import ServiceSource
from services.audit.domain.checkpoint import Checkpoint
from services.audit.handlers.verify import Verdict, verify_ledger

FIRST_ACTION_S = 3600  # beyond every drill: only the acknowledge deadline's timers fire
PARTITIONS = 3
READY_AFTER_FAULT_S = 90.0
PRIORITIES = ("P1", "P2", "P3", "P4")


@dataclass(frozen=True)
class Profile:
    name: str
    reports: int
    """Reports per drill."""
    concurrency: int
    acknowledge_s: int
    """Every priority's acknowledge deadline: its warning, breach and escalations fire within
    the drill (the first-action deadline is an hour away)."""
    escalation_step_s: int
    replays: int = 10
    """Accepted requests sent again after the fault (same Idempotency-Key)."""
    complete_within_s: float = 240
    """How long a drill waits for its reports' tasks and ledger entries once its fault ended."""


PROFILES = {
    # Bounded, for CI: nine drills in about eight minutes on a loaded 2-core machine.
    "ci": Profile("ci", reports=250, concurrency=16, acknowledge_s=8, escalation_step_s=3),
    "full": Profile(
        "full",
        reports=3_000,
        concurrency=32,
        acknowledge_s=30,
        escalation_step_s=15,
        replays=50,
        complete_within_s=900,
    ),
}


@dataclass(frozen=True)
class Options:
    profile: str = "ci"
    only: tuple[str, ...] = ()
    reports: int | None = None
    keep: bool = False

    def chosen(self) -> tuple[Profile, list[Drill]]:
        if self.profile not in PROFILES:
            raise DrillError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        unknown = sorted(set(self.only) - set(DRILL_NAMES))
        if unknown:
            raise DrillError(f"unknown drill(s) {unknown}; known: {', '.join(DRILL_NAMES)}")
        profile = PROFILES[self.profile]
        if self.reports is not None:
            if self.reports < 2:
                raise DrillError("--reports: at least 2 (the fault comes at the half)")
            profile = replace(profile, reports=self.reports)
        return profile, [d for d in DRILLS if not self.only or d.name in self.only]


_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"ocsea drill [{time.monotonic() - _STARTED:5.1f}s]: {message}", file=sys.stderr,
          flush=True)  # fmt: skip


def drill_directory(profile: Profile) -> str:
    """The sample actor directory with response times of seconds (validated by the caller)."""
    text = SAMPLE_DIRECTORY.read_text(encoding="utf-8")
    text, found = re.subn(r"(?m)^\[response_times\.P[1-4]\]\n(?:[^\[\n].*\n)*", "", text)
    if found != len(PRIORITIES):
        raise DrillError(
            f"expected {len(PRIORITIES)} [response_times.*] tables in {SAMPLE_DIRECTORY}, "
            f"found {found}: update drill_directory()"
        )
    tables = "".join(
        f"\n[response_times.{priority}]\nacknowledge_s = {profile.acknowledge_s}\n"
        f"first_action_s = {FIRST_ACTION_S}\nescalation_step_s = {profile.escalation_step_s}\n"
        for priority in PRIORITIES
    )
    note = (
        "# Written by `ocsea drill`: the sample directory with response times of seconds, so "
        "SLA timers fire within a drill.\n"
    )
    return note + text + tables


def write_directory(profile: Profile, path: Path) -> Path:
    path.write_text(drill_directory(profile), encoding="utf-8")
    directory = load_directory(path)
    times = {p.value: t.acknowledge_s for p, t in directory.response_times.items()}
    if set(times.values()) != {profile.acknowledge_s}:
        raise DrillError(f"the drill directory's response times are {times}")
    return path


async def until(
    probe: Callable[[], Awaitable[bool]],
    within: float,
    interval: float = 1,
    *,
    progress: Callable[[], int] | None = None,
    stall_s: float = 90,
) -> bool:
    """Poll `probe` until it holds (True), or `within` seconds have passed, or `progress`
    has not moved for `stall_s` (False: nothing is happening any more)."""
    deadline = time.monotonic() + within
    last, moved = (progress() if progress else 0), time.monotonic()
    while True:
        if await probe():
            return True
        now = time.monotonic()
        if progress is not None and (current := progress()) != last:
            last, moved = current, now
        if now > deadline or (progress is not None and now - moved > stall_s):
            return False
        await asyncio.sleep(interval)


def _public_key(var_dir: Path) -> bytes:
    key = load_pem_public_key((var_dir / "audit-signing.pub").read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise DrillError("the audit signing key is not an Ed25519 key")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class Harness:
    """Everything the drills share: the stack, the system, and what was read of them."""

    profile: Profile
    run: str
    settings: StackSettings
    system: System
    client: httpx.AsyncClient
    pool: Pool
    extra_env: dict[str, str]
    events: Events = field(default_factory=Events)
    ledger: Ledger = field(default_factory=Ledger)
    current: str = "start"
    phase: str = "starting"
    follower: Follower | None = None
    reader: LedgerReader | None = None
    acker: Acker | None = None

    @property
    def var_dir(self) -> Path:
        assert self.system.var_dir is not None
        return self.system.var_dir

    async def start(self) -> None:
        self.acker = Acker(
            self.client, self.system.urls["routing"], officer_tokens(self.system.credentials)
        )
        acker = self.acker

        def on_event(event: dict[str, Any] | None) -> None:
            if self.events.add(event, self.current) and event is not None:
                acker.on_event(event)

        self.follower = Follower(self.system.bootstrap, EVENT_TOPICS, on_event)
        await self.follower.start()
        self.reader = LedgerReader(
            self.client, self.system.urls["audit"], self.system.token("auditor"), self.ledger
        )

    async def stop(self) -> None:
        if self.follower is not None:
            await self.follower.stop()

    async def restart_system(self) -> None:
        """A new `ocsea run` on the same stack, data and var dir: after a drill that left the
        system broken, the next drill measures its own fault, not the last one's."""
        say("restarting `ocsea run` so the next drill starts from a working system …")
        self.phase = "restarting the system"
        self.system.stop()
        self.system = await start_system(
            self.settings, self.var_dir, partitions=PARTITIONS, replicas=None,
            single_process=False, group_prefix=group_prefix(self.run),
            extra_env=self.extra_env, say=say,
        )  # fmt: skip
        await self.pool.close()
        self.pool = Pool(self.system.urls["intake"], limit=self.profile.concurrency)
        assert self.acker is not None
        assert self.reader is not None
        self.acker.url, self.reader.url = self.system.urls["routing"], self.system.urls["audit"]

    async def ready(self, within: float = 180) -> bool:
        async def all_ready() -> bool:
            self.system.check()
            for url in self.system.urls.values():
                try:
                    if (await self.client.get(f"{url}/readyz")).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
            return True

        return await until(all_ready, within, interval=0.5)

    async def read_all(self) -> None:
        """Read everything the topics and the ledger hold as of now."""
        assert self.follower is not None
        assert self.reader is not None
        await until(self.follower.caught_up, 60, interval=0.2)
        await self.reader.read(self.current)

    def verify(self, trusted: Checkpoint) -> Verdict:
        source = ServiceSource.connect(self.system.urls["audit"], self.system.token("auditor"))
        try:
            return verify_ledger(source, trusted, pinned_key=_public_key(self.var_dir))
        finally:
            source.close()


async def _progress(h: Harness) -> None:
    while True:
        await asyncio.sleep(10)
        say(
            f"  {h.current}: {h.phase}; {h.events.records:,} event records and "
            f"{h.ledger.size:,} ledger entries read"
        )


def _log_findings(log_file: Path | None, offset: int, limit: int = 8) -> list[str]:
    """The warnings and errors `ocsea run` logged during a drill: each event once, counted."""
    if log_file is None or not log_file.exists():
        return []
    with log_file.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("level") not in ("warning", "error"):
            continue
        if not str(record.get("logger", "")).startswith("ocsea"):
            continue  # the Kafka client's own complaints: every outage makes many
        name = f"{record.get('level')} {record.get('service', '?')} {record.get('event')}"
        counts[name] += 1
        example.setdefault(name, line[:400])
    return [f"log: {n}× {name}: {example[name]}" for name, n in counts.most_common(limit)]


async def _stream_through_fault(
    h: Harness, drill: Drill, figures: DrillFigures
) -> tuple[Stream, Checkpoint, list[Sent]]:
    """Stream the drill's reports; at the half, sign a checkpoint and inject the fault."""
    assert h.reader is not None
    stream = Stream(
        h.pool, h.system.token("partner-hotline"), h.run, drill.name, h.profile.reports,
        h.profile.concurrency,
    )  # fmt: skip
    h.phase = "streaming"
    streaming = asyncio.create_task(stream.run_all())
    try:
        await stream.half.wait()
        if streaming.done():
            streaming.result()  # the stream failed before its middle
        checkpoint = Checkpoint.model_validate(await h.reader.sign_checkpoint())
        before_fault = list(stream.sent)
        say(
            f"{drill.name}: {len(before_fault)} accepted, checkpoint at ledger size "
            f"{checkpoint.tree_size}; fault: {drill.fault}"
        )
        h.phase = "fault"
        started = time.monotonic()
        await drill.inject(Target(h.settings, h.system, say))
        figures.fault_seconds = round(time.monotonic() - started, 1)
        h.phase = "streaming after the fault"
        await streaming
    finally:
        if not streaming.done():
            streaming.cancel()
    figures.unanswered = stream.unanswered
    return stream, checkpoint, before_fault


async def _await_end_state(h: Harness, reports: list[Accepted]) -> datetime:
    """Wait (each step with a deadline) for every report's tasks and ledger entries, and for
    the SLA timers of its tasks; return the horizon by which every timer was due."""
    cases = {r.case_id for r in reports}

    def progress() -> int:
        """What has come in for the drill's cases so far (events, then ledger entries)."""
        return sum(len(h.events.of_case.get(c, ())) + h.ledger.of_case[c] for c in cases)

    async def whole() -> bool:
        await h.read_all()
        return lost_reports(reports, h.events, h.ledger, ROLES)["reports"] == 0

    h.phase = "waiting for every report's tasks and ledger entries"
    # Once a wait has seen nothing come in for its stall time, the system is stuck: the waits
    # after it give up sooner, and the row shows what is missing.
    within, stall_s = h.profile.complete_within_s, 60.0
    if not await until(whole, within, progress=progress, stall_s=stall_s):
        stall_s = 20.0
    tasks = [f for f in h.events.facts.values() if f.case_id in cases]
    horizon = max((last_acknowledge_timer(t) for t in tasks), default=datetime.now(UTC))

    async def timers_fired() -> bool:
        await h.read_all()
        return datetime.now(UTC) >= horizon and not check_timers(tasks, h.events, horizon).lost

    h.phase = "waiting for the SLA timers"
    wait_s = max(0.0, (horizon - datetime.now(UTC)).total_seconds()) + 120
    if not await until(timers_fired, wait_s, progress=progress, stall_s=stall_s):
        stall_s = 20.0
    h.phase = "waiting for the timers' ledger entries"
    await until(whole, within, progress=progress, stall_s=stall_s)
    return horizon


async def _exercise(h: Harness, drill: Drill, figures: DrillFigures) -> None:
    assert h.reader is not None
    assert h.acker is not None
    dlq_before = await dead_letters(h.system.bootstrap)
    stream, checkpoint, before_fault = await _stream_through_fault(h, drill, figures)
    if not await h.ready(within=READY_AFTER_FAULT_S):
        figures.notes.append(
            f"the system did not report ready within {READY_AFTER_FAULT_S:.0f} s of the fault's end"
        )
    anew = 0
    if stream.unanswered:
        figures.notes.append(f"{stream.unanswered} report(s) never answered 202 (not checked)")
    else:
        h.phase = "re-sending accepted requests"
        partner = h.system.token("partner-hotline")
        anew = await replays_answered_anew(h.pool, partner, before_fault[: h.profile.replays])
    h.phase = "acknowledging"
    await h.acker.drain()
    reports = stream.accepted
    say(f"{drill.name}: {len(reports)} accepted in all; waiting for their tasks and ledger …")
    horizon = await _await_end_state(h, reports)

    h.phase = "verifying the ledger"
    await h.reader.sign_checkpoint()
    verdict = await asyncio.to_thread(h.verify, checkpoint)
    figures.ledger_verified = verdict.ok
    figures.notes += [f"ledger: {p}" for p in verdict.problems]
    dead = added(dlq_before, await dead_letters(h.system.bootstrap))
    await h.read_all()
    figures_of(
        figures, reports, h.events, h.ledger,
        roles=ROLES, horizon=horizon, dead_lettered=sum(dead.values()),
        replays_answered_anew=anew,
    )  # fmt: skip
    figures.notes += [f"dead letters on {topic}: {n}" for topic, n in dead.items()]
    figures.notes += [f"acknowledgement failed: {f}" for f in h.acker.failed[:3]]
    figures.notes += [
        f"routing answered {status} to {n} acknowledgement(s) (retried; an outage is a 503)"
        for status, n in sorted(h.acker.server_errors.items())
    ]
    h.acker.failed.clear()
    h.acker.server_errors.clear()


async def _one(h: Harness, drill: Drill) -> DrillFigures:
    figures = DrillFigures(drill.name, drill.fault)
    started = time.monotonic()
    log_file = h.system.log_file
    log_offset = log_file.stat().st_size if log_file else 0
    h.current = drill.name
    say(f"{drill.name}: streaming {h.profile.reports} reports …")
    try:
        await _exercise(h, drill, figures)
    except (DrillError, BenchError, StackError, TimeoutError, httpx.HTTPError) as exc:
        figures.error = f"{type(exc).__name__}: {exc}"
    figures.seconds = round(time.monotonic() - started, 1)
    if not figures.ok:
        figures.notes += _log_findings(log_file, log_offset)
    verdict = "ok" if figures.ok else "FAILED: " + "; ".join(figures.violations())
    say(f"{drill.name}: {verdict} ({figures.seconds:.0f} s)")
    return figures


def _left_broken(figures: DrillFigures) -> bool:
    """Whether a drill ended with the system not working: something still missing (or the
    drill broke off), rather than something doubled that the system got past."""
    return bool(figures.lost or figures.timers_lost or figures.unanswered or figures.error)


async def _drive(h: Harness, drills: list[Drill]) -> list[DrillFigures]:
    rows: list[DrillFigures] = []
    await h.start()
    printer = asyncio.create_task(_progress(h))
    try:
        for drill in drills:
            if rows and _left_broken(rows[-1]):
                try:
                    await asyncio.to_thread(stack.up, h.settings, with_postgres=True,
                                            echo=lambda _: None)  # fmt: skip
                    await h.restart_system()
                except (BenchError, StackError) as exc:
                    error = f"not run: no working system ({exc})"
                    rows.append(DrillFigures(drill.name, drill.fault, error=error))
                    continue
            rows.append(await _one(h, drill))
    finally:
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
        await h.stop()
    return rows


def group_prefix(run: str) -> str:
    return f"ocsea-drill-{run}"


async def _run(options: Options, profile: Profile, drills: list[Drill]) -> list[DrillFigures]:
    run = uuid.uuid4().hex[:8]
    run_dir = stack.find_repo_root() / "var" / "drills" / f"{time.strftime('%Y%m%d-%H%M%S')}-{run}"
    run_dir.mkdir(parents=True, exist_ok=True)
    directory = write_directory(profile, run_dir / "directory.toml")
    rows: list[DrillFigures] = []
    try:
        with private_stack(None, say, with_postgres=True) as settings:
            extra_env = {
                "OCSEA_AUDIT_DB_URL": settings.postgres_url,
                "OCSEA_ROUTING_DIRECTORY_FILE": str(directory),
                # A request cut by a killed intake holds its Idempotency-Key this long (the
                # default is 60 s): the partner's retry waits no longer than that.
                "OCSEA_INTAKE_IDEMPOTENCY_RESERVATION_S": "15",
                "OCSEA_SUPERVISOR_RESTART_BACKOFF_INITIAL_S": "0.2",
            }
            system = await start_system(
                settings, run_dir / "var", partitions=PARTITIONS, replicas=None,
                single_process=False, group_prefix=group_prefix(run), extra_env=extra_env,
                say=say,
            )  # fmt: skip
            harness: Harness | None = None
            try:
                async with httpx.AsyncClient(timeout=30) as client:
                    pool = Pool(system.urls["intake"], limit=profile.concurrency)
                    harness = Harness(profile, run, settings, system, client, pool, extra_env)
                    try:
                        rows = await _drive(harness, drills)
                    finally:
                        await harness.pool.close()
            finally:
                say("stopping the system and the private stack …")
                (harness.system if harness is not None else system).stop()
    finally:
        if rows and all(r.ok for r in rows) and not options.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            say(f"kept the run's files (system log, directory) in {run_dir}")
    return rows


async def run(options: Options) -> int:
    """0: every drill held every zero; 1: one did not (or could not run); 2: bad options."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a stopped broker is the point
    try:
        profile, drills = options.chosen()
    except DrillError as exc:
        say(f"error: {exc}")
        return 2
    started = time.monotonic()
    try:
        rows = await _run(options, profile, drills)
    except (DrillError, BenchError, StackError) as exc:
        say(f"error: {exc}")
        return 1
    seconds = round(time.monotonic() - started, 1)
    ok = bool(rows) and all(r.ok for r in rows)
    print(f"\nDrills, profile {profile.name}: {profile.reports:,} reports per drill, "
          f"{seconds:.0f} s in all\n", flush=True)  # fmt: skip
    print(table(rows), flush=True)
    print(
        json.dumps(
            {
                "profile": profile.name,
                "reports_per_drill": profile.reports,
                "seconds": seconds,
                "ok": ok,
                "drills": [r.as_json() for r in rows],
            },
            ensure_ascii=False,
        ),
        flush=True,
    )
    return 0 if ok else 1
