"""Kafka: a single-node Apache Kafka 4.x, broker and controller in one JVM (`kafka.Kafka`), run
on the machine's Java 17 from the jars Maven fetched (devstack/java.py). Its storage is formatted
once (`kafka.tools.StorageTool format`, static controller quorum); the cluster id lives in
`var/stack/kafka/data/meta.properties`. It is ready when a metadata request lists our broker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import signal
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from devstack.component import Starting, delete_dirs
from devstack.java import ensure_kafka_jars, find_java
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

KAFKA_NODE_ID = 1

_T = TypeVar("_T")


def _props_value(value: str | Path) -> str:
    return str(value).replace("\\", "\\\\")


def _new_cluster_id() -> str:
    """A Kafka `Uuid` string (base64url of 16 random bytes), as `kafka-storage random-uuid`."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


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


async def _metadata(port: int, limit_s: float) -> dict[str, Any]:
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


class Kafka:
    """The stack's Kafka broker and controller."""

    name = "kafka"
    starts_slowly = True  # 20–30 s of JVM and controller start: the others start meanwhile

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self._java: Path | None = None

    # files -----------------------------------------------------------------------------------

    @property
    def _server_properties(self) -> Path:
        return self.settings.kafka_dir / "server.properties"

    @property
    def _log4j_properties(self) -> Path:
        return self.settings.kafka_dir / "log4j2.properties"

    @property
    def _pid_file(self) -> Path:
        return self.settings.run_dir / "kafka.pid"

    @property
    def _marker(self) -> str:
        """What its command line holds: our server.properties (not any other Kafka's)."""
        return str(self._server_properties)

    def cluster_id(self) -> str | None:
        try:
            text = (self.settings.kafka_data_dir / "meta.properties").read_text()
        except OSError:
            return None
        match = re.search(r"(?m)^cluster\.id=(\S+)", text)
        return match.group(1) if match else None

    def pid(self) -> int | None:
        return live_pid(self._pid_file, self._marker)

    # the interface ---------------------------------------------------------------------------

    def ports(self) -> dict[str, int]:
        return {
            "OCSEA_STACK_KAFKA_PORT": self.settings.kafka_port,
            "OCSEA_STACK_KAFKA_CONTROLLER_PORT": self.settings.kafka_controller_port,
        }

    def running(self) -> bool:
        return self.pid() is not None

    def ensure(self, echo: Echo) -> None:
        if not self.running():
            self._java = find_java()
            ensure_kafka_jars(self.settings, echo)

    def ready(self, timeout: float = 5.0) -> bool:
        """A real metadata answer from the broker that lists our (unfenced) broker."""
        port = self.settings.kafka_port
        if not port_answers(port):
            return False
        with _quiet_logger("aiokafka"):
            try:
                cluster = _run_sync(lambda: _metadata(port, timeout))
            except Exception:
                return False
        brokers = cluster.get("brokers") or []
        return any(broker.get("node_id") == KAFKA_NODE_ID for broker in brokers)

    def start(self, echo: Echo) -> Starting:
        settings = self.settings
        logs = [settings.logs_dir / "kafka.out", settings.logs_dir / "kafka.log"]
        name = f"kafka {settings.kafka_version}"
        pid = self.pid()
        if pid is not None:
            running = port_answers(settings.kafka_port)
            if not running:
                echo(f"{name} already starting (pid {pid})…")
            marker = self._marker
            return Starting(
                name=name,
                started=time.monotonic(),
                alive=lambda: pid_alive(pid, marker),
                logs=logs,
                hint="see its logs",
                already_running=running,
            )
        java = self._java or find_java()
        self._write_config()
        if self.cluster_id() is None:
            self._format_storage(java, echo)
        heap = settings.kafka_heap
        argv = [
            *self._java_base(java),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "kafka.Kafka",
            str(self._server_properties),
        ]
        started = time.monotonic()
        process = launch(argv, log=logs[0], cwd=settings.kafka_dir)
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        self._pid_file.write_text(f"{process.pid}\n")
        echo(f"starting {name} (pid {process.pid}, data {settings.kafka_data_dir})…")
        return Starting(
            name=name,
            started=started,
            alive=lambda: process.poll() is None,
            logs=logs,
            hint="see its logs",
        )

    def stop(self, echo: Echo) -> None:
        # SIGTERM is Kafka's controlled shutdown.
        plan = [(signal.SIGTERM, self.settings.stop_timeout_s), (signal.SIGKILL, 10.0)]
        stop_process("kafka", self.pid(), self._marker, plan, echo)
        self._pid_file.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        settings = self.settings
        pid = self.pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "port": settings.kafka_port,
            "controller_port": settings.kafka_controller_port,
            "ready": pid is not None and self.ready(timeout=3.0),
            "version": settings.kafka_version,
            "cluster_id": self.cluster_id(),
            "data_dir": str(settings.kafka_data_dir),
            "jars_dir": str(settings.kafka_jars_dir),
            "log": str(settings.logs_dir / "kafka.log"),
        }

    def wipe(self, echo: Echo) -> None:
        delete_dirs([self.settings.kafka_dir], echo)  # the jar cache stays

    # starting --------------------------------------------------------------------------------

    def _java_base(self, java: Path) -> list[str]:
        settings = self.settings
        return [
            str(java),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._log4j_properties}",
            f"-Dkafka.logs.dir={settings.logs_dir}",
            "-cp",
            f"{settings.kafka_jars_dir}/*",
        ]

    def _write_config(self) -> None:
        settings = self.settings
        port, controller = settings.kafka_port, settings.kafka_controller_port
        server_lines = [
            "# Written by devstack/kafka.py on every start; edit StackSettings instead.",
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
            "# Written by devstack/kafka.py on every start.",
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
        self._server_properties.write_text("\n".join(server_lines) + "\n")
        self._log4j_properties.write_text("\n".join(log4j_lines) + "\n")

    def _format_storage(self, java: Path, echo: Echo) -> None:
        settings = self.settings
        cluster_id = _new_cluster_id()
        echo(f"formatting Kafka storage in {settings.kafka_data_dir} (cluster id {cluster_id})…")
        settings.kafka_data_dir.mkdir(parents=True, exist_ok=True)
        log = settings.logs_dir / "kafka-format.log"
        argv = [
            *self._java_base(java),
            "-Xmx256m",
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self._server_properties),
        ]
        code = run_logged(argv, log, cwd=settings.kafka_dir, timeout=300)
        if code != 0 or self.cluster_id() is None:
            raise StackError(
                f"formatting Kafka's storage failed (exit {code}); "
                f"`ocsea stack reset` starts from scratch\n{tails([log])}"
            )
