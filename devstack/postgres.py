# ruff: noqa: S603
# (This module runs PostgreSQL's programs and `test` with argument lists it builds itself; no
# shell is involved.)
"""PostgreSQL: the newest Debian `postgresql` server under `/usr/lib/postgresql/*/bin` (installed
with apt-get when missing). PostgreSQL refuses to run as root, so when we are root its `initdb`
and `postgres` run as the `postgres` OS user, in a directory owned by that user:
`var/stack/postgres/` when that user can reach it, otherwise (a repository under a directory it
cannot traverse, such as `/root`) `/var/tmp/ocsea-<hash of base dir>/postgres/`. A database and a
role `ocsea` (password `ocsea`, scram on loopback TCP) are created on start."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.component import Starting, delete_dirs
from devstack.packages import ensure_package
from devstack.processes import (
    Echo,
    launch,
    live_pid,
    pid_alive,
    port_answers,
    run_logged,
    stop_process,
    tails,
)
from devstack.settings import LOOPBACK, StackError, StackSettings

PG_OS_USER = "postgres"
PG_SUPERUSER = "postgres"
MARKER = "postgres"


@dataclass(frozen=True)
class PgPaths:
    home: Path
    """Owned by the postgres OS user (when we are root)."""
    data: Path
    sockets: Path

    @property
    def pid_file(self) -> Path:
        return self.data / "postmaster.pid"


def _versions() -> dict[int, Path]:
    found: dict[int, Path] = {}
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if bindir.parent.name.isdigit() and os.access(bindir / "postgres", os.X_OK):
            found[int(bindir.parent.name)] = bindir
    return found


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's programs (`psql`, `postgres`, …)."""
    versions = _versions()
    return versions[max(versions)] if versions else None


def _run_as() -> str | None:
    """The OS user PostgreSQL runs as: `postgres` when we are root, else ourselves."""
    return PG_OS_USER if os.geteuid() == 0 else None


