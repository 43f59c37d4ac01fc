"""Configuration from the environment (`OCSEA_` prefix), validated at start-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def repo_root() -> Path:
    """The directory holding pyproject.toml, else the working directory."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "contracts").is_dir():
            return candidate
    return here


MIN_REDIS_PASSWORD_CHARS = 16
"""Deployment mode refuses a shorter Redis password as a guessable default."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OCSEA_",
        extra="ignore",
        # A deployment hands over settings that hold a password (OCSEA_REDIS_URL,
        # OCSEA_AUDIT_DB_URL) as secret files named after them in this directory, never as
        # plain environment variables; and no error ever echoes a value it refused.
        secrets_dir=os.environ.get("OCSEA_SECRETS_DIR") or None,
        hide_input_in_errors=True,
    )

    deployment: bool = Field(
        default=False,
        description="Deployment mode: every key comes from a file the deployment supplies and "
        "is never generated (a service whose key file is missing refuses to start), the "
        "principals are the deployment's own (OCSEA_PRINCIPALS_FILE), and Redis needs a "
        "password",
    )

    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    var_dir: Path = Field(default_factory=lambda: repo_root() / "var")
    audit_db_url: str | None = Field(
        default=None, description="Default: a SQLite file under var/ (sqlite+aiosqlite)"
    )
    audit_signing_key_file: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) that signs checkpoints; default: var/, "
        "generated on first use (a deployment supplies its own, and it must exist)",
    )
    audit_checkpoint_interval_s: float = Field(
        default=60.0, gt=0, description="How often a checkpoint is signed when the ledger grew"
    )
    audit_ingest_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="While the audit catches up on a backlog, the share of time its ingest may "
        "take (it pauses in between): below 1 only when it shares a process with other "
        "services (`ocsea run --single-process`)",
    )
    audit_db_create_schema: bool = Field(
        default=True,
        description="The audit service creates its tables and their append-only guards at "
        "start-up; false where they belong to another role (a deployment creates them as the "
        "owner role with `python -m services.audit.entrypoints.schema`) and the service's own "
        "role may only read and add rows: it then only checks they are there",
    )
    audit_log_origin: str = Field(
        default="ocsea-audit",
        pattern=r"^[A-Za-z0-9._:/-]{1,100}$",
        description="Names this ledger in its signed checkpoints",
    )

    host: str = "127.0.0.1"
    intake_port: int = 8081
    triage_port: int = 8082
    routing_port: int = 8083
    audit_port: int = 8084
    console_port: int = 8080
    # The console calls the services over HTTP with each user's own credential; by default on
    # this host at their ports (`console_service_url`), else at these URLs.
    console_routing_url: str | None = None
    console_triage_url: str | None = None
    console_audit_url: str | None = None
    # Triage asks routing (the holder of tasks) whether a caller has an open task on a case;
    # by default on this host at routing's port (`triage_routing`).
    triage_routing_url: str | None = None
    triage_routing_timeout_s: float = Field(
        default=5.0, gt=0, description="How long triage waits for routing's access answer"
    )
    console_session_idle_s: int = Field(
        default=900, ge=60, description="A console session ends after this long unused"
    )
    console_session_max_s: int = Field(
        default=12 * 3600, ge=300, description="A session ends this long after sign-in"
    )
    console_secure_cookies: bool = Field(
        default=False, description="Mark cookies Secure (set it when the console is behind TLS)"
    )
    console_poll_interval_s: float = Field(
        default=10.0, ge=1, description="How often an open inbox fetches its tasks again"
    )

    principals_file: Path | None = Field(
        default=None, description="Default: var/principals.json (token hashes, never tokens)"
    )
    routing_directory_file: Path | None = Field(
        default=None, description="Actor directory; default: the shipped KRI sample"
    )
    master_key_file: Path | None = Field(
        default=None, description="Key-encryption key for case data keys; default: var/"
    )
    keystore_db_url: str | None = Field(
        default=None,
        description="Where the wrapped case data keys are kept (they must outlive Redis, "
        "which only caches them): a SQLAlchemy async URL, e.g. postgresql+asyncpg://…; "
        "default: a SQLite file under var/",
    )
    keystore_cache_ttl_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="How long Redis keeps a case's wrapped key (or its erasure) before the key "
        "store is asked again",
    )

    topic_partitions: int = Field(
        default=3, ge=1, description="Partitions of topics the services create (scale-out unit)"
    )
    topic_replication_factor: int = Field(default=1, ge=1)
    consumer_group_prefix: str = Field(
        default="ocsea", description="Consumer groups are <prefix>.<service>; tests isolate by it"
    )
    consumer_new_group_start: Literal["earliest", "now"] = Field(
        default="earliest",
        description="Where a consumer group that never committed starts: at the beginning of "
        "each topic (every deployment: the topics are the source of truth), or at its end as "
        "of start-up (test systems sharing a broker, which must not replay others' history)",
    )
    consumer_max_attempts: int = Field(default=4, ge=1, le=50)
    consumer_backoff_initial_s: float = Field(default=0.2, gt=0)
    consumer_backoff_max_s: float = Field(default=5.0, gt=0)
    redis_max_connections: int = Field(
        default=128, ge=4, description="Connections each service process may open to Redis"
    )
    redis_round_trips_in_flight: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Redis round trips a process has in flight at once; the commands issued "
        "meanwhile wait and go out together in one pipeline",
    )
    consumer_batch_max: int = Field(
        default=256, ge=1, le=5000, description="Most records a consumer takes in one batch"
    )
    consumer_batch_wait_ms: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="How long an idle consumer waits for records before polling again: the "
        "most a record can wait in each stage when the system is quiet",
    )
    serve_lanes: Literal["all", "live", "bulk"] = Field(
        default="all",
        description="Which lanes' consumers this process runs: `ocsea run` gives triage and "
        "routing a process of their own for the bulk lane (at a lower CPU priority), and the "
        "service's main process then runs `live` (its API, timers and projections included)",
    )
    bulk_lane_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="How much lower the CPU priority of a bulk-lane process is (nice): the "
        "kernel then gives live work the CPU first while a backlog drains",
    )
    bulk_lane_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port a bulk-lane process serves its health and metrics on. Default: one "
        "the kernel picks, since under `ocsea run` the live process holds the service's port; "
        "a bulk lane in a container of its own sets it so its probes and scrapes find it",
    )
    processed_marker_ttl_s: int = Field(default=14 * 24 * 3600, ge=60)
    publish_timeout_s: float = Field(default=10.0, gt=0)
    kafka_max_batch_bytes: int = Field(
        default=512 * 1024,
        ge=16 * 1024,
        le=1_000_000,
        description="Largest record batch the producer sends to one partition. aiokafka's "
        "16 KiB default holds a handful of events, so a burst of publishes (a batch upload's "
        "rows, a consumer batch's results) became hundreds of produce requests and its "
        "senders queued behind every full batch; kept under the broker's 1 MB message limit",
    )
    metrics_refresh_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How often the figures /metrics reads rather than counts are read again: "
        "consumer lag, readiness, routing's tasks by state, the ledger's size and checkpoint",
    )

    log_level: str = "INFO"
    log_json: bool | None = Field(
        default=None,
        description="JSON lines (true) or readable coloured lines (false); default: readable "
        "when stderr is a terminal a person watches, JSON otherwise",
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            if ":" not in server:
                raise ValueError(f"OCSEA_KAFKA_BOOTSTRAP entry {server!r} needs host:port")
        return value

    @model_validator(mode="after")
    def _deployment_supplies_secrets(self) -> Settings:
        """A deployment never falls back on what a local run makes for itself."""
        if not self.deployment:
            return self
        problems = []
        if self.principals_file is None:
            problems.append(
                "set OCSEA_PRINCIPALS_FILE to the deployment's principals (token hashes); "
                "demo principals are made for local runs only"
            )
        elif not self.principals_file.is_file():
            problems.append(f"OCSEA_PRINCIPALS_FILE: no file at {self.principals_file}")
        password = urlsplit(self.redis_url).password
        if not password:
            problems.append(
                "OCSEA_REDIS_URL carries no password (redis://:PASSWORD@host:6379/0): Redis "
                "must require one (requirepass)"
            )
        elif len(password) < MIN_REDIS_PASSWORD_CHARS:
            problems.append(
                f"the Redis password in OCSEA_REDIS_URL is shorter than "
                f"{MIN_REDIS_PASSWORD_CHARS} characters: supply a random one"
            )
        if problems:
            raise ValueError("deployment mode (OCSEA_DEPLOYMENT=true): " + "; ".join(problems))
        return self

    @property
    def resolved_audit_db_url(self) -> str:
        if self.audit_db_url is None and self.deployment:
            # var/ is scratch space in a container: a ledger there would die with it.
            raise ValueError(
                "deployment mode (OCSEA_DEPLOYMENT=true): set OCSEA_AUDIT_DB_URL to the "
                "ledger's database (the service role's URL, as a secret file)"
            )
        return self.audit_db_url or f"sqlite+aiosqlite:///{self.var_dir / 'audit-ledger.db'}"

    @property
    def resolved_keystore_db_url(self) -> str:
        if self.keystore_db_url is None and self.deployment:
            # A case key lost with a container's scratch space loses the case's personal data.
            raise ValueError(
                "deployment mode (OCSEA_DEPLOYMENT=true): set OCSEA_KEYSTORE_DB_URL to the "
                "case key store's database (as a secret file)"
            )
        return self.keystore_db_url or f"sqlite+aiosqlite:///{self.var_dir / 'case-keys.db'}"

    @property
    def resolved_audit_signing_key_file(self) -> Path:
        return self.audit_signing_key_file or self.var_dir / "audit-signing.key"

    def console_service_url(self, service: str) -> str:
        configured: str | None = getattr(self, f"console_{service}_url")
        port: int = getattr(self, f"{service}_port")
        return (configured or f"http://{self.host}:{port}").rstrip("/")

    @property
    def triage_routing(self) -> str:
        return (self.triage_routing_url or f"http://{self.host}:{self.routing_port}").rstrip("/")

    @property
    def resolved_principals_file(self) -> Path:
        return self.principals_file or self.var_dir / "principals.json"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.var_dir / "master.key"
