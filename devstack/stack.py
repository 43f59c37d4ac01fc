"""The stack as a whole: `up`, `down`, `status` and `reset` over its components, one at a time
in a fixed order (Kafka, Redis, PostgreSQL), serialised across processes by a lock file."""

from __future__ import annotations

import contextlib
import fcntl
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from devstack.component import Component, Starting, await_ready, delete_dirs
from devstack.kafka import Kafka
from devstack.postgres import Postgres
from devstack.processes import Echo, require_free
from devstack.redis import Redis
from devstack.settings import StackError, StackSettings

COMPONENTS = ("kafka", "redis", "postgres")


def components(settings: StackSettings, *, with_postgres: bool = True) -> list[Component]:
    """The stack's components, in the order they are checked, started and stopped."""
    parts: list[Component] = [Kafka(settings), Redis(settings)]
    if with_postgres:
        parts.append(Postgres(settings))
    return parts


def service_env(settings: StackSettings) -> dict[str, str]:
    """The environment variables that point the application (and the tests) at this stack."""
    return {
        "OCSEA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "OCSEA_REDIS_URL": settings.redis_url,
        "OCSEA_TEST_POSTGRES_URL": settings.postgres_url,
    }


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _stack_lock(settings: StackSettings, echo: Echo) -> Iterator[None]:
    """Serialise `up`/`down`/`reset` of one stack across processes."""
    settings.base_dir.mkdir(parents=True, exist_ok=True)
    with (settings.base_dir / ".stack.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo("waiting for another `ocsea stack` command on this stack to finish…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_distinct_ports(parts: Sequence[Component]) -> None:
    seen: dict[int, str] = {}
    for part in parts:
        for env_var, port in part.ports().items():
            if port in seen:
                raise StackError(f"{seen[port]} and {env_var} are both {port}: use distinct ports")
            seen[port] = env_var


def up(settings: StackSettings, *, with_postgres: bool = True, echo: Echo | None = None) -> None:
    """Start whatever part of the stack is not running, and wait until all of it is ready."""
    say = echo or _stderr
    started = time.monotonic()
    parts = components(settings, with_postgres=with_postgres)
    _check_distinct_ports(parts)
    with _stack_lock(settings, say):
        for directory in (settings.base_dir, settings.logs_dir, settings.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # Preflight, cheapest first: ports, then tools, jars and packages; then start.
        for part in parts:
            if not part.running():
                for env_var, port in part.ports().items():
                    require_free(port, env_var)
        for part in parts:
            part.ensure(say)

        deadline = time.monotonic() + settings.start_timeout_s
        slow: list[tuple[Component, Starting]] = [
            (part, part.start(say)) for part in parts if part.starts_slowly
        ]
        for part in parts:
            if not part.starts_slowly:
                await_ready(part, part.start(say), deadline, say)
        for part, starting in slow:
            await_ready(part, starting, deadline, say)
    say(f"stack up in {time.monotonic() - started:.1f}s")


def down(
    settings: StackSettings, *, echo: Echo | None = None, only: Sequence[str] = COMPONENTS
) -> None:
    """Stop every component (or `only` those named) gracefully; one not running is fine.
    `up` starts again whatever is stopped (the drills stop one component at a time)."""
    say = echo or _stderr
    unknown = set(only) - set(COMPONENTS)
    if unknown:
        raise StackError(f"unknown stack component(s) {sorted(unknown)}; known: {COMPONENTS}")
    if not settings.base_dir.exists():
        say("stack not running")
        return
    with _stack_lock(settings, say):
        for part in components(settings):
            if part.name in only:
                part.stop(say)


def status(settings: StackSettings) -> dict[str, dict[str, Any]]:
    """Each component: running, pid, port, ready, plus where its data and log live."""
    return {part.name: part.status() for part in components(settings)}


def reset(settings: StackSettings, *, echo: Echo | None = None) -> None:
    """Stop the stack and delete its data, logs and generated config (the jar cache stays)."""
    say = echo or _stderr
    down(settings, echo=say)
    with _stack_lock(settings, say):
        for part in components(settings):
            part.wipe(say)
        delete_dirs([settings.run_dir, settings.logs_dir], say)
    say("stack reset: the next `up` starts from empty data")
