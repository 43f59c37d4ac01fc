"""Intake's Redis state: rate limits, idempotent answers, the duplicate and link index, and
the partners' report-status projection.

All of it is fast, rebuildable state beside Kafka (the source of truth). The index holds only
keyed hashes (HMAC) of identifiers, and is written only after the broker acknowledged a
report: a report that was not published leaves nothing here.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis

from services.intake.config import IntakeSettings

PREFIX = "ocsea:intake"

# Generic cell rate algorithm: one key per partner holding the "theoretical arrival time".
# Redis's own clock keeps several intake replicas consistent.
_GCRA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return wait end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"""


@dataclass(frozen=True)
class RateLimit:
    per_minute: int
    burst: int


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_GCRA)

    async def wait_s(self, partner: str, limit: RateLimit) -> int:
        """0 when the request may go ahead, else whole seconds until it may."""
        interval_us = 60_000_000 / limit.per_minute
        tolerance_us = interval_us * (limit.burst - 1)
        wait_us = int(
            await self._script(keys=[f"{PREFIX}:rate:{partner}"], args=[interval_us, tolerance_us])
        )
        return math.ceil(wait_us / 1_000_000) if wait_us > 0 else 0


@dataclass(frozen=True)
class StoredAnswer:
    request_digest: str
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Earlier:
    report_id: uuid.UUID
    case_id: uuid.UUID


@dataclass(frozen=True)
class LinkedReport:
    report_id: uuid.UUID
    partner_id: str


@dataclass(frozen=True)
class AcceptedReport:
    """What to remember once a report is in Kafka."""

    partner_id: str
    report_id: uuid.UUID
    case_id: uuid.UUID
    fingerprint: str
    link_digests: Sequence[str]
    received_at: datetime
    source_format: str
    linked: Sequence[LinkedReport]


