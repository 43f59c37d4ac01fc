"""Writing intake's state folded back from Kafka (`domain.rebuild`) into Redis, under the keys
the live path uses (`redis.py`).

Only what is absent is written (SET NX, HSETNX, EXPIRE NX, a case's missing reports put
before the ones it has): replicas that restore at once write the same things, and a live
request or event that wrote meanwhile keeps what it wrote, which is newer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ocsea.runtime.logging import get_logger
from services.intake.adapters.redis import (
    JOINED,
    OPENER,
    answer_value,
    case_key,
    case_status_key,
    dup_key,
    held_key,
    idempotency_key,
    link_key,
    status_key,
    view_key,
)
from services.intake.domain.planning import LinkedReport
from services.intake.domain.rebuild import (
    RestoredAnswer,
    RestoredCase,
    RestoredLink,
    RestoredReport,
    RestoredState,
)

# A case's restored reports that its list lacks go before the ones it has (live requests since
# the loss appended newer ones), the latest are kept, and the list gets its time if it has none.
_MERGE_REPORTS = """
local present = {}
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do present[entry] = true end
for i = #ARGV, 3, -1 do
  if not present[ARGV[i]] then redis.call('LPUSH', KEYS[1], ARGV[i]) end
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
return 0
"""

log = get_logger("ocsea.intake")

# Records per pipeline: a round trip each, none of them large.
_CHUNK = 500
T = TypeVar("T")


def _entry(report: LinkedReport) -> str:
    return f"{report.report_id} {report.partner_id}"


def _at(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class RedisStateRestore:
    """The `StateRestore` port on Redis."""

    def __init__(self, redis: Redis, max_linked_reports: int) -> None:
        self._redis = redis
        self._max_linked_reports = max_linked_reports
        self._merge_reports = redis.register_script(_MERGE_REPORTS)

    async def restore(self, state: RestoredState) -> None:
        kept = 0
        for chunk in _chunks(state.reports):
            kept += await self._write(chunk, self._report)
        for cases in _chunks(state.cases):
            kept += await self._write(cases, self._case)
        for links in _chunks(state.links):
            kept += await self._write(links, self._link)
        for answers in _chunks(state.answers):
            kept += await self._write(answers, self._answer)
        if kept:
            log.warning("intake.restore_kept_other_values", keys=kept)

    async def _write(self, records: Sequence[Any], command: Any) -> int:
        """Writes the records' commands in one round trip; returns how many found their key
        holding a value of another type (written by something else: kept as it is, as any
        value present is). Any other failure (an outage) is raised: the rebuild is retried."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for record in records:
                await command(pipe, record)  # queued: the pipeline sends them together
            results = await pipe.execute(raise_on_error=False)
        failures = [r for r in results if isinstance(r, Exception)]
        if other := next((f for f in failures if not isinstance(f, ResponseError)), None):
            raise other
        return len(failures)

    @staticmethod
    def _absent_fields(pipe: Any, key: str, fields: dict[str, str | None], ttl_s: int) -> None:
        for name, value in fields.items():
            if value is not None:
                pipe.hsetnx(key, name, value)
        pipe.expire(key, ttl_s, nx=True)

    async def _report(self, pipe: Any, report: RestoredReport) -> None:
        fields = {
            "partner": report.partner_id,
            "case_id": str(report.case_id),
            "case_ref": str(report.case_ref),
            "received_at": report.received_at.isoformat(),
            "source_format": report.source_format,
            "lane": report.lane,
            "linked": json.dumps([[str(r.report_id), r.partner_id] for r in report.linked]),
            "triaged_at": _at(report.triaged_at),
            "routed_at": _at(report.routed_at),
        }
        self._absent_fields(pipe, status_key(report.report_id), fields, report.ttl_s)
        if report.fingerprint is not None:
            earlier = {
                "report_id": str(report.report_id),
                "case_id": str(report.case_id),
                "case_ref": str(report.case_ref),
            }
            pipe.set(dup_key(report.fingerprint), json.dumps(earlier), nx=True, ex=report.ttl_s)
        if report.held is not None:
            pipe.set(
                held_key(report.report_id), report.held.encode(), nx=True, ex=report.held_ttl_s
            )

    async def _case(self, pipe: Any, case: RestoredCase) -> None:
        key = case_key(case.case_id)
        await self._merge_reports(
            keys=[f"{key}:reports"],
            args=[self._max_linked_reports, case.ttl_s, *(_entry(r) for r in case.reports)],
            client=pipe,
        )
        roles = {p: OPENER if p == case.opener else JOINED for p in case.partners}
        self._absent_fields(pipe, f"{key}:partners", dict(roles), case.ttl_s)
        if case.routed_at is not None:
            routed = {"routed_at": _at(case.routed_at)}
            self._absent_fields(pipe, case_status_key(case.case_id), routed, case.routed_ttl_s)
        for partner, view in case.views.items():
            shown = {
                "classification": view.classification,
                "priority": view.priority,
                "updated_at": view.updated_at.isoformat(),
            }
            self._absent_fields(pipe, view_key(case.case_id, partner), dict(shown), view.ttl_s)

    @staticmethod
    async def _link(pipe: Any, link: RestoredLink) -> None:
        pipe.set(link_key(link.digest), str(link.case_id), nx=True, ex=link.ttl_s)

    @staticmethod
    async def _answer(pipe: Any, answer: RestoredAnswer) -> None:
        pipe.set(
            idempotency_key(answer.partner_id, answer.key_digest),
            answer_value(answer.request_digest, answer.status, answer.body),
            nx=True,
            ex=answer.ttl_s,
        )


def _chunks(records: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(records), _CHUNK):
        yield records[start : start + _CHUNK]
