# ruff: noqa: S603, S607
# (This module's job is running local programs — java, mvn, redis-server, postgres, apt-get —
# with argument lists it builds itself; no shell is involved.)
"""The local infrastructure stack: real Kafka (KRaft), Redis and PostgreSQL on loopback.

Everything runs as detached processes of its own (not system services), with its data under
`var/stack/` of the repository (git-ignored) and its logs under `var/stack/logs/`:

* **Kafka** — a single-node Apache Kafka 4.x, broker and controller in one JVM (`kafka.Kafka`),
  run on the machine's Java 17 from the jars that Maven fetches from Maven Central into
  `var/cache/kafka-<version>/` (first run only; see `deploy/kafka/pom.xml`). Its storage is
  formatted once (`kafka.tools.StorageTool format`, static controller quorum); the cluster id
  lives in `var/stack/kafka/data/meta.properties`.
* **Redis** — the Debian `redis-server` (installed with apt-get when missing), daemonized with a
  pid file, append-only file on, data in `var/stack/redis/`, a password required
  (`requirepass`; generated into `var/stack/redis.password`, 0600, on its first start). A
  Redis started by an earlier version, without one, keeps running without one until its next
  start: clients are given a URL with the password only when the running Redis asks for it,
  and `status` says which.
* **PostgreSQL** — the newest Debian `postgresql` server under `/usr/lib/postgresql/*/bin`
  (installed with apt-get when missing). PostgreSQL refuses to run as root, so when we are root
  its `initdb` and `postgres` run as the `postgres` OS user, in a directory owned by that user:
  `var/stack/postgres/` when that user can reach it, otherwise (a repository under a directory
  it cannot traverse, such as `/root`) `/var/tmp/ocsea-<hash of base dir>/postgres/`. A
  database and a role `ocsea` (password `ocsea`, scram on loopback TCP) are created on start.

`up` is idempotent (a component whose pid file names a live process is left alone), `down` stops
gracefully (Kafka: SIGTERM, a controlled shutdown; Redis: SIGTERM, which flushes the AOF;
PostgreSQL: SIGINT, its "fast" shutdown) and only escalates after a deadline. Every wait polls a
real readiness condition with a deadline: a Kafka metadata answer listing our broker, a Redis
`PING`, `pg_isready`.

Mounted as `ocsea stack up|down|status|reset|env`; `python -m ocsea.stack ...` works too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "COMPONENTS",
    "DEFAULT_KAFKA_VERSION",
    "StackError",
    "StackSettings",
    "app",
    "down",
    "find_repo_root",
    "redis_password",
    "reset",
    "service_env",
    "status",
    "up",
    "use_local_redis",
]

DEFAULT_KAFKA_VERSION = "4.4.0"
LOOPBACK = "127.0.0.1"
KAFKA_NODE_ID = 1
PG_OS_USER = "postgres"
PG_SUPERUSER = "postgres"
POLL_INTERVAL_S = 0.1

_T = TypeVar("_T")
Echo = Callable[[str], None]


class StackError(Exception):
    """A stack operation failed; the message says what happened and what to do about it."""


# --------------------------------------------------------------------------------------------
# settings


def _is_ocsea_root(directory: Path) -> bool:
    pyproject = directory / "pyproject.toml"
    try:
        return re.search(r'(?m)^name\s*=\s*"ocsea"', pyproject.read_text()) is not None
    except OSError:
        return False


def find_repo_root() -> Path:
    """The ocsea checkout: the directory holding its pyproject.toml, from cwd or this module up."""
    starts = (Path.cwd().resolve(), Path(__file__).resolve().parent)
    for start in starts:
        for directory in (start, *start.parents):
            if _is_ocsea_root(directory):
                return directory
    for start in starts:
        for directory in (start, *start.parents):
            if (directory / "pyproject.toml").is_file():
                return directory
    return Path.cwd().resolve()


def _default_base_dir() -> Path:
    return find_repo_root() / "var" / "stack"


def _default_jar_cache_dir() -> Path:
    return find_repo_root() / "var" / "cache"


def _default_kafka_pom() -> Path:
    return find_repo_root() / "deploy" / "kafka" / "pom.xml"


class StackSettings(BaseSettings):
    """Where and how the local stack runs; every field can be set as `OCSEA_STACK_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="OCSEA_STACK_", extra="ignore")

    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    redis_port: int = Field(default=6379, ge=1, le=65535)
    postgres_port: int = Field(default=5432, ge=1, le=65535)
    base_dir: Path = Field(default_factory=_default_base_dir)
    """Data, logs, pid files and generated configuration: `<repo>/var/stack`."""
    kafka_version: str = DEFAULT_KAFKA_VERSION
    jar_cache_dir: Path = Field(default_factory=_default_jar_cache_dir)
    """Kafka's jars go to `<jar_cache_dir>/kafka-<version>/`: `<repo>/var/cache/kafka-4.4.0/`."""
    kafka_pom: Path = Field(default_factory=_default_kafka_pom)
    kafka_heap: str = "512m"
    postgres_dir: Path | None = None
    """PostgreSQL's own directory (data and socket); default: see the module docstring."""
    postgres_db: str = "ocsea"
    postgres_user: str = "ocsea"
    postgres_password: str = "ocsea"  # noqa: S105 (a loopback-only development database)
    start_timeout_s: float = Field(default=120.0, gt=0)
    stop_timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("kafka_version")
    @classmethod
    def _check_kafka_version(cls, value: str) -> str:
        if re.fullmatch(r"\d+\.\d+\.\d+", value) is None:
            raise ValueError(f"not a Kafka release version like 4.4.0: {value!r}")
        return value

    @field_validator("kafka_heap")
    @classmethod
    def _check_heap(cls, value: str) -> str:
        if re.fullmatch(r"\d+[kKmMgG]", value) is None:
            raise ValueError(f"not a JVM heap size like 512m: {value!r}")
        return value

    @field_validator("postgres_db", "postgres_user")
    @classmethod
    def _check_identifier(cls, value: str) -> str:
        if re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value) is None:
            raise ValueError(f"use a plain lower-case SQL identifier: {value!r}")
        return value

    # derived locations --------------------------------------------------------------------

    @property
    def kafka_jars_dir(self) -> Path:
        return self.jar_cache_dir / f"kafka-{self.kafka_version}"

    @property
    def kafka_dir(self) -> Path:
        return self.base_dir / "kafka"

    @property
    def kafka_data_dir(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def redis_dir(self) -> Path:
        return self.base_dir / "redis"

    @property
    def run_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.kafka_port}"

    @property
    def redis_password_file(self) -> Path:
        return self.base_dir / "redis.password"

    @property
    def redis_url(self) -> str:
        """Where clients reach Redis, with the password when the running Redis needs one."""
        password = redis_password(self)
        auth = f":{password}@" if password else ""
        return f"redis://{auth}{LOOPBACK}:{self.redis_port}/0"

    @property
    def postgres_url(self) -> str:
        return (
            f"postgresql+asyncpg://{self.postgres_user}:{self.postgres_password}"
            f"@{LOOPBACK}:{self.postgres_port}/{self.postgres_db}"
        )


def use_local_redis(environ: MutableMapping[str, str] | None = None) -> None:
    """Point a local run (`ocsea run`, `ocsea <service>`) given no `OCSEA_REDIS_URL` at the
    local stack's Redis, with its password when it asks for one; its processes inherit it. A
    deployment names its own Redis (a secret file), so nothing is set there."""
    environ = os.environ if environ is None else environ
    if "OCSEA_REDIS_URL" in environ or environ.get("OCSEA_SECRETS_DIR"):
        return
    if environ.get("OCSEA_DEPLOYMENT", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    settings = StackSettings()
    if redis_password(settings) is not None:
        environ["OCSEA_REDIS_URL"] = settings.redis_url


def service_env(settings: StackSettings) -> dict[str, str]:
    """The environment variables that point the application (and the tests) at this stack."""
    return {
        "OCSEA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "OCSEA_REDIS_URL": settings.redis_url,
        "OCSEA_TEST_POSTGRES_URL": settings.postgres_url,
    }


# --------------------------------------------------------------------------------------------
# small helpers: output, files, processes, ports


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            data = handle.read()
    except OSError:
        return f"  ({path} does not exist)"
    text = data.decode(errors="replace").splitlines()[-lines:]
    if not text:
        return f"  ({path} is empty)"
    return "\n".join(f"  | {line}" for line in text)


def _tails(paths: Sequence[Path], lines: int = 25) -> str:
    return "\n".join(f"last lines of {path}:\n{_tail(path, lines)}" for path in paths)


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split(maxsplit=1)
    except OSError:
        return None
    if not first or not first[0].isdigit():
        return None
    return int(first[0])


def _pid_alive(pid: int | None, marker: str) -> bool:
    """Is `pid` a live (not zombie) process whose command line contains `marker`?"""
    if pid is None or pid <= 0:
        return False
    # Reap it if it is an exited child of ours (e.g. `up` then `down` in one process).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and marker in cmdline


def _port_answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise StackError(f"cannot bind {LOOPBACK}:{port}: {exc}") from exc
    return False


def _port_owner(port: int) -> str | None:
    """Best effort: "pid 123 (java)" for the process listening on `port`."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return f"pid {proc.name} ({(proc / 'comm').read_text().strip()})"
        except OSError:
            continue
    return None


def _require_free(port: int, env_var: str) -> None:
    if _port_in_use(port):
        owner = _port_owner(port)
        who = f" ({owner})" if owner else ""
        raise StackError(
            f"port {port} in use by another process{who}: stop it or set {env_var} to a free port"
        )


def _run_sync(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, even when called inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


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


def _stop_pid(
    name: str,
    pid: int,
    marker: str,
    plan: Sequence[tuple[signal.Signals, float]],
    echo: Echo,
) -> None:
    """Signal `pid` following `plan` (signal, seconds to wait) until it has gone."""
    started = time.monotonic()
    echo(f"stopping {name} (pid {pid})…")
    for sig, wait_s in plan:
        if not _pid_alive(pid, marker):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while _pid_alive(pid, marker) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
        if _pid_alive(pid, marker):
            echo(f"  {name} still running {wait_s:.0f}s after {sig.name}")
    if _pid_alive(pid, marker):
        raise StackError(f"could not stop {name} (pid {pid}): kill it by hand")
    echo(f"  {name} stopped in {time.monotonic() - started:.1f}s")


@dataclass
class _Starting:
    """A component whose process has been launched (or found) and is not yet known ready."""

    name: str
    started: float
    probe: Callable[[], bool]
    alive: Callable[[], bool]
    logs: Sequence[Path]
    hint: str
    after_ready: Callable[[], None] | None = None
    already_running: bool = False


def _await_ready(item: _Starting, deadline: float, echo: Echo) -> None:
    while True:
        if item.probe():
            break
        if not item.alive():
            raise StackError(
                f"{item.name} exited during start-up; {item.hint}\n{_tails(item.logs)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{item.name} not ready after {deadline - item.started:.0f}s "
                f"(raise OCSEA_STACK_START_TIMEOUT_S if the machine is slow)\n{_tails(item.logs)}"
            )
        time.sleep(POLL_INTERVAL_S)
    if item.after_ready is not None:
        item.after_ready()
    if item.already_running:
        echo(f"{item.name} already running and ready")
    else:
        echo(f"{item.name} ready in {time.monotonic() - item.started:.1f}s")


def _launch(
    argv: Sequence[str | Path],
    *,
    log: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process that outlives us: own session, no stdin, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting\n".encode())
        out.flush()
        return subprocess.Popen(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
            user=user,
            group=user,
            extra_groups=[] if user is not None else None,
        )


# --------------------------------------------------------------------------------------------
# Debian packages


def _dpkg_status(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _run_apt(argv: list[str], log: Path, what: str) -> None:
    """Run an apt-get command, waiting (bounded) for locks another installer holds."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + 900
    while True:
        with log.open("ab") as out:
            out.write(f"\n===== {' '.join(argv)}\n".encode())
            out.flush()
            result = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        if result.returncode == 0:
            return
        locked = "Could not get lock" in _tail(log, 10) or "is held by" in _tail(log, 10)
        if not locked or time.monotonic() > deadline:
            raise StackError(
                f"{what} failed (apt-get exit {result.returncode}); install it by hand with "
                f"`apt-get install -y {argv[-1]}`\n{_tails([log])}"
            )
        time.sleep(2)  # another apt/dpkg holds the lock: poll again until the deadline


def _apt_install(package: str, service: str, settings: StackSettings, echo: Echo) -> None:
    if os.geteuid() != 0:
        raise StackError(
            f"{package} is not installed: install it with `sudo apt-get install -y {package}`"
        )
    if shutil.which("apt-get") is None:
        raise StackError(f"{package} is not installed and there is no apt-get to install it")
    log = settings.logs_dir / "apt.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    echo(f"installing {package} with apt-get (first run only)…")
    started = time.monotonic()
    lock_wait = ["-o", "DPkg::Lock::Timeout=600"]
    policy = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    )
    if "Candidate:" not in policy.stdout or "Candidate: (none)" in policy.stdout:
        _run_apt(["apt-get", *lock_wait, "update"], log, "apt-get update")
    _run_apt(
        ["apt-get", *lock_wait, "install", "-y", "--no-install-recommends", package],
        log,
        f"installing {package}",
    )
    # The package may have started its own system service on our port: we run our own.
    if shutil.which("service") is not None:
        subprocess.run(
            ["service", service, "stop"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=60,
        )
    echo(f"  installed {package} in {time.monotonic() - started:.1f}s")


def _ensure_package(
    find: Callable[[], Path | None],
    package: str,
    service: str,
    settings: StackSettings,
    echo: Echo,
) -> Path:
    found = find()
    state = _dpkg_status(package)
    if found is not None and state in (None, "install ok installed"):
        return found
    if found is not None:
        echo(f"{package} is being installed or is broken ({state}); waiting for dpkg…")
    _apt_install(package, service, settings, echo)
    found = find()
    if found is None:
        raise StackError(f"{package} installed but its program was not found")
    return found


# --------------------------------------------------------------------------------------------
# Kafka


def _find_java() -> Path:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate is None or not os.access(candidate, os.X_OK):
        found = shutil.which("java")
        candidate = Path(found) if found else None
    install = "install openjdk-17-jre-headless (`apt-get install -y openjdk-17-jre-headless`)"
    if candidate is None:
        raise StackError(f"Java 17 not found: {install}")
    try:
        result = subprocess.run(
            [str(candidate), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise StackError(f"Java 17 not found ({candidate}: {exc}): {install}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        raise StackError(f"could not tell the Java version of {candidate}: {install}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0_x"
        major = int(match.group(2) or 0)
    if major < 17:
        raise StackError(f"Java {major} at {candidate} is too old, Kafka needs 17+: {install}")
    return candidate


def _ensure_kafka_jars(settings: StackSettings, echo: Echo) -> Path:
    jars = settings.kafka_jars_dir
    version = settings.kafka_version
    if (jars / ".complete").is_file():
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "mvn not found: install Maven (`apt-get install -y maven`); it fetches Kafka's jars "
            "from Maven Central"
        )
    pom = settings.kafka_pom
    if not pom.is_file():
        raise StackError(f"Kafka's pom {pom} is missing (set OCSEA_STACK_KAFKA_POM)")
    echo(f"fetching Kafka {version} jars from Maven Central (first run only)…")
    started = time.monotonic()
    partial = jars.with_name(f"{jars.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log = settings.logs_dir / "maven.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        mvn,
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    with log.open("wb") as out:
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=pom.parent,
                timeout=1200,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"Maven took over 20 minutes\n{_tails([log], 40)}") from exc
    core = partial / f"kafka_2.13-{version}.jar"
    if result.returncode != 0 or not core.is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise StackError(
            f"Maven could not fetch Kafka {version} (exit {result.returncode}; is "
            f"org.apache.kafka:kafka_2.13:{version} on Maven Central? set "
            f"OCSEA_STACK_KAFKA_VERSION)\n{_tails([log], 40)}"
        )
    count = len(list(partial.glob("*.jar")))
    size = sum(path.stat().st_size for path in partial.glob("*.jar"))
    (partial / ".complete").write_text(f"kafka {version}: {count} jars\n")
    shutil.rmtree(jars, ignore_errors=True)
    partial.rename(jars)
    echo(
        f"  fetched {count} jars ({size / 2**20:.0f} MiB) into {jars} "
        f"in {time.monotonic() - started:.1f}s"
    )
    return jars


def _kafka_files(settings: StackSettings) -> tuple[Path, Path, Path]:
    """server.properties, log4j2.properties, pid file."""
    return (
        settings.kafka_dir / "server.properties",
        settings.kafka_dir / "log4j2.properties",
        settings.run_dir / "kafka.pid",
    )


def _props_value(value: str | Path) -> str:
    return str(value).replace("\\", "\\\\")


def _write_kafka_config(settings: StackSettings) -> None:
    server, log4j, _ = _kafka_files(settings)
    port, controller = settings.kafka_port, settings.kafka_controller_port
    server_lines = [
        "# Written by ocsea/stack.py on every start; edit StackSettings instead.",
        "process.roles=broker,controller",
        f"node.id={KAFKA_NODE_ID}",
        f"controller.quorum.voters={KAFKA_NODE_ID}@{LOOPBACK}:{controller}",
        f"listeners=PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller}",
        f"advertised.listeners=PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={_props_value(settings.kafka_data_dir)}",
        "num.partitions=3",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "auto.create.topics.enable=true",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "num.recovery.threads.per.data.dir=1",
    ]
    server_log = _props_value(settings.logs_dir / "kafka.log")
    log4j_lines = [
        "# Written by ocsea/stack.py on every start.",
        "status = warn",
        "name = ocsea-stack-kafka",
        "# Keep logging through Kafka's own shutdown hook (its controlled shutdown).",
        "shutdownHook = disable",
        "appender.file.type = RollingFile",
        "appender.file.name = FILE",
        f"appender.file.fileName = {server_log}",
        f"appender.file.filePattern = {server_log}.%i",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d] %p %m (%c)%n",
        "appender.file.policies.type = Policies",
        "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
        "appender.file.policies.size.size = 50MB",
        "appender.file.strategy.type = DefaultRolloverStrategy",
        "appender.file.strategy.max = 3",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.file.ref = FILE",
    ]
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    server.write_text("\n".join(server_lines) + "\n")
    log4j.write_text("\n".join(log4j_lines) + "\n")


def _new_kafka_cluster_id() -> str:
    """A Kafka `Uuid` string (base64url of 16 random bytes), as `kafka-storage random-uuid`."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _kafka_cluster_id(settings: StackSettings) -> str | None:
    try:
        text = (settings.kafka_data_dir / "meta.properties").read_text()
    except OSError:
        return None
    match = re.search(r"(?m)^cluster\.id=(\S+)", text)
    return match.group(1) if match else None


def _java_base(settings: StackSettings, java: Path) -> list[str]:
    _, log4j, _ = _kafka_files(settings)
    return [
        str(java),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={settings.logs_dir}",
        "-cp",
        f"{settings.kafka_jars_dir}/*",
    ]


def _format_kafka_storage(settings: StackSettings, java: Path, echo: Echo) -> None:
    server, _, _ = _kafka_files(settings)
    cluster_id = _new_kafka_cluster_id()
    echo(f"formatting Kafka storage in {settings.kafka_data_dir} (cluster id {cluster_id})…")
    settings.kafka_data_dir.mkdir(parents=True, exist_ok=True)
    log = settings.logs_dir / "kafka-format.log"
    argv = [
        *_java_base(settings, java),
        "-Xmx256m",
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cluster_id,
        "--config",
        str(server),
    ]
    with log.open("ab") as out:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=settings.kafka_dir,
            timeout=300,
            check=False,
        )
    if result.returncode != 0 or _kafka_cluster_id(settings) is None:
        raise StackError(
            f"formatting Kafka's storage failed (exit {result.returncode}); "
            f"`ocsea stack reset` starts from scratch\n{_tails([log])}"
        )


def _kafka_marker(settings: StackSettings) -> str:
    return str(_kafka_files(settings)[0])


def _kafka_pid(settings: StackSettings) -> int | None:
    pid = _read_pid(_kafka_files(settings)[2])
    return pid if _pid_alive(pid, _kafka_marker(settings)) else None


async def _kafka_metadata(port: int, limit_s: float) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    client = AIOKafkaAdminClient(
        bootstrap_servers=f"{LOOPBACK}:{port}",
        client_id="ocsea-stack-probe",
        request_timeout_ms=int(limit_s * 1000),
    )
    try:
        async with asyncio.timeout(limit_s):
            await client.start()
            cluster: dict[str, Any] = await client.describe_cluster()
        return cluster
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def _kafka_ready(settings: StackSettings, timeout: float = 5.0) -> bool:
    """A real metadata answer from the broker that lists our (unfenced) broker."""
    if not _port_answers(settings.kafka_port):
        return False
    with _quiet_logger("aiokafka"):
        try:
            cluster = _run_sync(lambda: _kafka_metadata(settings.kafka_port, timeout))
        except Exception:
            return False
    brokers = cluster.get("brokers") or []
    return any(broker.get("node_id") == KAFKA_NODE_ID for broker in brokers)


def _start_kafka(settings: StackSettings, java: Path | None, echo: Echo) -> _Starting:
    server, _, pid_file = _kafka_files(settings)
    logs = [settings.logs_dir / "kafka.out", settings.logs_dir / "kafka.log"]
    marker = _kafka_marker(settings)
    pid = _kafka_pid(settings)
    name = f"kafka {settings.kafka_version}"
    if pid is not None:
        running = _port_answers(settings.kafka_port)
        if not running:
            echo(f"{name} already starting (pid {pid})…")
        return _Starting(
            name=name,
            started=time.monotonic(),
            probe=lambda: _kafka_ready(settings),
            alive=lambda: _pid_alive(pid, marker),
            logs=logs,
            hint="see its logs",
            already_running=running,
        )
    java = java or _find_java()
    _write_kafka_config(settings)
    if _kafka_cluster_id(settings) is None:
        _format_kafka_storage(settings, java, echo)
    heap = settings.kafka_heap
    argv = [
        *_java_base(settings, java),
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "kafka.Kafka",
        str(server),
    ]
    started = time.monotonic()
    process = _launch(argv, log=logs[0], cwd=settings.kafka_dir)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{process.pid}\n")
    echo(f"starting {name} (pid {process.pid}, data {settings.kafka_data_dir})…")
    return _Starting(
        name=name,
        started=started,
        probe=lambda: _kafka_ready(settings),
        alive=lambda: process.poll() is None,
        logs=logs,
        hint="see its logs",
    )


def _stop_kafka(settings: StackSettings, echo: Echo) -> None:
    pid = _kafka_pid(settings)
    if pid is None:
        echo("kafka not running")
    else:
        _stop_pid(
            "kafka",
            pid,
            _kafka_marker(settings),
            [(signal.SIGTERM, settings.stop_timeout_s), (signal.SIGKILL, 10.0)],
            echo,
        )
    _kafka_files(settings)[2].unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Redis


def _find_redis() -> Path | None:
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return Path(found) if found else None


def _redis_files(settings: StackSettings) -> tuple[Path, Path]:
    """redis.conf, pid file."""
    return settings.redis_dir / "redis.conf", settings.run_dir / "redis.pid"


def _redis_pid(settings: StackSettings) -> int | None:
    pid = _read_pid(_redis_files(settings)[1])
    return pid if _pid_alive(pid, "redis-server") else None


def _redis_command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
    )


def _redis_ping(port: int, timeout: float = 1.0, password: str | None = None) -> bool:
    """Whether Redis answers PING (after AUTH with `password`, when given)."""
    request = (_redis_command("AUTH", password) if password else b"") + _redis_command("PING")
    answer = b""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(request)
            while b"PONG" not in answer and b"-" not in answer and len(answer) < 256:
                chunk = sock.recv(64)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return False
    # Without a password, a Redis that requires one answers -NOAUTH; a wrong one, -WRONGPASS.
    return answer.startswith(b"+OK\r\n+PONG" if password else b"+PONG")


def _read_redis_password(settings: StackSettings) -> str | None:
    try:
        return settings.redis_password_file.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def _ensure_redis_password(settings: StackSettings) -> str:
    """The stack's Redis password, generated (0600) the first time Redis starts."""
    existing = _read_redis_password(settings)
    if existing is not None:
        return existing
    password = secrets.token_hex(24)
    settings.base_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.redis_password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(password + "\n")
    return password


def _redis_open(settings: StackSettings) -> bool:
    """Whether the running Redis answers without a password (started before it had one)."""
    return _redis_ping(settings.redis_port)


def redis_password(settings: StackSettings) -> str | None:
    """The password clients must give the stack's Redis: its own, unless the Redis running
    answers without one (then none, until it is restarted with one)."""
    password = _read_redis_password(settings)
    if password is None or _redis_open(settings):
        return None
    return password


def _redis_ready(settings: StackSettings) -> bool:
    password = _read_redis_password(settings)
    return _redis_ping(settings.redis_port) or (
        password is not None and _redis_ping(settings.redis_port, password=password)
    )


def _redis_quote(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _start_redis(settings: StackSettings, redis_server: Path, echo: Echo) -> _Starting:
    conf, pid_file = _redis_files(settings)
    logs = [settings.logs_dir / "redis.out", settings.logs_dir / "redis.log"]
    pid = _redis_pid(settings)
    if pid is not None:
        running = _port_answers(settings.redis_port)
        if not running:
            echo(f"redis already starting (pid {pid})…")
        return _Starting(
            name="redis",
            started=time.monotonic(),
            probe=lambda: _redis_ready(settings),
            alive=lambda: _pid_alive(pid, "redis-server"),
            logs=logs,
            hint="see its logs",
            already_running=running,
        )
    settings.redis_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    pid_file.unlink(missing_ok=True)
    password = _ensure_redis_password(settings)
    conf.touch(mode=0o600)  # it holds the password
    conf.chmod(0o600)
    conf.write_text(
        "\n".join(
            [
                "# Written by ocsea/stack.py on every start; edit StackSettings instead.",
                f"bind {LOOPBACK}",
                f"port {settings.redis_port}",
                "protected-mode yes",
                "daemonize yes",
                f"pidfile {_redis_quote(pid_file)}",
                f"logfile {_redis_quote(logs[1])}",
                f"dir {_redis_quote(settings.redis_dir)}",
                "appendonly yes",
                "appendfsync everysec",
                "save 3600 1 300 100 60 10000",
                f"requirepass {_redis_quote(password)}",
            ]
        )
        + "\n"
    )
    started = time.monotonic()
    process = _launch([redis_server, conf], log=logs[0], cwd=settings.redis_dir)
    try:
        code = process.wait(timeout=30)  # the foreground process exits once daemonized
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"redis-server did not daemonize\n{_tails(logs)}") from exc
    if code != 0:
        raise StackError(f"redis-server failed to start (exit {code})\n{_tails(logs)}")
    echo(f"starting redis (data {settings.redis_dir})…")

    def alive() -> bool:
        # The daemon writes its pid file just after forking: allow it a moment to appear.
        daemon = _read_pid(pid_file)
        if daemon is None:
            return time.monotonic() - started < 10
        return _pid_alive(daemon, "redis-server")

    return _Starting(
        name="redis",
        started=started,
        probe=lambda: _redis_ready(settings) and _redis_pid(settings) is not None,
        alive=alive,
        logs=logs,
        hint="see its logs",
    )


def _stop_redis(settings: StackSettings, echo: Echo) -> None:
    pid = _redis_pid(settings)
    if pid is None:
        echo("redis not running")
    else:
        _stop_pid(
            "redis",
            pid,
            "redis-server",
            [(signal.SIGTERM, settings.stop_timeout_s), (signal.SIGKILL, 10.0)],
            echo,
        )
    _redis_files(settings)[1].unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass(frozen=True)
class _PgPaths:
    home: Path
    """Owned by the postgres OS user (when we are root)."""
    data: Path
    sockets: Path

    @property
    def pid_file(self) -> Path:
        return self.data / "postmaster.pid"


def _pg_versions() -> dict[int, Path]:
    found: dict[int, Path] = {}
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if bindir.parent.name.isdigit() and os.access(bindir / "postgres", os.X_OK):
            found[int(bindir.parent.name)] = bindir
    return found


def _find_pg_bindir() -> Path | None:
    versions = _pg_versions()
    return versions[max(versions)] if versions else None


def _pg_run_as() -> str | None:
    """The OS user PostgreSQL runs as: `postgres` when we are root, else ourselves."""
    return PG_OS_USER if os.geteuid() == 0 else None


def _user_can_traverse(user: str | None, directory: Path) -> bool:
    if user is None:
        return os.access(directory, os.X_OK | os.W_OK)
    result = subprocess.run(
        ["test", "-x", str(directory)],
        user=user,
        group=user,
        extra_groups=[],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _pg_fallback_home(settings: StackSettings) -> Path:
    digest = hashlib.sha256(str(settings.base_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"ocsea-{digest}" / "postgres"  # noqa: S108 (made 0700, owned)


def _pg_paths(settings: StackSettings, *, decide: bool = False) -> _PgPaths:
    """Where PostgreSQL lives. With `decide`, pick a home the postgres user can reach."""
    inside = settings.base_dir / "postgres"
    fallback = _pg_fallback_home(settings)
    if settings.postgres_dir is not None:
        home = settings.postgres_dir
    elif (inside / "data" / "PG_VERSION").is_file() or not (
        fallback / "data" / "PG_VERSION"
    ).is_file():
        home = inside
    else:
        home = fallback
    if decide and settings.postgres_dir is None and not (home / "data" / "PG_VERSION").is_file():
        settings.base_dir.mkdir(parents=True, exist_ok=True)
        home = inside if _user_can_traverse(_pg_run_as(), settings.base_dir) else fallback
    sockets = home / "run"
    if len(str(sockets / ".s.PGSQL.65535.lock")) > 100:  # sun_path is 108 bytes
        digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
        sockets = Path("/tmp") / f"ocsea-pg-{digest}"  # noqa: S108 (made 0700, owned)
    return _PgPaths(home=home, data=home / "data", sockets=sockets)


def _pg_pid(paths: _PgPaths) -> int | None:
    pid = _read_pid(paths.pid_file)
    return pid if _pid_alive(pid, "postgres") else None


def _own_dir(path: Path, user: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


def _pg_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}


def _pg_ready(settings: StackSettings, bindir: Path | None) -> bool:
    if not _port_answers(settings.postgres_port):
        return False
    tool = bindir / "pg_isready" if bindir else None
    if tool is None or not tool.is_file():
        return True
    result = subprocess.run(
        [str(tool), "-q", "-h", LOOPBACK, "-p", str(settings.postgres_port), "-t", "2"],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pg_setup(settings: StackSettings, bindir: Path, paths: _PgPaths) -> None:
    """Create (or refresh) the application's role and database; idempotent."""
    user, db = settings.postgres_user, settings.postgres_db
    password = _sql_literal(settings.postgres_password)
    base = [
        str(bindir / "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        str(paths.sockets),
        "-p",
        str(settings.postgres_port),
        "-U",
        PG_SUPERUSER,
        "-tA",
    ]

    def psql(database: str, sql: str) -> str:
        result = subprocess.run(
            [*base, "-d", database, "-c", sql],
            capture_output=True,
            text=True,
            env={**_pg_env(), "PGCONNECT_TIMEOUT": "10"},
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise StackError(f"setting up PostgreSQL failed: {result.stderr.strip()}")
        return result.stdout.strip()

    psql(
        "postgres",
        f"DO $$BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN "
        f"CREATE ROLE {user} LOGIN CREATEDB PASSWORD {password}; "
        f"ELSE ALTER ROLE {user} LOGIN CREATEDB PASSWORD {password}; END IF; END$$;",
    )
    # `user` and `db` are validated plain identifiers (StackSettings), the password is quoted.
    if psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{db}'") != "1":  # noqa: S608
        psql("postgres", f"CREATE DATABASE {db} OWNER {user}")


def _start_postgres(settings: StackSettings, bindir: Path, echo: Echo) -> _Starting:
    run_as = _pg_run_as()
    if run_as is not None:
        try:
            pwd.getpwnam(run_as)
        except KeyError as exc:
            raise StackError(
                f"no `{run_as}` OS user to run PostgreSQL as: "
                "install the postgresql package (`apt-get install -y postgresql`)"
            ) from exc
    paths = _pg_paths(settings, decide=True)
    logs = [settings.logs_dir / "postgres.log"]
    version_file = paths.data / "PG_VERSION"
    if version_file.is_file():
        data_version = int(version_file.read_text().strip())
        versions = _pg_versions()
        if data_version not in versions:
            raise StackError(
                f"PostgreSQL data in {paths.data} is version {data_version}, but "
                f"/usr/lib/postgresql/{data_version}/bin is missing: install "
                f"postgresql-{data_version} or run `ocsea stack reset`"
            )
        bindir = versions[data_version]
    name = f"postgres {bindir.parent.name}"
    pid = _pg_pid(paths)
    if pid is not None:
        running = _port_answers(settings.postgres_port)
        if not running:
            echo(f"{name} already starting (pid {pid})…")
        return _Starting(
            name=name,
            started=time.monotonic(),
            probe=lambda: _pg_ready(settings, bindir),
            alive=lambda: _pid_alive(pid, "postgres"),
            logs=logs,
            hint="see its log",
            after_ready=lambda: _pg_setup(settings, bindir, paths),
            already_running=running,
        )
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    _own_dir(paths.home, run_as)
    _own_dir(paths.sockets, run_as)
    if not version_file.is_file():
        echo(f"initialising PostgreSQL {bindir.parent.name} data in {paths.data}…")
        init_log = settings.logs_dir / "postgres-initdb.log"
        with init_log.open("ab") as out:
            result = subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(paths.data),
                    "-U",
                    PG_SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=paths.home,
                env=_pg_env(),
                user=run_as,
                group=run_as,
                extra_groups=[] if run_as is not None else None,
                timeout=300,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(f"initdb failed (exit {result.returncode})\n{_tails([init_log])}")
    argv: list[str | Path] = [
        bindir / "postgres",
        "-D",
        paths.data,
        "-p",
        str(settings.postgres_port),
        "-k",
        paths.sockets,
        "-c",
        f"listen_addresses={LOOPBACK}",
        "-c",
        "logging_collector=off",
    ]
    started = time.monotonic()
    process = _launch(argv, log=logs[0], cwd=paths.home, env=_pg_env(), user=run_as)
    echo(f"starting {name} (pid {process.pid}, data {paths.data})…")
    return _Starting(
        name=name,
        started=started,
        probe=lambda: _pg_ready(settings, bindir),
        alive=lambda: process.poll() is None,
        logs=logs,
        hint="see its log",
        after_ready=lambda: _pg_setup(settings, bindir, paths),
    )


def _stop_postgres(settings: StackSettings, echo: Echo) -> None:
    paths = _pg_paths(settings)
    pid = _pg_pid(paths)
    if pid is None:
        echo("postgres not running")
        return
    _stop_pid(
        "postgres",
        pid,
        "postgres",
        # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for clients to leave).
        [(signal.SIGINT, settings.stop_timeout_s), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)],
        echo,
    )


# --------------------------------------------------------------------------------------------
# public API


def _check_distinct_ports(settings: StackSettings, with_postgres: bool) -> None:
    ports = {
        "OCSEA_STACK_KAFKA_PORT": settings.kafka_port,
        "OCSEA_STACK_KAFKA_CONTROLLER_PORT": settings.kafka_controller_port,
        "OCSEA_STACK_REDIS_PORT": settings.redis_port,
    }
    if with_postgres:
        ports["OCSEA_STACK_POSTGRES_PORT"] = settings.postgres_port
    seen: dict[int, str] = {}
    for env_var, port in ports.items():
        if port in seen:
            raise StackError(f"{seen[port]} and {env_var} are both {port}: use distinct ports")
        seen[port] = env_var


def up(settings: StackSettings, *, with_postgres: bool = True, echo: Echo | None = None) -> None:
    """Start whatever part of the stack is not running, and wait until all of it is ready."""
    say = echo or _stderr
    started = time.monotonic()
    _check_distinct_ports(settings, with_postgres)
    with _stack_lock(settings, say):
        for directory in (settings.base_dir, settings.logs_dir, settings.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # Preflight, cheapest first: ports, then tools, jars and packages; then start.
        kafka_running = _kafka_pid(settings) is not None
        if not kafka_running:
            _require_free(settings.kafka_port, "OCSEA_STACK_KAFKA_PORT")
            _require_free(settings.kafka_controller_port, "OCSEA_STACK_KAFKA_CONTROLLER_PORT")
        if _redis_pid(settings) is None:
            _require_free(settings.redis_port, "OCSEA_STACK_REDIS_PORT")
        if with_postgres and _pg_pid(_pg_paths(settings)) is None:
            _require_free(settings.postgres_port, "OCSEA_STACK_POSTGRES_PORT")
        java = None
        if not kafka_running:
            java = _find_java()
            _ensure_kafka_jars(settings, say)
        redis_server = _ensure_package(_find_redis, "redis-server", "redis-server", settings, say)
        pg_bindir = (
            _ensure_package(_find_pg_bindir, "postgresql", "postgresql", settings, say)
            if with_postgres
            else None
        )

        deadline = time.monotonic() + settings.start_timeout_s
        kafka = _start_kafka(settings, java, say)  # the slowest: launch it first
        _await_ready(_start_redis(settings, redis_server, say), deadline, say)
        if pg_bindir is not None:
            _await_ready(_start_postgres(settings, pg_bindir, say), deadline, say)
        _await_ready(kafka, deadline, say)
    say(f"stack up in {time.monotonic() - started:.1f}s")


COMPONENTS = ("kafka", "redis", "postgres")


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
    stops = {"kafka": _stop_kafka, "redis": _stop_redis, "postgres": _stop_postgres}
    with _stack_lock(settings, say):
        for name in COMPONENTS:
            if name in only:
                stops[name](settings, say)


def _redis_password_state(settings: StackSettings, *, running: bool) -> str:
    if running and _redis_open(settings):
        return "none (started before the stack had one; `down` and `up` restart it with one)"
    return "required" if _read_redis_password(settings) or running else "made at first start"


def status(settings: StackSettings) -> dict[str, dict[str, Any]]:
    """Each component: running, pid, port, ready, plus where its data and log live."""
    kafka_pid = _kafka_pid(settings)
    redis_pid = _redis_pid(settings)
    pg_paths = _pg_paths(settings)
    pg_pid = _pg_pid(pg_paths)
    pg_bindir = _find_pg_bindir()
    return {
        "kafka": {
            "running": kafka_pid is not None,
            "pid": kafka_pid,
            "port": settings.kafka_port,
            "controller_port": settings.kafka_controller_port,
            "ready": kafka_pid is not None and _kafka_ready(settings, timeout=3.0),
            "version": settings.kafka_version,
            "cluster_id": _kafka_cluster_id(settings),
            "data_dir": str(settings.kafka_data_dir),
            "jars_dir": str(settings.kafka_jars_dir),
            "log": str(settings.logs_dir / "kafka.log"),
        },
        "redis": {
            "running": redis_pid is not None,
            "pid": redis_pid,
            "port": settings.redis_port,
            "ready": redis_pid is not None and _redis_ready(settings),
            "password": _redis_password_state(settings, running=redis_pid is not None),
            "data_dir": str(settings.redis_dir),
            "log": str(settings.logs_dir / "redis.log"),
        },
        "postgres": {
            "running": pg_pid is not None,
            "pid": pg_pid,
            "port": settings.postgres_port,
            "ready": pg_pid is not None and _pg_ready(settings, pg_bindir),
            "data_dir": str(pg_paths.data),
            "log": str(settings.logs_dir / "postgres.log"),
        },
    }


def reset(settings: StackSettings, *, echo: Echo | None = None) -> None:
    """Stop the stack and delete its data, logs and generated config (the jar cache stays)."""
    say = echo or _stderr
    down(settings, echo=say)
    with _stack_lock(settings, say):
        targets = [
            settings.kafka_dir,
            settings.redis_dir,
            settings.base_dir / "postgres",
            _pg_fallback_home(settings),
            settings.run_dir,
            settings.logs_dir,
        ]
        if settings.postgres_dir is not None:
            targets.append(settings.postgres_dir)
        for target in targets:
            if target.exists():
                say(f"deleting {target}")
                shutil.rmtree(target)
        settings.redis_password_file.unlink(missing_ok=True)  # a new one with the new data
        with contextlib.suppress(OSError):  # the /var/tmp/ocsea-<hash>/ holder, if now empty
            _pg_fallback_home(settings).parent.rmdir()
    say("stack reset: the next `up` starts from empty data")


# --------------------------------------------------------------------------------------------
# command line (mounted as `ocsea stack`)

app = typer.Typer(
    name="stack",
    help="The local Kafka (KRaft), Redis and PostgreSQL stack on loopback, under var/stack/.",
    no_args_is_help=True,
    add_completion=False,
)


@contextlib.contextmanager
def _cli_errors() -> Iterator[None]:
    try:
        yield
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("up")
def up_command(
    no_postgres: Annotated[
        bool, typer.Option("--no-postgres", help="Start only Kafka and Redis.")
    ] = False,
) -> None:
    """Start the stack (idempotent) and wait until every component is ready."""
    with _cli_errors():
        up(StackSettings(), with_postgres=not no_postgres)


@app.command("down")
def down_command() -> None:
    """Stop the stack gracefully; its data stays."""
    with _cli_errors():
        down(StackSettings())


@app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show whether each component is running and ready."""
    with _cli_errors():
        report = status(StackSettings())
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for name, item in report.items():
        state = "running" if item["running"] else "stopped"
        ready = "ready" if item["ready"] else "not ready"
        pid = f"pid {item['pid']}" if item["pid"] else "-"
        password = f"  password: {item['password']}" if "password" in item else ""
        typer.echo(
            f"{name:<9} {state:<8} {ready:<10} {pid:<11} {LOOPBACK}:{item['port']:<6} "
            f"{item['data_dir']}{password}"
        )


@app.command("reset")
def reset_command() -> None:
    """Stop the stack and delete all its data (Kafka topics, Redis keys, databases)."""
    with _cli_errors():
        reset(StackSettings())


@app.command("env")
def env_command() -> None:
    """Print `export K=V` lines pointing the application at the stack."""
    with _cli_errors():
        for key, value in service_env(StackSettings()).items():
            typer.echo(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    app()
