"""Fixtures: the real local stack, and the whole system running as `ocsea run` in a subprocess.

The functions behind them live in `testkit/`, shared with the benchmarks.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

import devstack as local_stack

# testkit's helpers assert as tests do: let pytest explain their failures as it does a test's.
pytest.register_assert_rewrite("testkit")

from testkit.system import RunningSystem, start_system  # noqa: E402


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
