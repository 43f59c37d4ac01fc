"""The whole system as `ocsea run` in a subprocess, on free ports and a var directory of its own,
for the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


_PICKED: set[int] = set()
_LOWEST_PORT = 20_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def free_port() -> int:
    """A free port below the kernel's ephemeral range, never the same one twice in a process.
    A port the kernel picks (bind to 0) is ephemeral: between this check and the service's
    own bind, the kernel can give it to an outgoing connection (a Kafka or Redis client of
    another test), and the service then fails with "address already in use"."""
    low, _ = _ephemeral_range()
    candidates = list(range(_LOWEST_PORT, low)) if low - _LOWEST_PORT >= 1_000 else []
    random.shuffle(candidates)
    for port in candidates:
        if port in _PICKED:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PICKED.add(port)
        return port
    with socket.socket() as sock:  # no room below the ephemeral range: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningSystem:
    """`ocsea run` in a subprocess: a supervisor with a process per service (and replica)."""

    env: dict[str, str]
    urls: dict[str, str]
    credentials: dict[str, dict[str, str]]
    var_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes]

    def token(self, name: str) -> str:
        return self.credentials[name]["token"]

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(name)}"}

    @property
    def bootstrap(self) -> str:
        return self.env["OCSEA_KAFKA_BOOTSTRAP"]

    @property
    def api_urls(self) -> dict[str, str]:
        """The event-driven services' URLs (every one but the console, a page for people)."""
        return {name: url for name, url in self.urls.items() if name != "console"}

    def pid(self, service: str, replica: int = 0) -> int | None:
        """The pid of a service process, from the supervisor's pid file (None between a
        process's end and its restart)."""
        try:
            return int((self.var_dir / "run" / f"{service}-{replica}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def is_ready(self, service: str, replica: int = 0) -> bool:
        """Whether the supervisor's current process for it has reported itself ready."""
        return (self.var_dir / "run" / f"{service}-{replica}.ready").exists()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


READY_LINE = "ready: press Ctrl+C to stop"


def system_services() -> list[str]:
    """What `ocsea run` starts here: every service, the console once its module exists."""
    from ocsea.runner import SERVICES

    return [s.name for s in SERVICES.values() if not s.optional or s.available()]


def start_system(
    stack_env: dict[str, str],
    var_dir: Path,
    group_prefix: str,
    extra: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    only: list[str] | None = None,
) -> RunningSystem:
    """Start `ocsea run` (with `args`; `only` some services) on free ports; return once every
    service is ready."""
    names = only or system_services()
    if only:
        args = ("--only", ",".join(only), *args)
    # The console's port is always a free one, so a console that appears later never
    # collides with anything on its default port.
    ports = {name: free_port() for name in {*names, "console"}}
    env = {
        **os.environ,
        **stack_env,
        "OCSEA_VAR_DIR": str(var_dir),
        "OCSEA_CONSUMER_GROUP_PREFIX": group_prefix,
        "OCSEA_CONSUMER_BACKOFF_INITIAL_S": "0.05",
        # A test system's new consumer groups start at the topics' end: they must not replay
        # every earlier test's reports on the shared broker before handling their own.
        "OCSEA_CONSUMER_NEW_GROUP_START": "now",
        "OCSEA_SUPERVISOR_RESTART_BACKOFF_INITIAL_S": "0.1",
        "OCSEA_TRACE_FILE": str(var_dir / "spans.jsonl"),
        "OCSEA_LOG_LEVEL": "DEBUG",
        **{f"OCSEA_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **(extra or {}),
    }
    var_dir.mkdir(parents=True, exist_ok=True)
    log_file = var_dir / "system.log"
    earlier = log_file.stat().st_size if log_file.exists() else 0  # a restart appends
    process = subprocess.Popen(
        [sys.executable, "-m", "ocsea.cli", "run", *args],
        cwd=REPO,
        env=env,
        stdout=log_file.open("ab"),
        stderr=subprocess.STDOUT,
        preexec_fn=_stop_with_this_process,
    )
    urls = {name: f"http://127.0.0.1:{ports[name]}" for name in names}
    system = RunningSystem(env, urls, {}, var_dir, log_file, process)
    deadline = time.monotonic() + 150
    ready: set[str] = set()

    def announced() -> bool:
        # `ocsea run` says so once every process (each replica) checked its own readiness:
        # through a port that replicas share, one replica's answer says nothing of the others.
        with log_file.open("rb") as log:
            log.seek(earlier)
            return READY_LINE.encode() in log.read()

    while len(ready) < len(urls) or not announced():
        if process.poll() is not None:
            raise RuntimeError(f"ocsea run exited early:\n{log_file.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            system.stop()
            raise RuntimeError(f"system not ready in 150 s:\n{log_file.read_text()[-4000:]}")
        for name, url in urls.items():
            if name in ready:
                continue
            try:
                # Generous: on a busy machine a readiness check (a Kafka round trip) is slow.
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    ready.add(name)
            except httpx.HTTPError:
                pass
        # Wait a little for the process to exit (a failure) before polling again.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)
    system.credentials = json.loads((var_dir / "demo-credentials.json").read_text())
    return system


def _stop_with_this_process() -> None:
    """In the child, before `ocsea run` starts: ask the kernel for a SIGTERM when the test
    process dies, so a killed test run (a timeout, Ctrl+C twice) leaves no system behind
    consuming the shared topics."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
