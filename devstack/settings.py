"""Where and how the local stack runs (`OCSEA_STACK_*`), and the error every part of it raises."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_KAFKA_VERSION = "4.4.0"
LOOPBACK = "127.0.0.1"


class StackError(Exception):
    """A stack operation failed; the message says what happened and what to do about it."""


def _is_ocsea_root(directory: Path) -> bool:
    pyproject = directory / "pyproject.toml"
    try:
        return re.search(r'(?m)^name\s*=\s*"ocsea"', pyproject.read_text()) is not None
    except OSError:
        return False


def find_repo_root() -> Path:
    """The ocsea checkout: the directory holding its pyproject.toml, from cwd or this module up."""
    starts = (Path.cwd().resolve(), Path(__file__).resolve().parent)
    for start in starts:
        for directory in (start, *start.parents):
            if _is_ocsea_root(directory):
                return directory
    for start in starts:
        for directory in (start, *start.parents):
            if (directory / "pyproject.toml").is_file():
                return directory
    return Path.cwd().resolve()


def _default_base_dir() -> Path:
    return find_repo_root() / "var" / "stack"


def _default_jar_cache_dir() -> Path:
    return find_repo_root() / "var" / "cache"


def _default_kafka_pom() -> Path:
    return find_repo_root() / "deploy" / "kafka" / "pom.xml"


class StackSettings(BaseSettings):
    """Where and how the local stack runs; every field can be set as `OCSEA_STACK_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="OCSEA_STACK_", extra="ignore")

    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    redis_port: int = Field(default=6379, ge=1, le=65535)
    postgres_port: int = Field(default=5432, ge=1, le=65535)
    base_dir: Path = Field(default_factory=_default_base_dir)
    """Data, logs, pid files and generated configuration: `<repo>/var/stack`."""
    kafka_version: str = DEFAULT_KAFKA_VERSION
    jar_cache_dir: Path = Field(default_factory=_default_jar_cache_dir)
    """Kafka's jars go to `<jar_cache_dir>/kafka-<version>/`: `<repo>/var/cache/kafka-4.4.0/`."""
    kafka_pom: Path = Field(default_factory=_default_kafka_pom)
    kafka_heap: str = "512m"
    postgres_dir: Path | None = None
    """PostgreSQL's own directory (data and socket); default: see devstack/postgres.py."""
    postgres_db: str = "ocsea"
    postgres_user: str = "ocsea"
    postgres_password: str = "ocsea"  # noqa: S105 (a loopback-only development database)
    start_timeout_s: float = Field(default=120.0, gt=0)
    stop_timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("kafka_version")
    @classmethod
    def _check_kafka_version(cls, value: str) -> str:
        if re.fullmatch(r"\d+\.\d+\.\d+", value) is None:
            raise ValueError(f"not a Kafka release version like 4.4.0: {value!r}")
        return value

    @field_validator("kafka_heap")
    @classmethod
    def _check_heap(cls, value: str) -> str:
        if re.fullmatch(r"\d+[kKmMgG]", value) is None:
            raise ValueError(f"not a JVM heap size like 512m: {value!r}")
        return value

    @field_validator("postgres_db", "postgres_user")
    @classmethod
    def _check_identifier(cls, value: str) -> str:
        if re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value) is None:
            raise ValueError(f"use a plain lower-case SQL identifier: {value!r}")
        return value

    # derived locations --------------------------------------------------------------------

    @property
    def kafka_jars_dir(self) -> Path:
        return self.jar_cache_dir / f"kafka-{self.kafka_version}"

    @property
    def kafka_dir(self) -> Path:
        return self.base_dir / "kafka"

    @property
    def kafka_data_dir(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def redis_dir(self) -> Path:
        return self.base_dir / "redis"

    @property
    def run_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.kafka_port}"

    @property
    def redis_password_file(self) -> Path:
        return self.base_dir / "redis.password"

    @property
    def redis_url(self) -> str:
        """Where clients reach Redis, with the password when the running Redis needs one."""
        # Imported here: devstack.redis builds on these settings (a cycle at import time).
        from devstack.redis import redis_password

        password = redis_password(self)
        auth = f":{password}@" if password else ""
        return f"redis://{auth}{LOOPBACK}:{self.redis_port}/0"

    @property
    def postgres_url(self) -> str:
        return (
            f"postgresql+asyncpg://{self.postgres_user}:{self.postgres_password}"
            f"@{LOOPBACK}:{self.postgres_port}/{self.postgres_db}"
        )