def _user_can_traverse(user: str | None, directory: Path) -> bool:
    if user is None:
        return os.access(directory, os.X_OK | os.W_OK)
    result = subprocess.run(
        ["test", "-x", str(directory)],  # noqa: S607 (coreutils' test, as that user)
        user=user,
        group=user,
        extra_groups=[],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _fallback_home(settings: StackSettings) -> Path:
    digest = hashlib.sha256(str(settings.base_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"ocsea-{digest}" / "postgres"  # noqa: S108 (made 0700, owned)


def paths(settings: StackSettings, *, decide: bool = False) -> PgPaths:
    """Where PostgreSQL lives. With `decide`, pick a home the postgres user can reach."""
    inside = settings.base_dir / "postgres"
    fallback = _fallback_home(settings)
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
        home = inside if _user_can_traverse(_run_as(), settings.base_dir) else fallback
    sockets = home / "run"
    if len(str(sockets / ".s.PGSQL.65535.lock")) > 100:  # sun_path is 108 bytes
        digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
        sockets = Path("/tmp") / f"ocsea-pg-{digest}"  # noqa: S108 (made 0700, owned)
    return PgPaths(home=home, data=home / "data", sockets=sockets)


def _own_dir(path: Path, user: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


def _env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _setup(settings: StackSettings, bindir: Path, where: PgPaths) -> None:
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
        str(where.sockets),
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
            env={**_env(), "PGCONNECT_TIMEOUT": "10"},
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


class Postgres:
    """The stack's PostgreSQL server."""

    name = "postgres"
    starts_slowly = False

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self._bindir: Path | None = None
        """The programs of the version its data is in (once ensured or started)."""

    def pid(self) -> int | None:
        return live_pid(paths(self.settings).pid_file, MARKER)

    # the interface ---------------------------------------------------------------------------

    def ports(self) -> dict[str, int]:
        return {"OCSEA_STACK_POSTGRES_PORT": self.settings.postgres_port}

    def running(self) -> bool:
        return self.pid() is not None

    def ensure(self, echo: Echo) -> None:
        self._bindir = ensure_package(find_bindir, "postgresql", "postgresql", self.settings, echo)

    def ready(self) -> bool:
        """`pg_isready` says it accepts connections (an open port, without pg_isready)."""
        settings = self.settings
        if not port_answers(settings.postgres_port):
            return False
        bindir = self._bindir or find_bindir()
        tool = bindir / "pg_isready" if bindir else None
        if tool is None or not tool.is_file():
            return True
        result = subprocess.run(
            [str(tool), "-q", "-h", LOOPBACK, "-p", str(settings.postgres_port), "-t", "2"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def start(self, echo: Echo) -> Starting:
        settings, run_as = self.settings, _run_as()
        if run_as is not None:
            try:
                pwd.getpwnam(run_as)
            except KeyError as exc:
                raise StackError(
                    f"no `{run_as}` OS user to run PostgreSQL as: "
                    "install the postgresql package (`apt-get install -y postgresql`)"
                ) from exc
        where = paths(settings, decide=True)
        bindir = self._data_bindir(where)
        self._bindir = bindir
        logs = [settings.logs_dir / "postgres.log"]
        name = f"postgres {bindir.parent.name}"
        pid = live_pid(where.pid_file, MARKER)
        if pid is not None:
            running = port_answers(settings.postgres_port)
            if not running:
                echo(f"{name} already starting (pid {pid})…")
            return Starting(
                name=name,
                started=time.monotonic(),
                alive=lambda: pid_alive(pid, MARKER),
                logs=logs,
                hint="see its log",
                after_ready=lambda: _setup(settings, bindir, where),
                already_running=running,
            )
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        _own_dir(where.home, run_as)
        _own_dir(where.sockets, run_as)
        if not (where.data / "PG_VERSION").is_file():
            self._initdb(bindir, where, run_as, echo)
        argv: list[str | Path] = [
            bindir / "postgres",
            "-D",
            where.data,
            "-p",
            str(settings.postgres_port),
            "-k",
            where.sockets,
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            "logging_collector=off",
        ]
        started = time.monotonic()
        process = launch(argv, log=logs[0], cwd=where.home, env=_env(), user=run_as)
        echo(f"starting {name} (pid {process.pid}, data {where.data})…")
        return Starting(
            name=name,
            started=started,
            alive=lambda: process.poll() is None,
            logs=logs,
            hint="see its log",
            after_ready=lambda: _setup(settings, bindir, where),
        )

    def stop(self, echo: Echo) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for clients to leave).
        plan = [
            (signal.SIGINT, self.settings.stop_timeout_s),
            (signal.SIGQUIT, 10.0),
            (signal.SIGKILL, 5.0),
        ]
        stop_process("postgres", self.pid(), MARKER, plan, echo)

    def status(self) -> dict[str, Any]:
        settings = self.settings
        pid = self.pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "port": settings.postgres_port,
            "ready": pid is not None and self.ready(),
            "data_dir": str(paths(settings).data),
            "log": str(settings.logs_dir / "postgres.log"),
        }

    def wipe(self, echo: Echo) -> None:
        settings = self.settings
        fallback = _fallback_home(settings)
        homes = [settings.base_dir / "postgres", fallback]
        if settings.postgres_dir is not None:
            homes.append(settings.postgres_dir)
        delete_dirs(homes, echo)
        with contextlib.suppress(OSError):  # the /var/tmp/ocsea-<hash>/ holder, if now empty
            fallback.parent.rmdir()

    # starting --------------------------------------------------------------------------------

    def _data_bindir(self, where: PgPaths) -> Path:
        """The programs of the version the data was made by; the newest for new data."""
        version_file = where.data / "PG_VERSION"
        if not version_file.is_file():
            bindir = self._bindir or find_bindir()
            if bindir is None:
                raise StackError("PostgreSQL is not installed: `ocsea stack up` installs it")
            return bindir
        data_version = int(version_file.read_text().strip())
        versions = _versions()
        if data_version not in versions:
            raise StackError(
                f"PostgreSQL data in {where.data} is version {data_version}, but "
                f"/usr/lib/postgresql/{data_version}/bin is missing: install "
                f"postgresql-{data_version} or run `ocsea stack reset`"
            )
        return versions[data_version]

    def _initdb(self, bindir: Path, where: PgPaths, run_as: str | None, echo: Echo) -> None:
        settings = self.settings
        echo(f"initialising PostgreSQL {bindir.parent.name} data in {where.data}…")
        init_log = settings.logs_dir / "postgres-initdb.log"
        argv: list[str | Path] = [
            bindir / "initdb",
            "-D",
            where.data,
            "-U",
            PG_SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
        ]
        code = run_logged(argv, init_log, cwd=where.home, env=_env(), user=run_as, timeout=300)
        if code != 0:
            raise StackError(f"initdb failed (exit {code})\n{tails([init_log])}")
