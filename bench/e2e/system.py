"""The system under test: the benchmark's private Kafka and Redis, and `ocsea run` on them.

Benchmark reports never go to the shared development stack: every test session replays the
shared topics from the beginning, and 100,000 benchmark reports there would slow every session
after. The private stack (the local stack's own scripts, `devstack`, on ports of its own)
lives in `var/bench/stack/` and is kept between runs, because starting Kafka takes 20–30 s on
this machine; each run empties it first (its topics deleted, its Redis flushed), so runs never
see each other's events. `--temp-stack` uses a throwaway one in a temporary directory instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import devstack as stack
from bench.e2e.kafka import BenchError, delete_topics_and_wait
from devstack import StackError, StackSettings
from testkit.system import free_port

SERVICE_PORTS = ("intake", "triage", "routing", "audit", "console")
Say = Callable[[str], None]


def kept_stack_dir() -> Path:
    return stack.find_repo_root() / "var" / "bench" / "stack"


def _ports_file(base: Path) -> Path:
    return base / "bench-ports.json"


def _private_settings(base: Path, *, fresh: bool) -> StackSettings:
    """The private stack's settings: the ports it was first given, or new free ones."""
    saved: dict[str, int] = {}
    if not fresh and _ports_file(base).is_file():
        saved = json.loads(_ports_file(base).read_text())
    ports = {
        name: saved.get(name) or free_port()
        for name in ("kafka_port", "kafka_controller_port", "redis_port", "postgres_port")
    }
    _ports_file(base).write_text(json.dumps(ports))
    return StackSettings(
        base_dir=base,
        kafka_port=ports["kafka_port"],
        kafka_controller_port=ports["kafka_controller_port"],
        redis_port=ports["redis_port"],
        postgres_port=ports["postgres_port"],
    )


def _check_not_shared(settings: StackSettings) -> None:
    """Never empty the shared development stack: refuse if a port or directory is its."""
    shared = StackSettings()
    clash = {
        settings.kafka_port,
        settings.kafka_controller_port,
        settings.redis_port,
        settings.postgres_port,
    } & {shared.kafka_port, shared.kafka_controller_port, shared.redis_port, shared.postgres_port}
    if clash or settings.base_dir.resolve() == shared.base_dir.resolve():
        raise BenchError(
            f"the benchmark's private stack would share {sorted(clash) or settings.base_dir} "
            "with the development stack; remove var/bench/stack/bench-ports.json and retry"
        )


@contextlib.contextmanager
def private_stack(
    directory: Path | None, say: Say, *, with_postgres: bool = False
) -> Iterator[StackSettings]:
    """Kafka and Redis (and PostgreSQL) of the benchmark's own, up; `directory` None: a
    throwaway one (with PostgreSQL if asked), whose parts are stopped at the end."""
    temporary = directory is None
    base = Path(tempfile.mkdtemp(prefix="ocsea-bench-stack-")) if directory is None else directory
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".bench.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchError(
                f"another `ocsea bench` is using the private stack in {base}: wait for it to "
                "finish, or pass --temp-stack"
            ) from None
        settings = _private_settings(base, fresh=temporary)
        _check_not_shared(settings)
        try:
            settings = _up(settings, say, with_postgres)
            yield settings
        finally:
            if temporary:
                with contextlib.suppress(StackError):
                    stack.reset(settings, echo=lambda _: None)
                shutil.rmtree(base, ignore_errors=True)


def _up(settings: StackSettings, say: Say, with_postgres: bool) -> StackSettings:
    quiet = settings.run_dir.joinpath("kafka.pid").exists()
    if not quiet:
        say(f"starting a private stack in {settings.base_dir} …")
    try:
        stack.up(settings, with_postgres=with_postgres, echo=(lambda _: None) if quiet else say)
    except StackError as exc:
        if "in use by another process" not in str(exc):
            raise BenchError(f"cannot start the private stack: {exc}") from exc
        # A remembered port was taken while the private stack was down: start afresh.
        say("a port of the private stack is taken now; starting it afresh on new ports …")
        with contextlib.suppress(StackError):
            stack.reset(settings, echo=lambda _: None)
        settings = _private_settings(settings.base_dir, fresh=True)
        _check_not_shared(settings)
        try:
            stack.up(settings, with_postgres=with_postgres, echo=say)
        except StackError as again:
            raise BenchError(f"cannot start the private stack: {again}") from again
    return settings


async def empty_private_stack(settings: StackSettings) -> None:
    """A clean slate for this run: no topics, no Redis keys (of the private stack only)."""
    from redis.asyncio import Redis

    _check_not_shared(settings)
    await delete_topics_and_wait(settings.kafka_bootstrap)
    redis = Redis.from_url(settings.redis_url)
    try:
        await redis.flushall()
    finally:
        await redis.aclose()


def stop_kept_stack(say: Say) -> None:
    base = kept_stack_dir()
    if not _ports_file(base).is_file():
        say("no private benchmark stack to stop")
        return
    settings = _private_settings(base, fresh=False)
    _check_not_shared(settings)
    stack.down(settings, echo=say)


