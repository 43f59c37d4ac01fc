"""The local stack (devstack/): its error paths, cheaply; real data surviving a restart.

The unit tests run against a throw-away base directory and free ports, so they never touch the
shared stack. The restart test runs a real stack of its own (its own directories and ports, the
shared jar cache), so it does not pull Kafka and Redis from under a system other tests of the same
session may have running; `test_shared_stack_is_up` makes sure the shared stack (default settings)
is up and usable, and leaves it up for the other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

import devstack as stack
from devstack import StackError, StackSettings
from devstack import redis as local_redis
from devstack.cli import app as stack_cli
from devstack.component import await_ready
from testkit.system import free_port


@pytest.fixture
def listener() -> Iterator[int]:
    """A port some other process (well, this one) is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture
def scratch(tmp_path: Path) -> StackSettings:
    """Settings for a stack of its own: fresh directories, free ports."""
    return StackSettings(
        base_dir=tmp_path / "stack",
        jar_cache_dir=tmp_path / "cache",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        postgres_port=free_port(),
        start_timeout_s=30,
    )


def write_script(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def only_path(monkeypatch: pytest.MonkeyPatch, directory: Path, *, keep_system: bool) -> None:
    """Make `directory` the first (or only) place programs are found."""
    directory.mkdir(parents=True, exist_ok=True)
    rest = f":{os.environ.get('PATH', '')}" if keep_system else ""
    monkeypatch.setenv("PATH", f"{directory}{rest}")
    monkeypatch.delenv("JAVA_HOME", raising=False)


FAKE_JAVA_17 = """case "$*" in
  *-version*) echo 'openjdk version "17.0.15" 2025-04-15' >&2; exit 0;;
esac
exit 3
"""


# --------------------------------------------------------------------------------------------
# settings and environment


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OCSEA_STACK_KAFKA_PORT", "19092")
    monkeypatch.setenv("OCSEA_STACK_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("OCSEA_STACK_KAFKA_VERSION", "4.1.0")
    settings = StackSettings()
    assert settings.kafka_port == 19092
    assert settings.base_dir == tmp_path
    assert settings.kafka_jars_dir.name == "kafka-4.1.0"


def test_defaults_live_in_the_repository() -> None:
    settings = StackSettings()
    repo = Path(stack.__file__).resolve().parents[1]
    assert settings.base_dir == repo / "var" / "stack"
    assert settings.kafka_jars_dir == repo / "var" / "cache" / f"kafka-{settings.kafka_version}"
    assert settings.kafka_pom == repo / "deploy" / "kafka" / "pom.xml"
    assert settings.kafka_pom.is_file()


def test_bad_kafka_version_is_refused() -> None:
    with pytest.raises(ValueError, match="Kafka release version"):
        StackSettings(kafka_version="latest")


def test_service_env() -> None:
    settings = StackSettings()
    # The shared Redis asks for its password unless an earlier version started it without one.
    password = stack.redis_password(settings)
    assert stack.service_env(settings) == {
        "OCSEA_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "OCSEA_REDIS_URL": f"redis://{f':{password}@' if password else ''}127.0.0.1:6379/0",
        "OCSEA_TEST_POSTGRES_URL": "postgresql+asyncpg://ocsea:ocsea@127.0.0.1:5432/ocsea",
    }


def test_cli_env_prints_exports(scratch: StackSettings) -> None:
    result = CliRunner().invoke(
        stack_cli,
        ["env"],
        env={
            "OCSEA_STACK_REDIS_PORT": str(scratch.redis_port),
            "OCSEA_STACK_BASE_DIR": str(scratch.base_dir),
        },
    )
    assert result.exit_code == 0, result.output
    assert f"export OCSEA_REDIS_URL=redis://127.0.0.1:{scratch.redis_port}/0" in result.output
    assert "export OCSEA_KAFKA_BOOTSTRAP=" in result.output


def start_redis_only(settings: StackSettings) -> None:
    redis = local_redis.Redis(settings)
    await_ready(redis, redis.start(lambda _: None), time.monotonic() + 30, lambda _: None)


@pytest.mark.skipif(
    local_redis.find_server() is None, reason="needs redis-server (installed by `ocsea stack up`)"
)
def test_a_fresh_redis_requires_a_password_that_only_clients_of_the_stack_are_given(
    scratch: StackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stack.status(scratch)["redis"]["password"] == "made at first start"
    start_redis_only(scratch)
    try:
        made = scratch.redis_password_file
        assert stat.S_IMODE(made.stat().st_mode) == 0o600
        assert stat.S_IMODE((scratch.redis_dir / "redis.conf").stat().st_mode) == 0o600
        password = made.read_text().strip()
        assert len(password) >= 16  # what deployment mode asks of a Redis password too
        assert not local_redis.ping(scratch.redis_port)  # NOAUTH without it
        assert not local_redis.ping(scratch.redis_port, password="not-" + password)
        url = stack.service_env(scratch)["OCSEA_REDIS_URL"]
        assert url == f"redis://:{password}@127.0.0.1:{scratch.redis_port}/0"
        assert stack.status(scratch)["redis"]["password"] == "required"
        # `ocsea run` given no OCSEA_REDIS_URL finds it; a deployment is never pointed at it.
        monkeypatch.setenv("OCSEA_STACK_BASE_DIR", str(scratch.base_dir))
        monkeypatch.setenv("OCSEA_STACK_REDIS_PORT", str(scratch.redis_port))
        local: dict[str, str] = {}
        stack.use_local_redis(local)
        assert local == {"OCSEA_REDIS_URL": url}
        deployed = {"OCSEA_DEPLOYMENT": "true"}
        stack.use_local_redis(deployed)
        assert deployed == {"OCSEA_DEPLOYMENT": "true"}
        chosen = {"OCSEA_REDIS_URL": "redis://elsewhere:6379/0"}
        stack.use_local_redis(chosen)
        assert chosen == {"OCSEA_REDIS_URL": "redis://elsewhere:6379/0"}
    finally:
        stack.down(scratch, echo=lambda _: None)
    # Restarted, it keeps its password (and the data it was given with it).
    start_redis_only(scratch)
    try:
        assert stack.service_env(scratch)["OCSEA_REDIS_URL"] == url
    finally:
        stack.reset(scratch, echo=lambda _: None)
    assert not scratch.redis_password_file.exists()


@pytest.mark.skipif(
    local_redis.find_server() is None, reason="needs redis-server (installed by `ocsea stack up`)"
)
def test_a_redis_started_without_a_password_is_still_reached_without_one(
    scratch: StackSettings, tmp_path: Path
) -> None:
    """A Redis an earlier version started keeps serving the tests and services running on it:
    they are given a URL without the password until it is restarted with one."""
    redis_server = local_redis.find_server()
    assert redis_server is not None
    scratch.base_dir.mkdir(parents=True)
    scratch.redis_password_file.write_text("a-password-it-was-not-started-with\n")
    process = subprocess.Popen(
        [redis_server, "--port", str(scratch.redis_port), "--bind", "127.0.0.1", "--save", ""],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not local_redis.ping(scratch.redis_port):
            assert process.poll() is None, "redis exited"
            assert time.monotonic() < deadline, "redis did not answer within 30 s"
            with contextlib.suppress(subprocess.TimeoutExpired):  # a failure ends the wait
                process.wait(timeout=0.05)
        assert stack.redis_password(scratch) is None
        assert stack.service_env(scratch)["OCSEA_REDIS_URL"] == (
            f"redis://127.0.0.1:{scratch.redis_port}/0"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


# --------------------------------------------------------------------------------------------
# error paths


@pytest.mark.parametrize(
    ("field", "env_var"),
    [
        ("kafka_port", "OCSEA_STACK_KAFKA_PORT"),
        ("kafka_controller_port", "OCSEA_STACK_KAFKA_CONTROLLER_PORT"),
        ("redis_port", "OCSEA_STACK_REDIS_PORT"),
        ("postgres_port", "OCSEA_STACK_POSTGRES_PORT"),
    ],
)
def test_port_in_use_names_port_and_setting(
    scratch: StackSettings, listener: int, field: str, env_var: str
) -> None:
    settings = scratch.model_copy(update={field: listener})
    with pytest.raises(StackError, match=f"port {listener} in use") as caught:
        stack.up(settings, echo=lambda _: None)
    assert env_var in str(caught.value)
    assert f"pid {os.getpid()}" in str(caught.value)  # who holds it, when it can be told


def test_cli_reports_error_and_exits_1(scratch: StackSettings, listener: int) -> None:
    env = {
        "OCSEA_STACK_BASE_DIR": str(scratch.base_dir),
        "OCSEA_STACK_KAFKA_PORT": str(listener),
        "OCSEA_STACK_KAFKA_CONTROLLER_PORT": str(scratch.kafka_controller_port),
    }
    result = CliRunner().invoke(stack_cli, ["up"], env=env)
    assert result.exit_code == 1
    assert f"error: port {listener} in use" in result.output
    assert "OCSEA_STACK_KAFKA_PORT" in result.output


def test_same_port_twice_is_refused(scratch: StackSettings) -> None:
    settings = scratch.model_copy(update={"redis_port": scratch.kafka_port})
    with pytest.raises(StackError, match="distinct ports"):
        stack.up(settings, echo=lambda _: None)


def test_java_missing(
    scratch: StackSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    only_path(monkeypatch, tmp_path / "bin", keep_system=False)
    with pytest.raises(StackError, match="Java 17 not found: install openjdk-17-jre-headless"):
        stack.up(scratch, echo=lambda _: None)


def test_java_too_old(
    scratch: StackSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    only_path(monkeypatch, tmp_path / "bin", keep_system=False)
    write_script(tmp_path / "bin", "java", "echo 'openjdk version \"11.0.21\" 2023-10-17' >&2\n")
    with pytest.raises(StackError, match=r"Java 11 .* too old.*openjdk-17-jre-headless"):
        stack.up(scratch, echo=lambda _: None)


def test_maven_missing(
    scratch: StackSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    only_path(monkeypatch, tmp_path / "bin", keep_system=False)
    write_script(tmp_path / "bin", "java", FAKE_JAVA_17)
    with pytest.raises(StackError, match=r"mvn not found: install Maven"):
        stack.up(scratch, echo=lambda _: None)


def test_maven_failure_shows_its_output(
    scratch: StackSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    only_path(monkeypatch, tmp_path / "bin", keep_system=True)
    write_script(tmp_path / "bin", "java", FAKE_JAVA_17)
    write_script(
        tmp_path / "bin",
        "mvn",
        "echo '[ERROR] Could not resolve org.apache.kafka:kafka_2.13:jar:9.9.9'\nexit 1\n",
    )
    settings = scratch.model_copy(update={"kafka_version": "9.9.9"})
    with pytest.raises(StackError, match=r"Maven could not fetch Kafka 9\.9\.9") as caught:
        stack.up(settings, echo=lambda _: None)
    assert "Could not resolve org.apache.kafka:kafka_2.13:jar:9.9.9" in str(caught.value)
    assert not settings.kafka_jars_dir.exists()  # no half-filled cache left behind


@pytest.mark.skipif(
    local_redis.find_server() is None, reason="needs redis-server (installed by `ocsea stack up`)"
)
def test_component_dying_during_start_shows_its_log(
    scratch: StackSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A 'Kafka' that dies at once: `up` says so with the tail of its log (Redis starts fine)."""
    only_path(monkeypatch, tmp_path / "bin", keep_system=True)
    monkeypatch.setenv("FAKE_KAFKA_DATA", str(scratch.kafka_data_dir))
    write_script(
        tmp_path / "bin",
        "java",
        """case "$*" in
  *-version*) echo 'openjdk version "17.0.15"' >&2; exit 0;;
  *StorageTool*) printf 'cluster.id=fake\\n' > "$FAKE_KAFKA_DATA/meta.properties"; exit 0;;
esac
echo 'Error: Could not find or load main class kafka.Kafka (fake java)'
exit 1
""",
    )
    scratch.kafka_jars_dir.mkdir(parents=True)
    (scratch.kafka_jars_dir / ".complete").write_text("fake\n")
    try:
        with pytest.raises(StackError, match=r"kafka 4\.\S+ exited during start-up") as caught:
            stack.up(scratch, with_postgres=False, echo=lambda _: None)
        assert "Could not find or load main class kafka.Kafka (fake java)" in str(caught.value)
        assert stack.status(scratch)["redis"]["ready"] is True
    finally:
        stack.down(scratch, echo=lambda _: None)
    assert stack.status(scratch)["redis"]["running"] is False


def test_down_when_nothing_runs_is_fine(scratch: StackSettings) -> None:
    lines: list[str] = []
    stack.down(scratch, echo=lines.append)
    assert lines == ["stack not running"]  # never started: no directory
    scratch.base_dir.mkdir(parents=True)
    stack.down(scratch, echo=lines.append)
    stack.down(scratch, echo=lines.append)
    assert lines[1:] == [f"{name} not running" for name in stack.COMPONENTS] * 2
    report = stack.status(scratch)
    assert tuple(report) == stack.COMPONENTS
    assert not any(item["running"] for item in report.values())
    assert {item["port"] for item in report.values()} == {
        scratch.kafka_port,
        scratch.redis_port,
        scratch.postgres_port,
    }


def test_down_names_the_components_it_knows(scratch: StackSettings) -> None:
    with pytest.raises(StackError, match=r"unknown stack component\(s\) \['zookeeper'\]"):
        stack.down(scratch, echo=lambda _: None, only=("redis", "zookeeper"))
    names = [part.name for part in stack.components(scratch)]
    assert tuple(names) == stack.COMPONENTS
    assert [part.name for part in stack.components(scratch, with_postgres=False)] == names[:2]


# --------------------------------------------------------------------------------------------
# the real stack


async def read_one(bootstrap: str, tp: TopicPartition, offset: int) -> tuple[bytes, bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = await asyncio.wait_for(consumer.getone(), 30)
        assert record.key is not None
        assert record.value is not None
        return bytes(record.key), bytes(record.value)
    finally:
        await consumer.stop()


async def round_trip_kafka(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        written = await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    tp = TopicPartition(topic, written.partition)
    assert await read_one(bootstrap, tp, written.offset) == (b"k", value)


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_shared_stack_is_up() -> None:
    """The stack the other integration tests use: up (idempotent), ready, and left running."""
    settings = StackSettings()
    await asyncio.to_thread(stack.up, settings)
    report = stack.status(settings)
    assert all(item["running"] and item["ready"] for item in report.values()), report
    await round_trip_kafka(settings.kafka_bootstrap, f"ocsea-stack-test-{uuid.uuid4().hex}", b"x")
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[StackSettings]:
    """A real stack of this test's own; stopped and its data deleted afterwards."""
    settings = StackSettings(
        base_dir=tmp_path / "stack",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        postgres_port=free_port(),
    )
    try:
        yield settings
    finally:
        stack.reset(settings, echo=lambda _: None)


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_data_survives_restart(private_stack: StackSettings) -> None:
    settings = private_stack
    await asyncio.to_thread(stack.up, settings)
    report = stack.status(settings)
    assert all(item["running"] and item["ready"] for item in report.values()), report
    assert report["kafka"]["port"] == settings.kafka_port
    cluster_id = report["kafka"]["cluster_id"]

    marker = uuid.uuid4().hex
    topic = f"ocsea-stack-test-{marker[:12]}"
    key = f"ocsea:stack-test:{marker}"
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        written = await producer.send_and_wait(topic, marker.encode(), key=b"survivor")
    finally:
        await producer.stop()
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        await client.set(key, marker)
    finally:
        await client.aclose()

    await asyncio.to_thread(stack.down, settings)
    report = stack.status(settings)
    assert not any(item["running"] for item in report.values()), report

    started = time.monotonic()
    await asyncio.to_thread(stack.up, settings)
    assert time.monotonic() - started < 60
    assert stack.status(settings)["kafka"]["cluster_id"] == cluster_id  # not re-formatted

    tp = TopicPartition(topic, written.partition)
    assert await read_one(settings.kafka_bootstrap, tp, written.offset) == (
        b"survivor",
        marker.encode(),
    )
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        assert await client.get(key) == marker.encode()
    finally:
        await client.aclose()
    engine = create_async_engine(settings.postgres_url)
    try:
        async with engine.connect() as connection:
            user = (await connection.execute(text("SELECT current_user"))).scalar_one()
        assert user == settings.postgres_user
    finally:
        await engine.dispose()
