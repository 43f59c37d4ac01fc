"""Fixtures: the real local stack, and the whole system running as `ocsea run` in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ocsea import stack as local_stack

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """Bring the real stack up (idempotent) and return the environment that points at it."""
    settings = local_stack.StackSettings()
    local_stack.up(settings, with_postgres=True)
    return local_stack.service_env(settings)


@pytest.fixture
async def postgres_url(stack_env: dict[str, str]) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database on the real server, dropped afterwards."""
    import asyncpg

    server_url = stack_env["OCSEA_TEST_POSTGRES_URL"]
    plain = server_url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"ocsea_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield server_url.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(plain)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class RunningSystem:
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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_system(
    stack_env: dict[str, str], var_dir: Path, group_prefix: str, extra: dict[str, str] | None = None
) -> RunningSystem:
    ports = {name: free_port() for name in ("intake", "triage", "routing", "audit")}
    env = {
        **os.environ,
        **stack_env,
        "OCSEA_VAR_DIR": str(var_dir),
        "OCSEA_CONSUMER_GROUP_PREFIX": group_prefix,
        "OCSEA_CONSUMER_BACKOFF_INITIAL_S": "0.05",
        "OCSEA_TRACE_FILE": str(var_dir / "spans.jsonl"),
        "OCSEA_LOG_LEVEL": "DEBUG",
        **{f"OCSEA_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **(extra or {}),
    }
    var_dir.mkdir(parents=True, exist_ok=True)
    log_file = var_dir / "system.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "ocsea.cli", "run"],
        cwd=REPO,
        env=env,
        stdout=log_file.open("ab"),
        stderr=subprocess.STDOUT,
    )
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    deadline = time.monotonic() + 60
    ready: set[str] = set()
    while len(ready) < len(urls):
        if process.poll() is not None:
            raise RuntimeError(f"ocsea run exited early:\n{log_file.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"system not ready in 60 s:\n{log_file.read_text()[-4000:]}")
        for name, url in urls.items():
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    ready.add(name)
            except httpx.HTTPError:
                pass
        # Wait a little for the process to exit (a failure) before polling again.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)
    credentials = json.loads((var_dir / "demo-credentials.json").read_text())
    return RunningSystem(env, urls, credentials, var_dir, log_file, process)


@pytest.fixture(scope="session")
def system(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSystem]:
    running = start_system(
        stack_env,
        tmp_path_factory.mktemp("system") / "var",
        f"ocsea-test-{uuid.uuid4().hex[:8]}",
    )
    yield running
    running.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http