@dataclass
class System:
    """A running system: its URLs, the partners' tokens, its broker, where its files are."""

    urls: dict[str, str]
    credentials: dict[str, Any]
    bootstrap: str
    var_dir: Path | None
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    notes: list[str] = field(default_factory=list)

    def token(self, name: str) -> str:
        try:
            return str(self.credentials[name]["token"])
        except KeyError:
            raise BenchError(f"no credential {name!r} in the demo credentials file") from None

    @property
    def pid_dir(self) -> Path | None:
        return self.var_dir / "run" if self.var_dir is not None else None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        text = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in text)

    def check(self) -> None:
        """Raise if `ocsea run` has exited: nothing will be assigned any more."""
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(
                f"`ocsea run` exited with code {self.process.returncode}; last lines of "
                f"{self.log_file}:\n{self.log_tail()}"
            )

    def stop(self, within: float = 30) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            # Its own process group (start_new_session): the supervisor and its children.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


async def start_system(
    settings: StackSettings,
    var_dir: Path,
    *,
    partitions: int,
    replicas: str | None,
    single_process: bool,
    group_prefix: str,
    lane_processes: bool = True,
    extra_env: dict[str, str],
    say: Say,
    within: float = 300,
) -> System:
    """`ocsea run` on the private stack, in a process group of its own, until every service
    answers /readyz. Inherited OCSEA_* settings are dropped so the run is the default system
    (plus `extra_env`, e.g. OCSEA_AUDIT_DB_URL to measure the PostgreSQL ledger)."""
    ports = {name: free_port() for name in SERVICE_PORTS}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCSEA_")}
    env |= stack.service_env(settings)
    env.pop("OCSEA_TEST_POSTGRES_URL", None)
    env |= {
        "OCSEA_VAR_DIR": str(var_dir),
        "OCSEA_TOPIC_PARTITIONS": str(partitions),
        "OCSEA_CONSUMER_GROUP_PREFIX": group_prefix,
        # The benchmark is one partner sending far beyond a partner's fair share.
        "OCSEA_INTAKE_RATE_LIMIT_PER_MINUTE": "1000000000",
        "OCSEA_INTAKE_RATE_LIMIT_BURST": "10000000",
        **{f"OCSEA_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **extra_env,
    }
    log_file = var_dir.parent / "system.log"
    argv = [sys.executable, "-m", "ocsea.cli", "run"]
    argv += ["--replicas", replicas] if replicas else []
    argv += ["--single-process"] if single_process else []
    argv += [] if lane_processes else ["--no-lane-processes"]
    say(f"starting `ocsea {' '.join(argv[3:])}` (log: {log_file})")
    process = _launch(argv, env, var_dir, log_file)
    urls = {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICE_PORTS[:4]}
    system = System(urls, {}, settings.kafka_bootstrap, var_dir, log_file, process)
    try:
        await _await_ready(system, within, say)
    except BaseException:
        system.stop(within=10)
        raise
    return system


def _launch(
    argv: list[str], env: dict[str, str], var_dir: Path, log_file: Path
) -> subprocess.Popen[bytes]:
    """In a session of its own: a Ctrl+C of the benchmark reaches it only through `stop`."""
    var_dir.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments, no shell)
            argv,
            cwd=stack.find_repo_root(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _await_ready(system: System, within: float, say: Say) -> None:
    """Every service answers /readyz (on a loaded 2-core machine, starting five or more
    Python processes at once takes from 10 s to minutes: progress every 10 s)."""
    assert system.var_dir is not None
    started = time.monotonic()
    deadline, next_note = started + within, started + 10
    ready: set[str] = set()
    credentials = system.var_dir / "demo-credentials.json"
    async with httpx.AsyncClient(timeout=2) as client:
        while len(ready) < len(system.urls) or not credentials.exists():
            if system.process is not None and system.process.poll() is not None:
                tail = system.log_tail()
                hint = (
                    "\nthis `ocsea run` does not take that option"
                    if "No such option" in tail
                    else ""
                )
                raise BenchError(f"`ocsea run` exited during start-up:\n{tail}{hint}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the system was not ready in {within:.0f} s (ready: "
                    f"{', '.join(sorted(ready)) or 'none'}):\n{system.log_tail()}"
                )
            for name, url in system.urls.items():
                if name not in ready:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{url}/readyz")).status_code == 200:
                            ready.add(name)
            if time.monotonic() > next_note:
                waiting = sorted(set(system.urls) - ready) or ["the demo credentials"]
                say(f"  still starting after {time.monotonic() - started:.0f} s: "
                    f"{', '.join(waiting)}")  # fmt: skip
                next_note += 10
            await asyncio.sleep(0.2)
    system.credentials = json.loads(credentials.read_text())


def existing_system(
    intake_url: str, bootstrap: str, var_dir: Path, credentials_file: Path | None
) -> System:
    """A system someone else runs (`--intake-url`): its pid files, if any, are in var/run/."""
    path = credentials_file or var_dir / "demo-credentials.json"
    if not path.is_file():
        raise BenchError(f"no credentials file {path}: pass --credentials FILE")
    return System(
        urls={"intake": intake_url.rstrip("/")},
        credentials=json.loads(path.read_text()),
        bootstrap=bootstrap,
        var_dir=var_dir,
    )
