"""Intake's Redis state: admission (rate limits and Idempotency-Key reservations), idempotent
answers, the duplicate and link index, held events, and the partners' report-status projection.

All of it is a projection of Kafka (the source of truth), rebuilt from intake's own events
and the progress topics when Redis lost it (`handlers/rebuild.py`, written back by
`redis_restore.py`; rate limits and reservations in progress are simply lost). The index
holds only keyed hashes (HMAC) of identifiers, and is written only after the broker
acknowledged a report: a report that was not published leaves nothing in it (an
Idempotency-Key reserved for it is released). What such a report does leave is its held
event (`held:{report_id}`, the event as first prepared, its personal part sealed), so that a
retry sends the same bytes; it goes soon after the report is remembered, or after
`OCSEA_INTAKE_HELD_EVENT_TTL_S`.

What partners see is kept apart per partner: the reference a partner was given for a case
(`case_ref`), and the classification a partner may see for it (`case-view:{case}:{partner}`),
which only ever comes from triage results drawn from that partner's own reports.
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from contracts.events import PartnerAssessment
from services.intake.config import IntakeSettings
from services.intake.domain.planning import CaseContext, Earlier, Held, LinkedReport
from services.intake.domain.status import ReportStatusRecord
from services.intake.ports import (
    AcceptedReport,
    Admission,
    DuplicateReceipt,
    Lookup,
    RateLimit,
    Reservation,
    StoredAnswer,
    StoreUnavailable,
)

PREFIX = "ocsea:intake"
OPENER, JOINED = "opened", "joined"

# Generic cell rate algorithm (one key per partner holding the "theoretical arrival time",
# Redis's own clock keeping several intake replicas consistent), then, for a request that may
# go ahead and carries an Idempotency-Key, the key's reservation: SET NX GET answers with what
# the key already holds (a reservation in progress, or the first answer) and takes it only if
# it was free. One round trip, and a refused request reserves nothing.
_ADMIT = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return {wait, false} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
if #KEYS < 2 then return {0, false} end
return {0, redis.call('SET', KEYS[2], ARGV[3], 'NX', 'GET', 'EX', ARGV[4])}
"""

# Release a reservation only if it is still this request's (not a later request's).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(mapping: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in cast(dict[Any, Any], mapping).items()}


def _reservation_value(reservation: Reservation) -> str:
    return json.dumps({"request": reservation.request_digest, "pending": reservation.token})


# The keys, for the live writes here and for the restore from Kafka (`redis_restore.py`).


def held_key(report_id: uuid.UUID) -> str:
    return f"{PREFIX}:held:{report_id}"


def dup_key(fingerprint: str) -> str:
    return f"{PREFIX}:dup:{fingerprint}"


def link_key(digest: str) -> str:
    return f"{PREFIX}:link:{digest}"


def status_key(report_id: uuid.UUID | str) -> str:
    return f"{PREFIX}:status:{report_id}"


def case_key(case_id: uuid.UUID | str) -> str:
    """The prefix of a case's list of reports (`:reports`) and partners (`:partners`)."""
    return f"{PREFIX}:case:{case_id}"


def case_status_key(case_id: uuid.UUID | str) -> str:
    return f"{PREFIX}:case-status:{case_id}"


def view_key(case_id: uuid.UUID | str, partner: str) -> str:
    return f"{PREFIX}:case-view:{case_id}:{partner}"


def idempotency_key(partner: str, key_digest: str) -> str:
    # A keyed digest of the partner's key (`Matcher.idempotency_key`): their text could be
    # anything, and the digest is what the report's event carries to restore the answer.
    return f"{PREFIX}:idem:{partner}:{key_digest}"


def answer_value(request_digest: str, status: int, body: Any) -> str:
    """A key's stored answer, as `admit` reads it back."""
    return json.dumps({"request": request_digest, "status": status, "body": body})


