"""The faults, each injected once mid-stream and ended (a process restarted, a component back)
before the drill checks the end state.

A service process is killed with SIGKILL (no chance to finish anything) and the drill waits
for the supervisor of `ocsea run` to start it again and for the new process to report itself
ready. A stack component is stopped the way the local stack stops it (Kafka and Redis:
SIGTERM; PostgreSQL: its fast shutdown) and started again on the same data; Redis FLUSHALL
empties every Redis key of the private stack. The outages last the same in every profile: the
ledger database 30 s, Redis 10 s, the broker 15 s between its stop and its start.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

import devstack as stack
from bench.e2e.system import System
from devstack import StackSettings
from drills.load import DrillError

LEDGER_DB_OUTAGE_S = 30.0
REDIS_OUTAGE_S = 10.0
# Longer than the producers' request timeout (OCSEA_PUBLISH_TIMEOUT_S, 10 s): a publish under
# way when the broker stops is still pending when it comes back, as in any real restart that
# is not instantaneous.
KAFKA_DOWN_S = 15.0
RESTART_WITHIN_S = 180.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """What a fault acts on: the private stack and the system running on it."""

    settings: StackSettings
    system: System
    say: Say


@dataclass(frozen=True)
class Drill:
    name: str
    fault: str
    inject: Callable[[Target], Awaitable[None]]


def _pid_in(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_9(service: str) -> Callable[[Target], Awaitable[None]]:
    async def inject(target: Target) -> None:
        run_dir = target.system.pid_dir
        if run_dir is None:
            raise DrillError("the system under drill has no pid files")
        pid_file, ready_file = run_dir / f"{service}-0.pid", run_dir / f"{service}-0.ready"
        old = _pid_in(pid_file)
        if old is None or not _alive(old):
            raise DrillError(f"no live {service} process in {pid_file}")
        os.kill(old, signal.SIGKILL)
        target.say(f"  killed {service} (pid {old}) with SIGKILL; waiting for its restart …")
        deadline = time.monotonic() + RESTART_WITHIN_S
        while True:
            # The ready file holds the pid of the process that reported itself ready.
            new = _pid_in(ready_file)
            if new is not None and new != old and _alive(new):
                target.say(f"  {service} restarted (pid {new})")
                return
            if time.monotonic() > deadline:
                raise DrillError(f"{service} was not restarted in {RESTART_WITHIN_S:.0f} s")
            await asyncio.sleep(0.1)  # polling the supervisor's files

    return inject


async def _stop(target: Target, component: str) -> None:
    await asyncio.to_thread(
        stack.down, target.settings, echo=lambda line: target.say(f"  {line}"), only=(component,)
    )


async def _start(target: Target) -> None:
    await asyncio.to_thread(
        stack.up, target.settings, with_postgres=True, echo=lambda line: target.say(f"  {line}")
    )


def restart(component: str) -> Callable[[Target], Awaitable[None]]:
    async def inject(target: Target) -> None:
        await _stop(target, component)
        await _start(target)

    return inject


def outage(component: str, seconds: float) -> Callable[[Target], Awaitable[None]]:
    async def inject(target: Target) -> None:
        await _stop(target, component)
        target.say(f"  {component} down; starting it again in {seconds:.0f} s")
        await asyncio.sleep(seconds)  # the outage itself
        await _start(target)

    return inject


async def flush_redis(target: Target) -> None:
    if target.settings.redis_port == StackSettings().redis_port:
        raise DrillError("refusing to flush the shared development Redis")
    redis = Redis.from_url(target.settings.redis_url)
    try:
        keys = await redis.dbsize()
        await redis.flushall()
    finally:
        await redis.aclose()
    target.say(f"  FLUSHALL: {keys:,} keys gone")


async def wipe_redis(target: Target) -> None:
    """Redis stopped, its data files deleted (append-only file and snapshot), started empty:
    what a lost disk or a new Redis looks like to the services."""
    if target.settings.redis_port == StackSettings().redis_port:
        raise DrillError("refusing to wipe the shared development Redis")
    await _stop(target, "redis")
    data = target.settings.redis_dir
    gone = [p for p in (data / "appendonlydir", data / "dump.rdb") if p.exists()]
    for path in gone:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    target.say(f"  Redis data files deleted: {', '.join(p.name for p in gone) or 'none'}")
    await _start(target)


DRILLS = (
    Drill("kill-intake", "kill -9 of intake, restarted by the supervisor", kill_9("intake")),
    Drill("kill-triage", "kill -9 of triage, restarted by the supervisor", kill_9("triage")),
    Drill("kill-routing", "kill -9 of routing, restarted by the supervisor", kill_9("routing")),
    Drill("kill-audit", "kill -9 of audit, restarted by the supervisor", kill_9("audit")),
    Drill(
        "kafka-restart",
        f"the Kafka broker stopped, started again {KAFKA_DOWN_S:.0f} s later, data on disk",
        outage("kafka", KAFKA_DOWN_S),
    ),
    Drill("redis-restart", "Redis stopped and started, data on disk", restart("redis")),
    Drill("redis-flushall", "Redis FLUSHALL while SLA timers are pending", flush_redis),
    Drill("redis-wiped", "Redis restarted with its data files deleted", wipe_redis),
    Drill(
        "ledger-db-down",
        f"the ledger's PostgreSQL down for {LEDGER_DB_OUTAGE_S:.0f} s",
        outage("postgres", LEDGER_DB_OUTAGE_S),
    ),
    Drill(
        "redis-down",
        f"Redis down for {REDIS_OUTAGE_S:.0f} s",
        outage("redis", REDIS_OUTAGE_S),
    ),
)
DRILL_NAMES = tuple(d.name for d in DRILLS)
