"""Configuration from the environment (`OCSEA_` prefix), validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def repo_root() -> Path:
    """The directory holding pyproject.toml, else the working directory."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "contracts").is_dir():
            return candidate
    return here


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCSEA_", extra="ignore")

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
    processed_marker_ttl_s: int = Field(default=14 * 24 * 3600, ge=60)
    publish_timeout_s: float = Field(default=10.0, gt=0)

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

    @property
    def resolved_audit_db_url(self) -> str:
        return self.audit_db_url or f"sqlite+aiosqlite:///{self.var_dir / 'audit-ledger.db'}"

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