class RedisIntakeStore:
    """Every store port of intake (`Admissions`, `ReportIndex`, `StatusProjection`) on Redis."""

    def __init__(self, redis: Redis, settings: IntakeSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._admit = redis.register_script(_ADMIT)
        self._release = redis.register_script(_RELEASE)

    # admission and idempotency ---------------------------------------------------------------

    async def admit(
        self, partner: str, limit: RateLimit, reservation: Reservation | None
    ) -> Admission:
        """Count the request against the partner's rate and, if it may go ahead, reserve its
        Idempotency-Key before any work is done: of two simultaneous requests with one key,
        exactly one gets the reservation."""
        interval_us = 60_000_000 / limit.per_minute
        tolerance_us = interval_us * (limit.burst - 1)
        keys = [f"{PREFIX}:rate:{partner}"]
        args: list[Any] = [interval_us, tolerance_us]
        if reservation is not None:
            keys.append(idempotency_key(partner, reservation.key_digest))
            args += [_reservation_value(reservation), self._settings.idempotency_reservation_s]
        wait_us, held = await self._admit(keys=keys, args=args)
        if int(wait_us) > 0:
            return Admission(math.ceil(int(wait_us) / 1_000_000))
        if not held:
            return Admission(0)
        data = json.loads(held)
        if "pending" in data:
            return Admission(0, in_progress_digest=data["request"])
        return Admission(0, StoredAnswer(data["request"], int(data["status"]), data["body"]))

    async def release(self, reservation: Reservation) -> None:
        """Give a reserved key back (the request was refused, or not stored): a retry with the
        same key is then a new attempt. With Redis unreachable the reservation expires on its
        own (`OCSEA_INTAKE_IDEMPOTENCY_RESERVATION_S`)."""
        with contextlib.suppress(RedisError):
            await self._release(
                keys=[idempotency_key(reservation.partner, reservation.key_digest)],
                args=[_reservation_value(reservation)],
            )

    def _answer_command(self, pipe: Any, reservation: Reservation, answer: StoredAnswer) -> None:
        pipe.set(
            idempotency_key(reservation.partner, reservation.key_digest),
            answer_value(answer.request_digest, answer.status, answer.body),
            ex=self._settings.idempotency_ttl_s,
        )

    # lookups before publishing ------------------------------------------------------------

    async def lookup(
        self,
        fingerprints: Sequence[str],
        link_digests: Sequence[str],
        report_ids: Sequence[uuid.UUID],
    ) -> Lookup:
        """Earlier identical reports, the case each identifier already belongs to, and the
        events held for the reports (one round trip)."""
        keys = [
            *(dup_key(f) for f in fingerprints),
            *(held_key(r) for r in report_ids),
            *(link_key(d) for d in link_digests),
        ]
        values = await self._redis.mget(keys) if keys else []
        held_values = values[len(fingerprints) : len(fingerprints) + len(report_ids)]
        link_values = values[len(fingerprints) + len(report_ids) :]
        earlier: list[Earlier | None] = []
        for value in values[: len(fingerprints)]:
            if value is None:
                earlier.append(None)
                continue
            data = json.loads(value)
            case_id = uuid.UUID(data["case_id"])
            # Records from before partner references: the case id was the reference.
            case_ref = uuid.UUID(data.get("case_ref", data["case_id"]))
            earlier.append(Earlier(uuid.UUID(data["report_id"]), case_id, case_ref))
        links = {
            digest: uuid.UUID(_text(value))
            for digest, value in zip(link_digests, link_values, strict=True)
            if value is not None
        }
        held = [Held.decode(value) if value is not None else None for value in held_values]
        return Lookup(earlier, links, held)

    async def hold(self, prepared: Sequence[Held]) -> list[Held]:
        """SET NX GET: each event is kept unless one is already kept for its report, in which
        case that one comes back (one round trip for a whole batch)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for held in prepared:
                pipe.set(
                    held_key(held.report_id),
                    held.encode(),
                    nx=True,
                    get=True,
                    ex=self._settings.held_event_ttl_s,
                )
            earlier = await pipe.execute()
        return [
            ours if before is None else Held.decode(before)
            for ours, before in zip(prepared, earlier, strict=True)
        ]

    async def cases(self, case_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, CaseContext]:
        ids = list(dict.fromkeys(case_ids))
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for case_id in ids:
                pipe.lrange(f"{case_key(case_id)}:reports", 0, -1)
                pipe.hgetall(f"{case_key(case_id)}:partners")
            results = await pipe.execute()
        found: dict[uuid.UUID, CaseContext] = {}
        for index, case_id in enumerate(ids):
            entries, partners = results[2 * index], _texts(results[2 * index + 1])
            found[case_id] = CaseContext(
                [
                    LinkedReport(uuid.UUID(report), partner)
                    for report, _, partner in (_text(e).partition(" ") for e in entries)
                ],
                next((p for p, role in partners.items() if role == OPENER), None),
            )
        return found

    # records after publishing -------------------------------------------------------------

    async def record(
        self,
        accepted: Sequence[AcceptedReport],
        duplicates: Sequence[DuplicateReceipt],
        answer: tuple[Reservation, StoredAnswer] | None = None,
    ) -> None:
        """Remember published reports (and the duplicates recognised), with the request's
        idempotent answer, and let go of the reports' held events, in one round trip.

        Not a MULTI transaction: the reports are already in Kafka, every write here is
        idempotent, and a write that is missing after a crash only means a resubmission is
        not recognised (it then sends the held event again, which consumers deduplicate)."""
        try:
            await self._record(accepted, duplicates, answer)
        except RedisError as exc:
            raise StoreUnavailable from exc

    async def _record(
        self,
        accepted: Sequence[AcceptedReport],
        duplicates: Sequence[DuplicateReceipt],
        answer: tuple[Reservation, StoredAnswer] | None,
    ) -> None:
        settings = self._settings
        async with self._redis.pipeline(transaction=False) as pipe:
            for report in accepted:
                earlier = json.dumps(
                    {
                        "report_id": str(report.report_id),
                        "case_id": str(report.case_id),
                        "case_ref": str(report.case_ref),
                    }
                )
                pipe.set(dup_key(report.fingerprint), earlier, ex=settings.duplicate_window_s)
                for digest in report.link_digests:
                    # The first case an identifier was seen in keeps it.
                    pipe.set(
                        link_key(digest),
                        str(report.case_id),
                        nx=True,
                        ex=settings.link_ttl_s,
                    )
                case = case_key(report.case_id)
                pipe.rpush(f"{case}:reports", f"{report.report_id} {report.partner_id}")
                if report.linked:  # a new case's list holds this one report
                    pipe.ltrim(f"{case}:reports", -settings.max_linked_reports, -1)
                pipe.expire(f"{case}:reports", settings.link_ttl_s)
                # The case's partners, and which of them opened it (what its reference is).
                role = OPENER if report.opened_case else JOINED
                pipe.hsetnx(f"{case}:partners", report.partner_id, role)
                pipe.expire(f"{case}:partners", settings.link_ttl_s)
                status = status_key(report.report_id)
                pipe.hset(
                    status,
                    mapping={
                        "partner": report.partner_id,
                        "case_id": str(report.case_id),
                        "case_ref": str(report.case_ref),
                        "received_at": report.received_at.isoformat(),
                        "source_format": report.source_format,
                        "lane": report.lane,
                        "linked": json.dumps(
                            [[str(r.report_id), r.partner_id] for r in report.linked]
                        ),
                    },
                )
                pipe.expire(status, settings.duplicate_window_s)
                # The duplicate record answers a resubmission from now on; the held event
                # stays as long as a request may be in progress, for one that looked the
                # report up before this record and holds its event after it.
                pipe.expire(held_key(report.report_id), settings.idempotency_reservation_s)
            for duplicate in duplicates:
                receipt_key = status_key(duplicate.receipt_id)
                pipe.hset(
                    receipt_key,
                    mapping={
                        "partner": duplicate.partner_id,
                        "case_id": str(duplicate.case_id),
                        "case_ref": str(duplicate.case_ref),
                        "received_at": duplicate.received_at.isoformat(),
                        "source_format": duplicate.source_format,
                        "duplicate_of": str(duplicate.duplicate_of),
                    },
                )
                pipe.expire(receipt_key, settings.duplicate_window_s)
                pipe.hincrby(status_key(duplicate.duplicate_of), "duplicates", 1)
            if answer is not None:
                self._answer_command(pipe, *answer)
            await pipe.execute()

    # the partners' status projection -----------------------------------------------------

    async def report_view(self, report_id: uuid.UUID) -> ReportStatusRecord | None:
        """A report's record, the record whose progress it shows (the original, for a
        duplicate), and what its partner may see of the case's classification."""
        fields = _texts(await self._redis.hgetall(status_key(report_id)))
        if "partner" not in fields:
            return None
        progress = fields
        if duplicate_of := fields.get("duplicate_of"):
            progress = _texts(await self._redis.hgetall(status_key(duplicate_of)))
            progress = progress if "partner" in progress else fields
        view = _texts(await self._redis.hgetall(view_key(fields["case_id"], fields["partner"])))
        return ReportStatusRecord(fields, progress, view)

    async def mark_triaged(
        self,
        report_id: uuid.UUID,
        case_id: uuid.UUID,
        at: datetime,
        now: datetime,
        *,
        own: PartnerAssessment | None,
        case_result: tuple[str, str],
    ) -> None:
        """A triage result for the case, caused by this report.

        Its partner sees the classification and priority triage drew from that partner's own
        reports alone (`own`), never the case's combined result, which would tell it that
        someone else reported the same person. A result from before triage made that
        assessment (`own` absent) is shown only if every report of the case is the partner's.
        A report reaching triage on a case that is already routed is routed from then (no new
        task is created for it)."""
        status = status_key(report_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(status, "partner")
            pipe.hkeys(f"{case_key(case_id)}:partners")
            pipe.hget(case_status_key(case_id), "routed_at")
            partner, partners, case_routed = await pipe.execute()
        if partner is None:
            return  # not a report this intake took (or long forgotten)
        owner = _text(partner)
        ttl = self._settings.duplicate_window_s
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(status, "triaged_at", at.isoformat())
            if case_routed is not None:
                pipe.hsetnx(status, "routed_at", now.isoformat())
            pipe.expire(status, ttl)
            shown: tuple[str, str] | None = None
            if own is not None:
                if own.partner_id == owner:
                    shown = (own.classification.value, own.priority.value)
            elif {_text(p) for p in partners} == {owner}:
                shown = case_result
            if shown is not None:
                view = view_key(case_id, owner)
                pipe.hset(
                    view,
                    mapping={
                        "classification": shown[0],
                        "priority": shown[1],
                        "updated_at": at.isoformat(),
                    },
                )
                pipe.expire(view, ttl)
            await pipe.execute()

    async def mark_routed(self, report_id: uuid.UUID, case_id: uuid.UUID, at: datetime) -> None:
        """A task was assigned on the case: the report that caused it is routed, and so is
        every report of the case already triaged (a case has one task per role, not one per
        report, so the others would wait for a task that never comes)."""
        reports = [
            _text(e).partition(" ")[0]
            for e in await self._redis.lrange(f"{case_key(case_id)}:reports", 0, -1)
        ]
        if not reports:
            return  # not a case this intake took reports for
        async with self._redis.pipeline(transaction=False) as pipe:
            for report in reports:
                pipe.hexists(status_key(report), "triaged_at")
            triaged = await pipe.execute()
        routed = [r for r, t in zip(reports, triaged, strict=True) if t or r == str(report_id)]
        ttl = self._settings.duplicate_window_s
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hsetnx(case_status_key(case_id), "routed_at", at.isoformat())
            pipe.expire(case_status_key(case_id), ttl)
            for report in routed:
                pipe.hsetnx(status_key(report), "routed_at", at.isoformat())
            await pipe.execute()
