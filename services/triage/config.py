"""Triage's own configuration (`OCSEA_TRIAGE_*`), validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TriageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCSEA_TRIAGE_", extra="ignore")

    rules_file: Path | None = Field(
        default=None, description="The rule set (TOML); default: the shipped sample rules.toml"
    )
    read_sealed: bool = Field(
        default=True,
        description="Open each report's sealed narrative in memory to look for terms (never "
        "logged or emitted); off: triage uses the fields in the clear only",
    )
    lock_timeout_s: float = Field(
        default=30.0, gt=0, description="How long one case's re-triage may hold its lock"
    )
    rebuild_within_s: float = Field(
        default=600.0,
        gt=0,
        description="How long rebuilding the case state from Kafka (when Redis lost it) may "
        "take to read the topics before it fails and is tried again",
    )
