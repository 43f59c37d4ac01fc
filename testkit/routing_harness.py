"""An isolated routing service in the caller's own process (a test's, a benchmark's), on the
real Kafka and Redis.

Its topics are private (`RoutingTopics.isolated`), its consumer groups have their own prefix
and its Redis state lives in a Redis database number of its own, so a test may stop it,
restart it, or flush its Redis without touching anyone else's data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from redis.asyncio import Redis

from contracts.directory import load_directory
from contracts.events import (
    Actor,
    ActorKind,
    AgeBasis,
    Classification,
    Envelope,
    EventType,
    Priority,
    ReportTriagedData,
    UrgencyFactor,
    make_event,
)
from contracts.reports import Governorate, Language, ViolenceType
from ocsea.runtime.auth import DemoAgency, ensure_demo_principals
from ocsea.runtime.kafka import event_headers
from ocsea.runtime.settings import Settings
from services.routing.adapters.redis import RoutingStore
from services.routing.bootstrap import build
from services.routing.config import RoutingTopics

TRIAGE = Actor(kind=ActorKind.SYSTEM, id="triage")


def redis_url(stack_env: Mapping[str, str], db: int) -> str:
    base = stack_env["OCSEA_REDIS_URL"].rsplit("/", 1)[0]
    return f"{base}/{db}"


@dataclass
class RoutingInstance:
    app: FastAPI
    client: httpx.AsyncClient
    topics: RoutingTopics
    store: RoutingStore
    settings: Settings
    credentials: dict[str, dict[str, str]]

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials[name]['token']}"}

    @property
    def routing(self) -> dict[str, Any]:
        state: dict[str, Any] = self.app.state.routing
        return state


@dataclass(frozen=True)
class Isolation:
    """What makes one test's routing its own; reuse it to restart the same service."""

    namespace: str
    group_prefix: str
    redis_db: int
    var_dir: Path
    directory_file: Path

    @classmethod
    def create(cls, tmp_path: Path, directory_toml: str, redis_db: int) -> Isolation:
        tag = uuid.uuid4().hex[:10]
        directory_file = tmp_path / "directory.toml"
        directory_file.write_text(directory_toml, encoding="utf-8")
        return cls(
            namespace=f"ocsea.test.routing.{tag}",
            group_prefix=f"ocsea-test-routing-{tag}",
            redis_db=redis_db,
            var_dir=tmp_path / "var",
            directory_file=directory_file,
        )

    @property
    def topics(self) -> RoutingTopics:
        return RoutingTopics.isolated(self.namespace)


@asynccontextmanager
async def claimed_redis_db(stack_env: Mapping[str, str]) -> AsyncIterator[int]:
    """A Redis database (1-15) no other test run is using meanwhile, emptied first.

    Several sessions share the local stack (and may run these very tests at the same time),
    so the database is claimed with a lease in database 0 rather than hard-coded.
    """
    registry = Redis.from_url(redis_url(stack_env, 0))
    token = uuid.uuid4().hex
    claimed: int | None = None
    try:
        for db in range(1, 16):
            if await registry.set(f"ocsea:test:redis-db:{db}", token, nx=True, ex=1800):
                claimed = db
                break
        if claimed is None:
            raise RuntimeError("every Redis database 1-15 is claimed by another test run")
        await flush_redis_db(stack_env, claimed)
        yield claimed
    finally:
        if claimed is not None:
            key = f"ocsea:test:redis-db:{claimed}"
            if await registry.get(key) == token.encode():
                await registry.delete(key)
        await registry.aclose()


async def flush_redis_db(stack_env: Mapping[str, str], db: int) -> None:
    """Empty one Redis database of the test's own (never the shared database 0)."""
    assert db != 0, "database 0 is shared by every running instance"
    redis = Redis.from_url(redis_url(stack_env, db))
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


@asynccontextmanager
async def routing_instance(
    stack_env: Mapping[str, str],
    isolation: Isolation,
    environ: Mapping[str, str] | None = None,
) -> AsyncIterator[RoutingInstance]:
    settings = Settings(
        kafka_bootstrap=stack_env["OCSEA_KAFKA_BOOTSTRAP"],
        redis_url=redis_url(stack_env, isolation.redis_db),
        var_dir=isolation.var_dir,
        consumer_group_prefix=isolation.group_prefix,
        routing_directory_file=isolation.directory_file,
        consumer_backoff_initial_s=0.05,
    )
    directory = load_directory(isolation.directory_file)
    credentials_file = isolation.var_dir / "demo-credentials.json"
    ensure_demo_principals(
        settings.resolved_principals_file,
        credentials_file,
        [DemoAgency(id=a.id, type=a.type, supervisors=a.supervisors) for a in directory.agencies],
    )
    credentials = json.loads(credentials_file.read_text(encoding="utf-8"))
    app = build(settings, topics=isolation.topics, environ=environ or {})
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://routing", timeout=30
        ) as client,
    ):
        store = app.state.routing["store"]
        yield RoutingInstance(app, client, isolation.topics, store, settings, credentials)