@dataclass(frozen=True)
class DuplicateReceipt:
    """A submission recognised as an earlier report: its own receipt id, nothing published."""

    partner_id: str
    receipt_id: uuid.UUID
    duplicate_of: uuid.UUID
    case_id: uuid.UUID
    received_at: datetime
    source_format: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class IntakeStore:
    def __init__(self, redis: Redis, settings: IntakeSettings) -> None:
        self._redis = redis
        self._settings = settings

    # idempotency -----------------------------------------------------------------------------

    @staticmethod
    def _idempotency_key(partner: str, key: str) -> str:
        # The partner's key is hashed: it is their text, and could be anything.
        return f"{PREFIX}:idem:{partner}:{hashlib.sha256(key.encode()).hexdigest()}"

    async def answer_for(self, partner: str, key: str) -> StoredAnswer | None:
        stored = await self._redis.get(self._idempotency_key(partner, key))
        if stored is None:
            return None
        data = json.loads(stored)
        return StoredAnswer(data["request"], int(data["status"]), data["body"])

    # lookups before publishing ------------------------------------------------------------

    async def lookup(
        self, fingerprints: Sequence[str], link_digests: Sequence[str]
    ) -> tuple[list[Earlier | None], dict[str, uuid.UUID]]:
        """Earlier identical reports, and the case each identifier already belongs to."""
        keys = [f"{PREFIX}:dup:{f}" for f in fingerprints] + [
            f"{PREFIX}:link:{d}" for d in link_digests
        ]
        values = await self._redis.mget(keys) if keys else []
        earlier: list[Earlier | None] = []
        for value in values[: len(fingerprints)]:
            if value is None:
                earlier.append(None)
            else:
                data = json.loads(value)
                earlier.append(Earlier(uuid.UUID(data["report_id"]), uuid.UUID(data["case_id"])))
        links = {
            digest: uuid.UUID(_text(value))
            for digest, value in zip(link_digests, values[len(fingerprints) :], strict=True)
            if value is not None
        }
        return earlier, links

    async def case_reports(
        self, case_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, list[LinkedReport]]:
        ids = list(dict.fromkeys(case_ids))
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for case_id in ids:
                pipe.lrange(f"{PREFIX}:case:{case_id}:reports", 0, -1)
            results = await pipe.execute()
        found: dict[uuid.UUID, list[LinkedReport]] = {}
        for case_id, entries in zip(ids, results, strict=True):
            found[case_id] = [
                LinkedReport(uuid.UUID(report), partner)
                for report, _, partner in (_text(e).partition(" ") for e in entries)
            ]
        return found

    # records after publishing -------------------------------------------------------------

    async def record(
        self, accepted: Sequence[AcceptedReport], duplicates: Sequence[DuplicateReceipt]
    ) -> None:
        """Remember published reports (and the duplicates recognised), in one round trip.

        Not a MULTI transaction: the reports are already in Kafka, every write here is
        idempotent, and a write that is missing after a crash only means a resubmission is
        not recognised (it then carries the same ids, which consumers deduplicate)."""
        settings = self._settings
        async with self._redis.pipeline(transaction=False) as pipe:
            for report in accepted:
                earlier = json.dumps(
                    {"report_id": str(report.report_id), "case_id": str(report.case_id)}
                )
                pipe.set(
                    f"{PREFIX}:dup:{report.fingerprint}", earlier, ex=settings.duplicate_window_s
                )
                for digest in report.link_digests:
                    # The first case an identifier was seen in keeps it.
                    pipe.set(
                        f"{PREFIX}:link:{digest}",
                        str(report.case_id),
                        nx=True,
                        ex=settings.link_ttl_s,
                    )
                case_key = f"{PREFIX}:case:{report.case_id}:reports"
                pipe.rpush(case_key, f"{report.report_id} {report.partner_id}")
                if report.linked:  # a new case's list holds this one report
                    pipe.ltrim(case_key, -settings.max_linked_reports, -1)
                pipe.expire(case_key, settings.link_ttl_s)
                status_key = f"{PREFIX}:status:{report.report_id}"
                pipe.hset(
                    status_key,
                    mapping={
                        "partner": report.partner_id,
                        "case_id": str(report.case_id),
                        "received_at": report.received_at.isoformat(),
                        "source_format": report.source_format,
                        "linked": json.dumps(
                            [[str(r.report_id), r.partner_id] for r in report.linked]
                        ),
                    },
                )
                pipe.expire(status_key, settings.duplicate_window_s)
            for duplicate in duplicates:
                receipt_key = f"{PREFIX}:status:{duplicate.receipt_id}"
                pipe.hset(
                    receipt_key,
                    mapping={
                        "partner": duplicate.partner_id,
                        "case_id": str(duplicate.case_id),
                        "received_at": duplicate.received_at.isoformat(),
                        "source_format": duplicate.source_format,
                        "duplicate_of": str(duplicate.duplicate_of),
                    },
                )
                pipe.expire(receipt_key, settings.duplicate_window_s)
                pipe.hincrby(f"{PREFIX}:status:{duplicate.duplicate_of}", "duplicates", 1)
            await pipe.execute()

    async def remember_answer(self, partner: str, key: str, answer: StoredAnswer) -> None:
        """The first answer to an Idempotency-Key, replayed to every retry of the request."""
        stored = {"request": answer.request_digest, "status": answer.status, "body": answer.body}
        await self._redis.set(
            self._idempotency_key(partner, key),
            json.dumps(stored),
            ex=self._settings.idempotency_ttl_s,
            nx=True,
        )

    # the partners' status projection -----------------------------------------------------

    async def status(self, report_id: uuid.UUID) -> dict[str, str] | None:
        raw = cast(dict[Any, Any], await self._redis.hgetall(f"{PREFIX}:status:{report_id}"))
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return fields if "partner" in fields else None

    async def case_status(self, case_id: str) -> dict[str, str]:
        raw = cast(dict[Any, Any], await self._redis.hgetall(f"{PREFIX}:case-status:{case_id}"))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def mark_triaged(
        self,
        report_id: uuid.UUID,
        case_id: uuid.UUID,
        at: datetime,
        classification: str,
        priority: str,
    ) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"{PREFIX}:status:{report_id}", "triaged_at", at.isoformat())
            pipe.expire(f"{PREFIX}:status:{report_id}", self._settings.duplicate_window_s)
            self._case_classification(pipe, case_id, at, classification, priority)
            await pipe.execute()

    async def mark_reclassified(
        self, case_id: uuid.UUID, at: datetime, classification: str, priority: str
    ) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            self._case_classification(pipe, case_id, at, classification, priority)
            await pipe.execute()

    def _case_classification(
        self, pipe: Any, case_id: uuid.UUID, at: datetime, classification: str, priority: str
    ) -> None:
        key = f"{PREFIX}:case-status:{case_id}"
        pipe.hset(
            key,
            mapping={
                "classification": classification,
                "priority": priority,
                "updated_at": at.isoformat(),
            },
        )
        pipe.expire(key, self._settings.duplicate_window_s)

    async def mark_routed(self, report_id: uuid.UUID, at: datetime) -> None:
        key = f"{PREFIX}:status:{report_id}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "routed_at", at.isoformat())
            pipe.expire(key, self._settings.duplicate_window_s)
            await pipe.execute()
