"""Intake's own configuration (`OCSEA_INTAKE_*`), validated at start-up."""

from __future__ import annotations

import zoneinfo
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KIB = 1024
MIB = 1024 * KIB


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCSEA_INTAKE_", extra="ignore")

    default_time_zone: str = Field(
        default="Asia/Baghdad", description="Zone of incident times given without an offset"
    )
    places_file: Path | None = Field(
        default=None, description="KRI gazetteer; default: the shipped sample places.toml"
    )
    vocabulary_file: Path | None = Field(
        default=None, description="Platform/language/relationship names; default: sample"
    )
    matching_key_file: Path | None = Field(
        default=None,
        description="Secret for keyed hashes of identifiers, reports and Idempotency-Keys "
        "(HMAC-SHA256); default: <var>/matching.key. Changing it forgets every earlier match "
        "and idempotent answer.",
    )

    max_report_bytes: int = Field(default=256 * KIB, ge=KIB)
    max_cybertipline_bytes: int = Field(default=2 * MIB, ge=KIB)
    max_batch_bytes: int = Field(default=10 * MIB, ge=KIB)
    max_batch_rows: int = Field(default=1_000, ge=1)
    batch_seal_concurrency: int = Field(
        default=32,
        ge=1,
        description="Rows of one batch sealed at once (each asks Redis for its case's data "
        "key); the sealed rows are then all published together",
    )
    batch_publish_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="How long sealing and publishing one upload's rows may take before the "
        "upload is answered 503 (rows not stored by then are listed; a retry stores the "
        "rest). Longer than a single report's `publish_timeout_s`: a thousand rows on a "
        "busy machine take seconds, and a partner's upload does not wait for an officer",
    )
    max_json_depth: int = Field(
        default=64, ge=8, le=256, description="Deepest nesting of arrays and objects in JSON"
    )
    max_json_integer_digits: int = Field(
        default=20, ge=5, le=100, description="Longest integer a JSON document may hold"
    )
    max_xml_depth: int = Field(
        default=64,
        ge=8,
        le=256,
        description="Deepest nesting of elements in a CyberTipline document",
    )
    max_xml_elements: int = Field(
        default=10_000,
        ge=100,
        description="Most elements (with attributes counted as elements) in a CyberTipline "
        "document",
    )
    parse_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest a document or upload may take to read (it is read beside the "
        "event loop, never on it); past it the request is refused with 413",
    )
    max_event_bytes: int = Field(
        default=1_000_000,
        ge=64 * KIB,
        description="Largest event intake publishes: at most the broker's message.max.bytes and "
        "the producer's max_request_size (1 MiB by default). A report that would seal to more "
        "is refused with 413 before it is sealed",
    )
    max_base64_run: int = Field(
        default=1_024,
        ge=64,
        description="A run of base64 characters this long in any value is treated as "
        "embedded material and refused",
    )

    rate_limit_per_minute: int = Field(
        default=6_000, ge=1, description="Per partner, unless its principal entry says otherwise"
    )
    rate_limit_burst: int = Field(default=500, ge=1)

    idempotency_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    idempotency_reservation_s: int = Field(
        default=60,
        ge=5,
        description="How long an Idempotency-Key stays reserved by a request in progress "
        "(if its process dies before answering, the key is free again after this)",
    )
    held_event_ttl_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="How long a report's event, prepared but not yet remembered (the broker "
        "did not acknowledge it, or intake stopped before remembering it), is kept so that a "
        "retry publishes the very same bytes. A retry after this makes the event afresh: "
        "if the first one did land, the audit ledger records the two as a conflict",
    )
    duplicate_window_s: int = Field(
        default=400 * 24 * 3600,
        ge=60,
        description="How long an identical report from the same partner is recognised",
    )
    link_ttl_s: int = Field(
        default=3 * 365 * 24 * 3600, ge=60, description="How long identifiers link to a case"
    )
    max_linked_reports: int = Field(default=100, ge=1)

    rebuild_within_s: float = Field(
        default=600.0,
        gt=0,
        description="How long rebuilding intake's state from Kafka (when Redis lost it) may "
        "take to read the topics before it fails and is tried again",
    )
    rebuild_open_concurrency: int = Field(
        default=32,
        ge=1,
        description="Reports' sealed parts opened at once while rebuilding (each asks for its "
        "case's data key), to derive their keyed fingerprints and identifier hashes again",
    )

    @field_validator("default_time_zone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"OCSEA_INTAKE_DEFAULT_TIME_ZONE: unknown IANA zone {value!r}"
            ) from exc
        return value