def triaged_event(
    case_id: uuid.UUID | None = None,
    *,
    classification: Classification = Classification.TF_CSEA,
    priority: Priority = Priority.P1,
    governorate: Governorate | None = Governorate.ERBIL,
    language: Language | None = Language.CKB,
    violence_types: Sequence[ViolenceType] = (),
    factors: Iterable[str] = (),
    police_referral_consent: bool | None = None,
    legal_aid_sought: bool | None = None,
    occurred_at: datetime | None = None,
    report_id: uuid.UUID | None = None,
) -> Envelope:
    report_id = report_id or uuid.uuid4()
    data = ReportTriagedData(
        report_id=report_id,
        classification=classification,
        presumed_child=False,
        age_used=15 if classification is Classification.TF_CSEA else 30,
        age_basis=AgeBasis.STATED_AGE,
        priority=priority,
        score=100,
        factors=tuple(UrgencyFactor(name=f, points=10, source_field="risk_flags") for f in factors),
        violence_types=tuple(violence_types),
        governorate=governorate,
        language=language,
        police_referral_consent=police_referral_consent,
        legal_aid_sought=legal_aid_sought,
        rules_version="test",
    )
    return make_event(
        event_type=EventType.REPORT_TRIAGED,
        case_id=case_id or uuid.uuid4(),
        report_id=report_id,
        producer="triage",
        actor=TRIAGE,
        data=data,
        occurred_at=occurred_at,
    )


async def publish(bootstrap: str, topic: str, events: Iterable[Envelope]) -> None:
    """Publish many events at once (keyed by case, acks=all), waiting for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                e.model_dump_json().encode(),
                key=str(e.case_id).encode(),
                headers=[(k, v.encode()) for k, v in event_headers(e).items()],
            )
            for e in events
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()


def envelopes(records: Iterable[Any]) -> list[Envelope]:
    return [Envelope.model_validate_json(r.value) for r in records]


SHORT_DIRECTORY = """
# Test directory: response times shortened to seconds.
version = "test"
coordinator = "coordination"
decline_reasons = ["outside_area", "no_capacity"]
outcome_codes = ["child_safeguarded", "no_further_action"]
escalation_reasons = ["needs_supervisor_decision"]
reassign_reasons = ["better_placed_unit"]

[response_times.P1]
acknowledge_s = {p1_ack}
first_action_s = {p1_first}
escalation_step_s = {p1_step}
[response_times.P2]
acknowledge_s = {p2_ack}
first_action_s = 3600
escalation_step_s = {p1_step}
[response_times.P3]
acknowledge_s = 3600
first_action_s = 7200
[response_times.P4]
acknowledge_s = 7200
first_action_s = 14400

[sla]
warning_fraction = {fraction}
escalation_chain = ["supervisor", "coordinator"]
check_interval_s = 0.05

[delivery_retry]
max_attempts = 3
backoff_initial_s = 0.2
backoff_max_s = 0.5
timeout_s = 1.0
check_interval_s = 0.05

[policy]
police_offence_types = ["csam", "grooming", "sextortion"]
threat_to_life_factors = ["imminent_danger"]

[[agencies]]
id = "cpu"
name = "Test child protection"
type = "child_protection"
supervisors = ["supervisor-cpu"]
{cpu_delivery}
[[agencies.units]]
id = "cpu-a"
name = "CPU team A"
governorates = ["erbil"]
languages = ["ckb", "ar"]
capacity = 5000
[[agencies.units]]
id = "cpu-b"
name = "CPU team B"
governorates = ["erbil"]
languages = ["ckb"]
capacity = 5000

[[agencies]]
id = "police"
name = "Test police"
type = "police"
supervisors = ["supervisor-police"]
{police_delivery}
[[agencies.units]]
id = "police-erbil"
name = "Police, Erbil"
governorates = ["erbil"]
languages = ["ckb", "ar"]
capacity = 5000

[[agencies]]
id = "gbv"
name = "Test GBV case management"
type = "gbv_case_management"
supervisors = ["supervisor-gbv"]
[[agencies.units]]
id = "gbv-erbil"
name = "GBV, Erbil"
governorates = ["erbil"]
languages = ["ckb"]
capacity = 5000
handles = ["TFGBV"]

[[agencies]]
id = "coordination"
name = "Test coordinator"
type = "coordination"
supervisors = ["coordinator"]
escalation_chain = ["supervisor"]
[[agencies.units]]
id = "desk"
name = "Coordination desk"
governorates = ["erbil", "duhok"]
languages = ["ckb", "kmr", "ar", "en"]
capacity = 100000
"""


def short_directory(
    *,
    p1_ack: int = 2,
    p1_first: int = 3600,
    p1_step: int = 2,
    p2_ack: int = 60,
    fraction: float = 0.5,
    cpu_delivery: str = "",
    police_delivery: str = "",
) -> str:
    return SHORT_DIRECTORY.format(
        p1_ack=p1_ack,
        p1_first=p1_first,
        p1_step=p1_step,
        p2_ack=p2_ack,
        fraction=fraction,
        cpu_delivery=cpu_delivery,
        police_delivery=police_delivery,
    )


# Consumer groups of `ocsea run`, by suffix after the group prefix.
SYSTEM_GROUPS = (
    "intake",
    "intake.status",
    "triage",
    "routing",
    "routing.cases",
    "routing.projection",
    "audit",
    "audit.dlq-dispatch",
)


async def start_groups_at_the_end(bootstrap: str, group_prefix: str) -> None:
    """Commit the current end of every project topic for a new system's consumer groups, as
    for a deployment that has been running all along: it will not replay the shared local
    stack's whole history (other sessions' reports) before reaching the test's own events."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata

    from ocsea.runtime.kafka import project_topics
    from ocsea.runtime.topic_reader import partitions_of

    ends: dict[Any, OffsetAndMetadata] = {}
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        for topic in project_topics():
            tps = await partitions_of(bootstrap, [topic])
            if tps:
                for tp, end in (await probe.end_offsets(tps)).items():
                    ends[tp] = OffsetAndMetadata(end, "")
    finally:
        await probe.stop()
    for suffix in SYSTEM_GROUPS:
        committer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=f"{group_prefix}.{suffix}",
            enable_auto_commit=False,
        )
        await committer.start()
        try:
            committer.assign(list(ends))
            await committer.commit(ends)
        finally:
            await committer.stop()
