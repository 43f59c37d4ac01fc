"""Redis: the Debian `redis-server` (installed with apt-get when missing), daemonized with a pid
file, append-only file on, data in `var/stack/redis/`, a password required (`requirepass`;
generated into `var/stack/redis.password`, 0600, on its first start). A Redis started by an
earlier version, without one, keeps running without one until its next start: clients are given
a URL with the password only when the running Redis asks for it, and `status` says which."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import MutableMapping
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
    read_pid,
    stop_process,
    tails,
)
from devstack.settings import LOOPBACK, StackError, StackSettings

MARKER = "redis-server"


def find_server() -> Path | None:
    """The `redis-server` program, when installed."""
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return Path(found) if found else None


def _command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
    )


def ping(port: int, timeout: float = 1.0, password: str | None = None) -> bool:
    """Whether Redis answers PING (after AUTH with `password`, when given)."""
    request = (_command("AUTH", password) if password else b"") + _command("PING")
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


def _read_password(settings: StackSettings) -> str | None:
    try:
        return settings.redis_password_file.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def _ensure_password(settings: StackSettings) -> str:
    """The stack's Redis password, generated (0600) the first time Redis starts."""
    existing = _read_password(settings)
    if existing is not None:
        return existing
    password = secrets.token_hex(24)
    settings.base_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.redis_password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(password + "\n")
    return password


def _open(settings: StackSettings) -> bool:
    """Whether the running Redis answers without a password (started before it had one)."""
    return ping(settings.redis_port)


def redis_password(settings: StackSettings) -> str | None:
    """The password clients must give the stack's Redis: its own, unless the Redis running
    answers without one (then none, until it is restarted with one)."""
    password = _read_password(settings)
    if password is None or _open(settings):
        return None
    return password


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


def _quote(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Redis:
    """The stack's Redis."""

    name = "redis"
    starts_slowly = False

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self._server: Path | None = None

    @property
    def _conf(self) -> Path:
        return self.settings.redis_dir / "redis.conf"

    @property
    def _pid_file(self) -> Path:
        return self.settings.run_dir / "redis.pid"

    @property
    def _logs(self) -> list[Path]:
        return [self.settings.logs_dir / "redis.out", self.settings.logs_dir / "redis.log"]

    def pid(self) -> int | None:
        return live_pid(self._pid_file, MARKER)

    # the interface ---------------------------------------------------------------------------

    def ports(self) -> dict[str, int]:
        return {"OCSEA_STACK_REDIS_PORT": self.settings.redis_port}

    def running(self) -> bool:
        return self.pid() is not None

    def ensure(self, echo: Echo) -> None:
        self._server = ensure_package(
            find_server, "redis-server", "redis-server", self.settings, echo
        )

    def ready(self) -> bool:
        """Our daemon (by its pid file) answers PING, with the password or (started before it
        had one) without."""
        port, password = self.settings.redis_port, _read_password(self.settings)
        answers = ping(port) or (password is not None and ping(port, password=password))
        return answers and self.pid() is not None

    def start(self, echo: Echo) -> Starting:
        settings, logs, pid_file = self.settings, self._logs, self._pid_file
        pid = self.pid()
        if pid is not None:
            running = port_answers(settings.redis_port)
            if not running:
                echo(f"redis already starting (pid {pid})…")
            return Starting(
                name="redis",
                started=time.monotonic(),
                alive=lambda: pid_alive(pid, MARKER),
                logs=logs,
                hint="see its logs",
                already_running=running,
            )
        server = self._server or find_server()
        if server is None:
            raise StackError("redis-server is not installed: `ocsea stack up` installs it")
        settings.redis_dir.mkdir(parents=True, exist_ok=True)
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        pid_file.unlink(missing_ok=True)
        self._write_conf(_ensure_password(settings))
        started = time.monotonic()
        process = launch([server, self._conf], log=logs[0], cwd=settings.redis_dir)
        try:
            code = process.wait(timeout=30)  # the foreground process exits once daemonized
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"redis-server did not daemonize\n{tails(logs)}") from exc
        if code != 0:
            raise StackError(f"redis-server failed to start (exit {code})\n{tails(logs)}")
        echo(f"starting redis (data {settings.redis_dir})…")

        def alive() -> bool:
            # The daemon writes its pid file just after forking: allow it a moment to appear.
            daemon = read_pid(pid_file)
            if daemon is None:
                return time.monotonic() - started < 10
            return pid_alive(daemon, MARKER)

        return Starting(name="redis", started=started, alive=alive, logs=logs, hint="see its logs")

    def stop(self, echo: Echo) -> None:
        # SIGTERM makes Redis flush its append-only file before it exits.
        plan = [(signal.SIGTERM, self.settings.stop_timeout_s), (signal.SIGKILL, 10.0)]
        stop_process("redis", self.pid(), MARKER, plan, echo)
        self._pid_file.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        settings = self.settings
        pid = self.pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "port": settings.redis_port,
            "ready": pid is not None and self.ready(),
            "password": self._password_state(running=pid is not None),
            "data_dir": str(settings.redis_dir),
            "log": str(settings.logs_dir / "redis.log"),
        }

    def wipe(self, echo: Echo) -> None:
        delete_dirs([self.settings.redis_dir], echo)
        self.settings.redis_password_file.unlink(missing_ok=True)  # a new one with new data

    # -----------------------------------------------------------------------------------------

    def _password_state(self, *, running: bool) -> str:
        if running and _open(self.settings):
            return "none (started before the stack had one; `down` and `up` restart it with one)"
        return "required" if _read_password(self.settings) or running else "made at first start"

    def _write_conf(self, password: str) -> None:
        settings, conf = self.settings, self._conf
        conf.touch(mode=0o600)  # it holds the password
        conf.chmod(0o600)
        conf.write_text(
            "\n".join(
                [
                    "# Written by devstack/redis.py on every start; edit StackSettings instead.",
                    f"bind {LOOPBACK}",
                    f"port {settings.redis_port}",
                    "protected-mode yes",
                    "daemonize yes",
                    f"pidfile {_quote(self._pid_file)}",
                    f"logfile {_quote(self._logs[1])}",
                    f"dir {_quote(settings.redis_dir)}",
                    "appendonly yes",
                    "appendfsync everysec",
                    "save 3600 1 300 100 60 10000",
                    f"requirepass {_quote(password)}",
                ]
            )
            + "\n"
        )
